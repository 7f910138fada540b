"""Plain JAX code through the lecture's rules: the gate tracer, and drivers that are drop-ins
for jax.grad.

The lecture's examples written the natural way, micrograd's test_engine.py, the courses'
NumPy-style losses and net (tests/numpy_style.py) give the lecture's numbers and JAX's
gradients in both modes with only our rules observed; a primitive without a gate is an error
naming it; and the drivers take jax.grad's arguments and give its answers.
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_style
import pytest
from cases import ATOL, RTOL, hinge_scores

import jaxprop
from jaxprop import gates, losses, models
from jaxprop.tracer import NoGateError

MODES = {"reverse": (jaxprop.reverse, "vjp"), "forward": (jaxprop.forward, "jvp")}
f64 = jnp.float64


def _observed(run):
    """``(gates applied, rules run, kinds seen)`` while ``run()`` is traced."""
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(run)()
    applied = [e.gate.name for e in events if e.kind == "forward"]
    rules = [e.gate.name for e in events if e.kind in ("vjp", "jvp")]
    return applied, rules, {e.kind for e in events}


def _only_our_rules(run, kind):
    applied, rules, kinds = _observed(run)
    assert applied, "no gate was applied"
    assert kinds == {"forward", kind}, kinds  # our rules of this mode, never JAX's
    assert sorted(rules) == sorted(applied), (applied, rules)  # each gate's rule once
    return applied


def _grads(mode, f, args, argnums):
    return MODES[mode][0].grad(f, argnums)(*args)


# ------------------------------------------------------- the lecture's examples, naturally


@pytest.mark.parametrize("mode", MODES)
def test_add_then_multiply_written_with_operators(mode):
    f = lambda x, y, z: (x + y) * z  # noqa: E731
    args = (-2.0, 5.0, -4.0)
    chex.assert_trees_all_close(_grads(mode, f, args, (0, 1, 2)), (-4.0, -4.0, 3.0), atol=0)
    applied = _only_our_rules(lambda: _grads(mode, f, args, (0, 1, 2)), MODES[mode][1])
    assert applied == ["add", "mul"]


def _neuron(w0, x0, w1, x1, w2):
    return 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))


NEURON = tuple(jnp.asarray(v, f64) for v in (2.0, -1.0, -3.0, -2.0, -3.0))


@pytest.mark.parametrize("mode", MODES)
def test_sigmoid_neuron_written_naturally_is_the_slides_circuit(mode):
    """1 / (1 + jnp.exp(-t)) is traced into exactly the slide's gates: *, *, +, +, *-1, exp,
    +1, 1/x; and gives the slide's gradients."""
    dw0, dx0, dw1, dx1, dw2 = _grads(mode, _neuron, NEURON, (0, 1, 2, 3, 4))
    np.testing.assert_allclose([dw0, dw1, dw2], [-0.20, -0.39, 0.20], atol=0.005)
    np.testing.assert_allclose([dx0, dx1], [0.39, -0.59], atol=0.005)
    s = 1 / (1 + np.exp(-1.0))
    chex.assert_trees_all_close((dw0, dx0), (-1.0 * (1 - s) * s, 2.0 * (1 - s) * s), rtol=1e-12)
    applied = _only_our_rules(lambda: _grads(mode, _neuron, NEURON, (0, 1, 2, 3, 4)),
                              MODES[mode][1])
    assert applied == ["mul", "mul", "add", "add", "mul", "exp", "add", "reciprocal"]


