"""Matrix multiply, the lecture's way (x [N, D] @ w [D, M]) and in full (``dot_general``);
linear solves and the factorizations (Cholesky, LU, QR, eigh, SVD).

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

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex

from jaxprop.gate import SCALED, SWITCHER, Gate, inputs

__all__ = ["matmul", "dot_general", "triangular_solve", "cholesky", "lu", "linear_solve",
           "eigh", "svd", "qr", "tridiagonal_solve"]


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


# -------------------------------------------------------------------------------------- LU


def _check_lu(a):
    shape = jnp.shape(a)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"lu: jaxprop's LU gate takes square matrices [..., n, n]; got "
                         f"{shape} (a rectangular LU has no gate)")


class Factors(NamedTuple):
    """The residuals of an LU factorization: the packed factors and the row permutation."""

    lu: Any
    perm: Any


def _unit_lower(lu):
    """L: the strict lower triangle of the packed factors, with ones on the diagonal."""
    n = lu.shape[-1]
    return jnp.tril(lu, -1) + np.broadcast_to(np.eye(n), lu.shape).astype(lu.dtype)


def _permuted_rows(a, perm):
    """a's rows in the order ``perm``: P a."""
    return jnp.take_along_axis(a, perm[..., :, None], axis=-2)


def _lu_bar(res, lu_bar):
    """A_bar = P^T L^-T (tril(L^T lu_bar, -1) + triu(lu_bar U^T)) U^-T."""
    L, U = _unit_lower(res.lu), jnp.triu(res.lu)
    x_bar = jnp.tril(_mT(L) @ lu_bar, -1) + jnp.triu(lu_bar @ _mT(U))
    y = lax.linalg.triangular_solve(res.lu, x_bar, left_side=True, lower=True,
                                    transpose_a=True, unit_diagonal=True)
    y = lax.linalg.triangular_solve(res.lu, y, left_side=False, lower=False, transpose_a=True)
    return _permuted_rows(y, jnp.argsort(res.perm, axis=-1))


def _lu_dot(res, a_dot):
    """lu_dot = L tril(X, -1) + triu(X) U, X = L^-1 P A_dot U^-1."""
    x = lax.linalg.triangular_solve(res.lu, _permuted_rows(a_dot, res.perm), left_side=True,
                                    lower=True, unit_diagonal=True)
    x = lax.linalg.triangular_solve(res.lu, x, left_side=False, lower=False)
    return _unit_lower(res.lu) @ jnp.tril(x, -1) + jnp.triu(x) @ jnp.triu(res.lu)


def _lu_forward(a):
    packed, _, perm = lax.linalg.lu(a)
    return packed, Factors(packed, perm)


def _from_lu(a):
    """The lu primitive's three outputs: the gate's factors, then the pivots and the
    permutation (integers, no derivative) from the same factorization of a, not
    differentiated."""
    _, pivots, perm = lax.linalg.lu(lax.stop_gradient(a))
    return lu(a), pivots, perm


lu = Gate(
    "lu",
    pattern=SCALED,
    forward=_lu_forward,
    vjp=(lambda res, lu_bar: _lu_bar(res, lu_bar),),
    jvp=(lambda res, a_dot: _lu_dot(res, a_dot),),
    local=("P^T L^-T (tril(L^T lu_bar, -1) + triu(lu_bar U^T)) U^-T  {a}",),
    tangent="L tril(X, -1) + triu(X) U, X = L^-1 P A_dot U^-1  {lu}",
    output="lu",
    check=_check_lu,
    primitives={"lu": _from_lu},
    doc="""LU gate: P A = L U with partial pivoting, for A [..., n, n]; the output is the
packed factors, L's strict lower triangle (its diagonal is ones) and U's upper triangle.

Forward: P A_dot = L_dot U + L U_dot, so L^-1 P A_dot U^-1 = L^-1 L_dot + U_dot U^-1 = X,
a strictly lower part plus an upper part: L_dot = L tril(X, -1) and U_dot = triu(X) U. The
permutation P is constant under a small change of A (it has no derivative).
Backward, the transpose of that map ("upstream x local", triangular masks are their own
transposes):
    X_bar = tril(L^T lu_bar, -1) + triu(lu_bar U^T)
    A_bar = P^T L^-T X_bar U^-T        by two triangular solves and a row permutation
""",
)


# ------------------------------------------------------------------------ linear solves


