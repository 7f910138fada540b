"""Never silently wrong: each case that once gave a gradient different from ``jax.grad``,
compared with ``jax.grad`` in both modes (``jaxprop.reverse``, ``jaxprop.forward`` and
``jax.grad`` of ``jaxprop.gated(f)`` under each rule set), or with the documented lecture
convention where jaxprop deliberately differs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop

# Scatter and gather corners

f64 = jnp.float64


def _grads(f, *args, argnums=0):
    """f's gradient in each of jaxprop's modes, by name."""
    out = {"reverse": jaxprop.reverse.grad(f, argnums)(*args),
           "forward": jaxprop.forward.grad(f, argnums)(*args)}
    for rules in ("jvp", "vjp"):
        with jaxprop.pipeline(rules):
            out[f"jax.grad(gated) {rules}"] = jax.grad(jaxprop.gated(f), argnums)(*args)
    return out


def _close(got, expected, argnums, what):
    """``got`` (one gradient, or one per argument of a tuple ``argnums``) is ``expected``,
    exactly up to float64 rounding."""
    many = isinstance(argnums, tuple)
    for g, e in zip(got if many else [got], expected if many else [expected], strict=True):
        np.testing.assert_allclose(g, np.asarray(e), rtol=1e-12, atol=1e-12, err_msg=what)


def assert_modes_give(f, args, expected, argnums=0):
    """Every mode gives ``expected``, and reverse mode under jax.jit too."""
    for mode, got in _grads(f, *args, argnums=argnums).items():
        _close(got, expected, argnums, mode)
    _close(jax.jit(jaxprop.reverse.grad(f, argnums))(*args), expected, argnums, "jit reverse")


def assert_matches_jax(f, args, expected, argnums=0):
    """``expected`` (written out by hand) is jax.grad's answer, and every mode gives it."""
    _close(jax.grad(f, argnums)(*args), expected, argnums, "jax.grad")
    assert_modes_give(f, args, expected, argnums)


def central_differences(f, x, h=1e-6):
    """df/dx by central differences, one coordinate at a time (float64)."""
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = h
        out.flat[k] = (f(jnp.asarray(x + e)) - f(jnp.asarray(x - e))) / (2 * h)
    return out


V = jnp.array([1.0, 2.0], f64)
X = jnp.array([1.0, 2.0, 3.0], f64)
W3 = jnp.array([3.0, 5.0, 7.0], f64)  # weights that tell the places of z apart


@pytest.mark.parametrize("op", ["add", "set"])
def test_an_update_dropped_out_of_bounds_gets_zero(op):
    # issue 16: reverse mode gave [2, nan]
    def f(v):
        return jnp.sum(getattr(jnp.zeros(3, f64).at[jnp.array([0, 3])], op)(v) ** 2)
    assert_matches_jax(f, (V,), [2.0, 0.0])


@pytest.mark.parametrize("op", ["add", "set"])
def test_an_update_at_a_negative_index_wraps_or_is_dropped(op):
    # -1 is the last place; -4 is out of bounds of 3 places even after wrapping: dropped
    def f(v):
        return jnp.sum(getattr(jnp.zeros(3, f64).at[jnp.array([-1, -4])], op)(v) * W3)
    assert_matches_jax(f, (V,), [7.0, 0.0])


def test_segment_sum_with_a_padding_id():
    # segment id 3 with num_segments=2 is padding: dropped, its data gets 0 (was nan)
    def f(v):
        return jnp.sum(jax.ops.segment_sum(v, jnp.array([0, 3]), num_segments=2) ** 2)
    assert_matches_jax(f, (V,), [2.0, 0.0])


def test_graph_network_with_a_padding_edge():
    # messages along edges, summed at the receivers; the last edge is padding (receiver 3
    # of 3 nodes). The weight gradient was all nan in reverse mode.
    h = jnp.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]], f64)
    senders, receivers = jnp.array([0, 1, 2, 0]), jnp.array([1, 2, 0, 3])

    def loss(w):
        messages = jnp.tanh(h[senders] @ w)
        nodes = jax.ops.segment_sum(messages, receivers, num_segments=3)
        return jnp.sum(nodes ** 2)

    w = jnp.array([[0.3, -0.2], [0.1, 0.4]], f64)
    expected = jax.grad(loss)(w)
    assert np.all(np.isfinite(expected))
    assert_modes_give(loss, (w,), expected)


