"""Sorting and top-k: gates that pick the elements of x in an order found from values.

A sort moves each element to a new place and changes no value: z = x taken along the axis
at the permutation p that sorts the keys (``z_i = x_(p_i)``). Its rule moves each
gradient back to where its element came from: x_bar = z_bar added back at p, the
transpose of the pick. ``top_k`` picks the k largest the same way, and the elements not
picked get no gradient. The order p is integer data found from the values (the keys get no
gradient through it, as in ``jax.grad``), so the gates take it as an input: the public
functions and the tracer find it with a plain ``lax.sort`` of the values with an iota beside
them, the same order JAX's own rule uses (a tie keeps the order of the input with
``is_stable=True``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxprop.gate import ROUTER, STRUCTURE, Gate, inputs
from jaxprop.gates.indexing import add_back, take_along

__all__ = ["sort", "top_k"]


def _axis(name: str, x, axis) -> int:
    ndim = jnp.ndim(x)
    if not isinstance(axis, int) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis!r} is out of range for an input of shape "
                         f"{jnp.shape(x)} (rank {ndim})")
    return axis % ndim


def _order(keys, dimension: int, is_stable: bool, num_keys: int):
    """The sorted keys (and other operands) and the permutation p that sorts them, with no
    derivative: a ``lax.sort`` of the values with an iota beside them."""
    iota = lax.broadcasted_iota(jnp.int32, jnp.shape(keys[0]), dimension)
    out = lax.sort((*[lax.stop_gradient(k) for k in keys], iota), dimension=dimension,
                   is_stable=is_stable, num_keys=num_keys)
    return out[:-1], out[-1]


def _prepare_sort(x, axis: int = -1, *, is_stable: bool = True):
    """``sort(x, axis=-1)``: x sorted along ``axis`` (``jnp.sort``)."""
    dimension = _axis("sort", x, axis)
    return inputs(x, _order((x,), dimension, is_stable, 1)[1], dimension=dimension)


def _sort_primitive(*operands, dimension, is_stable, num_keys):
    """``lax.sort`` of several operands by the first ``num_keys``: each floating-point
    operand that is being traced through the sort gate at the keys' permutation, the others
    (integers, constants) as sorted."""
    plain, perm = _order(operands, dimension, is_stable, num_keys)
    return tuple(sort(x, perm, dimension=dimension) if _traced_float(x) else p
                 for x, p in zip(operands, plain))


def _traced_float(x) -> bool:
    return isinstance(x, jax.core.Tracer) and jnp.issubdtype(x.dtype, jnp.inexact)


sort = Gate(
    "sort",
    pattern=STRUCTURE,
    forward=lambda x, perm, *, dimension: (take_along(x, perm, dimension), perm),
    vjp=(lambda perm, z_bar, *, dimension: add_back(z_bar, perm, dimension, z_bar.shape),
         None),
    jvp=(lambda perm, x_dot, *, dimension: take_along(x_dot, perm, dimension), None),
    local=("1, moved: x_bar = z_bar put back where each element came from",),
    tangent="x_dot in the sorted order",
    params=("dimension",),
    prepare=_prepare_sort,
    primitives={"sort": _sort_primitive},
    label=lambda names, *, dimension: f"sort({names[0]})",
    doc="""Sort gate: z = x in the order p that sorts it along ``dimension``: z_i = x_(p_i)
(``jnp.sort``, ``jnp.median``, ``jnp.quantile``; ``lax.sort`` of several operands takes p
from its keys and moves every operand by it).

A sort moves each element and changes no value, so its rule moves each gradient back:
x_bar_(p_i) = z_bar_i, a scatter of z_bar by p (the pick's transpose). p is integer data
with no gradient; a tie keeps the input's order (``is_stable=True``), as in ``jax.grad``.
""",
)


def _prepare_top_k(x, k: int, axis: int = -1):
    """``top_k(x, k, axis=-1)``: the k largest along ``axis``, largest first."""
    axis = _axis("top_k", x, axis)
    if not isinstance(k, int) or not 0 <= k <= jnp.shape(x)[axis]:
        raise ValueError(f"top_k: k={k!r} must be an int in [0, {jnp.shape(x)[axis]}] for "
                         f"an input of shape {jnp.shape(x)} along axis {axis}")
    return inputs(x, lax.top_k(lax.stop_gradient(x), k, axis=axis)[1], axis=axis,
                  in_shape=tuple(jnp.shape(x)))


def _top_k_primitive(x, *, k, axis, **_):
    """``lax.top_k``: the values through the top_k gate, the indices as they are."""
    idx = lax.top_k(lax.stop_gradient(x), k, axis=axis)[1]
    return top_k(x, idx, axis=axis, in_shape=tuple(jnp.shape(x))), idx


top_k = Gate(
    "top_k",
    pattern=ROUTER,
    forward=lambda x, idx, *, axis, in_shape: (take_along(x, idx, axis), idx),
    vjp=(lambda idx, z_bar, *, axis, in_shape: add_back(z_bar, idx, axis, in_shape), None),
    jvp=(lambda idx, x_dot, *, axis, in_shape: take_along(x_dot, idx, axis), None),
    local=("1 where picked among the k largest, else 0",),
    tangent="x_dot of the k largest",
    params=("axis", "in_shape"),
    prepare=_prepare_top_k,
    primitives={"top_k": _top_k_primitive},
    doc="""Top-k gate: z = the k largest elements of x along ``axis``, largest first, at the
indices idx (``lax.top_k``; the indices are integer data with no gradient).

The "gradient router": each picked element gets its gradient back at its index, the others
none: x_bar = z_bar scattered back at idx into zeros.
""",
)

