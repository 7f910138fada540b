"""The linear algebra gates on the code people write: Cholesky solves, jnp.linalg.solve, inv,
slogdet, a Gaussian log-likelihood and conjugate gradients give jax.grad's gradients in float64
through our rules in both modes and under jax.grad(jaxprop.gated(f)); observe sees only our
rules; jaxprop.hessian runs through them; batch axes; and the one-line errors.

The gates themselves run through the battery in test_gates.py (their cases in tests/cases.py).
"""

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from cases import RTOL, spd

import jaxprop
from jaxprop import gates
from jaxprop.gate import Gate

pytestmark = pytest.mark.slow  # these gates' own tests run in the slow job (.ci/run)

N = 3


@functools.cache
def _inputs(batch=()):
    rng = np.random.default_rng(19)
    return (jnp.asarray(spd(rng, (*batch, N, N))), jnp.asarray(rng.normal(size=(*batch, N))),
            jnp.asarray(rng.normal(size=(*batch, N, N))))


def cho_solve(a, b):
    return jnp.sum(jnp.tanh(jsl.cho_solve(jsl.cho_factor(a), b)))


def cho_solve_lower(a, b):
    return jnp.sum(jnp.tanh(jsl.cho_solve(jsl.cho_factor(a, lower=True), b)))


def solve(a, b):
    return jnp.sum(jnp.tanh(jnp.linalg.solve(a, b)))


def inv(a, b):
    return jnp.sum(jnp.tanh(jnp.linalg.inv(a) @ b))


def slogdet(a, b):
    sign, logdet = jnp.linalg.slogdet(a)
    return sign * logdet * b[0]


def gaussian_loglik(a, b):
    """log N(b; 0, A) with the Cholesky factor: -z^T z / 2 - sum log diag(L) - n log(2 pi)/2."""
    L = jnp.linalg.cholesky(a)
    z = jsl.solve_triangular(L, b, lower=True)
    return -0.5 * z @ z - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * N * jnp.log(2 * jnp.pi)


def conjugate_gradients(a, b):
    x, _ = jax.scipy.sparse.linalg.cg(lambda v: a @ v + 0.5 * (a.T @ v), b, tol=1e-13)
    return jnp.sum(jnp.tanh(x))


def lu_factor(a, b):
    packed, _ = jsl.lu_factor(a + jnp.outer(b, b))
    return jnp.sum(jnp.tanh(packed))


def eigh(a, b):
    w, v = jnp.linalg.eigh(a + jnp.outer(b, b))
    return jnp.sum(w * b) + jnp.sum(jnp.tanh(v * v[:1, :]))  # sign-free in v


def nuclear_norm(a, b):
    return jnp.sum(jnp.linalg.svd(a + jnp.outer(b, jnp.arange(1.0, N + 1)), compute_uv=False))


def svd_tall(a, b):
    u, s, vt = jnp.linalg.svd(jnp.concatenate([a, b[None]]), full_matrices=False)
    return jnp.sum(s * b) + jnp.sum(jnp.tanh(u * u[:1, :])) + jnp.sum(jnp.tanh(vt * vt[:, :1]))


def qr(a, b):
    q, r = jnp.linalg.qr(jnp.concatenate([a, b[None]]))
    return jnp.sum(jnp.tanh(q * q[:1, :])) + jnp.sum(jnp.tanh(r * r[:1, :1]))


def tridiagonal(a, b):
    x = jax.lax.linalg.tridiagonal_solve(b, jnp.diag(a), b[::-1], a)
    return jnp.sum(jnp.tanh(x))


REAL_WORLD = [cho_solve, cho_solve_lower, solve, inv, slogdet, gaussian_loglik,
              conjugate_gradients, lu_factor, eigh, nuclear_norm, svd_tall, qr, tridiagonal]
LINALG = {"cholesky", "triangular_solve", "linear_solve", "lu", "eigh", "svd", "qr",
          "tridiagonal_solve"}
GRADIENTS = {
    "reverse": lambda f: jaxprop.reverse.grad(f, (0, 1)),
    "forward": lambda f: jaxprop.forward.grad(f, (0, 1)),
    "gated": lambda f: jax.grad(jaxprop.gated(f), (0, 1)),
}


def _close(got, want, rtol=RTOL, atol=1e-12):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


