"""The six Jacobian pipelines agree, run the rules they claim, and are measured right."""

import math

import chex
import jax
import jax.numpy as jnp
import pytest

from jaxprop import forward, gates, observe, reverse
from jaxprop.compare import (
    PIPELINES,
    Cost,
    chain_case,
    compile_fn,
    cost_of,
    crossover,
    deep_case,
    jacobian_pipelines,
    measure_case,
    memory_of,
    two_layer_loss_case,
)
from jaxprop.compare import plan as plan_lib
from jaxprop.compare import problems as cases
from jaxprop.compare import sections as sweeps
from jaxprop.compare.measure import flops_from_analysis, time_interleaved

MODE = {name: p.mode for name, p in PIPELINES.items()}

F64 = jnp.float64
KEY = 0  # the seed of every case's NumPy-drawn data


AGREEMENT_CASES = [
    chain_case(KEY, 2, 5, 4, 3, "sigmoid", F64),  # tall
    deep_case(KEY, 6, 4, 2, "relu", F64),  # wide: a scalar of 6 inputs
    two_layer_loss_case(KEY, 4, 3, 3, 5, 1e-3, F64),  # w.r.t. a dict of parameters
]


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=lambda c: c.name)
def test_six_pipelines_agree(case):
    fns = jacobian_pipelines(case.fn, case.twin, case.argnums)
    assert list(fns) == list(PIPELINES)
    reference = fns["reverse-jax"](*case.args)  # JAX's own rules on the plain-jnp twin
    for name, jac in fns.items():
        chex.assert_trees_all_close(jac(*case.args), reference, rtol=1e-6, atol=1e-12,
                                    custom_message=name)


def test_measure_case_gives_one_checked_row_per_pipeline():
    case = chain_case(KEY, 3, 4, 2, 1, "sigmoid", F64)
    rows = measure_case(case, repeats=1, section="test")
    assert [r["pipeline"] for r in rows] == list(PIPELINES)
    for row in rows:
        assert row["max_rel_err"] < 1e-12, row
        assert row["flops"] > 0 and row["time_s"] > 0, row
        assert row["output_bytes"] == 8 * 4 * 3, row  # the [4, 3] float64 Jacobian
        assert row["total_bytes"] == row["temp_bytes"] + row["argument_bytes"] \
            + row["output_bytes"]
        assert (row["mode"], row["n"], row["m"]) == (MODE[row["pipeline"]], 3, 4)


def test_each_pipeline_runs_the_rules_it_claims():
    case = chain_case(KEY, 2, 3, 2, 2, "sigmoid", F64)
    expected = {
        "reverse-ours": {"vjp"},
        "reverse-transposed-jvp": {"jvp"},
        "reverse-jax": set(),
        "forward-ours": {"jvp"},
        "forward-jvp_from_vjp": {"vjp"},
        "forward-jax": set(),
    }
    for name, jac in jacobian_pipelines(case.fn, case.twin, 0).items():
        events = []
        with observe(events.append):
            jax.make_jaxpr(jac)(*case.args)  # rules are observed at trace time
        assert {e.kind for e in events} - {"forward"} == expected[name], name


def test_twins_compute_the_same_values():
    case = chain_case(KEY, 3, 2, 4, 2, "relu", F64)
    chex.assert_trees_all_close(case.fn(*case.args), case.twin(*case.args), rtol=1e-6)


def test_chain_case_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'tanh'; expected one of"):
        chain_case(KEY, 2, 2, 2, 1, "tanh")


@pytest.mark.parametrize(
    "analysis, expected",
    [({"flops": 12.0}, 12.0), ([{"flops": 2.0}, {"flops": 3.0}], 5.0), (None, math.nan),
     ({"bytes accessed": 4.0}, math.nan), ([], math.nan)],
)
def test_flops_from_analysis_takes_every_version_shape(analysis, expected):
    got = flops_from_analysis(analysis)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_flops_from_analysis_rejects_other_types():
    with pytest.raises(TypeError, match="cost_analysis\\(\\) returned int"):
        flops_from_analysis(3)


def test_cost_of_a_matmul_counts_2ndm_flops_and_its_buffers():
    n, d, m = 8, 16, 4
    x = jax.ShapeDtypeStruct((n, d), jnp.float32)
    w = jax.ShapeDtypeStruct((d, m), jnp.float32)
    cost = cost_of(compile_fn(jnp.matmul, x, w))
    assert isinstance(cost, Cost)
    assert cost.flops == 2 * n * d * m
    assert cost.argument_bytes == 4 * (n * d + d * m)
    assert cost.output_bytes == 4 * n * m
    assert memory_of(compile_fn(jnp.matmul, x, w))[1:] == (cost.argument_bytes,
                                                           cost.output_bytes)


