"""Never silently wrong: every case where jaxprop once returned a number other than
``jax.grad``'s, or crashed where JAX works, held to JAX's answer in every mode.

Each case runs through :func:`assert_matches_jax`: ``jaxprop.reverse.grad``,
``jaxprop.forward.grad`` and ``jax.grad(jaxprop.gated(f))`` against ``jax.grad(f)``, in
float64. Where JAX itself refuses a mode (forward mode through a ``custom_vjp``), the case
checks jaxprop's one-line error instead: it names the operation and the user's line.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop import tracer
from jaxprop.events import observe

MODES = ("reverse", "forward", "gated")
HERE = os.path.basename(__file__)


def _grad(mode: str, f, argnums):
    if mode == "reverse":
        return jaxprop.reverse.grad(f, argnums=argnums)
    if mode == "forward":
        return jaxprop.forward.grad(f, argnums=argnums)
    return jax.grad(jaxprop.gated(f), argnums=argnums)


def assert_matches_jax(f, *args, argnums=0, modes=MODES, rtol=1e-6, atol=0.0):
    """Each mode's gradient of scalar f equals ``jax.grad(f)``'s (NaN only where JAX's is)."""
    want = jax.grad(f, argnums=argnums)(*args)
    for mode in modes:
        got = _grad(mode, f, argnums)(*args)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert jnp.result_type(g) == jnp.result_type(w), mode
            np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64),
                                       rtol=rtol, atol=atol, err_msg=f"mode {mode}")


def assert_refuses_forward(f, *args, name: str):
    """Forward mode refuses f, as ``jax.jvp`` does, in one line naming ``name`` and this
    file's line; reverse mode and ``jax.grad(gated(f))`` still give ``jax.grad``'s answer."""
    assert_matches_jax(f, *args, modes=("reverse", "gated"))
    zeros = tuple(jnp.zeros_like(a) for a in args)
    for run in (lambda: jaxprop.forward.grad(f)(*args),
                lambda: jaxprop.forward.jvp(f, args, zeros),
                lambda: jax.jvp(jaxprop.gated(f), args, zeros)):
        with pytest.raises(TypeError, match=rf"{name} \(at .*{HERE}:\d+.*custom_vjp") as err:
            run()
        assert "\n" not in str(err.value)


# Custom rules ----------------------------------------------------------------------------


@jax.custom_vjp
def grad_reverse(x):
    """A gradient-reversal layer: the identity forward, -g backward."""
    return x


grad_reverse.defvjp(lambda x: (x, None), lambda _, g: (-g,))


@jax.custom_vjp
def clip_gradient(lo, hi, x):
    """JAX's docs' clip_gradient: the identity, its cotangent clipped to [lo, hi]."""
    return x


def _clip_fwd(lo, hi, x):
    return x, (lo, hi)


def _clip_bwd(res, g):
    lo, hi = res
    return (None, None, jnp.clip(g, lo, hi))


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


@jax.custom_vjp
def sign_ste(x):
    """The straight-through estimator of sign: sign forward, the identity backward."""
    return jnp.sign(x)


sign_ste.defvjp(lambda x: (jnp.sign(x), None), lambda _, g: (g,))


