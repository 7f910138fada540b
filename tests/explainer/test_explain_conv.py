"""explain shows a convolution as one gate: its pattern, its rules' text with the shapes, the
gradients jax.grad gives, and value summaries (never a 4-D array written out)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxprop
from jaxprop.explainer import render


def conv_relu(x, w):
    return jnp.sum(jax.nn.relu(lax.conv_general_dilated(x, w, (1, 1), "SAME")))


def _args():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(1, 2, 4, 4))), jnp.asarray(rng.normal(size=(3, 2, 3, 3)))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_a_convolution_is_one_gate_with_its_rules(mode):
    x, w = _args()
    tangents = (jnp.ones_like(x), jnp.zeros_like(w)) if mode == "forward" else None
    trace = jaxprop.explain(conv_relu, x, w, mode=mode, tangents=tangents)
    assert [r.gate for r in trace.rows] == ["conv", "relu", "sum"]
    row = trace.rows[0]
    assert (row.pattern, row.symbol, row.input_names) == ("switcher", "conv", ("x", "w"))
    if mode == "reverse":
        assert row.local.startswith("dx = dy convolved full with flipped w  [1, 2, 4, 4]; "
                                    "dw = x correlated with dy  [3, 2, 3, 3]; local Jacobian "
                                    "by the rule: x [48, 32] min ")
        jx = row.local_values[0]  # the VJP rule applied to unit vectors: [y size, x size]
        np.testing.assert_allclose(jx.T @ np.ravel(row.upstream), np.ravel(row.downstream[0]),
                                   rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_close(trace.grads, jax.grad(conv_relu, (0, 1))(x, w),
                                    rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_close(row.downstream, jax.vjp(
            lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME"), x, w)[1](row.upstream),
            rtol=1e-10, atol=1e-12)
    else:
        assert row.local == "s1_dot = conv(x_dot, w) + conv(x, w_dot)  [1, 3, 4, 4]"
        chex.assert_trees_all_close(row.downstream, lax.conv_general_dilated(
            jnp.ones_like(x), w, (1, 1), "SAME"), rtol=1e-10, atol=1e-12)
    # the values are summarised by their shape and range, in the table and on the circuit
    table = str(trace)
    assert "[1, 2, 4, 4] min" in table and "[3, 2, 3, 3] min" in table
    svg = render.svg(trace)
    lo, hi = float(np.min(x)), float(np.max(x))
    assert f"[1, 2, 4, 4] {lo:.2f}..{hi:.2f}" in svg
    assert ">conv<" in svg
