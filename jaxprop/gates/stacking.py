"""Stacking: ``jnp.stack`` joins arrays along a new axis, ``jnp.unstack`` cuts one apart.

Both are *structure*: no value changes, each gradient is moved back into place. The unstack
gate's parts hand back their gradients stacked; a stack (any number of inputs) is applied
as what it is, each input given a size-1 axis (a reshape gate) and the results joined by
the concatenate gates, so its gradient is the concatenation's, cut apart.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxprop.gate import STRUCTURE, Gate, inputs

__all__ = ["unstack", "stack"]


def _prepare_unstack(x, axis: int = 0):
    return inputs(x, axis=axis % jnp.ndim(x))


def stack(xs, axis: int = 0):
    """``jnp.stack(xs, axis)`` as gates: each x given a size-1 axis at ``axis`` (reshape),
    then joined along it (concatenate)."""
    from jaxprop.gates.indexing import concatenate
    from jaxprop.gates.structure import expand_dims

    xs = list(xs)
    axis = axis % (jnp.ndim(xs[0]) + 1)
    return concatenate([expand_dims(x, axis) for x in xs], axis)


unstack = Gate(
    "unstack",
    pattern=STRUCTURE,
    forward=lambda x, *, axis: (tuple(jnp.unstack(x, axis=axis)), None),
    vjp=(lambda res, z_bar, *, axis: jnp.stack(list(z_bar), axis=axis),),
    jvp=(lambda res, x_dot, *, axis: tuple(jnp.unstack(x_dot, axis=axis)),),
    local=("1, moved: x_bar = the parts' z_bar stacked",),
    tangent="x_dot unstacked",
    params=("axis",),
    prepare=_prepare_unstack,
    primitives={"unstack": lambda x, *, axis: unstack(x, axis=axis),
                "stack": lambda *xs, axis: stack(xs, axis)},
    doc="""Unstack gate: (z_0, z_1, ...) = the slices of x along ``axis``, that axis dropped.

The parts' gradients are stacked back along ``axis``. (``jnp.stack``, the other way, is a
reshape gate per input and the concatenate gates: see :func:`stack`.)
""",
)
