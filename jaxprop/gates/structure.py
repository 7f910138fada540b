"""The structure gates: they move values and gradients around and change no value.

A copy (one value feeding two gates, a broadcast of one value to many places, or a tile of
copies of an array) is the lecture's *gradient adder*: the gradients of the copies add.
Reshape, squeeze, transpose, reverse and a floating-point cast only move each element (or
change its precision), so their rules move the gradient straight back into place.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprop.gate import ADDER, STRUCTURE, Gate, inputs

__all__ = ["copy", "broadcast_to", "reshape", "squeeze", "expand_dims", "transpose", "rev",
           "cast", "tile"]


copy = Gate(
    "copy",
    pattern=ADDER,
    forward=lambda x: ((x, x), None),
    vjp=(lambda res, z_bar: z_bar[0] + z_bar[1],),
    jvp=(lambda res, x_dot: (x_dot, x_dot),),
    local=("1 per branch: x_bar = a_bar + b_bar",),
    tangent="(x_dot, x_dot), one per branch",
    doc="""Copy gate: (a, b) = (x, x), the branch point where one value feeds two gates.

The "gradient adder": the gradients of the branches add.
""",
)


def _sum_copies(z_bar, *, shape, dims, in_shape):
    """z_bar summed over the axes the broadcast added or stretched, back to ``in_shape``."""
    added = tuple(a for a in range(len(shape)) if a not in dims)
    stretched = tuple(d for i, d in enumerate(dims) if in_shape[i] == 1 and shape[d] != 1)
    return jnp.sum(z_bar, axis=added + stretched, keepdims=True).reshape(in_shape)


def _prepare_broadcast_to(x, shape):
    """x copied to ``shape`` by NumPy's rules (trailing axes aligned): the broadcast gate."""
    shape = tuple(shape)
    lead = len(shape) - jnp.ndim(x)
    if lead < 0:
        raise ValueError(f"broadcast_to: cannot broadcast a rank-{jnp.ndim(x)} input of shape "
                         f"{jnp.shape(x)} to the lower-rank shape {shape}")
    return inputs(x, shape=shape, dims=tuple(range(lead, len(shape))),
                      in_shape=tuple(jnp.shape(x)))


broadcast_to = Gate(
    "broadcast_to",
    pattern=ADDER,
    forward=lambda x, *, shape, dims, in_shape: (lax.broadcast_in_dim(x, shape, dims), None),
    vjp=(lambda res, z_bar, **p: _sum_copies(z_bar, **p),),
    jvp=(lambda res, x_dot, *, shape, dims, in_shape: lax.broadcast_in_dim(x_dot, shape,
                                                                            dims),),
    local=("1 per copy: x_bar = sum of the copies' z_bar",),
    tangent="x_dot, copied",
    params=("shape", "dims", "in_shape"),
    prepare=_prepare_broadcast_to,
    primitives={"broadcast_in_dim": lambda x, *, shape, broadcast_dimensions, **_:
                _broadcast_in_dim(x, tuple(shape), tuple(broadcast_dimensions))},
    doc="""Broadcast gate: z = x copied along new or size-1 axes to ``shape``.

The "gradient adder": a broadcast copies its input, and at a copy the gradients add,
so x_bar sums z_bar over the copied axes. A bias b [C] added to scores [N, C] is broadcast to
[N, C] first: its gradient is the sum over the batch.
""",
)


def _broadcast_in_dim(x, shape, dims):
    if int(np.prod(shape)) == int(np.prod(jnp.shape(x))):  # only size-1 axes are added
        return reshape(x, shape)
    return broadcast_to(x, shape=shape, dims=dims, in_shape=tuple(jnp.shape(x)))


def _prepare_reshape(x, shape):
    """The reshape gate (``-1`` in ``shape`` takes the size that is left)."""
    in_shape = tuple(jnp.shape(x))
    shape = tuple(np.empty(in_shape, dtype=np.int8).reshape(shape).shape)  # resolves -1
    return inputs(x, shape=shape, in_shape=in_shape)