class System(NamedTuple):
    """The residuals of a linear solve: the operator's packed parameters, the other
    operands (the solvers' own), and the solution x."""

    c: Any
    others: Any
    x: Any


def _operator(c, others, *, const_lengths, jaxprs, packed, shapes):
    """The operands of ``custom_linear_solve`` by role: matvec's, vecmat's, solve's and
    transpose_solve's, from the packed parameters c and the other operands."""
    parts, it_o, start = [], iter(others), 0
    for is_packed, shape in zip(packed, shapes):
        if is_packed:
            size = int(np.prod(shape))
            parts.append(c[start:start + size].reshape(shape))
            start += size
        else:
            parts.append(next(it_o))
    rest = list(it_o)
    cut = np.cumsum([const_lengths.vecmat, const_lengths.solve])
    return parts, rest[:cut[0]], rest[cut[0]:cut[1]], rest[cut[1]:]


def _call(closed, consts):
    return lambda *x: jex.jaxpr_as_fun(closed)(*consts, *x)[0]


def _solve(c, others, b, *, transposed=False, **p):
    """A^-1 b (A^-T b when ``transposed``) with the system's own solvers, as
    ``lax.custom_linear_solve`` (so the solve is itself this gate in a traced rule)."""
    mv, vm, sv, tsv = _operator(c, others, **p)
    jaxprs = p["jaxprs"]
    if transposed:
        if jaxprs.transpose_solve is None:
            raise ValueError("linear_solve: reverse mode needs the transposed solve: give "
                             "lax.custom_linear_solve a transpose_solve (or symmetric=True)")
        mv, vm, sv, tsv = vm, mv, tsv, sv
        jaxprs = jaxprs.transpose()
    solve = _call(jaxprs.solve, sv)
    tsolve = None if jaxprs.transpose_solve is None else _call(jaxprs.transpose_solve, tsv)
    return lax.custom_linear_solve(_call(jaxprs.matvec, mv), b,
                                   lambda _, r: solve(r),
                                   None if tsolve is None else lambda _, r: tsolve(r))


def _matvec_of(res, p):
    """c -> A(c) x: the operator applied to the solution, as a function of its parameters."""
    def apply(c):
        return _call(p["jaxprs"].matvec, _operator(c, res.others, **p)[0])(res.x)

    return apply


def _solve_b_bar(res, x_bar, **p):
    """b_bar = A^-T x_bar: the solve with the transposed system."""
    return _solve(res.c, res.others, x_bar, transposed=True, **p)


def _solve_c_bar(res, x_bar, **p):
    """c_bar = -(d(A(c) x)/dc)^T b_bar: the matvec's own VJP, at x, of -b_bar."""
    b_bar = _solve_b_bar(res, x_bar, **p)
    return jax.vjp(_matvec_of(res, p), res.c)[1](-b_bar)[0]


def _solve_x_dot_c(res, c_dot, **p):
    """x_dot = -A^-1 (A_dot x): the matvec's own JVP, at x, solved."""
    a_dot_x = jax.jvp(_matvec_of(res, p), (res.c,), (c_dot,))[1]
    return -_solve(res.c, res.others, a_dot_x, **p)


def _linear_solve_forward(c, b, others, **p):
    x = _solve(c, others, b, **p)
    return x, System(c, others, x)


def _prepare_linear_solve(matvec, b, solve, transpose_solve=None, symmetric=False):
    """The linear_solve gate, with ``lax.custom_linear_solve``'s arguments."""
    closed = jax.make_jaxpr(lambda b: lax.custom_linear_solve(
        matvec, b, solve, transpose_solve, symmetric=symmetric))(b)
    (eqn,) = closed.jaxpr.eqns
    env = dict(zip(closed.jaxpr.constvars, closed.consts)) | {closed.jaxpr.invars[0]: b}
    args = [v.val if isinstance(v, jex.Literal) else env[v] for v in eqn.invars]
    return _operands(*args, **eqn.params)


def _from_custom_linear_solve(*args, const_lengths, jaxprs):
    """``custom_linear_solve`` as the gate."""
    xs, params = _operands(*args, const_lengths=const_lengths, jaxprs=jaxprs)
    return linear_solve(*xs, **params)


