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
from jaxprop.gate import observe

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
    assert set(tracer.OPENED_RULES) == {"jax.nn.relu", "jax.nn.softmax"}
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