def test_set_at_a_repeated_index_passes_the_gradient_to_the_update_written():
    # issue 16: jax.grad gives [0, w] (the last write stays), jaxprop gave [w, w]
    def f(u):
        return jnp.sum(jnp.zeros(3, f64).at[jnp.array([0, 0])].set(u) * W3)
    assert_matches_jax(f, (V,), [0.0, 3.0])
    assert np.asarray(jnp.zeros(3).at[jnp.array([0, 0])].set(V))[0] == V[1]  # the last write


def test_set_at_a_repeated_index_x_and_updates_together():
    def f(x, u):
        return jnp.sum(x.at[jnp.array([2, 0, 2])].set(u) * W3)
    u = jnp.array([1.0, 2.0, 3.0], f64)
    assert_matches_jax(f, (X, u), ([0.0, 5.0, 0.0], [0.0, 3.0, 7.0]), argnums=(0, 1))


def test_set_of_windows_at_a_repeated_index():
    # x.at[i].set(rows): each update is a row (an update window)
    x = jnp.arange(6.0, dtype=f64).reshape(3, 2)
    rows = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], f64)
    weights = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], f64)
    def f(x, rows):
        return jnp.sum(x.at[jnp.array([1, 1, 0])].set(rows) * weights)
    assert_matches_jax(f, (x, rows), ([[0.0, 0.0], [0.0, 0.0], [5.0, 6.0]],
                                      [[0.0, 0.0], [3.0, 4.0], [1.0, 2.0]]), argnums=(0, 1))


def test_a_clipped_set_index_writes_at_the_edge_where_the_last_write_stays():
    # mode="clip": index 7 writes at place 2, where index 2 writes too; the last stays
    def f(x, u):
        return jnp.sum(x.at[jnp.array([2, 7])].set(u, mode="clip") * W3)
    assert_matches_jax(f, (X, V), ([3.0, 5.0, 0.0], [0.0, 7.0]), argnums=(0, 1))


def test_subtract_at_a_repeated_index():
    def f(x, u):
        return jnp.sum(x.at[jnp.array([0, 0])].subtract(u) * W3)
    assert_matches_jax(f, (X, V), ([3.0, 5.0, 7.0], [-3.0, -3.0]), argnums=(0, 1))


def test_a_filled_gather_element_is_a_constant():
    # .at[].get(mode="fill"): forward mode gave the fill value as a tangent (52, 50, 50)
    def f(x):
        return jnp.sum(x.at[jnp.array([0, 5])].get(mode="fill", fill_value=5.0) ** 2)
    assert_matches_jax(f, (X,), [2.0, 0.0, 0.0])


def test_take_with_a_fill_value():
    def f(x):
        return jnp.sum(jnp.take(x, jnp.array([0, 5]), mode="fill", fill_value=2.0) ** 2)
    assert_matches_jax(f, (X,), [2.0, 0.0, 0.0])


def test_a_broken_promise_in_bounds_follows_the_value_read():
    # x[5] on 3 elements breaks the promise of the default mode: XLA clamps it and reads
    # x[2]. The gradient follows the value, as finite differences and jax.jacfwd do;
    # jax.grad drops it instead (JAX's docs: gradients are then not correct). Documented.
    def f(x):
        return jnp.sum(x[jnp.array([0, 5])] * jnp.array([1.0, 3.0], f64))
    assert float(f(X)) == 1.0 + 3.0 * 3.0
    np.testing.assert_allclose(central_differences(f, X), [1.0, 0.0, 3.0], atol=1e-8)
    np.testing.assert_allclose(jax.jacfwd(f)(X), [1.0, 0.0, 3.0])
    np.testing.assert_allclose(jax.grad(f)(X), [1.0, 0.0, 0.0])  # the difference
    assert_modes_give(f, (X,), [1.0, 0.0, 3.0])


def test_multiply_at_unique_indices():
    # jax.grad differentiates the updates only under unique_indices=True
    def f(x, u):
        return jnp.sum(x.at[jnp.array([0, 2])].multiply(u, unique_indices=True) ** 2)
    # z = [x0 u0, x1, x2 u1] = [1, 2, 6]: x_bar = 2 z [u0, 1, u1], u_bar = 2 z [x0, x2]
    assert_matches_jax(f, (X, V), ([2.0, 4.0, 24.0], [2.0, 36.0]), argnums=(0, 1))
    def g(x, u):
        return jnp.sum(x.at[jnp.array([0, 2])].multiply(u) ** 2)  # no promise
    assert_modes_give(g, (X, V), ([2.0, 4.0, 24.0], [2.0, 36.0]), argnums=(0, 1))


