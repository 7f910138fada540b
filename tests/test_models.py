"""The models, alone and through jaxprop.objective: the battery, NumPy backprop written from
the lecture, and plain JAX transformations (grad, jvp, vmap, hessian) of the same functions."""

import unittest.mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import (
    ATOL,
    MODEL_CASES,
    RTOL,
    check_battery,
    check_drivers,
    check_observed_rules,
    check_second_order,
    ref_objective,
    ref_softmax,
    ref_svm,
    ref_two_layer,
    scaled_rules,
    softmax_loss_naive,
    split,
    svm_loss_naive,
)

import jaxprop
from jaxprop import gates, losses, models

ids = [c.name for c in MODEL_CASES]
BY_NAME = {c.name: c for c in MODEL_CASES}
# check_grads to order 2 is the slowest check (about 5 s per objective); these two
# objectives exercise both models, both losses and the penalty, so they carry it.
SECOND_ORDER = [BY_NAME["objective_linear_svm_reg0.1"],
                BY_NAME["objective_two_layer_softmax_reg0.01"]]


@pytest.mark.parametrize("case", split(MODEL_CASES))
def test_battery(case):
    check_battery(case)


@pytest.mark.parametrize("case", split(MODEL_CASES))
def test_drivers_agree(case):
    check_drivers(case)


@pytest.mark.parametrize("case", split(SECOND_ORDER))
def test_check_grads_order2(case):
    check_second_order(case)



@pytest.mark.parametrize("case", split(MODEL_CASES))
def test_observed_rules(case):
    check_observed_rules(case)


# ------------------------------------------------------------- NumPy backprop, as lectured


def _linear_naive(params, x, y, loss_naive, reg):
    """Linear classifier, forward and backward by hand: s = xW + b, dW = x^T ds + 2 reg W."""
    w, b = np.asarray(params["W"]), np.asarray(params["b"])
    x = np.asarray(x)
    loss, ds = loss_naive(x @ w + b, y)
    return loss + reg * np.sum(w * w), {"W": x.T @ ds + 2 * reg * w, "b": ds.sum(axis=0)}


def _two_layer_naive(params, x, y, loss_naive, reg):
    """Two-layer net as staged code: each backward line mirrors one forward line."""
    p = {k: np.asarray(v) for k, v in params.items()}
    x = np.asarray(x)
    a = x @ p["W1"] + p["b1"]
    h = np.maximum(a, 0)
    s = h @ p["W2"] + p["b2"]
    loss, ds = loss_naive(s, y)
    dw2, db2, dh = h.T @ ds, ds.sum(axis=0), ds @ p["W2"].T
    da = dh * (a > 0)  # ReLU passes the gradient only where its input was > 0
    dw1, db1 = x.T @ da, da.sum(axis=0)
    penalty = np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)
    grads = {"W1": dw1 + 2 * reg * p["W1"], "b1": db1, "W2": dw2 + 2 * reg * p["W2"], "b2": db2}
    return loss + reg * penalty, grads


@pytest.mark.parametrize("model", ["linear", "two_layer"])
@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_objective_matches_numpy_backprop(model, loss):
    naive_model = {"linear": _linear_naive, "two_layer": _two_layer_naive}[model]
    naive_loss = {"svm": svm_loss_naive, "softmax": softmax_loss_naive}[loss]
    entry = models.MODELS[model]
    scores = entry.scores
    key = jax.random.PRNGKey(0)
    params = entry.init(key, 4, 3, hidden_dim=5, weight_scale=0.5, bias=True,
                        dtype=jnp.float64)
    params = jax.tree.map(lambda p: p + 0.1, params)  # nonzero biases
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.integers(0, 3, 6), jnp.int32)
    f = jaxprop.objective(scores, losses.LOSSES[loss].fn, reg=0.3)
    want_value, want_grads = naive_model(params, x, np.asarray(y), naive_loss, 0.3)
    both = jax.jit(lambda *a: [m.value_and_grad(f)(*a) for m in (jaxprop.reverse,
                                                                   jaxprop.forward)])
    for value, grads in both(params, x, y):
        chex.assert_trees_all_close(value, want_value, rtol=RTOL, atol=ATOL)
        chex.assert_trees_all_close(grads, want_grads, rtol=RTOL, atol=ATOL)


# -------------------------------------------------- plain JAX transformations of the models