@pytest.mark.parametrize("mode", GRADIENTS)
@pytest.mark.parametrize("f", REAL_WORLD, ids=[f.__name__ for f in REAL_WORLD])
def test_real_world_gradients_are_jax_grads(f, mode):
    a, b, _ = _inputs()
    want = jax.grad(f, (0, 1))(a, b)
    assert float(jnp.abs(want[0]).max()) > 1e-3  # a gradient that could be wrong
    _close(GRADIENTS[mode](f)(a, b), want)


@pytest.mark.parametrize("f", REAL_WORLD, ids=[f.__name__ for f in REAL_WORLD])
def test_real_world_runs_only_our_rules(f):
    a, b, _ = _inputs()
    for kind, grad in (("vjp", jaxprop.reverse.grad(f, (0, 1))),
                       ("jvp", jaxprop.forward.grad(f, (0, 1)))):
        events = []
        with jaxprop.observe(events.append):
            jax.make_jaxpr(grad)(a, b)
        rules = [e for e in events if e.kind != "forward"]
        assert rules and all(isinstance(e.gate, Gate) and e.kind == kind for e in rules), [
            (e.gate.name, e.kind) for e in rules]
        used = {e.gate.name for e in rules}
        assert used & LINALG, used


def _hessians(f, *args, argnums=0):
    return jaxprop.hessian(f, argnums)(*args), jax.hessian(f, argnums)(*args)


# slogdet's second derivative meets a slice, whose rule is a pad: the pad gate is issue 19's
# item 3 (rules closed under differentiation), on its own branch.
@pytest.mark.parametrize("f", [cho_solve, solve, gaussian_loglik],
                         ids=["cho_solve", "solve", "gaussian_loglik"])
def test_hessian_through_our_rules(f):
    a, b, _ = _inputs()
    got, want = _hessians(f, a, b, argnums=(0, 1))
    _close(got, want, atol=1e-10)


def test_hessian_of_cholesky_and_triangular_solve_gates():
    a, b, m = _inputs()

    def chol(a):
        return jnp.sum(jnp.tanh(gates.cholesky(0.5 * (a + a.T))) * m)

    def tri(a, b):
        x = gates.triangular_solve(a + 3 * jnp.eye(N), b[:, None], left_side=True, lower=True,
                                   transpose_a=True)
        return jnp.sum(jnp.tanh(x))

    got, want = _hessians(chol, a)
    _close(got, want, atol=1e-10)
    got, want = _hessians(tri, m, b, argnums=(0, 1))
    _close(got, want, atol=1e-10)
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(jaxprop.hessian(chol))(a)
    assert {"cholesky:vjp", "cholesky:jvp", "triangular_solve:jvp"} <= {
        f"{e.gate.name}:{e.kind}" for e in events}
    assert not [e for e in events if not isinstance(e.gate, Gate)]


@pytest.mark.parametrize("f", [cho_solve, solve, inv, slogdet], ids=lambda f: f.__name__)
def test_batch_axes(f):
    a, b, _ = _inputs((2,))

    def batched(a, b):
        return jnp.sum(jax.vmap(f)(a, b))

    def leading(a, b):  # the same functions on [2, n, n] directly, where they take batches
        if f is slogdet:
            return jnp.sum(jnp.linalg.slogdet(a)[1] * b[:, 0])
        if f is solve:
            return jnp.sum(jnp.tanh(jnp.linalg.solve(a, b[..., None])))
        if f is inv:
            return jnp.sum(jnp.tanh(jnp.linalg.inv(a) @ b[..., None]))
        return jnp.sum(jnp.tanh(jsl.cho_solve(jsl.cho_factor(a), b[..., None])))

    for g in (batched, leading):
        want = jax.grad(g, (0, 1))(a, b)
        for grad in GRADIENTS.values():
            _close(grad(g)(a, b), want)


def test_cholesky_gradient_is_jaxs_unsymmetrised_one():
    """cho_factor reads A's lower triangle without symmetrising: the gradient is
    L^-T Φ(L^T L_bar) L^-1 as it comes, not symmetric, exactly as jax.grad's."""
    a, b, _ = _inputs()
    g = jaxprop.reverse.grad(cho_solve_lower)(a, b)
    assert float(jnp.abs(g - g.T).max()) > 1e-3
    _close(g, jax.grad(cho_solve_lower)(a, b))


