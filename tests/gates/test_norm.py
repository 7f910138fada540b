"""Normalisation and dropout gates beyond the battery (tests/cases.py runs each through it):
CS231n's default eps against jax.grad of the unfused layers, the step-by-step circuit's
backward in NumPy, jaxprop.hessian through our rules, dropout's router, and the errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import (
    KEEP,
    RTOL,
    ref_batch_norm,
    ref_layer_norm,
    ref_spatial_batch_norm,
)

import jaxprop
from jaxprop import gates

NORMS = {
    "batch_norm": (gates.batch_norm, ref_batch_norm, (7, 4), 4),
    "spatial_batch_norm": (gates.spatial_batch_norm, ref_spatial_batch_norm, (3, 2, 3, 2), 2),
    "layer_norm": (gates.layer_norm, ref_layer_norm, (3, 6), 6),
}


def _args(shape, width, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=shape) * 2 + 0.5), jnp.asarray(rng.normal(size=width)),
            jnp.asarray(rng.normal(size=width)), jnp.asarray(rng.normal(size=shape)))


@pytest.mark.parametrize("name", NORMS)
def test_norm_gradients_at_cs231n_eps_match_jax_grad_of_the_unfused_layer(name):
    gate, ref, shape, width = NORMS[name]
    x, g, b, w = _args(shape, width)
    ours = lambda x, g, b: jnp.sum(gate(x, g, b) * w)  # noqa: E731 - eps = 1e-5
    plain = lambda x, g, b: jnp.sum(ref(x, g, b) * w)  # noqa: E731
    want = jax.grad(plain, (0, 1, 2))(x, g, b)
    chex.assert_trees_all_close(gate(x, g, b), ref(x, g, b), rtol=RTOL, atol=1e-12)
    chex.assert_trees_all_close(jaxprop.reverse.grad(ours, (0, 1, 2))(x, g, b), want,
                                rtol=RTOL, atol=1e-12)
    chex.assert_trees_all_close(jaxprop.forward.grad(ours, (0, 1, 2))(x, g, b), want,
                                rtol=RTOL, atol=1e-12)


def _batchnorm_backward_circuit(dout, x, gamma, eps=1e-5):
    """CS231n's batchnorm_backward, node by node back through the circuit (NumPy)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc**2).mean(axis=0)
    std = np.sqrt(var + eps)
    istd = 1 / std
    xhat = xc * istd
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dxhat = dout * gamma
    distd = np.sum(dxhat * xc, axis=0)
    dxc1 = dxhat * istd
    dstd = -distd / std**2
    dvar = 0.5 * dstd / std
    dsq = np.ones_like(x) * dvar / n
    dxc2 = 2 * xc * dsq
    dxc = dxc1 + dxc2
    dmu = -np.sum(dxc, axis=0)
    dx = dxc + np.ones_like(x) * dmu / n
    return dx, dgamma, dbeta


def test_batch_norm_simplified_backward_is_the_circuits():
    x, g, b, dout = _args((7, 4), 4, seed=3)
    _, pull = jaxprop.reverse.vjp(gates.batch_norm, x, g, b)
    want = _batchnorm_backward_circuit(*map(np.asarray, (dout, x, g)))
    chex.assert_trees_all_close(pull(dout), tuple(map(jnp.asarray, want)), rtol=RTOL, atol=1e-12)


def test_spatial_batch_norm_is_batch_norm_over_n_h_w():
    x, g, b, _ = _args((3, 2, 4, 2), 2, seed=4)
    flat = jnp.transpose(x, (0, 2, 3, 1)).reshape(-1, 2)  # [N*H*W, C]
    want = jnp.transpose(gates.batch_norm(flat, g, b).reshape(3, 4, 2, 2), (0, 3, 1, 2))
    chex.assert_trees_all_close(gates.spatial_batch_norm(x, g, b), want, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("name", NORMS)
def test_norm_hessian_through_our_rules(name):
    """jaxprop.hessian (our VJP rules, then our JVP rules over them) against jax.hessian of
    the unfused layer; tanh after it, so the Hessian in beta is not 0."""
    gate, ref, shape, width = NORMS[name]
    x, g, b, w = _args(shape, width, seed=5)
    ours = lambda x, g, b: jnp.sum(jnp.tanh(gate(x, g, b)) * w)  # noqa: E731
    plain = lambda x, g, b: jnp.sum(jnp.tanh(ref(x, g, b)) * w)  # noqa: E731
    got = jaxprop.hessian(ours, (0, 1, 2))(x, g, b)
    chex.assert_trees_all_close(got, jax.hessian(plain, (0, 1, 2))(x, g, b), rtol=RTOL,
                                atol=1e-10)
    kinds = set()
    with jaxprop.observe(lambda e: kinds.add((e.gate.name, e.kind))):
        jax.make_jaxpr(lambda *a: jaxprop.hessian(ours, (0, 1, 2))(*a))(x, g, b)
    assert {(name, "forward"), (name, "vjp")} <= kinds


def test_dropout_hessian_through_our_rules():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(3, 4)))
    ours = lambda x: jnp.sum(jnp.tanh(gates.dropout(x, 0.6, mask=KEEP)))  # noqa: E731
    plain = lambda x: jnp.sum(jnp.tanh(jnp.where(KEEP, x / 0.6, 0.0)))  # noqa: E731
    chex.assert_trees_all_close(jaxprop.hessian(ours)(x), jax.hessian(plain)(x), rtol=RTOL,
                                atol=1e-12)