def _operands(*args, const_lengths, jaxprs):
    """``custom_linear_solve``'s operands as the gate's: the matvec's floating-point
    parameters packed into one vector c (by reshape and concatenate gates), b, and the rest."""
    from jaxprop.gates.indexing import concatenate
    from jaxprop.gates.structure import reshape

    n_mv, n_all = const_lengths.matvec, sum(const_lengths)
    b = args[n_all:]
    if len(b) != 1 or len(jaxprs.solve.out_avals) != 1:
        raise ValueError("linear_solve: jaxprop's gate solves for one array x (b a single "
                         f"array, no auxiliary outputs); this solve has {len(b)} right-hand "
                         f"sides and {len(jaxprs.solve.out_avals)} outputs")
    b = b[0]
    matvec = args[:n_mv]
    packed = tuple(hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
                   and jnp.result_type(a) == jnp.result_type(b) for a in matvec)
    flat = [reshape(a, (-1,)) for a, k in zip(matvec, packed) if k]
    c = (jnp.zeros((0,), jnp.result_type(b)) if not flat else flat[0] if len(flat) == 1
         else concatenate(flat, axis=0))
    others = tuple(jnp.asarray(a) for a, k in zip(matvec, packed) if not k) + tuple(
        jnp.asarray(a) for a in args[n_mv:n_all])
    shapes = tuple(tuple(jnp.shape(a)) for a in matvec)
    return inputs(c, b, others, const_lengths=const_lengths, jaxprs=jaxprs, packed=packed,
                  shapes=shapes)


linear_solve = Gate(
    "linear_solve",
    pattern=SWITCHER,
    symbol="solve",
    forward=_linear_solve_forward,
    vjp=(lambda res, x_bar, **p: _solve_c_bar(res, x_bar, **p),
         lambda res, x_bar, **p: _solve_b_bar(res, x_bar, **p), None),
    jvp=(lambda res, c_dot, **p: _solve_x_dot_c(res, c_dot, **p),
         lambda res, b_dot, **p: _solve(res.c, res.others, b_dot, **p), None),
    local=("-b_bar x^T, through the matvec  {c}", "A^-T x_bar  {b}"),
    tangent="A^-1 (b_dot - A_dot x)  {x}",
    output="x",
    params=("const_lengths", "jaxprs", "packed", "shapes"),
    prepare=_prepare_linear_solve,
    primitives={"custom_linear_solve": _from_custom_linear_solve},
    doc="""Linear solve gate: x = A^-1 b, where A is given as a function, its matvec
x -> A x, with its own solvers (``lax.custom_linear_solve``, ``jnp.linalg.solve``,
``jax.scipy.sparse.linalg.cg``). c is the matvec's parameters (the matrix A of
``lambda x: A @ x``), packed into one vector.

It is the swap multiplier of x = A^-1 b, with A^-1 applied by a solve, never formed:
    b_bar = A^-T x_bar                    the transposed system's solve (its transpose_solve,
                                          as JAX does); a symmetric system reuses solve
    c_bar = -(d(A x)/dc)^T b_bar          -b_bar x^T for A x = A @ x: the matvec's own VJP
Forward: A x = b gives A_dot x + A x_dot = b_dot, so x_dot = A^-1 (b_dot - A_dot x). The
solvers' own operands (a factorization of A made under stop_gradient, say) get no gradient,
as in JAX: the derivative reaches A through the matvec alone. The matvec's own derivative in
c is taken by JAX from the matvec's operations (matmuls, all of them gates), and the solves
in the rules are this gate again, so a second derivative runs through gates.
""",
)


# ------------------------------------------------------------------ spectral factorizations


def _eye_like(a):
    """The identity, broadcast to a's shape [..., n, n] (a constant)."""
    return np.broadcast_to(np.eye(a.shape[-1]), a.shape).astype(a.dtype)


def _diag(w):
    """w [..., n] on the diagonal of a matrix [..., n, n]."""
    return w[..., None, :] * _eye_like(w[..., None, :] * w[..., :, None])


def _diag_part(m):
    """The diagonal [..., n] of m [..., n, n]: a mask and a sum, both gates."""
    return jnp.sum(m * _eye_like(m), axis=-1)


def _gaps(w):
    """F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it [..., n, n]: the eigenvalue gaps."""
    gap = w[..., None, :] - w[..., :, None]
    eye = _eye_like(gap)
    return (1 - eye) / (gap + eye)


class Spectrum(NamedTuple):
    """The residuals of an eigen-decomposition: the eigenvectors and the eigenvalues."""

    v: Any
    w: Any


