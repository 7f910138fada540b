"""The lecture's worked examples, in reverse mode, forward mode and jvp_from_vjp."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop import gates

f64 = jnp.float64


def _grads_all_modes(f, *args):
    """df/d(every argument) by reverse, forward, and jvp_from_vjp (one JVP per element)."""
    nums = tuple(range(len(args)))

    def jvp_column(i, e):
        tangents = tuple(e.reshape(jnp.shape(a)) if j == i else jnp.zeros_like(a)
                         for j, a in enumerate(args))
        return jaxprop.forward.jvp_from_vjp(f, args, tangents)[1]

    by_jvp = tuple(
        jax.vmap(lambda e, i=i: jvp_column(i, e))(jnp.eye(jnp.size(a), dtype=a.dtype)).reshape(
            jnp.shape(a))
        for i, a in enumerate(args))
    return {"reverse": jaxprop.reverse.grad(f, nums)(*args),
            "forward": jaxprop.forward.grad(f, nums)(*args),
            "jvp_from_vjp": by_jvp}


def test_add_then_multiply():
    """f(x, y, z) = (x + y) z at (-2, 5, -4): f = -12, grads (-4, -4, 3)."""

    def f(x, y, z):
        q = gates.add(x, y)
        return gates.mul(q, z)

    x, y, z = (jnp.asarray(v, f64) for v in (-2.0, 5.0, -4.0))
    assert f(x, y, z) == -12.0
    for mode, grads in _grads_all_modes(f, x, y, z).items():
        chex.assert_trees_all_close(grads, (-4.0, -4.0, 3.0), atol=0, custom_message=mode)


def _neuron_circuit(w0, x0, w1, x1, w2):
    """The slide's circuit of primitive gates: *, *, +, +, *-1, exp, +1, 1/x."""
    s2 = gates.add(gates.mul(w0, x0), gates.mul(w1, x1))
    s3 = gates.add(s2, w2)
    return gates.reciprocal(gates.add(gates.exp(gates.mul(s3, -1.0)), 1.0))


def _neuron_sigmoid(w0, x0, w1, x1, w2):
    """The same neuron with the sigmoid gate: the lecture's "flat" gradient code."""
    s3 = gates.add(gates.add(gates.mul(w0, x0), gates.mul(w1, x1)), w2)
    return gates.sigmoid(s3)


NEURON_ARGS = tuple(jnp.asarray(v, f64) for v in (2.0, -1.0, -3.0, -2.0, -3.0))  # w0 x0 w1 x1 w2


@pytest.mark.parametrize("neuron", [_neuron_circuit, _neuron_sigmoid], ids=["circuit", "sigmoid"])
def test_sigmoid_neuron(neuron):
    """w = (2, -3, -3), x = (-1, -2): output 0.73, dw = (-0.20, -0.39, 0.20), dx = (0.39, -0.59)."""
    out = neuron(*NEURON_ARGS)
    assert round(float(out), 2) == 0.73
    s = 1 / (1 + np.exp(-1.0))
    local = (1 - s) * s  # [upstream 1.00] x [local (1 - 0.73)(0.73)] = 0.20
    for mode, (dw0, dx0, dw1, dx1, dw2) in _grads_all_modes(neuron, *NEURON_ARGS).items():
        dw, dx = np.array([dw0, dw1, dw2]), np.array([dx0, dx1])
        np.testing.assert_allclose(dw, [-0.20, -0.39, 0.20], atol=0.005, err_msg=mode)
        np.testing.assert_allclose(dx, [0.39, -0.59], atol=0.005, err_msg=mode)
        # and exactly: dw = x * local (x2 = 1 for the bias), dx = w * local
        chex.assert_trees_all_close(dw, np.array([-1.0, -2.0, 1.0]) * local, rtol=1e-12)
        chex.assert_trees_all_close(dx, np.array([2.0, -3.0]) * local, rtol=1e-12)


def test_sigmoid_circuit_gradients_at_each_gate():
    """The backward pass through the slide's circuit gives the slide's numbers, gate by gate:
    1/x: 1.00 -> -0.53; +1: -0.53; exp: -0.20; *-1: 0.20."""
    events = []
    with jaxprop.observe(events.append):
        jaxprop.reverse.vjp(_neuron_circuit, *NEURON_ARGS)[1](jnp.asarray(1.0, f64))
    # The gates with one gradient to pass back (the others' second input is a constant).
    backward = [(e.gate.name, float(e.upstream), float(e.downstream[0]))
                for e in events if e.kind == "vjp" and len(e.downstream) == 1]
    names = [b[0] for b in backward]
    assert names[:4] == ["reciprocal", "add", "exp", "mul"], backward
    want = [(1.00, -0.53), (-0.53, -0.53), (-0.53, -0.20), (-0.20, 0.20)]
    for (name, up, down), (want_up, want_down) in zip(backward[:4], want, strict=True):
        assert (round(up, 2), round(down, 2)) == (want_up, want_down), (name, up, down)


