"""Matrix multiply, the lecture's way (x [N, D] @ w [D, M]) and in full (``dot_general``).

The lecture's dimension analysis, "the only way the shapes work out":

    x_bar = y_bar w^T     [N, D] = [N, M] [M, D]
    w_bar = x^T y_bar     [D, M] = [D, N] [N, M]

``dot_general`` generalises it to any contracting and batch axes: the gradient of one
operand contracts y_bar with the *other* operand over that operand's free axes (the axes
that survive into y), keeping the batch axes, and then lays the result out in the operand's
own axis order. It is still the swap multiplier: each input's gradient is built from the
other input.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprop.gate import SWITCHER, Gate, inputs

__all__ = ["matmul", "dot_general"]


def _check_matmul(x, w):
    x_shape, w_shape = jnp.shape(x), jnp.shape(w)
    if len(w_shape) != 2 or len(x_shape) < 1:
        raise ValueError(
            f"matmul: expected x of shape [..., D] and w of shape [D, M]; "
            f"got x {x_shape} and w {w_shape}"
        )
    if x_shape[-1] != w_shape[0]:
        raise ValueError(
            f"matmul: inner dimensions differ: x {x_shape} has D={x_shape[-1]} but "
            f"w {w_shape} has D={w_shape[0]}"
        )


class Operands(NamedTuple):
    """The residuals of a product: both operands (each input's gradient uses the other)."""

    x: Any
    w: Any


def _rows(a):
    """a [..., K] as rows [N, K]: x may have leading axes, and w_bar sums over all of them."""
    return a.reshape(-1, a.shape[-1])


def _is_lecture_matmul(x, w, dimension_numbers) -> bool:
    (x_contract, w_contract), (x_batch, w_batch) = dimension_numbers
    return (jnp.ndim(w) == 2 and jnp.ndim(x) >= 1 and tuple(x_contract) == (jnp.ndim(x) - 1,)
            and tuple(w_contract) == (0,) and not x_batch and not w_batch)


def _from_dot_general(x, w, *, dimension_numbers, precision=None, preferred_element_type=None,
                      **_):
    natural = preferred_element_type is None or (
        jnp.dtype(preferred_element_type) == jnp.result_type(x, w))
    if natural and _is_lecture_matmul(x, w, dimension_numbers):
        return matmul(x, w)  # x [..., D] @ w [D, M]: the lecture's gate
    return dot_general(x, w, dimension_numbers, precision, preferred_element_type)


matmul = Gate(
    "matmul",
    pattern=SWITCHER,
    forward=lambda x, w: (x @ w, Operands(x, w)),
    vjp=(lambda res, dy: dy @ res.w.T, lambda res, dy: _rows(res.x).T @ _rows(dy)),
    jvp=(lambda res, x_dot: x_dot @ res.w, lambda res, w_dot: res.x @ w_dot),
    local=("dy w^T  {x} = {y}{w^T}", "x^T dy  {w}"),
    tangent="x_dot w + x w_dot  {y}",
    output="y",
    check=_check_matmul,
    primitives={"dot_general": _from_dot_general},
    doc="""Matrix multiply gate: y = x w, with x [N, D] and w [D, M].

By dimension analysis (the only way the shapes fit):
    x_bar = y_bar w^T     [N, D] = [N, M] [M, D]
    w_bar = x^T y_bar     [D, M] = [D, N] [N, M]
The local Jacobian dy/dx would be [N, M, N, D]; it is never formed. x may have any number of
leading axes, [..., D]; w_bar then contracts over all of them.
""",
)


def _free(ndim: int, contract, batch) -> list[int]:
    return [d for d in range(ndim) if d not in contract and d not in batch]


def _operand_bar(z_bar, other, *, dimension_numbers, mine: int, ndim: tuple[int, int],
                 precision, preferred_element_type):
    """The gradient of operand ``mine`` (0: x, 1: w) of ``dot_general(x, w, dims)``.

    z_bar's axes are [batch, x free, w free]. Contract z_bar's axes of the *other* operand's
    free part with the other operand's free axes (batch with batch): what is left is
    [batch, my free axes, the other's contracting axes in ascending order], and each of those
    contracting axes pairs with one of mine. Then permute into my own axis order.
    """
    contract, batch = dimension_numbers[0], dimension_numbers[1]
    my_c, other_c = contract[mine], contract[1 - mine]
    my_b, other_b = batch[mine], batch[1 - mine]
    my_free = _free(ndim[mine], my_c, my_b)
    other_free = _free(ndim[1 - mine], other_c, other_b)
    nb, nx_free = len(my_b), len(_free(ndim[0], contract[0], batch[0]))
    other_in_z = (list(range(nb + nx_free, nb + nx_free + len(other_free))) if mine == 0
                  else list(range(nb, nb + len(other_free))))
    dims = ((tuple(other_in_z), tuple(other_free)), (tuple(range(nb)), tuple(other_b)))
    out = lax.dot_general(z_bar, other, dims, precision=precision,
                          preferred_element_type=preferred_element_type)
    paired = [my_c[list(other_c).index(d)] for d in sorted(other_c)]
    return jnp.transpose(out, tuple(np.argsort(list(my_b) + my_free + paired)))


def _dot_bar(mine):
    def rule(res, z_bar, *, dimension_numbers, precision, preferred_element_type):
        x, w = res
        return _operand_bar(z_bar, w if mine == 0 else x, dimension_numbers=dimension_numbers,
                            mine=mine, ndim=(x.ndim, w.ndim), precision=precision,
                            preferred_element_type=None)

    rule.__name__ = f"_dot_bar({mine})"
    return rule


def _prepare_dot_general(x, w, dimension_numbers, precision=None, preferred_element_type=None):
    """The dot_general gate, with ``lax.dot_general``'s arguments."""
    (xc, wc), (xb, wb) = dimension_numbers
    dims = ((tuple(int(d) for d in xc), tuple(int(d) for d in wc)),
            (tuple(int(d) for d in xb), tuple(int(d) for d in wb)))
    return inputs(x, w, dimension_numbers=dims, precision=precision,
                        preferred_element_type=preferred_element_type)


dot_general = Gate(
    "dot_general",
    pattern=SWITCHER,
    forward=lambda x, w, *, dimension_numbers, precision, preferred_element_type: (
        lax.dot_general(x, w, dimension_numbers, precision=precision,
                        preferred_element_type=preferred_element_type), Operands(x, w)),
    vjp=(_dot_bar(0), _dot_bar(1)),
    jvp=(lambda res, x_dot, *, dimension_numbers, precision, **_: lax.dot_general(
             x_dot, res.w, dimension_numbers, precision=precision),
         lambda res, w_dot, *, dimension_numbers, precision, **_: lax.dot_general(
             res.x, w_dot, dimension_numbers, precision=precision)),
    local=("dy with w, over w's free axes  {x}", "dy with x, over x's free axes  {w}"),
    tangent="x_dot w + x w_dot  {y}",
    output="y",
    params=("dimension_numbers", "precision", "preferred_element_type"),
    prepare=_prepare_dot_general,
    doc="""General dot product gate: y = dot_general(x, w, ((x_c, w_c), (x_b, w_b))) sums over
the paired contracting axes and keeps the paired batch axes: y is [batch, x free, w free].
``x @ v``, ``jnp.einsum`` and batched matmuls all are one.

The "swap multiplier", by dimension analysis in general: x_bar contracts y_bar with w over
w's free axes (batch with batch) and lays it out in x's axis order; w_bar likewise with x.
""",
)