@pytest.mark.parametrize("model", ["linear", "two_layer"])
def test_swapped_matmul_rules_through_the_objective(model):
    """With matmul's VJP rules doubled, our reverse mode scales each gradient by 2 per matmul
    on its path (W1 sits behind two: x4) and forward mode is unchanged; with its JVP rules
    tripled, forward mode and plain jax.grad scale by 3 per matmul (W1: x9) and our reverse
    mode is unchanged. So the model's gradient flows through the hand-written rules."""
    case = BY_NAME[f"objective_{model}_{'svm' if model == 'linear' else 'softmax'}"
                   f"_reg{0.1 if model == 'linear' else 0.01}"]
    params, x, y = case.args()
    scores = models.MODELS[model].scores
    loss = losses.svm_loss if model == "linear" else losses.softmax_loss
    hops = ({"W": 1, "b": 0} if model == "linear" else {"W1": 2, "b1": 1, "W2": 1, "b2": 0})

    def grads(matmul):
        with unittest.mock.patch.object(gates, "matmul", matmul):
            # a fresh objective per variant: the drivers, like jax.jit, are cached per function
            f = jaxprop.objective(scores, loss, reg=0)  # no penalty: only the data path
            return jax.jit(lambda p: (jaxprop.reverse.grad(f)(p, x, y),
                                      jaxprop.forward.grad(f)(p, x, y),
                                      jax.grad(f)(p, x, y)))(params)

    rev, fwd, plain = grads(gates.matmul)
    chex.assert_trees_all_close(rev, fwd, plain, rtol=RTOL, atol=ATOL)
    rev2, fwd2, plain2 = grads(scaled_rules(gates.matmul, "vjp", 2.0))
    rev3, fwd3, plain3 = grads(scaled_rules(gates.matmul, "jvp", 3.0))
    close = dict(rtol=RTOL, atol=ATOL)
    for k, n in hops.items():
        assert float(jnp.abs(rev[k]).max()) > 1e-6, k
        chex.assert_trees_all_close(rev2[k], 2.0**n * rev[k], **close, custom_message=k)
        chex.assert_trees_all_close(fwd2[k], fwd[k], plain2[k], **close, custom_message=k)
        chex.assert_trees_all_close(fwd3[k], plain3[k], 3.0**n * fwd[k], **close,
                                    custom_message=k)
        chex.assert_trees_all_close(rev3[k], rev[k], **close, custom_message=k)


@pytest.fixture(scope="module")
def two_layer_problem():
    case = BY_NAME["objective_two_layer_softmax_reg0.01"]
    params, x, y = case.args()
    return case, params, x, y


@pytest.mark.parametrize("name", ["objective_linear_svm_reg0.1",
                                  "objective_two_layer_softmax_reg0.01"])
def test_plain_jax_grad_jvp_hessian_of_objective(name):
    """jax.grad, jax.jvp and jax.hessian of the jaxprop objective (our JVP rules, which JAX
    transposes and differentiates again) match those of the plain-jnp reference."""
    case = BY_NAME[name]
    params, x, y = case.args()

    @jax.jit
    def derivatives(params, x, y, dp):
        out = {}
        for name, f in (("ours", case.fn), ("ref", case.ref)):
            out[name] = (jax.grad(f, (0, 1))(params, x, y),
                         jax.jvp(lambda p, f=f: f(p, x, y), (params,), (dp,)),
                         jax.hessian(f)(params, x, y))
        return out

    dp = jax.tree.map(jnp.ones_like, params)
    r = derivatives(params, x, y, dp)
    chex.assert_trees_all_close(r["ours"], r["ref"], rtol=RTOL, atol=ATOL)
    # The Hessian is not trivially zero (softmax curvature; the penalty's 2 reg I).
    w = "W" if "linear" in name else "W2"
    assert float(jnp.abs(r["ours"][2][w][w]).max()) > 1e-3