def _check_eigh(a, *, subset_by_index, **_):
    _check_square("eigh")(a)
    n = jnp.shape(a)[-1]
    if subset_by_index is not None and tuple(subset_by_index) != (0, n):
        raise ValueError(f"eigh: subset_by_index={tuple(subset_by_index)} has no gate: the "
                         "rules need every eigenvalue (the gaps to all the others)")


def _eigh_a_bar(res, z_bar):
    """A_bar = V (diag(w_bar) + F o (V^T V_bar)) V^T."""
    v_bar, w_bar = z_bar
    return res.v @ (_diag(w_bar) + _gaps(res.w) * (_mT(res.v) @ v_bar)) @ _mT(res.v)


def _eigh_dot(res, a_dot):
    """(V_dot, w_dot) = (V (F o (V^T A_dot V)), diag(V^T A_dot V))."""
    rotated = _mT(res.v) @ a_dot @ res.v
    return res.v @ (_gaps(res.w) * rotated), _diag_part(rotated)


def _eigh_forward(a, *, lower, sort_eigenvalues, subset_by_index, algorithm):
    v, w = lax.linalg.eigh(a, lower=lower, symmetrize_input=False,
                           sort_eigenvalues=sort_eigenvalues, subset_by_index=subset_by_index,
                           implementation=algorithm)
    return (v, w), Spectrum(v, w)


eigh = Gate(
    "eigh",
    pattern=SCALED,
    forward=_eigh_forward,
    vjp=(lambda res, z_bar, **_: _eigh_a_bar(res, z_bar),),
    jvp=(lambda res, a_dot, **_: _eigh_dot(res, a_dot),),
    local=("V (diag(w_bar) + F o (V^T V_bar)) V^T  {a}",),
    tangent="(V (F o (V^T A_dot V)), diag(V^T A_dot V))  {(V, w)}",
    output="(V, w)",
    params=("lower", "sort_eigenvalues", "subset_by_index", "algorithm"),
    check=_check_eigh,
    prepare=lambda a, lower=True, sort_eigenvalues=True: inputs(
        a, lower=lower, sort_eigenvalues=sort_eigenvalues, subset_by_index=None,
        algorithm=None),
    primitives={"eigh": None},
    doc="""Symmetric eigen-decomposition gate: (V, w) with A = V diag(w) V^T, for A
[..., n, n] symmetric (one triangle is read, the lower by default); V [..., n, n] holds the
eigenvectors as columns, w [..., n] the eigenvalues.

Forward: with R = V^T A_dot V (A_dot in the eigenbasis), w_dot = diag(R) and
V_dot = V (F o R), where F_ij = 1 / (w_j - w_i) off the diagonal and 0 on it (the standard
F-matrix formula; o is the elementwise product).
Backward, its transpose ("upstream x local", F o . is its own transpose):
    A_bar = V (diag(w_bar) + F o (V^T V_bar)) V^T      [n, n]
Degenerate eigenvalues (w_i = w_j) make F infinite: the eigenvectors are not unique there,
and the gradient is inf or nan, as with JAX's rule. Like JAX's rule it takes A_dot as it
comes (not symmetrised); ``jnp.linalg.eigh`` symmetrises its input first.
""",
)


class Singular(NamedTuple):
    """The residuals of an SVD: the thin factors U [m, k], s [k] and V [n, k]."""

    u: Any
    s: Any
    v: Any


def _check_svd(a, *, full_matrices, compute_uv, subset_by_index, **_):
    shape = jnp.shape(a)
    if len(shape) < 2:
        raise ValueError(f"svd: expected matrices [..., m, n]; got {shape}")
    if subset_by_index is not None and tuple(subset_by_index) != (0, min(shape[-2:])):
        raise ValueError(f"svd: subset_by_index={tuple(subset_by_index)} has no gate: the "
                         "rules need every singular value")
    if compute_uv and full_matrices and shape[-1] != shape[-2]:
        raise ValueError(f"svd: full_matrices=True on a rectangular {shape} has no gate (the "
                         "extra singular vectors are not unique, and JAX has no rule either): "
                         "pass full_matrices=False")


def _svd_forward(a, *, full_matrices, compute_uv, subset_by_index, algorithm):
    u, s, vt = lax.linalg.svd(a, full_matrices=False, compute_uv=True, algorithm=algorithm)
    res = Singular(u, s, _mT(vt))
    return ((s, u, vt) if compute_uv else (s,)), res