@jax.custom_jvp
def log1pexp(x):
    """JAX's docs' log1pexp: the rule avoids the NaN of autodiff at large x."""
    return jnp.log(1.0 + jnp.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return log1pexp(x), x_dot * (1.0 - 1.0 / (1.0 + jnp.exp(x)))


@jax.custom_jvp
def sqrt_ratio(x):
    """JAX's docs' x / (1 + sqrt(x)): the rule is finite at 0, autodiff's is NaN."""
    return x / (1 + jnp.sqrt(x))


@sqrt_ratio.defjvp
def _sqrt_ratio_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return sqrt_ratio(x), (jnp.sqrt(x) + 2) / (2 * (jnp.sqrt(x) + 1) ** 2) * x_dot


def test_gradient_reversal_layer_flips_the_sign():
    f = lambda x: jnp.sum(grad_reverse(x) * x**2)  # noqa: E731
    x = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(jaxprop.reverse.grad(f)(x), [1.0, 4.0])  # -x^2 + 2x^2
    assert_refuses_forward(f, x, name="grad_reverse")


def test_clip_gradient_clips():
    f = lambda x: jnp.sum(clip_gradient(-0.75, 0.75, 3.0 * x) ** 2)  # noqa: E731
    x = jnp.array([2.0, -0.1])
    np.testing.assert_allclose(jaxprop.reverse.grad(f)(x), [2.25, -1.8])
    assert_refuses_forward(f, x, name="clip_gradient")


def test_straight_through_sign_estimator():
    f = lambda x: jnp.sum(jnp.tanh(sign_ste(x) * x + x))  # noqa: E731
    assert_refuses_forward(f, jnp.array([0.3, -0.8]), name="sign_ste")


def test_log1pexp_at_800_is_1_not_nan():
    assert_matches_jax(log1pexp, 800.0)
    assert float(jaxprop.reverse.grad(log1pexp)(800.0)) == 1.0


def test_sqrt_ratio_at_0_is_1_not_nan():
    assert_matches_jax(sqrt_ratio, 0.0)
    assert float(jaxprop.forward.grad(sqrt_ratio)(0.0)) == 1.0


def test_relu6_keeps_its_rule_at_both_kinks():
    x = jnp.array([6.0, 0.0, 3.0, 7.0, -1.0])
    assert_matches_jax(lambda x: jnp.sum(jax.nn.relu6(x)), x)
    np.testing.assert_array_equal(jaxprop.reverse.grad(lambda x: jnp.sum(jax.nn.relu6(x)))(x),
                                  [0, 0, 1, 0, 0])


def test_softplus_at_0_is_one_half():
    # jnp.logaddexp's own rule; opened into max, abs and log1p gates it gave -0.5.
    assert_matches_jax(lambda x: jnp.sum(jax.nn.softplus(x)), jnp.array([0.0, 1.0, -2.0]))
    assert_matches_jax(lambda x: jnp.sum(jnp.logaddexp(x, 2 * x)), jnp.array([0.0, 1.0]))


def test_custom_rules_under_forward_over_reverse():
    # jax.hessian differentiates a custom_vjp's own fwd and bwd: no refusal there.
    x = jnp.array([1.0, 2.0])
    for f in (lambda x: jnp.sum(grad_reverse(x) * x**2), lambda x: jnp.sum(log1pexp(x) * x)):
        want = jax.hessian(f)(x)
        np.testing.assert_allclose(jaxprop.hessian(f)(x), want, rtol=1e-6)
        np.testing.assert_allclose(jax.hessian(jaxprop.gated(f))(x), want, rtol=1e-6)


def test_custom_rule_is_observed_as_itself_not_as_gates():
    f = lambda x: jnp.sum(log1pexp(x) * x)  # noqa: E731
    for run in (lambda: jaxprop.reverse.grad(f)(jnp.array([1.0, 2.0])),
                lambda: jaxprop.forward.grad(f)(jnp.array([1.0, 2.0]))):
        events = []
        with observe(events.append):
            run()
        own = [e for e in events if e.kind == "custom_jvp"]
        assert [e.gate.name for e in own] == ["log1pexp"]
        assert HERE in own[0].gate.line
        gates = {e.gate.name for e in events if e.kind in ("forward", "vjp", "jvp")}
        assert gates == {"mul", "sum"}  # never the exp, add, log inside log1pexp
    events = []
    with observe(events.append):
        jaxprop.reverse.grad(lambda x: jnp.sum(grad_reverse(x)))(jnp.ones(2))
    assert [(e.kind, e.gate.name) for e in events if e.kind.startswith("custom")] == [
        ("custom_vjp", "grad_reverse")]


def test_explain_shows_the_custom_rule_as_one_row():
    trace = jaxprop.explain(lambda x: log1pexp(x) * x, 800.0)
    rows = {r.gate: r for r in trace.rows}
    assert rows["log1pexp"].pattern == "its own custom_jvp rule"
    assert not {"exp", "log", "add", "log1p"} & set(rows)
    np.testing.assert_allclose(trace.grads[0], jax.grad(lambda x: log1pexp(x) * x)(800.0))
    with pytest.raises(TypeError, match=rf"explain: grad_reverse \(at .*{HERE}"):
        jaxprop.explain(lambda x: jnp.sum(grad_reverse(x)), jnp.ones(2), mode="forward")


def test_check_verifies_a_custom_rule():
    assert jaxprop.check(log1pexp, jnp.array([-3.0, 0.5, 1.5])).ok
    report = jaxprop.check(lambda x: jnp.sum(grad_reverse(x) * x), jnp.array([1.0, 2.0]))
    assert report["fd_vjp"].status == "FAIL"  # the reversed gradient is not the derivative


def test_opened_library_rules_give_the_library_rules_derivative():
    """Each entry of OPENED_RULES: its gates give jax.grad's answer, kinks included."""
    assert set(tracer.OPENED_RULES) == {"jax.nn.relu", "jax.nn.softmax",
                                        "jax.numpy.linalg.slogdet"}  # slogdet: test_linalg
    x = jnp.array([-1.0, 0.0, 2.0])
    relu = lambda x: jnp.sum(jax.nn.relu(x) * jnp.arange(1.0, 4.0))  # noqa: E731
    assert_matches_jax(relu, x)
    events = []
    with observe(events.append):
        jaxprop.reverse.grad(relu)(x)
    assert "relu" in {e.gate.name for e in events if e.kind == "vjp"}
    w = jnp.array([[0.0, 0.0, 1.0], [2.0, -1.0, 2.0]])
    soft = lambda w: jnp.sum(jax.nn.softmax(w, axis=1) * jnp.array([[1.0, 2.0, 4.0]]))  # noqa: E731
    with jax.softmax_custom_jvp(True):
        assert "custom_jvp_call" in str(jax.make_jaxpr(soft)(w))
        assert_matches_jax(soft, w)
        events = []
        with observe(events.append):
            jaxprop.reverse.grad(soft)(w)
        assert not [e for e in events if e.kind.startswith("custom")]


# No crash where JAX works ----------------------------------------------------------------


def test_closed_over_key_is_a_constant():
    key = jax.random.key(0)

    def dropout_loss(w, x):  # dropout written the usual way, the key closed over
        keep = jax.random.bernoulli(key, 0.5, (4, 2))
        return jnp.sum(jnp.where(keep, x @ w, 0.0) / 0.5)

    def dropout_loss_of_key(w, key, x):  # and the key passed as an argument
        keep = jax.random.bernoulli(key, 0.5, (4, 2))
        return jnp.sum(jnp.where(keep, x @ w, 0.0) / 0.5)

    w, x = jnp.arange(6.0).reshape(3, 2), jnp.arange(12.0).reshape(4, 3)
    assert_matches_jax(dropout_loss, w, x)
    assert_matches_jax(dropout_loss_of_key, w, jax.random.key(1), x)


def test_jacobians_of_a_function_that_changes_precision():
    # float64 in, float32 out (and back): each basis vector must have its own leaf's dtype,
    # a cotangent of the float32 output or a tangent of the float32 input, not the Jacobian's
    down = lambda x: jnp.tanh(x.astype(jnp.float32))  # noqa: E731
    up = lambda x: jnp.tanh(x.astype(jnp.float64))  # noqa: E731
    for f, x in ((down, jnp.linspace(-1.0, 1.0, 3)),
                 (down, jnp.linspace(-1.0, 1.0, 3, dtype=jnp.float32)),
                 (up, jnp.linspace(-1.0, 1.0, 3, dtype=jnp.float32))):
        want = jax.jacrev(f)(x)
        for jacobian in (jaxprop.reverse.jacobian, jaxprop.forward.jacobian):
            got = jacobian(f)(x)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_boolean_operand_of_a_matmul_is_promoted():
    w, x = jnp.arange(6.0).reshape(3, 2) - 2.0, jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    assert_matches_jax(lambda w, x: jnp.sum((x @ w) ** 2), w, x > 0.5)


def test_integer_exponent_array():
    w = jnp.array([[1.5, -2.0], [0.5, 3.0]])
    assert_matches_jax(lambda w, n: jnp.sum(w**n), w, jnp.array([[2, 3], [1, 0]]))


def test_preferred_element_type_is_honoured():
    a = jnp.arange(6.0).reshape(2, 3).astype(jnp.bfloat16)
    b = (jnp.arange(12.0).reshape(3, 4) - 5.0).astype(jnp.bfloat16)
    f = lambda a, b: jnp.sum(jnp.dot(a, b, preferred_element_type=jnp.float32) ** 2)  # noqa: E731
    assert_matches_jax(f, a, b, argnums=(0, 1))  # small integers: exact in bfloat16


def test_gated_differentiates_only_what_jax_differentiates():
    def f(w, x):  # the pad applies to the data only: no gate is needed for it
        return jnp.sum(jnp.pad(x, 1)[1:-1, 1:-1] @ w)

    w, x = jnp.arange(6.0).reshape(3, 2), jnp.arange(12.0).reshape(4, 3)
    assert_matches_jax(f, w, x)
    want = jax.grad(f)(w, x)
    np.testing.assert_allclose(jax.jit(jax.grad(jaxprop.gated(f)))(w, x), want)
    batch = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(jax.vmap(jax.grad(jaxprop.gated(f)), (None, 0))(w, batch),
                               jax.vmap(jax.grad(f), (None, 0))(w, batch))


# Scatter and gather corners ------------------------------------------------------------

f64 = jnp.float64


def _grads(f, *args, argnums=0):
    """f's gradient in each of jaxprop's modes, by name."""
    out = {"reverse": jaxprop.reverse.grad(f, argnums)(*args),
           "forward": jaxprop.forward.grad(f, argnums)(*args)}
    for rules in ("jvp", "vjp"):
        with jaxprop.rule_set(rules):
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


def assert_jax_gives(f, args, expected, argnums=0):
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
    assert_jax_gives(f, (V,), [2.0, 0.0])


@pytest.mark.parametrize("op", ["add", "set"])
def test_an_update_at_a_negative_index_wraps_or_is_dropped(op):
    # -1 is the last place; -4 is out of bounds of 3 places even after wrapping: dropped
    def f(v):
        return jnp.sum(getattr(jnp.zeros(3, f64).at[jnp.array([-1, -4])], op)(v) * W3)
    assert_jax_gives(f, (V,), [7.0, 0.0])


def test_segment_sum_with_a_padding_id():
    # segment id 3 with num_segments=2 is padding: dropped, its data gets 0 (was nan)
    def f(v):
        return jnp.sum(jax.ops.segment_sum(v, jnp.array([0, 3]), num_segments=2) ** 2)
    assert_jax_gives(f, (V,), [2.0, 0.0])


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
    assert_jax_gives(f, (V,), [0.0, 3.0])
    assert np.asarray(jnp.zeros(3).at[jnp.array([0, 0])].set(V))[0] == V[1]  # the last write


def test_set_at_a_repeated_index_x_and_updates_together():
    def f(x, u):
        return jnp.sum(x.at[jnp.array([2, 0, 2])].set(u) * W3)
    u = jnp.array([1.0, 2.0, 3.0], f64)
    assert_jax_gives(f, (X, u), ([0.0, 5.0, 0.0], [0.0, 3.0, 7.0]), argnums=(0, 1))


def test_set_of_windows_at_a_repeated_index():
    # x.at[i].set(rows): each update is a row (an update window)
    x = jnp.arange(6.0, dtype=f64).reshape(3, 2)
    rows = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], f64)
    weights = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], f64)
    def f(x, rows):
        return jnp.sum(x.at[jnp.array([1, 1, 0])].set(rows) * weights)
    assert_jax_gives(f, (x, rows), ([[0.0, 0.0], [0.0, 0.0], [5.0, 6.0]],
                                      [[0.0, 0.0], [3.0, 4.0], [1.0, 2.0]]), argnums=(0, 1))