@pytest.mark.parametrize("mode", MODES)
def test_relu_matmul_and_max_written_with_jnp(mode):
    module = MODES[mode][0]
    x = jnp.array([1.0, -2.0, 3.0, -1.0])
    up = jnp.array([4.0, -1.0, 5.0, 9.0])
    relu = lambda x: jnp.maximum(0, x)  # noqa: E731 - the CS231n spelling of ReLU
    if mode == "reverse":
        (x_bar,) = jaxprop.reverse.vjp(relu, x)[1](up)
    else:  # forward mode: the diagonal Jacobian applied to the same vector
        x_bar = jaxprop.forward.jvp(relu, (x,), (up,))[1]
    chex.assert_trees_all_close(x_bar, jnp.array([4.0, 0.0, 5.0, 0.0]), atol=0)
    assert _observed(lambda: module.jacobian(relu)(x))[0] == ["relu"]

    mx = jnp.array([[2.0, 1, -3], [-3, 4, 2]])
    mw = jnp.array([[3.0, 2, 1, -1], [2, 1, 3, 2], [3, 2, 1, -2]])
    dy = jnp.array([[2.0, 3, -3, 9], [-8, 1, 4, 6]])
    loss = lambda x, w: jnp.sum((x @ w) * dy)  # noqa: E731 - upstream dL/dy = dy
    dx, dw = module.grad(loss, (0, 1))(mx, mw)
    chex.assert_trees_all_close(dx, jnp.array([[0.0, 16, -9], [-24, 9, -30]]), atol=0)
    chex.assert_trees_all_close(dw, mx.T @ dy, atol=0)
    assert "matmul" in _only_our_rules(lambda: module.grad(loss, (0, 1))(mx, mw),
                                       MODES[mode][1])

    z, w = jnp.asarray(2.0, f64), jnp.asarray(-1.0, f64)
    chex.assert_trees_all_close(module.grad(lambda z, w: jnp.maximum(z, w) * 2, (0, 1))(z, w),
                                (2.0, 0.0), atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_add_at_a_branch_written_naturally(mode):
    x = jnp.array([3.0, -1.5])
    grad = MODES[mode][0].grad(lambda x: jnp.sum(x * x))(x)
    chex.assert_trees_all_close(grad, 2 * x, atol=0)


# ------------------------------------------------------------------------ micrograd's tests


def _micrograd_sanity(x):
    z = 2 * x + 2 + x
    q = jax.nn.relu(z) + z * x
    h = jax.nn.relu(z * z)
    return h + q + q * x


def _micrograd_more_ops(a, b):
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + jax.nn.relu(b + a)
    d += 3 * d + jax.nn.relu(b - a)
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return g


@pytest.mark.parametrize("mode", MODES)
def test_micrograd_test_engine(mode):
    """micrograd's test_sanity_check and test_more_ops, with jnp in place of Value: values and
    gradients against JAX's own autodiff of the same code, and micrograd's printed numbers."""
    module = MODES[mode][0]
    x = jnp.asarray(-4.0, f64)
    value, grad = module.value_and_grad(_micrograd_sanity)(x)
    assert (float(value), float(grad)) == (-20.0, 46.0)
    chex.assert_trees_all_close(grad, jax.grad(_micrograd_sanity)(x), atol=0)
    a, b = jnp.asarray(-4.0, f64), jnp.asarray(2.0, f64)
    value, (ga, gb) = module.value_and_grad(_micrograd_more_ops, (0, 1))(a, b)
    np.testing.assert_allclose([value, ga, gb], [24.7041, 138.8338, 645.5773], atol=1e-4)
    want = jax.grad(_micrograd_more_ops, (0, 1))(a, b)
    chex.assert_trees_all_close((ga, gb), want, rtol=1e-12)
    _only_our_rules(lambda: module.grad(_micrograd_more_ops, (0, 1))(a, b), MODES[mode][1])


# --------------------------------------------------- the courses' NumPy-style code, with jnp

allow_broadcasting = jax.numpy_rank_promotion("allow")  # X.dot(W) + b, as NumPy writes it


def _scores_labels(seed=0, n=6, c=4):
    s, y = hinge_scores(np.random.default_rng(seed), n, c)  # no hinge margin near its kink
    return jnp.asarray(s), jnp.asarray(y, jnp.int32)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["svm", "softmax"])
def test_numpy_style_losses_equal_the_fused_gates(name, mode):
    natural = {"svm": numpy_style.svm_loss_vectorized,
               "softmax": numpy_style.softmax_loss_vectorized}[name]
    module = MODES[mode][0]
    s, y = _scores_labels()
    with allow_broadcasting:
        got = module.value_and_grad(natural)(s, y)
        applied = _only_our_rules(lambda: module.grad(natural)(s, y), MODES[mode][1])
    want = jaxprop.reverse.value_and_grad(losses.LOSSES[name].fn)(s, y)
    chex.assert_trees_all_close(got, want, rtol=RTOL, atol=ATOL)
    assert "gather" in applied  # scores[np.arange(N), y], picked through its gate