def test_plain_jax_vmap_of_models_and_pipelines(two_layer_problem):
    case, params, x, y = two_layer_problem
    xs = jnp.stack([x, 2.0 * x])

    @jax.jit
    def batched(params, xs, x, y):
        per_example = (None, 0, 0)
        return {
            "scores": jax.vmap(models.two_layer_scores, (None, 0))(params, xs),
            "scores_ref": jax.vmap(ref_two_layer, (None, 0))(params, xs),
            # per-example gradients: vmap over the batch of one-example objectives
            "rev": jax.vmap(jaxprop.reverse.grad(case.fn), per_example)(params, x[:, None],
                                                                      y[:, None]),
            "fwd": jax.vmap(jaxprop.forward.grad(case.fn), per_example)(params, x[:, None],
                                                                      y[:, None]),
            "ref": jax.vmap(jax.grad(case.ref), per_example)(params, x[:, None], y[:, None]),
        }

    r = batched(params, xs, x, y)
    chex.assert_trees_all_close(r["scores"], r["scores_ref"], rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(r["rev"], r["fwd"], r["ref"], rtol=RTOL, atol=ATOL)
    chex.assert_shape(r["rev"]["W1"], (x.shape[0],) + params["W1"].shape)


def test_vmap_over_regularisation_strength(two_layer_problem):
    """reg may be a traced scalar: a sweep vmaps the objective over it."""
    _, params, x, y = two_layer_problem
    regs = jnp.array([0.0, 0.1, 1.0])

    def grad_at(reg, fn):
        return jaxprop.reverse.grad(fn(models.two_layer_scores, losses.svm_loss, reg))(params, x, y)

    @jax.jit
    def sweep(regs):
        ours = jax.vmap(lambda r: grad_at(r, jaxprop.objective))(regs)
        ref = jax.vmap(lambda r: jax.grad(ref_objective(ref_two_layer, ref_svm, r))(
            params, x, y))(regs)
        return ours, ref

    ours, ref = sweep(regs)
    chex.assert_trees_all_close(ours, ref, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(ours["W1"][2] - ours["W1"][1], 2 * 0.9 * params["W1"], rtol=RTOL)


def test_reg_zero_leaves_the_penalty_out():
    f = jaxprop.objective(models.linear_scores, losses.softmax_loss, reg=0)
    params = {"W": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    x, y = jnp.ones((4, 2)), jnp.array([0, 1, 2, 0])
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(f)(params, x, y)
    applied = [e.gate.name for e in events]
    assert "softmax_loss" in applied and "copy" not in applied  # no l2_penalty gates
    chex.assert_trees_all_close(jax.jit(f)(params, x, y), ref_softmax(x @ params["W"], y),
                                rtol=RTOL)


# ------------------------------------------------------------------------------------ init


def test_init_shapes_dtypes_and_zero_biases():
    key = jax.random.PRNGKey(0)
    lin = models.linear_init(key, 5, 3)
    chex.assert_shape((lin["W"], lin["b"]), ((5, 3), (3,)))
    chex.assert_type((lin["W"], lin["b"]), jnp.float32)
    two = models.two_layer_init(key, 5, 4, 3, dtype=jnp.float64)
    chex.assert_shape([two[k] for k in ("W1", "b1", "W2", "b2")], [(5, 4), (4,), (4, 3), (3,)])
    chex.assert_type(list(two.values()), jnp.float64)
    chex.assert_trees_all_close((lin["b"], two["b1"], two["b2"]), (0 * lin["b"],
                                0 * two["b1"], 0 * two["b2"]), atol=0)
    assert float(jnp.std(lin["W"])) < 1e-2  # weight_scale=1e-3, as CS231n initialises it


def test_float32_in_float32_out_in_every_mode():
    """Data loaders give float32; every mode keeps it, and agrees with float64 to float32
    precision (atol 1e-5: a few ulps of float32 on gradients of size ~1)."""
    case = BY_NAME["objective_two_layer_softmax_reg0.01"]
    params, x, y = case.args()
    p32, x32 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x))

    @jax.jit
    def every_mode(p, x, y):
        return [jaxprop.reverse.grad(case.fn)(p, x, y), jaxprop.forward.grad(case.fn)(p, x, y),
                jax.grad(case.fn)(p, x, y)]

    want = jax.grad(case.ref)(params, x, y)
    for grads in every_mode(p32, x32, y):
        chex.assert_type(list(grads.values()), jnp.float32)
        chex.assert_trees_all_close(grads, want, atol=1e-5, rtol=1e-5)


def test_the_twins_share_the_lectures_relu_kink():
    """One set of plain-jnp twins (jaxprop.reference): at a hidden pre-activation of exactly 0,
    JAX's own autodiff of the twin passes no gradient, as our relu gate does in both modes."""
    from jaxprop import reference

    params = {"W1": jnp.array([[1.0, -1.0]]), "b1": jnp.array([0.0, 0.5]),
              "W2": jnp.array([[2.0], [3.0]]), "b2": jnp.zeros(1)}
    x = jnp.array([[0.0]])  # x W1 + b1 = [0, 0.5]: the first unit sits on its kink

    def total(scores_fn):
        return lambda p: jnp.sum(scores_fn(p, x))

    want = jax.grad(total(reference.two_layer_scores))(params)
    assert float(want["b1"][0]) == 0.0 and float(want["b1"][1]) == 3.0
    for grad in (jaxprop.reverse.grad, jaxprop.forward.grad, jax.grad):
        got = grad(lambda p: gates.sum(models.two_layer_scores(p, x)))(params)
        chex.assert_trees_all_close(got, want, atol=0)