def test_relu_routes_upstream():
    """ReLU on [1, -2, 3, -1] with upstream [4, -1, 5, 9] passes [4, 0, 5, 0]."""
    x = jnp.array([1.0, -2.0, 3.0, -1.0])
    up = jnp.array([4.0, -1.0, 5.0, 9.0])
    want = jnp.array([4.0, 0.0, 5.0, 0.0])
    (x_bar,) = jaxprop.reverse.vjp(gates.relu, x)[1](up)
    chex.assert_trees_all_close(x_bar, want, atol=0)
    # The local Jacobian is diagonal, so pushing the same vector forward gives the same.
    chex.assert_trees_all_close(jaxprop.forward.jvp(gates.relu, (x,), (up,))[1], want, atol=0)
    chex.assert_trees_all_close(jaxprop.forward.jvp_from_vjp(gates.relu, (x,), (up,))[1], want,
                                atol=0)


MATMUL_X = jnp.array([[2.0, 1, -3], [-3, 4, 2]])
MATMUL_W = jnp.array([[3.0, 2, 1, -1], [2, 1, 3, 2], [3, 2, 1, -2]])
MATMUL_DY = jnp.array([[2.0, 3, -3, 9], [-8, 1, 4, 6]])


def test_matmul_example():
    """x [2, 3], w [3, 4], dL/dy [2, 4]: dL/dx = dL/dy w^T = [[0, 16, -9], [-24, 9, -30]],
    dL/dw = x^T dL/dy."""
    want_dx = jnp.array([[0.0, 16, -9], [-24, 9, -30]])
    want_dw = MATMUL_X.T @ MATMUL_DY
    dx, dw = jaxprop.reverse.vjp(gates.matmul, MATMUL_X, MATMUL_W)[1](MATMUL_DY)
    chex.assert_trees_all_close((dx, dw), (want_dx, want_dw), atol=0)

    # Forward mode: L = sum(dL/dy * y) has exactly this upstream gradient at y.
    def loss(x, w):
        return gates.sum(gates.mul(gates.matmul(x, w), MATMUL_DY))

    for mode in (jaxprop.forward, jaxprop.reverse):
        chex.assert_trees_all_close(mode.grad(loss, (0, 1))(MATMUL_X, MATMUL_W),
                                    (want_dx, want_dw), atol=0)


def test_copy_adds():
    """A value used twice gets the sum of its branches' gradients: d(x*x)/dx = x + x."""
    x = jnp.array([3.0, -1.5])
    (x_bar,) = jaxprop.reverse.vjp(gates.copy, x)[1]((jnp.array([1.0, 2.0]),
                                                      jnp.array([10.0, -20.0])))
    chex.assert_trees_all_close(x_bar, jnp.array([11.0, -18.0]), atol=0)
    a_dot, b_dot = jaxprop.forward.jvp(gates.copy, (x,), (jnp.array([1.0, 2.0]),))[1]
    chex.assert_trees_all_close((a_dot, b_dot), (jnp.array([1.0, 2.0]),) * 2, atol=0)

    def square(x):
        a, b = gates.copy(x)
        return gates.sum(gates.mul(a, b))

    for mode, (grad,) in _grads_all_modes(square, x).items():
        chex.assert_trees_all_close(grad, 2 * x, atol=0, custom_message=mode)


def test_max_routes():
    """max(z, w) at z = 2, w = -1 with upstream 2: z gets all of it, w gets 0."""
    z, w = jnp.asarray(2.0, f64), jnp.asarray(-1.0, f64)
    up = jnp.asarray(2.0, f64)
    chex.assert_trees_all_close(jaxprop.reverse.vjp(gates.maximum, z, w)[1](up), (2.0, 0.0),
                                atol=0)

    def f(z, w):
        return gates.mul(gates.maximum(z, w), 2.0)

    for mode, grads in _grads_all_modes(f, z, w).items():
        chex.assert_trees_all_close(grads, (2.0, 0.0), atol=0, custom_message=mode)


def test_add_distributes():
    """The add gate hands its upstream gradient unchanged to both inputs."""
    x, y = jnp.asarray(3.0, f64), jnp.asarray(4.0, f64)
    chex.assert_trees_all_close(jaxprop.reverse.vjp(gates.add, x, y)[1](jnp.asarray(2.0, f64)),
                                (2.0, 2.0), atol=0)


def test_mul_swaps():
    """The mul gate gives each input the upstream gradient times the other input."""
    x, y = jnp.asarray(2.0, f64), jnp.asarray(5.0, f64)
    chex.assert_trees_all_close(jaxprop.reverse.vjp(gates.mul, x, y)[1](jnp.asarray(3.0, f64)),
                                (15.0, 6.0), atol=0)
    chex.assert_trees_all_close(jax.jvp(gates.mul, (x, y), (1.0 * x / x, 0.0 * y))[1], 5.0,
                                atol=0)
