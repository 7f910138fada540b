"""The losses: the battery, the lecture's NumPy loops, stability, kinks and the L2 rule."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import (
    ATOL,
    LOSS_CASES,
    RTOL,
    check_battery,
    check_drivers,
    check_observed_rules,
    check_second_order,
    check_swapped_rules,
    softmax_loss_naive,
    svm_loss_naive,
)

import jaxprop
from jaxprop import losses, models

ids = [c.name for c in LOSS_CASES]
SWAPPABLE_LOSSES = [c for c in LOSS_CASES if c.apply is not None]
NAIVE = {"svm": (losses.svm_loss, svm_loss_naive),
         "softmax": (losses.softmax_loss, softmax_loss_naive)}


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids)
def test_battery(case):
    check_battery(case)


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids)
def test_drivers_agree(case):
    check_drivers(case)


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids)
def test_check_grads_order2(case):
    check_second_order(case)



@pytest.mark.parametrize("case", LOSS_CASES, ids=ids)
def test_observed_rules(case):
    check_observed_rules(case)


@pytest.mark.parametrize("case", SWAPPABLE_LOSSES, ids=[c.name for c in SWAPPABLE_LOSSES])
def test_swapped_fused_rule_is_the_one_that_runs(case):
    check_swapped_rules(case)


def _batch(seed, n=6, c=4, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)) * scale, rng.integers(0, c, size=n).astype(np.int32)


@pytest.mark.parametrize("name", NAIVE)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_lectures_naive_loops(name, seed):
    """Value and gradient against CS231n's svm_loss_naive / softmax_loss_naive loops."""
    loss, naive = NAIVE[name]
    scores, labels = _batch(seed, scale=2.0)
    want_loss, want_grad = naive(scores, labels)
    s, y = jnp.asarray(scores), jnp.asarray(labels)
    direction = jnp.asarray(np.random.default_rng(seed).normal(size=s.shape))

    @jax.jit
    def every_mode(s, y, direction):
        return {"reverse": jaxprop.reverse.value_and_grad(loss)(s, y),
                "forward": jaxprop.forward.value_and_grad(loss)(s, y),
                "jax": jax.value_and_grad(loss)(s, y),
                "slope": jaxprop.forward.jvp_from_vjp(lambda s: loss(s, y), (s,), (direction,))}

    r = every_mode(s, y, direction)
    for mode in ("reverse", "forward", "jax"):
        chex.assert_trees_all_close(r[mode], (want_loss, want_grad), rtol=RTOL, atol=ATOL,
                                    custom_message=mode)
    chex.assert_trees_all_close(r["slope"], (want_loss, np.sum(want_grad * np.asarray(direction))),
                                rtol=RTOL, atol=ATOL)


def test_svm_sums_margins_unlike_optax_hinge():
    """The lecture sums all positive margins; a max-margin hinge would give 2.9, not 5.8."""
    scores = jnp.array([[3.2, 5.1, -1.7]])  # the lecture's cat image, label 0
    value = losses.svm_loss(scores, jnp.array([0]))
    chex.assert_trees_all_close(value, 2.9 + 0.0, rtol=RTOL)  # max(0, 5.1-3.2+1) + max(0, -3.9)
    scores = jnp.array([[2.2, 2.5, -3.1], [1.3, 4.9, 2.0]])
    value = losses.svm_loss(scores, jnp.array([0, 0]))  # 1.3 + 0 for row 0, 4.6 + 1.7 for row 1
    chex.assert_trees_all_close(value, (1.3 + 4.6 + 1.7) / 2, rtol=RTOL)


def test_hinge_margin_of_exactly_zero_gives_no_gradient():
    """Row 0: s_0 - s_1 + 1 == 0 exactly (no gradient); s_2 - s_1 + 1 = 0.5 > 0 (gradient)."""
    s, y = jnp.array([[0.0, 1.0, 0.5], [2.0, 0.0, -3.0]]), jnp.array([1, 0])
    want = np.array([[0.0, -1.0, 1.0], [0.0, 0.0, 0.0]]) / 2
    chex.assert_trees_all_close(svm_loss_naive(np.asarray(s), np.asarray(y))[1], want, atol=0)

    @jax.jit
    def every_mode(s, y):
        def slope(t):
            return jaxprop.forward.jvp_from_vjp(lambda s: losses.svm_loss(s, y), (s,), (t,))[1]

        return {
            "reverse": jaxprop.reverse.grad(losses.svm_loss)(s, y),
            "forward": jaxprop.forward.grad(losses.svm_loss)(s, y),
            "jax.grad": jax.grad(losses.svm_loss)(s, y),
            "jvp_from_vjp": jax.vmap(slope)(jnp.eye(6).reshape(6, 2, 3)).reshape(2, 3),
        }

    grads = every_mode(s, y)
    for mode, g in grads.items():
        chex.assert_trees_all_close(g, want, atol=0, custom_message=mode)
    # A margin of exactly 0 adds nothing to the loss either.
    chex.assert_trees_all_close(losses.svm_loss(s, y), 0.5 / 2, atol=0)


