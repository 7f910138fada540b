"""Matrix multiply, the lecture's way (x [N, D] @ w [D, M]) and in full (``dot_general``);
triangular solves and the factorizations built on them (Cholesky, ...).

The lecture's dimension analysis, "the only way the shapes work out":

    x_bar = y_bar w^T     [N, D] = [N, M] [M, D]
    w_bar = x^T y_bar     [D, M] = [D, N] [N, M]

``dot_general`` generalises it to any contracting and batch axes: the gradient of one
operand contracts y_bar with the *other* operand over that operand's free axes (the axes
that survive into y), keeping the batch axes, and then lays the result out in the operand's
own axis order. It is still the swap multiplier: each input's gradient is built from the
other input.

A solve ``x = A^-1 b`` is a matmul by A^-1, and its rules are the matmul's, with A^-1 applied
by another solve, never formed: ``b_bar = A^-T x_bar`` (a solve with the transposed system)
and ``A_bar = -b_bar x^T`` (the swap multiplier: upstream times the *other* factor, x).
A factorization (``L = chol(A)``) is differentiated through its defining equation
(``A = L L^T``): the rules solve that equation's differential for the factors' tangents, and
transpose it for the gradients. Every rule here is written with matmuls, triangular solves
and elementwise masks, all of them gates, so a second derivative runs through gates too.
Leading axes are batch axes: ``A [..., n, n]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprop.gate import SCALED, SWITCHER, Gate, inputs

__all__ = ["matmul", "dot_general", "triangular_solve", "cholesky"]


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




# ------------------------------------------------------------------------ triangular solves


def _mT(a):
    """a with its last two axes swapped: the transpose of each matrix in a batch."""
    return jnp.swapaxes(a, -1, -2)


def _triangle(a, *, lower, unit_diagonal=False):
    """The triangle of a that a triangular solve reads (its diagonal too, unless unit)."""
    k = -1 if unit_diagonal else 0
    return jnp.tril(a, k) if lower else jnp.triu(a, -k)


def _check_triangular_solve(a, b, *, left_side, **_):
    a_shape, b_shape = jnp.shape(a), jnp.shape(b)
    k = b_shape[-2 if left_side else -1] if len(b_shape) >= 2 else None
    if (len(a_shape) < 2 or a_shape[-1] != a_shape[-2] or len(b_shape) != len(a_shape)
            or a_shape[:-2] != b_shape[:-2] or k != a_shape[-1]):
        side = "[..., n, k] (left_side=True)" if left_side else "[..., k, n] (left_side=False)"
        raise ValueError(f"triangular_solve: expected a of shape [..., n, n] and b of shape "
                         f"{side} with the same batch axes; got a {a_shape} and b {b_shape}")


def _solve_again(a, b, *, transpose_a, **p):
    """Another triangular solve with a: ``transpose_a`` flips to solve the transposed system."""
    return lax.linalg.triangular_solve(a, b, transpose_a=transpose_a, **p)


def _triangular_b_bar(res, x_bar, **p):
    """b_bar = op(A)^-T x_bar (left) or x_bar op(A)^-T (right): the transposed solve."""
    return _solve_again(res.a, x_bar, **{**p, "transpose_a": not p["transpose_a"]})


def _triangular_a_bar(res, x_bar, **p):
    """A_bar = -b_bar x^T (left side) or -x^T b_bar (right side), transposed back when the
    solve used A^T, and kept to the triangle the solve reads."""
    b_bar = _triangular_b_bar(res, x_bar, **p)
    m_bar = -(b_bar @ _mT(res.x)) if p["left_side"] else -(_mT(res.x) @ b_bar)
    return _triangle(_mT(m_bar) if p["transpose_a"] else m_bar, lower=p["lower"],
                     unit_diagonal=p["unit_diagonal"])


def _triangular_x_dot_a(res, a_dot, **p):
    """x_dot = -op(A)^-1 op(A_dot) x (left side) or -x op(A_dot) op(A)^-1 (right side)."""
    m_dot = _triangle(a_dot, lower=p["lower"], unit_diagonal=p["unit_diagonal"])
    m_dot = _mT(m_dot) if p["transpose_a"] else m_dot
    return -_solve_again(res.a, m_dot @ res.x if p["left_side"] else res.x @ m_dot, **p)


def _prepare_triangular_solve(a, b, left_side=False, lower=False, transpose_a=False,
                              conjugate_a=False, unit_diagonal=False):
    """The triangular_solve gate, with ``lax.linalg.triangular_solve``'s arguments."""
    return inputs(a, b, left_side=bool(left_side), lower=bool(lower),
                  transpose_a=bool(transpose_a), conjugate_a=bool(conjugate_a),
                  unit_diagonal=bool(unit_diagonal))


class Solved(NamedTuple):
    """The residuals of a solve: the matrix (to solve again) and the solution x."""

    a: Any
    x: Any