@pytest.mark.parametrize("mode", MODES)
def test_numpy_style_two_layer_net_equals_the_gated_model(mode):
    rng = np.random.default_rng(1)
    params = models.two_layer_init(jax.random.key(0), 5, 7, 3, dtype=f64)
    params = jax.tree.map(lambda p: p + 0.1 * rng.normal(size=p.shape), params)
    x = jnp.asarray(rng.normal(size=(6, 5)))
    y = jnp.asarray(rng.integers(0, 3, 6), jnp.int32)
    reg = 0.05
    module = MODES[mode][0]
    with allow_broadcasting:
        got = module.value_and_grad(numpy_style.two_layer_loss)(params, x, y, reg)
        _only_our_rules(lambda: module.grad(numpy_style.two_layer_loss)(params, x, y, reg),
                        MODES[mode][1])
    gated = jaxprop.objective(models.two_layer_scores, losses.softmax_loss, reg)
    want = jaxprop.reverse.value_and_grad(gated)(params, x, y)
    chex.assert_trees_all_close(got, want, rtol=RTOL, atol=ATOL)


def test_numpy_style_net_trains_to_the_same_accuracy(tmp_path):
    """jaxprop train on the CS231n-style net and loss (model.kind=numpy_style:TWO_LAYER) reaches
    the accuracy of the gated model, through our VJP rules only."""
    from jaxprop.train import load_config, load_data, train

    gated_cfg = load_config(None, ["train.epochs=10"])
    natural_cfg = load_config(None, ["train.epochs=10", "model.kind=numpy_style:TWO_LAYER",
                                     "loss.kind=numpy_style:SOFTMAX"])
    data = load_data(gated_cfg)
    kinds = set()
    with allow_broadcasting, jaxprop.observe(lambda e: kinds.add(e.kind)):
        natural = train(natural_cfg, tmp_path / "natural", dataset=data, progress=False,
                        write_plots=False)
    gated = train(gated_cfg, tmp_path / "gated", dataset=data, progress=False,
                  write_plots=False)
    assert kinds == {"forward", "vjp"}
    assert natural.summary["test_accuracy"] >= 0.97
    # the same net, the same init and batches: float32 rounding may move one test example
    assert abs(natural.summary["test_accuracy"] - gated.summary["test_accuracy"]) <= 1 / 176
    chex.assert_trees_all_close(natural.params, gated.params, atol=1e-4)


def test_a_user_model_that_is_no_model_is_named():
    from jaxprop.train import load_config

    with pytest.raises(ValueError, match=r"model\.kind 'numpy_style:SOFTMAX': module "
                                         r"'numpy_style' has a Loss named 'SOFTMAX'; expected "
                                         r"a jaxprop Model entry"):
        load_config(None, ["model.kind=numpy_style:SOFTMAX"])
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_models'"):
        load_config(None, ["loss.kind=no_such_models:X"])


# ------------------------------------------------------------------- no silent fallback


def _incomplete_beta(x):  # a special function of three arguments: deliberately no gate
    return jnp.sum(jax.scipy.special.betainc(2.0, 3.0, x) * jnp.arange(1.0, 4.0))


@pytest.mark.parametrize("mode", MODES)
def test_a_primitive_without_a_gate_is_an_error_naming_it_and_the_line(mode):
    x = jnp.array([0.3, 0.1, 0.2])
    with pytest.raises(NoGateError) as err:
        MODES[mode][0].grad(_incomplete_beta)(x)
    message = str(err.value)
    assert "the JAX primitive 'regularized_incomplete_beta'" in message
    assert "is deliberately out of jaxprop's gates: betainc" in message  # and why
    assert re.search(r"test_tracer\.py:\d+ \(_incomplete_beta\)", message), message
    assert "allow_jax_rules=True" in message
    grad = MODES[mode][0].grad(_incomplete_beta, allow_jax_rules=True)(x)
    chex.assert_trees_all_close(grad, jax.grad(_incomplete_beta)(x), atol=0)
    _, _, kinds = _observed(lambda: MODES[mode][0].grad(_incomplete_beta,
                                                        allow_jax_rules=True)(x))
    assert "jax" in kinds  # observe reports the operation JAX's own rule took