reshape = Gate(
    "reshape",
    pattern=STRUCTURE,
    forward=lambda x, *, shape, in_shape: (jnp.reshape(x, shape), None),
    vjp=(lambda res, z_bar, *, shape, in_shape: jnp.reshape(z_bar, in_shape),),
    jvp=(lambda res, x_dot, *, shape, in_shape: jnp.reshape(x_dot, shape),),
    local=("1, moved: x_bar = z_bar reshaped back",),
    tangent="x_dot reshaped",
    params=("shape", "in_shape"),
    prepare=_prepare_reshape,
    primitives={"reshape": lambda x, *, new_sizes, dimensions=None, **_: reshape(
        x if dimensions is None else transpose(x, tuple(dimensions)), tuple(new_sizes))},
    doc="""Reshape gate: z = x with a new shape, the elements in the same (C) order.

Every element keeps its gradient: z_bar is reshaped back to x's shape.
""",
)


def _prepare_expand_dims(x, axis):
    """x with size-1 axes inserted at ``axis`` (an int or a tuple), counted in the output."""
    dims = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = jnp.ndim(x) + len(dims)
    if not all(-ndim <= d < ndim for d in dims) or len({d % ndim for d in dims}) < len(dims):
        raise ValueError(f"expand_dims: axis {axis!r} does not name {len(dims)} distinct new "
                         f"axes of a rank-{ndim} output (input shape {jnp.shape(x)})")
    return inputs(x, dims=tuple(sorted(d % ndim for d in dims)))


expand_dims = Gate(
    "expand_dims",
    pattern=STRUCTURE,
    forward=lambda x, *, dims: (lax.expand_dims(x, dims), None),
    vjp=(lambda res, z_bar, *, dims: lax.squeeze(z_bar, dims),),
    jvp=(lambda res, x_dot, *, dims: lax.expand_dims(x_dot, dims),),
    local=("1, moved: x_bar = z_bar without the new axes",),
    tangent="x_dot with the new axes",
    params=("dims",),
    prepare=_prepare_expand_dims,
    doc="""Expand-dims gate: z = x with new size-1 axes at ``dims``, squeeze's inverse.

z_bar loses those axes again.
""",
)


def _squeeze_label(names, *, dims, in_shape):
    """``w[0:1]`` squeezed on that axis is ``w[0]``; other names get a step name."""
    base, bracket, rest = names[0].partition("[")
    if not bracket or not rest.endswith("]"):
        return None
    parts = rest[:-1].split(", ")
    if len(parts) != len(in_shape):
        return None
    for d in dims:
        lo, colon, hi = parts[d].partition(":")
        if colon and lo.isdigit() and hi.isdigit() and int(hi) == int(lo) + 1:
            parts[d] = lo
    while len(parts) > 1 and parts[-1] == ":":
        parts.pop()
    return f"{base}[{', '.join(parts)}]"


def _prepare_squeeze(x, axis):
    """x without its size-1 axes ``axis`` (an int or a tuple)."""
    dims = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = jnp.ndim(x)
    dims = tuple(sorted(d % ndim for d in dims))
    return inputs(x, dims=dims, in_shape=tuple(jnp.shape(x)))


squeeze = Gate(
    "squeeze",
    pattern=STRUCTURE,
    forward=lambda x, *, dims, in_shape: (lax.squeeze(x, dims), None),
    vjp=(lambda res, z_bar, *, dims, in_shape: jnp.reshape(z_bar, in_shape),),
    jvp=(lambda res, x_dot, *, dims, in_shape: lax.squeeze(x_dot, dims),),
    local=("1, moved: x_bar = z_bar with the axes back",),
    tangent="x_dot squeezed",
    params=("dims", "in_shape"),
    prepare=_prepare_squeeze,
    primitives={"squeeze": lambda x, *, dimensions: squeeze(x, tuple(dimensions))},
    label=_squeeze_label,
    doc="""Squeeze gate: z = x without the size-1 axes ``dims``.

z_bar gets those axes back.
""",
)


def _prepare_transpose(x, perm=None):
    """The transpose gate; ``perm`` None reverses the axes, as ``x.T`` does."""
    perm = tuple(reversed(range(jnp.ndim(x)))) if perm is None else tuple(
        p % jnp.ndim(x) for p in perm)
    return inputs(x, perm=perm)