triangular_solve = Gate(
    "triangular_solve",
    pattern=SWITCHER,
    symbol="solve",
    forward=lambda a, b, **p: (lambda x: (x, Solved(a, x)))(
        lax.linalg.triangular_solve(a, b, **p)),
    vjp=(lambda res, x_bar, **p: _triangular_a_bar(res, x_bar, **p),
         lambda res, x_bar, **p: _triangular_b_bar(res, x_bar, **p)),
    jvp=(lambda res, a_dot, **p: _triangular_x_dot_a(res, a_dot, **p),
         lambda res, b_dot, **p: _solve_again(res.a, b_dot, **p)),
    local=("-b_bar x^T  {a}", "A^-T x_bar  {b}"),
    tangent="A^-1 (b_dot - A_dot x)  {x}",
    output="x",
    params=("left_side", "lower", "transpose_a", "conjugate_a", "unit_diagonal"),
    check=_check_triangular_solve,
    prepare=_prepare_triangular_solve,
    primitives={"triangular_solve": None},
    doc="""Triangular solve gate: x = op(A)^-1 b (left_side) or x = b op(A)^-1, where A is
the lower (or upper) triangle of a, with ones on its diagonal if ``unit_diagonal``, and
op(A) is A^T if ``transpose_a``. a [..., n, n]; b [..., n, k] (left) or [..., k, n].

x = M^-1 b is a matmul by M^-1, so the rules are the swap multiplier's, with M^-1 applied
by another solve and never formed (left side shown; the right side mirrors it):
    b_bar = M^-T x_bar        [n, k] = [n, n][n, k]: the solve with op(A) transposed
    M_bar = -b_bar x^T        [n, n] = [n, k][k, n]: from x, the *other* factor
and A_bar is M_bar (M_bar^T if op transposes), kept to the triangle the solve reads (its
strict triangle when the diagonal is unit): the rest of a is never read. Forward:
M x = b gives M_dot x + M x_dot = b_dot, so x_dot = M^-1 (b_dot - M_dot x). Real inputs
only: ``conjugate_a`` changes nothing on them.
""",
)


# -------------------------------------------------------------------------------- Cholesky


def _phi(x):
    """Φ(X): the lower triangle of X with its diagonal halved (the lower half of a symmetric
    matrix, so that Φ(S) + Φ(S)^T = S)."""
    n = x.shape[-1]
    mask = np.tril(np.ones((n, n))) - 0.5 * np.eye(n)
    return x * np.broadcast_to(mask, x.shape).astype(x.dtype)


def _check_square(name):
    def check(a, **_):
        shape = jnp.shape(a)
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise ValueError(f"{name}: expected square matrices [..., n, n]; got {shape}")

    return check


def _cholesky_a_bar(L, L_bar):
    """A_bar = L^-T Φ(L^T L_bar) L^-1, by two triangular solves."""
    p = _phi(_mT(L) @ L_bar)
    left = lax.linalg.triangular_solve(L, p, left_side=True, lower=True, transpose_a=True)
    return lax.linalg.triangular_solve(L, left, left_side=False, lower=True)


def _cholesky_l_dot(L, a_dot):
    """L_dot = L Φ(L^-1 A_dot L^-T), by two triangular solves."""
    right = lax.linalg.triangular_solve(L, a_dot, left_side=False, lower=True, transpose_a=True)
    return L @ _phi(lax.linalg.triangular_solve(L, right, left_side=True, lower=True))


cholesky = Gate(
    "cholesky",
    pattern=SCALED,
    symbol="chol",
    forward=lambda a: (lambda L: (L, L))(jnp.tril(lax.linalg.cholesky(a, symmetrize_input=False))),
    vjp=(lambda L, L_bar: _cholesky_a_bar(L, L_bar),),
    jvp=(lambda L, a_dot: _cholesky_l_dot(L, a_dot),),
    local=("L^-T Φ(L^T L_bar) L^-1  {a}",),
    tangent="L Φ(L^-1 A_dot L^-T)  {L}",
    output="L",
    check=_check_square("cholesky"),
    primitives={"cholesky": None},
    doc="""Cholesky gate: L = chol(A), lower triangular with A = L L^T, for A [..., n, n]
symmetric positive definite (only its lower triangle is read).

Forward: A = L L^T gives A_dot = L_dot L^T + L L_dot^T, so L^-1 A_dot L^-T = X + X^T with
X = L^-1 L_dot lower triangular: X = Φ(L^-1 A_dot L^-T), Φ taking the lower triangle with
the diagonal halved, and L_dot = L Φ(L^-1 A_dot L^-T).
Backward, the transpose of that map ("upstream x local", Φ is its own transpose):
    A_bar = L^-T Φ(L^T L_bar) L^-1      [n, n]
computed by two triangular solves, never an inverse. Like JAX's rule, it takes A_dot as it
comes, so A_bar is not symmetrised: its symmetric part is the gradient over symmetric
matrices, and ``jnp.linalg.cholesky`` (which symmetrises its input first) gets exactly that.
""",
)
