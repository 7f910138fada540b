"""Every gate through the battery, and the lecture's kink conventions in every mode.

The battery (tests/cases.py) checks each gate's value against plain jnp, and its derivative
across reverse, forward, jvp_from_vjp, JAX autodiff of the reference and central finite
differences; check_grads to order 2; the adjoint test between its JVP and VJP rules; and that
the hand-written rules are the ones that ran.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import (
    GATE_CASES,
    RTOL,
    SWAPPABLE,
    check_battery,
    check_drivers,
    check_observed_rules,
    check_second_order,
    check_swapped_rules,
    scaled_rules,
    split,
)

import jaxprop
from jaxprop import gates, losses

ids = [c.name for c in GATE_CASES]
SWAPPABLE_GATES = [c for c in SWAPPABLE if c.kind == "gate"]


@pytest.mark.parametrize("case", split(GATE_CASES))
def test_battery(case):
    check_battery(case)


@pytest.mark.parametrize("case", split(GATE_CASES))
def test_drivers_agree(case):
    check_drivers(case)


# check_grads to order 2 is the slowest check (six derivative programs per call); it runs on
# the cases marked order2 in the registry: one or two per gate, each with a broadcast or
# constant input where the gate takes one.
SECOND_ORDER = [c for c in GATE_CASES if c.order2]


@pytest.mark.parametrize("case", split(SECOND_ORDER))
def test_check_grads_order2(case):
    check_second_order(case)


def test_second_order_cases_cover_every_gate():
    covered = {c.covers for c in SECOND_ORDER}
    assert covered == set(gates.GATES), set(gates.GATES) - covered



@pytest.mark.parametrize("case", split(GATE_CASES))
def test_observed_rules(case):
    check_observed_rules(case)


@pytest.mark.parametrize("case", split(SWAPPABLE_GATES))
def test_swapped_rule_is_the_one_that_runs(case):
    check_swapped_rules(case)


def test_registry_covers_every_gate():
    covered = {c.gate.name for c in SWAPPABLE_GATES}
    assert covered == set(gates.GATES), set(gates.GATES) - covered


def test_swapping_one_input_rule_changes_only_that_input():
    """mul with only x's VJP rule doubled: x_bar doubles, y_bar is untouched (swap multiplier)."""
    mul_x2 = scaled_rules(gates.mul, "vjp", 2.0, inputs=(0,))
    x, y = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5])
    x_bar, y_bar = jaxprop.reverse.vjp(mul_x2, x, y)[1](jnp.ones(2))
    chex.assert_trees_all_close((x_bar, y_bar), (2.0 * y, x), rtol=RTOL)


# ------------------------------------------------------------------------------------ kinks
# Each kink is checked in reverse mode (our VJP rules), forward mode (our JVP rules),
# jvp_from_vjp, and plain jax.grad/jax.jvp (the default wiring): all share one convention.


def _all_modes_vjp(f, primals, upstream):
    """The cotangents of f at primals for ``upstream``, by every route."""
    return {
        "reverse": jaxprop.reverse.vjp(f, *primals)[1](upstream),
        "jax.vjp": jax.vjp(f, *primals)[1](upstream),
        # forward mode gives J; its transpose applied to upstream, one column per input
        "forward": jax.tree.map(
            lambda j: jnp.tensordot(upstream, j, axes=jnp.ndim(upstream)),
            jaxprop.forward.jacobian(f, tuple(range(len(primals))))(*primals),
        ),
    }


def _all_modes_jvp(f, primals, tangents):
    return {
        "forward": jaxprop.forward.jvp(f, primals, tangents)[1],
        "jvp_from_vjp": jaxprop.forward.jvp_from_vjp(f, primals, tangents)[1],
        "jax.jvp": jax.jvp(f, primals, tangents)[1],
    }


