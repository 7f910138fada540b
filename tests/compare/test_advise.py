"""advise picks forward mode for tall Jacobians and reverse mode for wide ones."""

import jax
import jax.numpy as jnp
import pytest

from jaxprop import gates
from jaxprop.compare import chain_case, two_layer_loss_case
from jaxprop.compare.advice import Advice, advise

F64 = jnp.float64


def test_tall_jacobian_gets_forward_mode():
    case = chain_case(0, 2, 48, 8, 2, "sigmoid", F64)  # n = 2 inputs, m = 48 outputs
    advice = advise(case.fn, *case.args)
    assert isinstance(advice, Advice)
    assert (advice.mode, advice.n, advice.m, advice.method) == ("forward", 2, 48, "compiled")
    assert 0 < advice.forward.flops < advice.reverse.flops
    assert advice.jacobian_bytes == 2 * 48 * 8
    assert "[48, 2], tall (n < m): use forward mode" in str(advice)


def test_wide_jacobian_gets_reverse_mode():
    # A scalar loss of 6*4 + 4 + 4*3 + 3 = 43 parameters.
    case = two_layer_loss_case(0, 6, 4, 3, 4, 1e-3, F64)
    advice = advise(case.fn, *case.args)
    assert (advice.mode, advice.n, advice.m) == ("reverse", 43, 1)
    assert 0 < advice.reverse.flops < advice.forward.flops
    assert "wide (n > m): use reverse mode" in str(advice)


def test_argnums_picks_the_differentiated_argument():
    x = jnp.ones((1, 3), F64)
    w = jnp.ones((3, 40), F64)
    assert advise(gates.matmul, x, w, argnums=0).mode == "forward"  # n = 3, m = 40
    assert advise(gates.matmul, x, w, argnums=1).n == 120


def test_over_budget_jacobian_is_estimated_from_one_jvp_and_one_vjp():
    case = chain_case(0, 40, 2, 8, 2, "relu", F64)
    advice = advise(case.fn, *case.args, max_bytes=100)  # J is 2 x 40 x 8 = 640 bytes
    assert (advice.mode, advice.method, advice.over_budget) == ("reverse", "estimated", True)
    assert advice.forward.flops > advice.reverse.flops > 0


def test_the_256_gb_jacobian_is_advised_without_compiling_it():
    x = jax.ShapeDtypeStruct((64, 4096), jnp.float32)  # shapes only, nothing runs
    w = jax.ShapeDtypeStruct((4096, 4096), jnp.float32)
    advice = advise(gates.matmul, x, w)
    assert advice.method == "estimated"
    assert advice.jacobian_bytes == 256 * 2**30
    # Each VJP/JVP product alone needs about the operands, not the Jacobian.
    assert advice.reverse.total_bytes < 100 * 2**20
    assert "256.0 GiB, over the budget" in str(advice)
    assert "jaxprop.reverse.vjp" in str(advice)


def test_advise_names_bad_arguments():
    x = jnp.ones((2, 3), F64)
    w = jnp.ones((3, 4), F64)
    with pytest.raises(ValueError, match="jaxprop.advise: argnums 2 is out of range"):
        advise(gates.matmul, x, w, argnums=2)
    with pytest.raises(TypeError, match="argument 0 has a leaf of dtype int32"):
        advise(gates.matmul, jnp.ones((2, 3), jnp.int32), w)