@pytest.mark.parametrize("loss", [losses.softmax_loss, losses.svm_loss], ids=["softmax", "svm"])
def test_finite_for_logits_of_1e4(loss):
    s = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4]])
    y = jnp.array([1, 0, 2])
    modes = jax.jit(lambda s, y: [jaxprop.reverse.value_and_grad(loss)(s, y),
                                  jaxprop.forward.value_and_grad(loss)(s, y),
                                  jax.value_and_grad(loss)(s, y)])
    for value, grad in modes(s, y):
        assert jnp.isfinite(value) and jnp.all(jnp.isfinite(grad)), (value, grad)
    if loss is losses.softmax_loss:
        # Row 0 puts mass 1 on class 0, label 1: -log p_1 = 2e4; row 1 ties classes 1 and 2.
        want = (2e4 + 2e4 + np.log(2.0) + (1e4 + np.log(2.0))) / 3
        chex.assert_trees_all_close(value, want, rtol=RTOL)
        p = np.array([[1, 0, 0], [0, 0.5, 0.5], [0.5, 0.5, 0]])
        chex.assert_trees_all_close(grad, (p - np.eye(3)[[1, 0, 2]]) / 3, rtol=RTOL, atol=ATOL)


def test_softmax_loss_of_equal_scores_is_log_c():
    """The lecture's sanity check: with small equal scores the loss is log C."""
    value = losses.softmax_loss(jnp.zeros((5, 10)), jnp.arange(5))
    chex.assert_trees_all_close(value, np.log(10.0), rtol=RTOL)


def test_l2_penalty_gradient_is_2w_and_skips_biases():
    params = {"W1": jnp.arange(6.0).reshape(2, 3), "b1": jnp.ones(3),
              "W2": -jnp.arange(3.0).reshape(3, 1), "b2": jnp.ones(1)}
    want = {"W1": 2 * params["W1"], "b1": jnp.zeros(3), "W2": 2 * params["W2"], "b2": jnp.zeros(1)}
    chex.assert_trees_all_close(losses.l2_penalty(params), 55.0 + 5.0, rtol=RTOL)
    modes = jax.jit(lambda p: [jaxprop.reverse.grad(losses.l2_penalty)(p),
                               jaxprop.forward.grad(losses.l2_penalty)(p),
                               jax.grad(losses.l2_penalty)(p)])
    for g in modes(params):
        chex.assert_trees_all_close(g, want, atol=0)


def test_l2_penalty_without_weights_is_an_error():
    with pytest.raises(ValueError, match="no weight matrix"):
        losses.l2_penalty({"b": jnp.ones(3)})


@pytest.mark.parametrize("loss", [losses.softmax_loss, losses.svm_loss])
def test_complex_scores_are_refused(loss):
    scores = jnp.ones((2, 3), jnp.complex64)
    with pytest.raises(TypeError, match=r"scores must be real floating-point \[N, C\]; got "
                                        r"dtype complex64"):
        loss(scores, jnp.array([0, 1]))


@pytest.mark.parametrize("reg, error, match", [
    (jnp.ones(3), ValueError, r"objective: reg must be a scalar .*; got shape \(3,\)"),
    (np.ones((1,)), ValueError, r"got shape \(1,\)"),
    (1j, TypeError, r"reg must be a real number; got dtype complex"),
    (True, TypeError, r"reg must be a number; got a bool"),
])
def test_objective_refuses_a_reg_that_is_not_one_number(reg, error, match):
    with pytest.raises(error, match=match):
        losses.objective(models.linear_scores, losses.softmax_loss, reg)
    # under vmap a traced scalar reg is fine: the loss stays a scalar per reg
    f = losses.objective(models.linear_scores, losses.softmax_loss, 0.1)
    params = {"W": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    assert jnp.shape(f(params, jnp.ones((2, 4)), jnp.array([0, 1]))) == ()
    g = jax.vmap(lambda r: losses.objective(models.linear_scores, losses.softmax_loss, r)(
        params, jnp.ones((2, 4)), jnp.array([0, 1])))
    assert g(jnp.array([0.0, 0.1, 1.0])).shape == (3,)