def test_relu_at_zero_passes_nothing():
    x = jnp.array([-1.0, 0.0, 2.0])
    for mode, (x_bar,) in _all_modes_vjp(gates.relu, (x,), jnp.array([5.0, 7.0, 3.0])).items():
        chex.assert_trees_all_close(x_bar, jnp.array([0.0, 0.0, 3.0]), atol=0, custom_message=mode)
    for mode, z_dot in _all_modes_jvp(gates.relu, (x,), (jnp.array([5.0, 7.0, 3.0]),)).items():
        chex.assert_trees_all_close(z_dot, jnp.array([0.0, 0.0, 3.0]), atol=0, custom_message=mode)
    chex.assert_trees_all_close(jaxprop.reverse.grad(lambda x: gates.sum(gates.relu(x)))(x),
                                jnp.array([0.0, 0.0, 1.0]), atol=0)
    chex.assert_trees_all_close(jaxprop.forward.grad(lambda x: gates.sum(gates.relu(x)))(x),
                                jnp.array([0.0, 0.0, 1.0]), atol=0)


def test_max_tie_routes_all_to_the_first_input():
    """At x == y the whole upstream gradient goes to x: none lost, none doubled."""
    x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 5.0])  # tie at index 0
    up = jnp.array([4.0, -1.0, 6.0])
    for mode, (x_bar, y_bar) in _all_modes_vjp(gates.maximum, (x, y), up).items():
        chex.assert_trees_all_close(x_bar, jnp.array([4.0, -1.0, 0.0]), atol=0,
                                    custom_message=mode)
        chex.assert_trees_all_close(y_bar, jnp.array([0.0, 0.0, 6.0]), atol=0,
                                    custom_message=mode)
        chex.assert_trees_all_close(x_bar + y_bar, up, atol=0, custom_message=mode)
    tangents = (jnp.array([10.0, 20.0, 30.0]), jnp.array([-1.0, -2.0, -3.0]))
    for mode, z_dot in _all_modes_jvp(gates.maximum, (x, y), tangents).items():
        chex.assert_trees_all_close(z_dot, jnp.array([10.0, 20.0, -3.0]), atol=0,
                                    custom_message=mode)


def test_max_tie_with_broadcast_input_sums_its_routed_gradient():
    x = jnp.array([[0.5, 2.0], [0.5, -1.0]])
    y = jnp.array([0.5, 0.0])  # ties at x[:, 0]; y is broadcast over rows
    up = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    for mode, (x_bar, y_bar) in _all_modes_vjp(gates.maximum, (x, y), up).items():
        chex.assert_trees_all_close(x_bar, jnp.array([[1.0, 2.0], [3.0, 0.0]]), atol=0,
                                    custom_message=mode)
        chex.assert_trees_all_close(y_bar, jnp.array([0.0, 4.0]), atol=0, custom_message=mode)
        chex.assert_trees_all_close(jnp.sum(x_bar) + jnp.sum(y_bar), jnp.sum(up), atol=0)


def test_max_tie_differs_from_jnp_maximum_by_design():
    """jnp.maximum splits a tie half and half; the lecture's router does not."""
    x = y = jnp.array(2.0)
    assert jax.grad(jnp.maximum, (0, 1))(x, y) == (0.5, 0.5)
    assert jaxprop.reverse.grad(gates.maximum, (0, 1))(x, y) == (1.0, 0.0)
    assert jaxprop.forward.grad(gates.maximum, (0, 1))(x, y) == (1.0, 0.0)


def test_min_tie_routes_all_to_the_first_input():
    """minimum's convention, as maximum's: at x == y the whole gradient goes to x."""
    x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 5.0])  # tie at index 0
    up = jnp.array([4.0, -1.0, 6.0])
    for mode, (x_bar, y_bar) in _all_modes_vjp(gates.minimum, (x, y), up).items():
        chex.assert_trees_all_close(x_bar, jnp.array([4.0, 0.0, 6.0]), atol=0,
                                    custom_message=mode)
        chex.assert_trees_all_close(y_bar, jnp.array([0.0, -1.0, 0.0]), atol=0,
                                    custom_message=mode)
    tangents = (jnp.array([10.0, 20.0, 30.0]), jnp.array([-1.0, -2.0, -3.0]))
    for mode, z_dot in _all_modes_jvp(gates.minimum, (x, y), tangents).items():
        chex.assert_trees_all_close(z_dot, jnp.array([10.0, -2.0, 30.0]), atol=0,
                                    custom_message=mode)


