"""The conv gate beyond the battery: second order through our own rules, what it refuses, and
convolutional nets written as their authors write them (stax-style convnet, a ResNet block)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ATOL, RTOL
from jax import lax

import jaxprop
from jaxprop import gates
from jaxprop.tracer import NoGateError

RNG = np.random.default_rng(19)


def normal(*shape, scale=1.0):
    return jnp.asarray(RNG.normal(size=shape) * scale)


def observed_kinds(run) -> set[tuple[str, str]]:
    """The (gate, kind) pairs traced by ``run()``; a JAX rule shows as ``kind == "jax"``."""
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(run)()
    return {(e.gate.name, e.kind) for e in events}


def grouped_strided_dilated(x, w):
    """A depthwise-style conv with every option at once, as plain lax code."""
    y = lax.conv_general_dilated(x, w, (2, 1), ((1, 0), (1, 1)), lhs_dilation=(1, 2),
                                 rhs_dilation=(1, 2), feature_group_count=2,
                                 dimension_numbers=("NHWC", "HWIO", "NCHW"))
    return jnp.sum(jnp.tanh(y))


def test_hessian_runs_through_our_conv_rules():
    x, w = normal(1, 4, 3, 2), normal(2, 2, 1, 4)
    ours = jaxprop.hessian(grouped_strided_dilated, (0, 1))(x, w)
    chex.assert_trees_all_close(ours, jax.hessian(grouped_strided_dilated, (0, 1))(x, w),
                                rtol=RTOL, atol=ATOL)
    kinds = observed_kinds(lambda: jaxprop.hessian(grouped_strided_dilated, (0, 1))(x, w))
    # our VJP rules, then the JVP rules of every gate they use (conv, rev, reshape, transpose)
    assert {("conv", "vjp"), ("conv", "jvp"), ("rev", "jvp"), ("reshape", "jvp"),
            ("transpose", "jvp")} <= kinds
    assert not {k for _, k in kinds} - {"forward", "vjp", "jvp"}


def test_reverse_over_reverse_through_our_conv_rules():
    x, w = normal(1, 4, 3, 2), normal(2, 2, 1, 4)
    v = normal(1, 4, 3, 2)

    def grad_dot_v(w):
        return jnp.vdot(jaxprop.reverse.grad(grouped_strided_dilated)(x, w), v)

    ours = jaxprop.reverse.grad(grad_dot_v)(w)
    ref = jax.grad(lambda w: jnp.vdot(jax.grad(grouped_strided_dilated)(x, w), v))(w)
    chex.assert_trees_all_close(ours, ref, rtol=RTOL, atol=ATOL)


def batch_grouped(x, w):
    return jnp.sum(lax.conv_general_dilated(x, w, (1, 1), "SAME", batch_group_count=2))


def test_batch_groups_are_refused_naming_them_and_the_line():
    x, w = normal(4, 2, 4, 4), normal(2, 2, 3, 3)
    with pytest.raises(NoGateError, match=r"lax.conv_general_dilated: conv: batch_group_count=2 "
                                          r"is not covered by the conv gate \(feature groups "
                                          r"are; .*\) \(at .*test_conv.py:\d+ \(batch_grouped\)\)"):
        jaxprop.reverse.grad(batch_grouped, 1)(x, w)
    with pytest.raises(ValueError, match="conv: batch_group_count=2 is not covered"):
        gates.conv(x, w, (1, 1), "SAME", batch_group_count=2)


def test_batch_groups_go_to_jax_rule_when_allowed():
    x, w = normal(4, 2, 4, 4), normal(2, 2, 3, 3)
    g = jaxprop.reverse.grad(batch_grouped, 1, allow_jax_rules=True)(x, w)
    chex.assert_trees_all_close(g, jax.grad(batch_grouped, 1)(x, w), rtol=RTOL, atol=ATOL)
    kinds = observed_kinds(
        lambda: jaxprop.reverse.grad(batch_grouped, 1, allow_jax_rules=True)(x, w))
    assert ("conv_general_dilated", "jax") in kinds


def test_the_public_conv_speaks_lax_and_checks_its_channels():
    x, w = normal(2, 5, 5, 3), normal(3, 3, 3, 4)
    dims = ("NHWC", "HWIO", "NHWC")
    chex.assert_trees_all_close(
        gates.conv(x, w, (2, 1), "SAME", rhs_dilation=(1, 2), dimension_numbers=dims),
        lax.conv_general_dilated(x, w, (2, 1), "SAME", rhs_dilation=(1, 2),
                                 dimension_numbers=dims), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"conv: x \(2, 5, 5, 3\) has 3 input channels and w "
                                         r"\(3, 3, 3, 4\) takes 3 per group with 4 filters, "
                                         r"which do not fit feature_group_count=3"):
        gates.conv(x, w, (1, 1), "SAME", dimension_numbers=dims, feature_group_count=3)
    with pytest.raises(ValueError, match="give the padding as .low, high. pairs"):
        gates.conv(x, w, (1, 1), "SAME", lhs_dilation=(2, 2), dimension_numbers=dims)


def test_the_full_convolution_of_the_lecture():
    """1-D, stride 1, no padding: dx is dy padded by K-1 on both sides, correlated with the
    flipped filter (the "full" convolution); dw is x correlated with dy."""
    x, w = jnp.array([[[1.0, 2.0, -1.0, 3.0]]]), jnp.array([[[2.0, -1.0]]])
    dy = jnp.array([[[1.0, 0.5, -2.0]]])
    _, pullback = jaxprop.reverse.vjp(lambda x, w: gates.conv(x, w, (1,), "VALID"), x, w)
    dx, dw = pullback(dy)
    full = np.convolve(np.asarray(dy[0, 0]), np.asarray(w[0, 0]), mode="full")
    np.testing.assert_allclose(dx[0, 0], full)  # [2, 0, -4.5, 2]
    np.testing.assert_allclose(dw[0, 0], np.correlate(np.asarray(x[0, 0]),
                                                      np.asarray(dy[0, 0]), mode="valid"))


# ------------------------------------------------------------------- real-world style nets


def stax_convnet(params, images, labels):
    """JAX's examples' convnet in stax's layout (NHWC, HWIO, SAME padding): conv-relu twice,
    the second strided, a 2x2 average pool and a 2x2 max pool written with reshapes, a dense
    layer and log-softmax cross-entropy."""
    dims = ("NHWC", "HWIO", "NHWC")
    h = lax.conv_general_dilated(images, params["c1"], (1, 1), "SAME", dimension_numbers=dims)
    h = jax.nn.relu(h + params["b1"].reshape(1, 1, 1, -1))
    h = lax.conv_general_dilated(h, params["c2"], (2, 2), "SAME", dimension_numbers=dims)
    h = jax.nn.relu(h + params["b2"].reshape(1, 1, 1, -1))
    n, hh, ww, c = h.shape
    h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))  # average pool
    h = h.reshape(n, hh // 4, 1, 2, ww // 4, 1, 2, c).max(axis=(3, 6))  # max pool
    logits = h.reshape(n, -1) @ params["w"] + params["b"][None, :]
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def resnet_block(params, x):
    """A ResNet basic block (NCHW): conv-relu-conv plus a strided 1x1 projection shortcut,
    then relu; a sum of squares as the loss."""
    def conv(x, w, stride):
        pad = "VALID" if w.shape[-1] == 1 else ((1, 1), (1, 1))
        return lax.conv_general_dilated(x, w, (stride, stride), pad)

    h = jax.nn.relu(conv(x, params["w1"], 2))
    h = conv(h, params["w2"], 1)
    out = jax.nn.relu(h + conv(x, params["proj"], 2))
    return jnp.sum(out ** 2) / out.size


def _convnet_args():
    params = {"c1": normal(3, 3, 2, 4, scale=0.5), "b1": normal(4, scale=0.1),
              "c2": normal(3, 3, 4, 4, scale=0.5), "b2": normal(4, scale=0.1),
              "w": normal(4, 3, scale=0.5), "b": normal(3, scale=0.1)}
    return params, normal(2, 8, 8, 2), jnp.array([0, 2])


def _resnet_args():
    params = {"w1": normal(4, 3, 3, 3, scale=0.4), "w2": normal(4, 4, 3, 3, scale=0.4),
              "proj": normal(4, 3, 1, 1, scale=0.4)}
    return params, normal(2, 3, 6, 6)


@pytest.mark.parametrize("f, make_args", [(stax_convnet, _convnet_args),
                                           (resnet_block, _resnet_args)],
                         ids=["stax_convnet", "resnet_block"])
def test_real_world_conv_nets_get_jax_gradients_from_our_rules(f, make_args):
    args = make_args()
    ref = jax.grad(f)(*args)
    got = {"reverse": jaxprop.reverse.grad(f)(*args),
           "forward": jaxprop.forward.grad(f)(*args),
           "jax.grad(gated)": jax.grad(jaxprop.gated(f))(*args)}
    for name, g in got.items():
        chex.assert_trees_all_close(g, ref, rtol=RTOL, atol=ATOL, custom_message=name)
    for mode, run in (("vjp", lambda: jaxprop.reverse.grad(f)(*args)),
                      ("jvp", lambda: jaxprop.forward.grad(f)(*args))):
        kinds = observed_kinds(run)
        assert ("conv", mode) in kinds and ("conv", "forward") in kinds
        assert {k for _, k in kinds} == {"forward", mode}  # only our rules, none of JAX's