transpose = Gate(
    "transpose",
    pattern=STRUCTURE,
    symbol="T",
    forward=lambda x, *, perm: (jnp.transpose(x, perm), None),
    vjp=(lambda res, z_bar, *, perm: jnp.transpose(z_bar, tuple(np.argsort(perm))),),
    jvp=(lambda res, x_dot, *, perm: jnp.transpose(x_dot, perm),),
    local=("1, moved: x_bar = z_bar transposed back",),
    tangent="x_dot transposed",
    params=("perm",),
    prepare=_prepare_transpose,
    primitives={"transpose": lambda x, *, permutation: transpose(x, tuple(permutation))},
    label=lambda names, *, perm: f"{names[0]}^T",
    doc="""Transpose gate: z = x with its axes permuted (``x.T`` reverses them).

z_bar is permuted back by the inverse permutation.
""",
)


def _prepare_rev(x, axis):
    """x reversed along ``axis`` (an int or a tuple): the reverse gate."""
    dims = (axis,) if isinstance(axis, int) else tuple(axis)
    return inputs(x, dims=tuple(sorted(d % jnp.ndim(x) for d in dims)))


rev = Gate(
    "rev",
    pattern=STRUCTURE,
    forward=lambda x, *, dims: (lax.rev(x, dims), None),
    vjp=(lambda res, z_bar, *, dims: lax.rev(z_bar, dims),),
    jvp=(lambda res, x_dot, *, dims: lax.rev(x_dot, dims),),
    local=("1, moved: x_bar = z_bar reversed back",),
    tangent="x_dot reversed",
    params=("dims",),
    prepare=_prepare_rev,
    primitives={"rev": lambda x, *, dimensions: rev(x, tuple(dimensions))},
    doc="""Reverse gate: z = x reversed along ``dims`` (``jnp.flip``).

z_bar is reversed the same way.
""",
)


def _prepare_cast(x, dtype):
    """x as the floating-point ``dtype``: the cast gate."""
    return inputs(x, dtype=np.dtype(dtype))


cast = Gate(
    "cast",
    pattern=STRUCTURE,
    forward=lambda x, *, dtype: (lax.convert_element_type(x, dtype), None),
    vjp=(lambda res, z_bar, *, dtype: z_bar,),  # the wiring casts it to x's dtype
    jvp=(lambda res, x_dot, *, dtype: x_dot,),  # ... and this to z's
    local=("1: x_bar = z_bar in x's dtype",),
    tangent="x_dot in z's dtype",
    params=("dtype",),
    prepare=_prepare_cast,
    primitives={"convert_element_type": lambda x, *, new_dtype, **_: cast(x, new_dtype)},
    doc="""Cast gate: z = x in another floating-point dtype (``x.astype(jnp.float32)``).

The wiring casts z_bar to x's dtype. A cast to an integer or boolean dtype has no gradient:
it is no gate.
""",
)




def _prepare_tile(x, reps):
    """x repeated ``reps[d]`` times along each axis d (``jnp.tile``); a shorter ``reps`` is
    padded with 1s in front."""
    reps = tuple(int(r) for r in ((reps,) if isinstance(reps, int) else reps))
    ndim = jnp.ndim(x)
    if len(reps) > ndim or any(r < 1 for r in reps):
        raise ValueError(f"tile: reps {reps} must be at most one count >= 1 per axis of x "
                         f"(shape {jnp.shape(x)}); reshape x to more axes first")
    return inputs(x, reps=(1,) * (ndim - len(reps)) + reps)


def _sum_tiles(z_bar, reps):
    """z_bar with each axis split as (copy, element), summed over the copies."""
    split = tuple(n for r, s in zip(reps, z_bar.shape) for n in (r, s // r))
    return jnp.sum(z_bar.reshape(split), axis=tuple(range(0, len(split), 2)))


tile = Gate(
    "tile",
    pattern=ADDER,
    forward=lambda x, *, reps: (lax.tile(x, reps), None),
    vjp=(lambda res, z_bar, *, reps: _sum_tiles(z_bar, reps),),
    jvp=(lambda res, x_dot, *, reps: lax.tile(x_dot, reps),),
    local=("1 per copy: x_bar = sum of the copies' z_bar",),
    tangent="x_dot, tiled",
    params=("reps",),
    prepare=_prepare_tile,
    primitives={"tile": lambda x, *, reps: tile(x, tuple(reps))},
    doc="""Tile gate: z = x repeated ``reps[d]`` times along each axis d (``jnp.tile``).

The "gradient adder": every element of x is copied once per tile, and at a copy the
gradients add: x_bar = the sum of z_bar's tiles.
""",
)