@pytest.mark.parametrize("reduce, x, up, x_bar, z_dot", [
    (lambda x: gates.max(x, 1), [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], [5.0, 7.0],
     [[0.0, 5.0, 0.0], [7.0, 0.0, 0.0]], [2.0, 4.0]),
    (lambda x: gates.min(x, (0, 1)), [[0.0, 1.0], [-1.0, -1.0]], 3.0, [[0.0, 0.0], [3.0, 0.0]],
     3.0),
], ids=["reduce_max_tie", "reduce_min_tie"])
def test_a_reduction_gives_a_tie_to_its_first_winner(reduce, x, up, x_bar, z_dot):
    """max and min over axes: of tied winners, the first in C order takes the gradient (and
    its tangent is the one passed on), in every mode."""
    x = jnp.array(x)
    for mode, (got,) in _all_modes_vjp(reduce, (x,), jnp.array(up)).items():
        chex.assert_trees_all_close(got, jnp.array(x_bar), atol=0, custom_message=mode)
    tangent = jnp.arange(1.0, 1.0 + x.size).reshape(x.shape)  # 1, 2, 3, ... in C order
    for mode, got in _all_modes_jvp(reduce, (x,), (tangent,)).items():
        chex.assert_trees_all_close(got, jnp.array(z_dot), atol=0, custom_message=mode)


def test_constant_side_gets_no_gradient_and_keeps_dtype():
    x = jnp.array([1.0, 2.0], dtype=jnp.float32)
    (x_bar,) = jaxprop.reverse.vjp(lambda x: gates.mul(3.0, gates.add(x, 1.0)), x)[1](
        jnp.ones(2, jnp.float32))
    chex.assert_type(x_bar, jnp.float32)
    chex.assert_trees_all_close(x_bar, jnp.full(2, 3.0, jnp.float32), atol=0)


def test_bias_gradient_sums_over_the_batch():
    """A bias [C] added to scores [N, C] was copied N times: its gradient adds the copies."""
    s, b = jnp.zeros((3, 2)), jnp.zeros(2)
    up = jnp.arange(6.0).reshape(3, 2)
    for mode in (jaxprop.reverse.vjp(gates.add, s, b)[1](up), jax.vjp(gates.add, s, b)[1](up)):
        chex.assert_trees_all_close(mode, (up, jnp.array([6.0, 9.0])), atol=0)


def test_gate_rejects_wrong_arity():
    with pytest.raises(TypeError, match="add takes 2 inputs, got 1"):
        gates.add(jnp.ones(2))


@pytest.mark.parametrize("fn, expected", [
    (lambda x: gates.relu(x), [1.0, 0.0]), (lambda x: gates.maximum(x, 0.0), [1.0, 0.0]),
    (lambda x: gates.maximum(0.0, x), [1.0, 0.0]), (lambda x: gates.minimum(x, 0.0), [0.0, -1.0]),
    (lambda x: gates.minimum(0.0, x), [0.0, -1.0])],
    ids=["relu", "max_xy", "max_yx", "min_xy", "min_yx"])
def test_nan_propagates_through_routers(fn, expected):
    # A diverged model must not look converged: the value keeps NaN as jnp.maximum does.
    out = fn(jnp.array([1.0, jnp.nan, -1.0]))
    assert jnp.isnan(out[1]) and [out[0], out[2]] == expected