def test_lu_gate_reproduces_lax_lu():
    _, _, m = _inputs()
    packed, pivots, perm = jax.lax.linalg.lu(m)
    np.testing.assert_array_equal(np.asarray(gates.lu(m)), np.asarray(packed))
    traced = jaxprop.gated(jax.lax.linalg.lu)(m)
    for got, want in zip(traced, (packed, pivots, perm), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_one_line_errors():
    with pytest.raises(ValueError, match=r"^cholesky: expected square matrices"):
        gates.cholesky(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^triangular_solve: expected a of shape"):
        gates.triangular_solve(jnp.eye(3), jnp.ones((2, 2)), left_side=True)
    with pytest.raises(ValueError, match=r"^lu: .*square matrices"):
        gates.lu(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^qr: .*m >= n"):
        gates.qr(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^svd: full_matrices=True on a rectangular"):
        jaxprop.reverse.grad(lambda a: jnp.sum(jnp.linalg.svd(a)[0]))(jnp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"^eigh: subset_by_index=\(0, 1\) has no gate"):
        jaxprop.reverse.grad(lambda a: jnp.sum(jax.lax.linalg.eigh(
            a, subset_by_index=(0, 1))[1]))(jnp.eye(3))
    with pytest.raises(ValueError, match=r"^tridiagonal_solve: expected dl, d, du"):
        gates.tridiagonal_solve(jnp.ones(3), jnp.ones(3), jnp.ones(2), jnp.ones((3, 1)))

    def no_transpose(a, b):  # a solve with no transpose_solve: JAX cannot reverse it either
        x = jax.lax.custom_linear_solve(lambda v: a @ v, b,
                                        lambda _, r: jnp.linalg.solve(a, r))
        return jnp.sum(x)

    a, b, _ = _inputs()
    with pytest.raises(ValueError, match=r"^linear_solve: reverse mode needs the transposed"):
        jaxprop.reverse.grad(no_transpose, (0, 1))(a, b)
    _close(jaxprop.forward.grad(no_transpose, (0, 1))(a, b),  # forward mode needs no transpose
           jax.jacfwd(no_transpose, (0, 1))(a, b))


@pytest.mark.parametrize("left_side", [True, False])
@pytest.mark.parametrize("lower", [True, False])
def test_triangular_solve_every_parameter(left_side, lower):
    """Each of transpose_a and unit_diagonal on each side and triangle, both operands
    differentiated, a batch axis in front: jax.grad's gradients in both modes."""
    _, _, m = _inputs((2,))
    a = m + 4 * jnp.eye(N)[None]
    b = m[..., :2] if left_side else _mT(m[..., :2])
    for transpose_a in (False, True):
        for unit_diagonal in (False, True):
            def f(a, b, transpose_a=transpose_a, unit_diagonal=unit_diagonal):
                x = jax.lax.linalg.triangular_solve(
                    a, b, left_side=left_side, lower=lower, transpose_a=transpose_a,
                    unit_diagonal=unit_diagonal)
                return jnp.sum(jnp.tanh(x))

            want = jax.grad(f, (0, 1))(a, b)
            for mode in ("reverse", "forward"):
                _close(GRADIENTS[mode](f)(a, b), want)


def _mT(a):
    return jnp.swapaxes(a, -1, -2)


def test_linear_solve_uses_the_systems_own_transpose_solve():
    """A transpose_solve that is deliberately twice the true one: b's gradient doubles in
    reverse mode, exactly as jax.grad's (JAX uses it too), and forward mode never calls it."""
    a, b, _ = _inputs()

    def f(a, b):
        x = jax.lax.custom_linear_solve(
            lambda v: a @ v, b, lambda _, r: jnp.linalg.solve(jax.lax.stop_gradient(a), r),
            lambda _, r: 2 * jnp.linalg.solve(jax.lax.stop_gradient(a).T, r))
        return jnp.sum(jnp.tanh(x))

    want = jax.grad(f, (0, 1))(a, b)
    _close(jaxprop.reverse.grad(f, (0, 1))(a, b), want)
    true = jax.grad(solve, (0, 1))(a, b)
    _close(want[1], 2 * true[1])
    _close(jaxprop.forward.grad(f, (0, 1))(a, b), true)