def test_explain_marks_jax_rules():
    x = jnp.array([0.3, 0.1, 0.2])
    trace = jaxprop.explain(_incomplete_beta, x, allow_jax_rules=True)
    betainc = next(r for r in trace.rows if r.gate == "regularized_incomplete_beta")
    assert betainc.pattern == "JAX's rule"
    assert all(r.pattern in jaxprop.PATTERNS for r in trace.rows if r is not betainc)
    with pytest.raises(NoGateError, match="'regularized_incomplete_beta'"):
        jaxprop.explain(_incomplete_beta, x)


def test_integer_and_boolean_operations_and_casts_need_no_gate():
    def f(x):
        mask = (x > 0).astype(jnp.float32)  # a comparison, then a cast to float
        k = jnp.argmax(x)  # an integer result
        return jnp.sum(x.astype(jnp.float32) * mask) + x[k] + jax.lax.stop_gradient(x).sum()

    x = jnp.array([1.0, -2.0, 3.0])
    chex.assert_trees_all_close(jaxprop.reverse.grad(f)(x), jax.grad(f)(x), atol=0)
    applied = _only_our_rules(lambda: jaxprop.reverse.grad(f)(x), "vjp")
    assert "cast" in applied


# ----------------------------------------------------------------- explicit gates and jit


@pytest.mark.parametrize("mode", MODES)
def test_explicit_gates_in_plain_code_are_applied_once_as_themselves(mode):
    f = lambda x, y, z: gates.mul(x + y, z)  # noqa: E731 - mixed: the + is lifted too
    applied = _only_our_rules(lambda: _grads(mode, f, (-2.0, 5.0, -4.0), (0, 1, 2)),
                              MODES[mode][1])
    assert applied == ["add", "mul"]
    scores, labels = _scores_labels()
    applied = _only_our_rules(lambda: MODES[mode][0].grad(losses.softmax_loss)(scores, labels),
                              MODES[mode][1])
    assert applied == ["softmax_loss"]  # the fused gate, not its forward's jnp operations


def test_nested_jit_and_jaxs_custom_jvp_functions_are_opened():
    import optax

    def f(s, y):
        h = jax.jit(lambda s: jax.nn.relu(s) + jax.nn.sigmoid(s))(s)
        p = jax.nn.softmax(h, axis=1) + jax.nn.log_softmax(h, axis=1)
        return (jnp.sum(p) + jnp.sum(jax.nn.logsumexp(h, axis=1))
                + optax.softmax_cross_entropy_with_integer_labels(h, y).mean())

    s, y = _scores_labels()
    for mode, (module, kind) in MODES.items():
        chex.assert_trees_all_close(module.grad(f)(s, y), jax.grad(f)(s, y), rtol=RTOL,
                                    atol=ATOL, custom_message=mode)
        applied = _only_our_rules(lambda module=module: module.grad(f)(s, y), kind)
        assert {"relu", "sigmoid", "exp", "log", "max"} <= set(applied) or \
            {"relu", "sigmoid", "exp", "log"} <= set(applied)


def test_gated_works_under_plain_jax_transformations():
    f = jaxprop.gated(lambda x: jnp.sum(jnp.tanh(x) ** 3))
    x = jnp.array([0.5, -1.0])
    plain = lambda x: jnp.sum(jnp.tanh(x) ** 3)  # noqa: E731
    chex.assert_trees_all_close(jax.grad(f)(x), jax.grad(plain)(x), rtol=RTOL)
    chex.assert_trees_all_close(jax.hessian(f)(x), jax.hessian(plain)(x), rtol=RTOL)
    chex.assert_trees_all_close(jax.vmap(jax.grad(f))(jnp.stack([x, 2 * x])),
                                jax.vmap(jax.grad(plain))(jnp.stack([x, 2 * x])), rtol=RTOL)
    assert jaxprop.gated(jaxprop.gated(plain)) is jaxprop.gated(plain)