@pytest.mark.parametrize("reduce", [jnp.max, jnp.min], ids=["reduce_max", "reduce_min"])
def test_nan_propagates_through_the_reducing_routers(reduce):
    value, grad = jaxprop.reverse.value_and_grad(lambda x: reduce(x))(
        jnp.array([1.0, jnp.nan, -1.0]))
    assert jnp.isnan(value)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 0.0])  # routed to the NaN it picked


def test_svm_loss_propagates_nan_scores():
    assert jnp.isnan(losses.svm_loss(jnp.array([[jnp.nan, 1.0, 2.0]]), jnp.array([0])))
    assert jnp.isnan(losses.svm_loss(jnp.array([[0.0, jnp.nan, 2.0]]), jnp.array([0])))


@pytest.mark.parametrize("gate", [gates.add, gates.mul, gates.maximum], ids=lambda g: g.name)
def test_mixed_dtypes_under_every_mode(gate):
    # The narrower operand's tangent is cast to the output's dtype, as JAX's own rules do.
    x16, y32 = jnp.ones(3, jnp.float16), jnp.full(3, 2.0, jnp.float32)
    f = lambda a: gates.sum(gate(a, y32))  # noqa: E731
    expected = jax.grad(lambda a: jnp.sum(
        {"add": jnp.add, "mul": jnp.multiply, "maximum": jnp.maximum}[gate.name](a, y32)))(x16)
    for grad in (jax.grad(f), jaxprop.reverse.grad(f), jaxprop.forward.grad(f)):
        chex.assert_trees_all_close(grad(x16), expected)


@pytest.mark.parametrize("pipeline", [jaxprop.reverse, jaxprop.forward], ids=["reverse", "forward"])
def test_python_constants_passed_through_f_stay_constants(pipeline):
    f = lambda x, k, act: gates.sum(gates.relu(gates.mul(x, k)) if act == "relu"  # noqa: E731
                                    else gates.mul(x, k))
    x = jnp.array([-1.0, 0.5, 2.0])
    chex.assert_trees_all_close(pipeline.grad(f)(x, 2, "relu"), jnp.array([0.0, 2.0, 2.0]))
    chex.assert_trees_all_close(pipeline.grad(f)(x, 3, "linear"), jnp.full(3, 3.0))
    chex.assert_trees_all_close(pipeline.jacobian(lambda x, k: gates.mul(x, k))(x, 2),
                                2 * jnp.eye(3))


def test_matmul_weight_gradient_in_the_cpu_layout_is_still_x_transpose_dy():
    # From 2**16 elements of x on, the wiring computes x^T dy as (dy^T x)^T on CPU; the small
    # cases of the battery never reach that branch.
    from jaxprop.wiring import CPU_LAYOUT_MIN_SIZE as _CPU_LAYOUT_MIN_SIZE

    kx, kw, ky = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (_CPU_LAYOUT_MIN_SIZE // 128, 128))
    w = jax.random.normal(kw, (128, 3))
    dy = jax.random.normal(ky, (x.shape[0], 3))
    _, pullback = jaxprop.reverse.vjp(gates.matmul, x, w)
    x_bar, w_bar = pullback(dy)
    chex.assert_trees_all_close((x_bar, w_bar), (dy @ w.T, x.T @ dy), rtol=1e-12)


@pytest.mark.parametrize("name", ["neg", "where", "mean_axis0", "expand_dims",
                                  "concatenate_three"])
def test_hessian_through_the_gates_rules_matches_jax(name):
    # the output through tanh, so the Hessian is not zero: forward over reverse through the
    # gate's own VJP rule, then its JVP rule
    case = next(c for c in GATE_CASES if c.name == name)
    f, dyn = case.split(lambda *a: gates.sum(gates.tanh(case.fn(*a))), case.args())
    ref, _ = case.split(lambda *a: jnp.sum(jnp.tanh(case.ref(*a))), case.args())
    argnums = tuple(range(len(dyn)))
    chex.assert_trees_all_close(jaxprop.hessian(f, argnums)(*dyn),
                                jax.hessian(ref, argnums)(*dyn), rtol=RTOL, atol=1e-12)