@pytest.mark.parametrize("u", [[2.0, -3.0, 0.5], [2.0, 0.0, 0.5], [0.0, 0.0, 0.5]],
                         ids=["nonzero", "one_zero", "two_zeros"])
def test_multiply_at_a_repeated_index_is_a_switcher(u):
    # z[0] = x0 u0 u1 (index 0 twice), z[2] = x2 u2: each factor's gradient is the product
    # of the others. jax.grad refuses the updates here (NotImplementedError) and a division
    # by u would give nan at a zero update: checked against the product written out.
    u = jnp.array(u, f64)
    def f(x, u):
        return jnp.sum(x.at[jnp.array([0, 0, 2])].multiply(u) * W3)
    x_bar = [3.0 * u[0] * u[1], 5.0, 7.0 * u[2]]
    u_bar = [3.0 * X[0] * u[1], 3.0 * X[0] * u[0], 7.0 * X[2]]
    np.testing.assert_allclose(jax.grad(f, 0)(X, u), x_bar)  # JAX gives x's part
    np.testing.assert_allclose(central_differences(lambda u: f(X, u), u), u_bar, atol=1e-8)
    assert_modes_give(f, (X, u), (x_bar, u_bar), argnums=(0, 1))


def test_segment_prod_with_a_padding_id():
    def f(v):
        return jnp.sum(jax.ops.segment_prod(v, jnp.array([0, 0, 4]), num_segments=2) * 3.0)
    v = jnp.array([2.0, -1.5, 4.0], f64)
    np.testing.assert_allclose(central_differences(f, v), [-4.5, 6.0, 0.0], atol=1e-8)
    assert_modes_give(f, (v,), [-4.5, 6.0, 0.0])


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_at_a_repeated_index_route_to_the_extreme(op):
    # no tie: place 0 gets x0 = 1 and the updates 4 and -1; place 2 gets x2 = 3 and 0.5
    u = jnp.array([4.0, -1.0, 0.5], f64)
    def f(x, u):
        return jnp.sum(getattr(x.at[jnp.array([0, 0, 2])], op)(u) * W3)
    expected = {"max": ([0.0, 5.0, 7.0], [3.0, 0.0, 0.0]),
                "min": ([0.0, 5.0, 0.0], [0.0, 3.0, 7.0])}[op]
    assert_matches_jax(f, (X, u), expected, argnums=(0, 1))


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_scatter_ties_go_to_the_first(op):
    # the lecture's max gate gives a tie to its first input; here x comes first, then the
    # updates in order. jax.grad splits a tie evenly instead: documented in the README.
    x = jnp.array([2.0, 5.0, 3.0], f64)
    u = jnp.array([1.0, 2.0, 2.0, 4.0, 4.0], f64)
    i = jnp.array([0, 0, 0, 2, 2])
    def f(x, u):
        return jnp.sum(getattr(x.at[i], op)(u) * W3)
    # max: place 0 ties x0 = 2 with u1 = u2 = 2 (x takes it); place 2: u3 = u4 = 4 > 3 (u3)
    # min: place 0: u0 = 1 alone; place 2: x2 = 3 alone
    expected = {"max": ([3.0, 5.0, 0.0], [0.0, 0.0, 0.0, 7.0, 0.0]),
                "min": ([0.0, 5.0, 7.0], [3.0, 0.0, 0.0, 0.0, 0.0])}[op]
    assert_modes_give(f, (x, u), expected, argnums=(0, 1))
    if op == "max":
        split = jax.grad(f, (0, 1))(x, u)  # JAX's own convention, for the record
        np.testing.assert_allclose(split[0], [1.0, 5.0, 0.0])
        np.testing.assert_allclose(split[1], [0.0, 1.0, 1.0, 3.5, 3.5])


@pytest.mark.parametrize("segment", [jax.ops.segment_max, jax.ops.segment_min])
def test_segment_max_and_min_with_a_padding_id(segment):
    v = jnp.array([2.0, -1.5, 4.0, 0.5], f64)
    def f(v):
        return jnp.sum(segment(v, jnp.array([0, 0, 5, 1]), num_segments=2) * 3.0)
    expected = [3.0, 0.0, 0.0, 3.0] if segment is jax.ops.segment_max else [0.0, 3.0, 0.0, 3.0]
    assert_matches_jax(f, (v,), expected)
