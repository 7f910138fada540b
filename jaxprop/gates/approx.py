"""The approximate top-k gate (``lax.approx_max_k``, ``lax.approx_min_k``): a router.

Each of the k values it returns is one element of x, so, as at a max gate, that element takes
the upstream gradient and the others get none. The rules read only the indices the forward
pass returned, so they hold however approximate the selection was (on a CPU it is exact).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import ROUTER, Gate, inputs

__all__ = ["approx_top_k"]


class Picks(NamedTuple):
    """Residuals: the input (for its shape) and the indices picked along the axis."""

    x: Any
    idx: Any


def _top_k(x, *, k, reduction_dimension, recall_target, is_max_k,
           reduction_input_size_override, aggregate_to_topk):
    pick = lax.approx_max_k if is_max_k else lax.approx_min_k
    return pick(x, k, reduction_dimension, recall_target, reduction_input_size_override,
                aggregate_to_topk)


def _forward(x, **params):
    values, idx = _top_k(x, **params)
    return values, Picks(x, idx)


def _prepare(x, k: int, reduction_dimension: int = -1, recall_target: float = 0.95,
             is_max_k: bool = True, reduction_input_size_override: int = -1,
             aggregate_to_topk: bool = True):
    """``approx_top_k(x, k)`` in ``lax.approx_max_k``'s words (``is_max_k=False``: min)."""
    return inputs(x, k=k, reduction_dimension=reduction_dimension,
                  recall_target=recall_target, is_max_k=is_max_k,
                  reduction_input_size_override=reduction_input_size_override,
                  aggregate_to_topk=aggregate_to_topk)


def _axis(res, reduction_dimension):
    return reduction_dimension % jnp.ndim(res.x)


approx_top_k = Gate(
    "approx_top_k",
    pattern=ROUTER,
    forward=_forward,
    vjp=(lambda res, z_bar, *, reduction_dimension, **_: jnp.put_along_axis(
        jnp.zeros_like(res.x), res.idx, z_bar, axis=_axis(res, reduction_dimension),
        inplace=False),),
    jvp=(lambda res, x_dot, *, reduction_dimension, **_: jnp.take_along_axis(
        x_dot, res.idx, axis=_axis(res, reduction_dimension)),),
    local=("1 at each picked element, 0 elsewhere",),
    tangent="x_dot at the picked indices",
    params=("k", "reduction_dimension", "recall_target", "is_max_k",
            "reduction_input_size_override", "aggregate_to_topk"),
    prepare=_prepare,
    primitives={"approx_top_k": lambda x, **p: (
        approx_top_k(x, **p), _top_k(lax.stop_gradient(x), **p)[1])},
    doc="""Approximate top-k gate: z = the k largest (or smallest) elements of x along an
axis, as ``lax.approx_max_k`` finds them; the indices come beside it, with no gradient.

The "gradient router": each picked element takes its output's upstream gradient (put back at
its index), every other element gets zero.
""",
)