def test_a_clipped_set_index_writes_at_the_edge_where_the_last_write_stays():
    # mode="clip": index 7 writes at place 2, where index 2 writes too; the last stays
    def f(x, u):
        return jnp.sum(x.at[jnp.array([2, 7])].set(u, mode="clip") * W3)
    assert_jax_gives(f, (X, V), ([3.0, 5.0, 0.0], [0.0, 7.0]), argnums=(0, 1))


def test_subtract_at_a_repeated_index():
    def f(x, u):
        return jnp.sum(x.at[jnp.array([0, 0])].subtract(u) * W3)
    assert_jax_gives(f, (X, V), ([3.0, 5.0, 7.0], [-3.0, -3.0]), argnums=(0, 1))


def test_a_filled_gather_element_is_a_constant():
    # .at[].get(mode="fill"): forward mode gave the fill value as a tangent (52, 50, 50)
    def f(x):
        return jnp.sum(x.at[jnp.array([0, 5])].get(mode="fill", fill_value=5.0) ** 2)
    assert_jax_gives(f, (X,), [2.0, 0.0, 0.0])


def test_take_with_a_fill_value():
    def f(x):
        return jnp.sum(jnp.take(x, jnp.array([0, 5]), mode="fill", fill_value=2.0) ** 2)
    assert_jax_gives(f, (X,), [2.0, 0.0, 0.0])


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
    assert_jax_gives(f, (X, V), ([2.0, 4.0, 24.0], [2.0, 36.0]), argnums=(0, 1))
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
    assert_jax_gives(f, (X, u), expected, argnums=(0, 1))


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
    assert_jax_gives(f, (v,), expected)
