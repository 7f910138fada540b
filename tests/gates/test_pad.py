"""The pad gate in the code that uses it: CS231n's naive convolution, written with jnp.pad.

The battery (tests/cases.py: ``pad``, ``pad_zeros``) checks the gate's rules on low, high,
interior and negative padding and a differentiable padding value; here it meets plain code.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import RTOL

import jaxprop
from jaxprop import gates


def conv_forward_naive(x, w, b, stride=2, pad=1):
    """CS231n's ``conv_forward_naive``, in jnp: x [N, C, H, W], w [F, C, HH, WW], b [F]; the
    input zero-padded by ``pad`` on each side of H and W, then each window of each image
    multiplied by each filter and summed."""
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    x_pad = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    h_out, w_out = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    out = jnp.zeros((n, f, h_out, w_out), x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * stride:i * stride + hh, j * stride:j * stride + ww]
            out = out.at[:, :, i, j].set(jnp.sum(window[:, None] * w[None], axis=(2, 3, 4))
                                         + b[None])
    return out


def _conv_args():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(2, 3, 5, 5))), jnp.asarray(rng.normal(size=(4, 3, 3, 3))),
            jnp.asarray(rng.normal(size=(4,))))


def _loss(x, w, b):
    return jnp.sum(jnp.tanh(conv_forward_naive(x, w, b)) ** 2)


@pytest.mark.parametrize("module", [jaxprop.reverse, jaxprop.forward], ids=["reverse", "forward"])
def test_naive_conv_with_jnp_pad_gives_jax_grads_through_our_rules(module):
    args = _conv_args()
    want = jax.grad(_loss, (0, 1, 2))(*args)
    events = []
    with jaxprop.observe(events.append):
        got = module.grad(_loss, (0, 1, 2))(*args)
    chex.assert_trees_all_close(got, want, rtol=RTOL, atol=1e-12)
    assert {e.kind for e in events} == {"forward", "vjp" if module is jaxprop.reverse else "jvp"}
    assert "pad" in {e.gate.name for e in events}  # jnp.pad ran as the pad gate
    # the lecture's conv against lax's, so the naive loop is the convolution it says it is
    chex.assert_trees_all_close(conv_forward_naive(*args), jax.lax.conv_general_dilated(
        args[0], args[1], (2, 2), ((1, 1), (1, 1))) + args[2][None, :, None, None], rtol=RTOL)


def test_pad_with_a_padding_value_that_is_learned():
    """The padding value's gradient is the sum of z_bar over the padded cells, also where a
    negative padding cuts x."""
    x, v = jnp.arange(6.0).reshape(2, 3), jnp.asarray(0.5)
    config = ((1, -1, 0), (-1, 2, 1))

    def f(x, v):
        return jnp.sum(jax.lax.pad(x, v, config) * jnp.arange(12.0).reshape(2, 6))

    got = jaxprop.reverse.grad(f, (0, 1))(x, v)
    chex.assert_trees_all_close(got, jax.grad(f, (0, 1))(x, v), rtol=RTOL)
    padded = jax.lax.pad(jnp.zeros((2, 3)), 1.0, config)
    assert float(got[1]) == float(jnp.sum(padded * jnp.arange(12.0).reshape(2, 6)))
    assert float(got[0][1, 0]) == 0.0  # cut off by the negative padding: no gradient


def test_pad_names_a_bad_config():
    with pytest.raises(ValueError, match=r"pad: padding_config must hold one \(low, high, "
                                         r"interior\) per axis of x \(shape \(2, 3\)\)"):
        gates.pad(jnp.ones((2, 3)), 0.0, ((1, 1, 0),))
    with pytest.raises(ValueError, match="interior >= 0"):
        gates.pad(jnp.ones((2, 3)), 0.0, ((1, 1, 0), (0, 0, -1)))