# ---------------------------------------------------------------------- drop-in drivers


@pytest.mark.parametrize("mode", MODES)
def test_has_aux_and_keyword_arguments_like_jax_grad(mode):
    module = MODES[mode][0]

    def f(x, scale=1.0, act="tanh"):
        y = jnp.tanh(x) if act == "tanh" else jnp.maximum(0, x)
        return jnp.sum(y * scale), {"norm": jnp.sum(y * y)}

    x = jnp.array([0.5, -1.0, 2.0])
    (value, aux), grad = module.value_and_grad(f, has_aux=True)(x, scale=3.0, act="relu")
    (want_value, want_aux), want = jax.value_and_grad(f, has_aux=True)(x, scale=3.0, act="relu")
    chex.assert_trees_all_close((value, aux, grad), (want_value, want_aux, want), rtol=RTOL)
    grad, aux = module.grad(f, has_aux=True)(x, scale=2.0)
    chex.assert_trees_all_close((grad, aux), jax.grad(f, has_aux=True)(x, scale=2.0), rtol=RTOL)
    jac, aux = module.jacobian(lambda x: (jnp.tanh(x), x.sum()), has_aux=True)(x)
    chex.assert_trees_all_close((jac, aux), jax.jacrev(lambda x: (jnp.tanh(x), x.sum()),
                                                       has_aux=True)(x), rtol=RTOL)
    with pytest.raises(TypeError, match="has_aux=True f must return a pair"):
        module.grad(lambda x: jnp.sum(x), has_aux=True)(x)


@pytest.mark.parametrize("mode", MODES)
def test_complex_and_integer_outputs_get_jax_grads_error(mode):
    module = MODES[mode][0]
    x = jnp.array([1.0, 2.0])
    with pytest.raises(TypeError, match=r"real floating-point scalar, got dtype complex"):
        module.grad(lambda x: jnp.sum(x * (1 + 2j)))(x)
    with pytest.raises(TypeError, match=r"got dtype int32: an integer or boolean output has "
                                        r"no gradient"):
        module.grad(lambda x: jnp.sum(x).astype(jnp.int32))(x)
    with pytest.raises(TypeError, match=r"argument 0 has a leaf of dtype complex64; jaxprop's "
                                        r"rules are written for real numbers"):
        module.grad(lambda z: jnp.abs(z) ** 2)(jnp.asarray(1 + 2j, jnp.complex64))


@pytest.mark.parametrize("f", [
    lambda x: jnp.sum(jnp.tanh(x) ** 3) + jnp.sum(jnp.outer(x, x) ** 2),
    jaxprop.objective(models.linear_scores, losses.softmax_loss, reg=0.1),
], ids=["natural", "objective"])
def test_hessian_through_our_rules(f):
    if getattr(f, "__name__", "") == "f":  # the objective: params, x, y
        params = {"W": jnp.asarray(np.random.default_rng(0).normal(size=(3, 4))),
                  "b": jnp.zeros(4)}
        args = (params, jnp.asarray(np.random.default_rng(1).normal(size=(5, 3))),
                jnp.array([0, 1, 3, 2, 1]))
    else:
        args = (jnp.array([0.5, -1.0, 0.3]),)
    chex.assert_trees_all_close(jaxprop.hessian(f)(*args), jax.hessian(f)(*args), rtol=RTOL,
                                atol=ATOL)
    applied, rules, kinds = _observed(lambda: jaxprop.hessian(f)(*args))
    assert kinds == {"forward", "vjp", "jvp"}  # our VJP rules, then JVP rules over them


@pytest.mark.parametrize("mode", MODES)
def test_making_a_driver_again_compiles_nothing_again(mode):
    traces = []

    def f(x):
        traces.append(1)
        return jnp.sum(jnp.sin(x) if False else x * x)

    x = jnp.arange(3.0)
    module = MODES[mode][0]
    assert module.grad(f) is module.grad(f)
    for _ in range(20):  # the README's pattern: make the driver where it is used
        module.grad(f)(x)
    assert len(traces) == 1