def test_dropout_routes_the_gradient_through_the_kept_units_scaled_by_1_over_p():
    x = jnp.arange(12.0).reshape(3, 4)
    up = jnp.full((3, 4), 2.0)
    for mode in (jaxprop.reverse, jax):
        (x_bar,) = mode.vjp(lambda x: gates.dropout(x, 0.5, mask=KEEP), x)[1](up)
        chex.assert_trees_all_close(x_bar, jnp.where(KEEP, 4.0, 0.0), atol=0)
    z_dot = jaxprop.forward.jvp(lambda x: gates.dropout(x, 0.5, mask=KEEP), (x,), (up,))[1]
    chex.assert_trees_all_close(z_dot, jnp.where(KEEP, 4.0, 0.0), atol=0)


def test_dropout_mask_comes_from_the_key():
    x = jnp.ones((50, 40))
    key = jax.random.PRNGKey(7)
    z = gates.dropout(x, 0.7, key)
    chex.assert_trees_all_close(z, gates.dropout(x, 0.7, key), atol=0)  # the same key
    assert not np.array_equal(z, gates.dropout(x, 0.7, jax.random.PRNGKey(8)))
    kept = np.asarray(z != 0)
    assert set(np.unique(np.asarray(z))) == {0.0, np.float64(1 / 0.7)}
    assert abs(kept.mean() - 0.7) < 0.03  # 2000 draws: 4.9 standard deviations
    chex.assert_trees_all_close(gates.dropout(x, 1.0, key), x, atol=0)  # p = 1 keeps all


@pytest.mark.parametrize("call, error, match", [
    (lambda: gates.dropout(jnp.ones(3), 0.0, jax.random.PRNGKey(0)), ValueError,
     r"dropout: p is the probability of keeping a unit, a number in \(0, 1\]; got 0.0"),
    (lambda: gates.dropout(jnp.ones(3), 1.5, jax.random.PRNGKey(0)), ValueError, "got 1.5"),
    (lambda: gates.dropout(jnp.ones(3), 0.5), TypeError, "give exactly one of key"),
    (lambda: gates.dropout(jnp.ones(3), 0.5, jax.random.PRNGKey(0), mask=jnp.ones(3, bool)),
     TypeError, "give exactly one of key"),
    (lambda: gates.dropout(jnp.ones(3), 0.5, mask=jnp.ones(4, bool)), ValueError,
     r"dropout: mask must have x's shape \(3,\); got \(4,\)"),
    (lambda: gates.batch_norm(jnp.ones((2, 3, 4)), jnp.ones(4), jnp.zeros(4)), ValueError,
     r"batch_norm: x must be \[N, D\]; got shape \(2, 3, 4\)"),
    (lambda: gates.batch_norm(jnp.ones((2, 3)), jnp.ones(4), jnp.zeros(3)), ValueError,
     r"batch_norm: gamma must have shape \(3,\) for x of shape \(2, 3\)"),
    (lambda: gates.spatial_batch_norm(jnp.ones((2, 3, 4, 4)), jnp.ones(3), jnp.zeros(4)),
     ValueError, r"spatial_batch_norm: beta must have shape \(3,\)"),
    (lambda: gates.layer_norm(jnp.ones((2, 3)), jnp.ones(3), jnp.zeros(3), eps=-1.0),
     ValueError, "layer_norm: eps must be a non-negative number"),
    (lambda: gates.layer_norm(jnp.ones((2, 3), jnp.int32), jnp.ones(3), jnp.zeros(3)),
     TypeError, "layer_norm: x must be real floating-point"),
])
def test_a_mistake_is_a_one_line_error_naming_the_gate(call, error, match):
    with pytest.raises(error, match=match):
        call()
