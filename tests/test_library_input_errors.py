"""Bad input gets a clear error at trace time (so also under jax.jit) naming what is wrong."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop import gates, losses, models


def eager_and_jitted(fn):
    """The same call, run eagerly and traced by jax.jit: both must raise the same error."""
    return [fn, jax.jit(fn)]


LOSSES = [losses.svm_loss, losses.softmax_loss]
loss_ids = ["svm", "softmax"]


@pytest.mark.parametrize("loss", LOSSES, ids=loss_ids)
def test_batch_mismatch(loss):
    for f in eager_and_jitted(loss):
        with pytest.raises(ValueError, match=r"batch sizes differ: scores \(4, 3\) has N=4 but "
                                             r"labels \(5,\) has N=5"):
            f(jnp.zeros((4, 3)), jnp.zeros(5, jnp.int32))


@pytest.mark.parametrize("loss", LOSSES, ids=loss_ids)
def test_float_labels(loss):
    for f in eager_and_jitted(loss):
        with pytest.raises(TypeError, match=r"labels must be integer class indices.*got dtype "
                                            r"float64.*astype\(jnp.int32\)"):
            f(jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))


@pytest.mark.parametrize("loss", LOSSES, ids=loss_ids)
@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]], ids=["too_big", "negative"])
def test_out_of_range_concrete_labels(loss, bad):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, C\) = \[0, 3\); got values "
                                         rf"from {min(bad)} to {max(bad)}"):
        loss(jnp.zeros((2, 3)), jnp.array(bad))


@pytest.mark.parametrize("loss", LOSSES, ids=loss_ids)
@pytest.mark.parametrize("pipeline", [jaxprop.reverse, jaxprop.forward], ids=["reverse", "forward"])
def test_out_of_range_traced_labels_give_nan_not_a_silent_answer(loss, pipeline):
    # Inside jit the labels are tracers, so no trace-time check can see their values.
    scores = jnp.arange(6.0).reshape(2, 3)
    value, grad = pipeline.value_and_grad(loss)(scores, jnp.array([0, 5]))
    assert jnp.isnan(value)
    assert jnp.all(jnp.isnan(grad[1]))  # the bad row (forward mode's NaN * 0 spreads wider)
    value, grad = pipeline.value_and_grad(loss)(scores, jnp.array([0, 2]))
    assert jnp.isfinite(value) and jnp.all(jnp.isfinite(grad))


@pytest.mark.parametrize("loss", LOSSES, ids=loss_ids)
def test_wrong_rank_scores_and_labels(loss):
    for f in eager_and_jitted(loss):
        with pytest.raises(ValueError,
                           match=r"scores must have rank 2, \[N, C\]; got shape \(3,\)"):
            f(jnp.zeros(3), jnp.zeros(3, jnp.int32))
        with pytest.raises(ValueError, match=r"labels must have rank 1, \[N\]; got shape \(2, 1\)"):
            f(jnp.zeros((2, 3)), jnp.zeros((2, 1), jnp.int32))


def test_matmul_inner_dimension_mismatch():
    for f in eager_and_jitted(gates.matmul):
        with pytest.raises(ValueError, match=r"inner dimensions differ: x \(2, 3\) has D=3 but "
                                             r"w \(4, 5\) has D=4"):
            f(jnp.zeros((2, 3)), jnp.zeros((4, 5)))
        with pytest.raises(ValueError, match=r"w of shape \[D, M\]; got x \(2, 3\) and w \(3,\)"):
            f(jnp.zeros((2, 3)), jnp.zeros(3))


SCORES = [("linear", {"W": jnp.zeros((4, 3)), "b": jnp.zeros(3)}, "W"),
          ("two_layer", {"W1": jnp.zeros((4, 5)), "b1": jnp.zeros(5), "W2": jnp.zeros((5, 3)),
                         "b2": jnp.zeros(3)}, "W1")]


@pytest.mark.parametrize(("model", "params", "w_name"), SCORES, ids=[s[0] for s in SCORES])
def test_model_input_width_mismatch(model, params, w_name):
    scores = models.MODELS[model].scores
    for f in eager_and_jitted(scores):
        with pytest.raises(ValueError, match=rf"input width 7 \(x \(2, 7\)\) does not match "
                                             rf"params\['{w_name}'\] \(4, .\), which expects D=4"):
            f(params, jnp.zeros((2, 7)))


@pytest.mark.parametrize(("model", "params", "w_name"), SCORES, ids=[s[0] for s in SCORES])
def test_model_input_wrong_rank(model, params, w_name):
    scores = models.MODELS[model].scores
    for f in eager_and_jitted(scores):
        with pytest.raises(ValueError,
                           match=r"x must have rank 2, \[N, D\]; got shape \(2, 2, 4\)"):
            f(params, jnp.zeros((2, 2, 4)))


def test_model_params_missing_keys():
    with pytest.raises(ValueError, match=r"params lack \['b2'\]"):
        models.two_layer_scores({"W1": jnp.zeros((4, 5)), "b1": jnp.zeros(5),
                                 "W2": jnp.zeros((5, 3))}, jnp.zeros((2, 4)))


@pytest.mark.parametrize("gate", [gates.exp, gates.relu, gates.sigmoid], ids=lambda g: g.name)
def test_non_float_input_to_a_gate(gate):
    for f in eager_and_jitted(gate):
        with pytest.raises(TypeError, match=rf"{gate.name}: input 0 has dtype int32; gates "
                                            r"take floating-point arrays.*astype\(jnp.float32"):
            f(jnp.arange(3, dtype=jnp.int32))


def test_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"add: input shapes \(\(2, 3\), \(2,\)\) do not "
                                         r"broadcast together"):
        gates.add(jnp.zeros((2, 3)), jnp.zeros(2))


def _loss_fn(params, x, y):
    return losses.softmax_loss(models.linear_scores(params, x), y)


ARGS = ({"W": jnp.zeros((2, 3)), "b": jnp.zeros(3)}, jnp.zeros((4, 2)), jnp.zeros(4, jnp.int32))
PIPELINES = {"reverse": jaxprop.reverse, "forward": jaxprop.forward}


@pytest.mark.parametrize("mode", PIPELINES)
@pytest.mark.parametrize("kind", ["grad", "value_and_grad", "jacobian"])
def test_bad_argnums(mode, kind):
    build = getattr(PIPELINES[mode], kind)
    with pytest.raises(ValueError, match=r"argnums 5 is out of range for f called with 3 "
                                         r"positional arguments"):
        build(_loss_fn, argnums=5)(*ARGS)
    with pytest.raises(TypeError, match=r"argnums must be an int or a non-empty tuple of ints, "
                                        r"got 'W'"):
        build(_loss_fn, argnums="W")(*ARGS)
    with pytest.raises(TypeError, match=r"argument 2 has a leaf of dtype int32; only "
                                        r"floating-point arguments can be differentiated"):
        build(_loss_fn, argnums=(0, 2))(*ARGS)


@pytest.mark.parametrize("mode", PIPELINES)
def test_grad_of_a_non_scalar_function(mode):
    with pytest.raises(TypeError, match=r"f must return a scalar, got \(4, 3\); use "
                                        rf"jaxprop.{mode}"):
        PIPELINES[mode].grad(models.linear_scores)(ARGS[0], ARGS[1])


@pytest.mark.parametrize("mode", PIPELINES)
def test_chunk_size_must_be_positive(mode):
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None, got 0"):
        PIPELINES[mode].jacobian(gates.exp, chunk_size=0)(jnp.ones(3))


@pytest.mark.parametrize("mode", PIPELINES)
def test_jacobian_over_budget_is_refused_before_allocation(mode):
    """The lecture's Q: a [64, 4096] x [4096, 4096] matmul has a Jacobian of 64*4096 outputs
    by 64*4096 + 4096^2 inputs: 36 TB in float64. It is refused at trace time, from shapes
    alone (jax.eval_shape allocates nothing), with the size and what to use instead."""
    x = jax.ShapeDtypeStruct((64, 4096), jnp.float64)
    w = jax.ShapeDtypeStruct((4096, 4096), jnp.float64)
    jac = PIPELINES[mode].jacobian(gates.matmul, (0, 1))
    want = "vjp" if mode == "reverse" else "jvp"
    # 262,144 * 17,039,360 * 8 bytes = 33,280 GiB = 35,734.1 GB
    with pytest.raises(MemoryError, match=rf"262,144 x 17,039,360 float64 entries = "
                                          rf"33,280\.0 GiB \(35,734\.1 GB\), over the budget "
                                          rf"of 1\.0 GiB.*Use jaxprop\.{mode}\.{want}"):
        jax.eval_shape(jac, x, w)


@pytest.mark.parametrize("mode", PIPELINES)
def test_small_max_bytes_budget(mode):
    """With real small arrays: 2*4 outputs x (2*3 + 3*4) inputs x 8 bytes = 1152 bytes."""
    x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
    with pytest.raises(MemoryError, match=r"8 x 18 float64 entries = 0\.0 GiB.*max_bytes="):
        PIPELINES[mode].jacobian(gates.matmul, (0, 1), max_bytes=1000)(x, w)
    jac = PIPELINES[mode].jacobian(gates.matmul, (0, 1), max_bytes=1152)(x, w)  # exactly fits
    assert jac[0].shape == (2, 4, 2, 3)
    assert np.isfinite(np.asarray(jac[1])).all()


def test_sum_and_mean_reject_bad_axes_instead_of_wrapping():
    x = jnp.ones((2, 3))
    for fn in (gates.sum, gates.mean):
        with pytest.raises(ValueError, match=r"axis 5 is out of range for an input of shape "
                                             r"\(2, 3\) \(rank 2\); expected ints in \[-2, 2\)"):
            fn(x, axis=5)
        with pytest.raises(ValueError, match=r"axis -3 is out of range"):
            fn(x, axis=-3)
        with pytest.raises(ValueError, match=r"names the same axis twice"):
            fn(x, axis=(0, -2))


@pytest.mark.parametrize("pipeline", [jaxprop.reverse, jaxprop.forward], ids=["reverse", "forward"])
def test_duplicate_argnums_are_refused(pipeline):
    f = lambda x, y: gates.sum(gates.mul(x, y))  # noqa: E731
    with pytest.raises(ValueError, match=r"argnums \(0, 0\) names the same argument twice"):
        pipeline.grad(f, (0, 0))(jnp.ones(2), jnp.ones(2))


def test_model_params_with_unknown_keys_or_wrong_shapes_are_refused():
    x = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match=r"have unknown keys \['bias'\]"):
        models.linear_scores({"W": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}, x)
    with pytest.raises(ValueError, match=r"params\['b'\] has shape \(1,\); expected \(3,\)"):
        models.linear_scores({"W": jnp.zeros((4, 3)), "b": jnp.zeros(1)}, x)
    with pytest.raises(ValueError, match=r"params\['W2'\] has shape \(6, 3\); expected \(5, 3\)"):
        models.two_layer_scores({"W1": jnp.zeros((4, 5)), "b1": jnp.zeros(5),
                                 "W2": jnp.zeros((6, 3)), "b2": jnp.zeros(3)}, x)


def test_reductions_take_numpy_integer_axes_and_refuse_empty_means():
    x = jnp.arange(6.0).reshape(2, 3)
    for axis in (np.int64(0), np.int32(1), (np.int64(0), 1)):
        chex.assert_trees_all_close(gates.sum(x, axis=axis), jnp.sum(x, axis=axis))
        chex.assert_trees_all_close(gates.mean(x, axis=axis), jnp.mean(x, axis=axis))
    with pytest.raises(ValueError, match=r"mean: the mean over axis None of an input of shape "
                                         r"\(0,\) averages no elements"):
        gates.mean(jnp.zeros((0,)))
    with pytest.raises(ValueError, match=r"averages no elements"):
        gates.mean(jnp.zeros((2, 0)), axis=1)