def _svd_gaps(s):
    """F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it."""
    return _gaps(s * s)


def _svd_a_bar(res, z_bar, compute_uv):
    """A_bar = U (diag(s_bar) + (J + J^T) S + S (K + K^T)) V^T, J = F o (U^T U_bar) and
    K = F o (V^T V_bar), plus U_bar's and V_bar's parts outside the span of U and V."""
    u, s, v = res
    if not compute_uv:
        return u @ _diag(z_bar[0]) @ _mT(v)
    s_bar, u_bar, vt_bar = z_bar
    v_bar = _mT(vt_bar)
    f = _svd_gaps(s)
    j, k = f * (_mT(u) @ u_bar), f * (_mT(v) @ v_bar)
    inner = _diag(s_bar) + (j + _mT(j)) * s[..., None, :] + s[..., :, None] * (k + _mT(k))
    a_bar = u @ inner @ _mT(v)
    m, n = u.shape[-2], v.shape[-2]
    if m > n:
        a_bar = a_bar + ((u_bar - u @ (_mT(u) @ u_bar)) / s[..., None, :]) @ _mT(v)
    if n > m:
        a_bar = a_bar + u @ _mT((v_bar - v @ (_mT(v) @ v_bar)) / s[..., None, :])
    return a_bar


def _svd_dot(res, a_dot, compute_uv):
    """s_dot = diag(U^T A_dot V); U_dot = U (F o (dS S + S dS^T)), V_dot likewise."""
    u, s, v = res
    ds = _mT(u) @ a_dot @ v
    if not compute_uv:
        return (_diag_part(ds),)
    f = _svd_gaps(s)
    dss, sds = ds * s[..., None, :], s[..., :, None] * ds
    u_dot = u @ (f * (dss + _mT(dss)))
    v_dot = v @ (f * (sds + _mT(sds)))
    m, n = u.shape[-2], v.shape[-2]
    if m > n:
        dav = a_dot @ v
        u_dot = u_dot + (dav - u @ (_mT(u) @ dav)) / s[..., None, :]
    if n > m:
        dau = _mT(a_dot) @ u
        v_dot = v_dot + (dau - v @ (_mT(v) @ dau)) / s[..., None, :]
    return _diag_part(ds), u_dot, _mT(v_dot)


svd = Gate(
    "svd",
    pattern=SCALED,
    forward=_svd_forward,
    vjp=(lambda res, z_bar, *, compute_uv, **_: _svd_a_bar(res, z_bar, compute_uv),),
    jvp=(lambda res, a_dot, *, compute_uv, **_: _svd_dot(res, a_dot, compute_uv),),
    local=("U (diag(s_bar) + (J + J^T) S + S (K + K^T)) V^T  {a}",),
    tangent="diag(dS), U (F o (dS S + S dS^T)), ...; dS = U^T A_dot V  {(s, U, V^T)}",
    output="(s, U, V^T)",
    params=("full_matrices", "compute_uv", "subset_by_index", "algorithm"),
    check=_check_svd,
    prepare=lambda a, full_matrices=True, compute_uv=True: inputs(
        a, full_matrices=full_matrices, compute_uv=compute_uv, subset_by_index=None,
        algorithm=None),
    primitives={"svd": None},
    doc="""Singular value decomposition gate: A = U diag(s) V^T for A [..., m, n]; the output
is (s, U, V^T) as ``lax.linalg.svd``'s primitive gives it, or (s,) with compute_uv=False.

Forward, with dS = U^T A_dot V [k, k] and F_ij = 1 / (s_j^2 - s_i^2) off the diagonal:
s_dot = diag(dS), U_dot = U (F o (dS S + S dS^T)) and V_dot = V (F o (S dS + dS^T S)),
plus, for a tall A, (I - U U^T) A_dot V S^-1 in U_dot (and likewise V_dot for a wide one).
Backward, its transpose ("upstream x local"): with J = F o (U^T U_bar), K = F o (V^T V_bar),
    A_bar = U (diag(s_bar) + (J + J^T) S + S (K + K^T)) V^T
            + (I - U U^T) U_bar S^-1 V^T  (tall)  + U S^-1 V_bar^T (I - V V^T)  (wide)
With compute_uv=False it is A_bar = U diag(s_bar) V^T. Repeated singular values make F
infinite (the singular vectors are not unique: inf or nan, as with JAX's rule), a zero one
makes S^-1 infinite for a rectangular A; full_matrices=True is a gate only for square A.
""",
)