def test_time_interleaved_gives_a_median_per_function():
    x = jnp.ones((4,), jnp.float32)
    times = time_interleaved({"a": jax.jit(jnp.sin), "b": jax.jit(jnp.cos)}, (x,), 3,
                             min_sample_s=1e-4)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    with pytest.raises(ValueError, match="repeats must be a positive int, got 0"):
        time_interleaved({"a": jnp.sin}, (x,), 0)


def test_crossover_interpolates_in_log_n_over_m():
    rows = []
    for ratio, t_fwd, t_rev in ((0.25, 1.0, 4.0), (1.0, 2.0, 2.0 * 4 ** 0.0 / 1.0 * 2.0),
                                (4.0, 8.0, 1.0)):
        rows += [{"pipeline": "f", "n_over_m": ratio, "time_s": t_fwd},
                 {"pipeline": "r", "n_over_m": ratio, "time_s": t_rev}]
    # log(f/r): -log 4, -log 2, +log 8: the sign changes between 1 and 4, at t = 1/4.
    assert crossover(rows, "f", "r") == pytest.approx(4.0 ** 0.25)
    assert crossover(rows[:2], "f", "r") is None


def test_the_256_gb_jacobian_is_refused_before_anything_is_allocated():
    x = jax.ShapeDtypeStruct((64, 4096), jnp.float32)  # shapes only: no array exists
    w = jax.ShapeDtypeStruct((4096, 4096), jnp.float32)
    with pytest.raises(MemoryError, match=r"262,144 x 262,144 float32 entries = 256\.0 GiB "
                       r"\(274\.9 GB\).*Use jaxprop\.reverse\.vjp"):
        reverse.jacobian(gates.matmul, 0).lower(x, w)
    with pytest.raises(MemoryError, match=r"256\.0 GiB.*Use jaxprop\.forward\.jvp"):
        forward.jacobian(gates.matmul, 0).lower(x, w)
    with pytest.raises(MemoryError, match=r"262,144 x 17,039,360 float32 entries"):
        reverse.jacobian(gates.matmul, (0, 1)).lower(x, w)


def test_the_vjp_of_the_big_matmul_needs_only_linear_memory():
    big = sweeps.big_jacobian(plan_lib.BigJacobian(batch=64, input=4096, output=4096,
                                                   run=False),
                              jnp.float32, repeats=1, log=lambda message: None)
    n, d, m = 64, 4096, 4096
    assert big["jacobian_x_bytes"] == 256 * 2**30  # the lecture's "256 GB"
    assert big["jacobian_xw_entries"] == (n * m) * (n * d + d * m)
    assert big["operand_bytes"] == 4 * (n * d + d * m + n * m)
    # x, w, y_bar in; x_bar, w_bar out; at most a few more such buffers of scratch.
    assert big["vjp_argument_bytes"] == big["operand_bytes"]
    assert 4 * (n * d + d * m) <= big["vjp_output_bytes"] <= 4 * (n * d + d * m) + 64
    assert big["vjp_total_bytes"] < 4 * big["operand_bytes"] < big["jacobian_x_bytes"] / 100
    assert big["vjp_flops"] == pytest.approx(2 * 2 * n * d * m, rel=0.01)
    assert all("GiB" in message for message in big["refusals"].values())


def test_cheap_gradient_reverse_is_a_constant_forward_grows():
    cfg = plan_lib.CheapGradient(input=4, hiddens=(2, 8), classes=3, batch=2, reg=1e-3)
    programs = ("forward pass", "reverse-ours grad", "forward-ours grad", "jvp (ours)",
                "jvp_from_vjp")
    rows = sweeps.cheap_gradient_sweep(cfg, KEY, F64, repeats=1, log=lambda message: None,
                                       programs=programs)
    by = {(r["hidden"], r["program"]): r for r in rows}
    for h in cfg.hiddens:
        assert 1 < by[h, "reverse-ours grad"]["flops_over_forward"] < 6
        assert by[h, "forward-ours grad"]["flops_over_forward"] > by[h, "forward pass"]["params"]
        # Two reverse passes cost what one JVP does: the second pass transposes the pullback,
        # a linear map, symbolically, so the primal never runs twice (Autograd measured 1.5x).
        assert 0.95 < by[h, "jvp_from_vjp"]["unoptimized_flops_over_jvp"] < 1.05
        assert 0.95 < by[h, "jvp_from_vjp"]["flops_over_jvp"] < 1.05
    assert (by[8, "forward-ours grad"]["flops_over_forward"]
            > 2 * by[2, "forward-ours grad"]["flops_over_forward"])


def test_param_count():
    assert cases.param_count({"W": jnp.zeros((3, 4)), "b": jnp.zeros((4,))}) == 16


def test_cheap_gradient_sweep_names_bad_programs():
    with pytest.raises(ValueError, match="programs must be among"):
        sweeps.cheap_gradient_sweep(plan_lib.CheapGradient(), KEY, F64, 1,
                                    programs=("backward pass",))