class Orthogonal(NamedTuple):
    """The residuals of a QR factorization: Q [m, n] and R [n, n]."""

    q: Any
    r: Any


def _check_qr(a, *, pivoting, full_matrices, **_):
    shape = jnp.shape(a)
    if len(shape) < 2 or shape[-2] < shape[-1]:
        raise ValueError(f"qr: jaxprop's QR gate takes square or tall matrices [..., m, n], "
                         f"m >= n; got {shape}")
    if pivoting:
        raise ValueError("qr: pivoting=True has no gate")
    if full_matrices and shape[-2] != shape[-1]:
        raise ValueError(f"qr: full_matrices=True on a tall {shape} has no gate (the extra "
                         "columns of Q are not unique): use mode='reduced'")


def _qr_forward(a, *, pivoting, full_matrices, use_magma):
    q, r = lax.linalg.qr(a, full_matrices=False)
    return (q, r), Orthogonal(q, r)


def _qr_a_bar(res, z_bar):
    """A_bar = (Q_bar + Q G) R^-T, G = tril(M - M^T, -1) - M and M = Q^T Q_bar - R_bar R^T.

    R's lower triangle is always 0, so R_bar's is dropped first: it would cancel in G, but
    only up to rounding, and a large one would leave its rounding behind."""
    q_bar, r_bar = z_bar
    r_bar = jnp.triu(r_bar)
    m = _mT(res.q) @ q_bar - r_bar @ _mT(res.r)
    g = jnp.tril(m - _mT(m), -1) - m
    return lax.linalg.triangular_solve(res.r, q_bar + res.q @ g, left_side=False, lower=False,
                                       transpose_a=True)


def _qr_dot(res, a_dot):
    """Q_dot = Q (Ω - C) + X, R_dot = (C - Ω) R, with X = A_dot R^-1, C = Q^T X and
    Ω = tril(C, -1) - tril(C, -1)^T."""
    x = lax.linalg.triangular_solve(res.r, a_dot, left_side=False, lower=False)
    c = _mT(res.q) @ x
    omega = jnp.tril(c, -1) - _mT(jnp.tril(c, -1))
    return res.q @ (omega - c) + x, (c - omega) @ res.r


qr = Gate(
    "qr",
    pattern=SCALED,
    forward=_qr_forward,
    vjp=(lambda res, z_bar, **_: _qr_a_bar(res, z_bar),),
    jvp=(lambda res, a_dot, **_: _qr_dot(res, a_dot),),
    local=("(Q_bar + Q G) R^-T, G = tril(M - M^T, -1) - M  {a}",),
    tangent="(Q (Ω - C) + X, (C - Ω) R), X = A_dot R^-1, C = Q^T X  {(Q, R)}",
    output="(Q, R)",
    params=("pivoting", "full_matrices", "use_magma"),
    check=_check_qr,
    prepare=lambda a, full_matrices=False: inputs(a, pivoting=False,
                                                  full_matrices=full_matrices, use_magma=None),
    primitives={"qr": None},
    doc="""QR gate: A = Q R for A [..., m, n] with m >= n: Q [m, n] with orthonormal columns,
R [n, n] upper triangular (the reduced QR; the full one only for square A).

Forward: A_dot = Q_dot R + Q R_dot; with X = A_dot R^-1 (a triangular solve) and
C = Q^T X, Q^T Q_dot = Ω is antisymmetric and R_dot R^-1 = C - Ω is upper triangular, so
Ω = tril(C, -1) - tril(C, -1)^T, R_dot = (C - Ω) R and Q_dot = Q (Ω - C) + X.
Backward, its transpose ("upstream x local"): with M = Q^T Q_bar - R_bar R^T,
    A_bar = (Q_bar + Q (tril(M - M^T, -1) - M)) R^-T      by a triangular solve
""",
)


# ------------------------------------------------------------------- tridiagonal solve


def _check_tridiagonal(dl, d, du, b, **_):
    shapes = [jnp.shape(x) for x in (dl, d, du)]
    b_shape = jnp.shape(b)
    if len(set(shapes)) != 1 or len(b_shape) != len(shapes[0]) + 1 or \
            b_shape[:-1] != shapes[0]:
        raise ValueError(f"tridiagonal_solve: expected dl, d, du of shape [..., m] and b of "
                         f"shape [..., m, k]; got {shapes[0]}, {shapes[1]}, {shapes[2]} and "
                         f"{b_shape}")


class Bands(NamedTuple):
    """The residuals of a tridiagonal solve: the three bands and the solution x."""

    dl: Any
    d: Any
    du: Any
    x: Any


def _shift_down(x):
    """x moved one row down, a zero row on top: row i holds row i - 1 [..., m, k]."""
    return jnp.concatenate([jnp.zeros_like(x[..., :1, :]), x[..., :-1, :]], axis=-2)


def _shift_up(x):
    """x moved one row up, a zero row at the bottom: row i holds row i + 1."""
    return jnp.concatenate([x[..., 1:, :], jnp.zeros_like(x[..., :1, :])], axis=-2)


def _transposed_bands(res):
    """A^T's bands: its sub-diagonal is A's super-diagonal moved down, and back."""
    dl_t = _shift_down(res.du[..., None])[..., 0]
    du_t = _shift_up(res.dl[..., None])[..., 0]
    return dl_t, res.d, du_t


def _tridiagonal_b_bar(res, x_bar, **p):
    """b_bar = A^-T x_bar: the solve with A's transposed bands."""
    return lax.linalg.tridiagonal_solve(*_transposed_bands(res), x_bar, **p)


def _band_bar(offset):
    """The gradient of one band: -b_bar x^T on that band, sum_k b_bar[i, k] x[i + offset, k]."""
    def rule(res, x_bar, **p):
        b_bar = _tridiagonal_b_bar(res, x_bar, **p)
        x = {-1: _shift_down, 0: lambda x: x, 1: _shift_up}[offset](res.x)
        return -jnp.sum(b_bar * x, axis=-1)

    rule.__name__ = {-1: "_dl_bar", 0: "_d_bar", 1: "_du_bar"}[offset]
    return rule


def _band_dot(offset):
    """One band's part of x_dot = -A^-1 (A_dot x): that band's tangent times x, solved."""
    def rule(res, band_dot, **p):
        x = {-1: _shift_down, 0: lambda x: x, 1: _shift_up}[offset](res.x)
        return -lax.linalg.tridiagonal_solve(res.dl, res.d, res.du, band_dot[..., None] * x,
                                             **p)

    rule.__name__ = {-1: "_dl_dot", 0: "_d_dot", 1: "_du_dot"}[offset]
    return rule


tridiagonal_solve = Gate(
    "tridiagonal_solve",
    pattern=SWITCHER,
    symbol="solve",
    forward=lambda dl, d, du, b, **p: (lambda x: (x, Bands(dl, d, du, x)))(
        lax.linalg.tridiagonal_solve(dl, d, du, b, **p)),
    vjp=(_band_bar(-1), _band_bar(0), _band_bar(1),
         lambda res, x_bar, **p: _tridiagonal_b_bar(res, x_bar, **p)),
    jvp=(_band_dot(-1), _band_dot(0), _band_dot(1),
         lambda res, b_dot, **p: lax.linalg.tridiagonal_solve(res.dl, res.d, res.du, b_dot,
                                                              **p)),
    local=("-b_bar x^T on the sub-diagonal", "-b_bar x^T on the diagonal",
           "-b_bar x^T on the super-diagonal", "A^-T x_bar  {b}"),
    tangent="A^-1 (b_dot - A_dot x)  {x}",
    output="x",
    params=("perturb_singular",),
    check=_check_tridiagonal,
    prepare=lambda dl, d, du, b, perturb_singular=False: inputs(
        dl, d, du, b, perturb_singular=perturb_singular),
    primitives={"tridiagonal_solve": None},
    doc="""Tridiagonal solve gate: x = A^-1 b, A [..., m, m] tridiagonal, given by its bands
dl (sub-diagonal, dl[0] unused), d (diagonal) and du (super-diagonal, du[m-1] unused), each
[..., m]; b [..., m, k].

The swap multiplier of a solve, as for triangular_solve:
    b_bar = A^-T x_bar        A^T's bands are du moved down and dl moved up
    A_bar = -b_bar x^T        read on the three bands only: dl_bar[i] = -b_bar[i] . x[i-1],
                              d_bar[i] = -b_bar[i] . x[i], du_bar[i] = -b_bar[i] . x[i+1]
Forward: x_dot = A^-1 (b_dot - A_dot x), one band at a time.
""",
)
