"""Functions written the way other people write them, for issue 19's acceptance.

Each entry is plain JAX code in the style of a well-known source (JAX's examples, stax, flax
and equinox models, optax and ``jax.nn`` blocks, a BERT feed-forward block, the CS231n layers
written with ``jnp``), never calling a jaxprop gate. ``tests/test_real_world.py`` holds every
one to ``jax.grad``'s gradients in float64, through ``jaxprop.reverse``, ``jaxprop.forward``
and ``jax.grad(jaxprop.gated(f))``, with only our rules observed.

An entry is ``(fn, make_args, argnums)``: ``fn`` returns a scalar, ``make_args(rng)`` gives
its float64 inputs away from kinks and ties.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
from jax import lax


def _n(rng, *shape):
    return jnp.asarray(rng.normal(size=shape))


def _spd(rng, n):
    b = rng.normal(size=(n, n))
    return jnp.asarray(b @ b.T + n * np.eye(n))


# Convolutional nets --------------------------------------------------------------------------


def conv2d_nchw(x, w, stride=1, padding="SAME"):
    """``lax.conv`` as JAX's examples and stax call it (NCHW, OIHW)."""
    return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                    dimension_numbers=("NCHW", "OIHW", "NCHW"))


def conv2d_nhwc(x, w, stride=1, padding="SAME"):
    """flax's ``nn.Conv`` layout: NHWC inputs, HWIO kernels."""
    return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_pool_nhwc(x, k=2):
    """flax.linen.max_pool: a reduce_window max over the spatial axes."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")


def avg_pool_nhwc(x, k=2):
    """flax.linen.avg_pool: a window sum divided by the window's size."""
    return lax.reduce_window(x, 0.0, lax.add, (1, k, k, 1), (1, k, k, 1), "VALID") / (k * k)


def stax_convnet(params, x):
    """JAX's ``examples/`` convnet in stax's style: Conv-Relu-Conv-Relu-AvgPool-Flatten-Dense,
    the log-softmax cross-entropy of ``examples/mnist_classifier.py``."""
    w1, w2, wd = params
    h = jax.nn.relu(conv2d_nchw(x, w1))
    h = jax.nn.relu(conv2d_nchw(h, w2))
    h = lax.reduce_window(h, 0.0, lax.add, (1, 1, 2, 2), (1, 1, 2, 2), "VALID") / 4.0
    logits = h.reshape(h.shape[0], -1) @ wd
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jnp.eye(3)[jnp.array([0, 2])],
                             axis=-1))


def _stax_args(rng):
    return ((_n(rng, 4, 2, 3, 3) * 0.5, _n(rng, 3, 4, 3, 3) * 0.3, _n(rng, 3 * 2 * 2, 3)),
            _n(rng, 2, 2, 4, 4))


def flax_cnn(params, x):
    """The flax MNIST CNN: Conv-relu-avg_pool twice, Dense-relu-Dense, cross-entropy."""
    w1, w2, d1, d2 = params
    h = avg_pool_nhwc(jax.nn.relu(conv2d_nhwc(x, w1)))
    h = avg_pool_nhwc(jax.nn.relu(conv2d_nhwc(h, w2)))
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ d1)
    logits = h @ d2
    labels = jax.nn.one_hot(jnp.array([1, 0]), 3)
    return jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))


def _flax_args(rng):
    return ((_n(rng, 3, 3, 1, 3), _n(rng, 3, 3, 3, 4) * 0.5, _n(rng, 4, 5), _n(rng, 5, 3)),
            _n(rng, 2, 4, 4, 1))


def equinox_cnn(params, x):
    """equinox's CNN tutorial: Conv2d(1, 3, 4) - MaxPool2d(2) - relu - flatten - Linear -
    sigmoid - Linear - log_softmax, one image at a time under ``jax.vmap``."""
    w, b, l1, l2 = params

    def one(img):
        h = lax.conv_general_dilated(img[None], w, (1, 1), "VALID")[0] + b[:, None, None]
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2), (1, 1, 1), "VALID")
        h = jax.nn.relu(h).reshape(-1)
        return jax.nn.log_softmax(l2 @ jax.nn.sigmoid(l1 @ h))

    out = jax.vmap(one)(x)
    return -jnp.mean(out[jnp.arange(2), jnp.array([2, 1])])


def _equinox_args(rng):
    return ((_n(rng, 3, 1, 3, 3), _n(rng, 3), _n(rng, 6, 3 * 3 * 3) * 0.3, _n(rng, 3, 6)),
            _n(rng, 2, 1, 6, 6))


def resnet_block(params, x):
    """A ResNet basic block (JAX's ``examples/resnet50.py``, without batch statistics):
    conv-relu-conv, plus the identity, then relu."""
    w1, w2 = params
    h = jax.nn.relu(conv2d_nchw(x, w1))
    return jnp.sum(jax.nn.relu(conv2d_nchw(h, w2) + x) ** 2)


def _resnet_args(rng):
    return (_n(rng, 3, 3, 3, 3) * 0.4, _n(rng, 3, 3, 3, 3) * 0.4), _n(rng, 2, 3, 4, 4)


def strided_dilated_conv(w, x):
    """A strided, dilated, depthwise conv, as MobileNet-style code writes it."""
    y = lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), rhs_dilation=(2, 2),
                                 feature_group_count=3,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return jnp.sum(jnp.tanh(y))


def _depthwise_args(rng):
    return _n(rng, 3, 1, 2, 2), _n(rng, 2, 3, 7, 7)


def conv1d_text(w, x):
    """A 1-D convolution over a token sequence (NWC, WIO), max over time."""
    y = lax.conv_general_dilated(x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
    return jnp.sum(jnp.max(jnp.tanh(y), axis=1))


# The CS231n layers, written with jnp -------------------------------------------------------


def cs231n_conv_naive(w, b, x):
    """``conv_forward_naive`` with ``jnp.pad`` and loops over filter taps (pad 1, stride 1)."""
    xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    out = jnp.zeros((n, f, h, wd)) + b[None, :, None, None]
    for i in range(hh):
        for j in range(ww):
            patch = xp[:, :, i:i + h, j:j + wd]
            out = out + jnp.einsum("nchw,fc->nfhw", patch, w[:, :, i, j])
    return jnp.sum(out ** 2)


def _naive_conv_args(rng):
    return _n(rng, 2, 2, 3, 3), _n(rng, 2), _n(rng, 2, 2, 4, 4)


def cs231n_max_pool(x):
    """``max_pool_forward_fast``'s reshape trick for 2x2 pools."""
    n, c, h, w = x.shape
    return jnp.sum(jnp.tanh(x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))))


def cs231n_batchnorm(x, gamma, beta):
    """``batchnorm_forward`` in training mode."""
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / jnp.sqrt(var + 1e-5)
    return jnp.sum(jnp.tanh(gamma * xhat + beta))


def cs231n_spatial_batchnorm(x, gamma, beta):
    """``spatial_batchnorm_forward``: batch norm over N, H and W."""
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xhat = (x - mu) / jnp.sqrt(var + 1e-5)
    return jnp.sum(jnp.sin(gamma[None, :, None, None] * xhat + beta[None, :, None, None]))


def layer_norm(x, gamma, beta):
    """flax's ``nn.LayerNorm``."""
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return jnp.sum(jnp.cos((x - mu) * lax.rsqrt(var + 1e-6) * gamma + beta))


# Activations, transformers -----------------------------------------------------------------


def bert_ffn(params, x):
    """BERT's feed-forward block: dense - exact GELU (erf) - dense, residual, layer norm."""
    w1, w2 = params
    h = jax.nn.gelu(x @ w1, approximate=False)
    y = x + h @ w2
    mu = y.mean(-1, keepdims=True)
    normed = (y - mu) / jnp.sqrt(((y - mu) ** 2).mean(-1, keepdims=True) + 1e-12)
    return jnp.sum(jnp.tanh(normed) * jnp.arange(1.0, 5.0))


def _bert_args(rng):
    return (_n(rng, 4, 6) * 0.5, _n(rng, 6, 4) * 0.5), _n(rng, 3, 4)


def gelu_erf(x):
    """The GELU paper's exact form."""
    return jnp.sum(0.5 * x * (1 + jax.scipy.special.erf(x / math.sqrt(2))))


def rotary_embedding(x):
    """Rotary position embeddings (sin and cos of positions times frequencies)."""
    pos = jnp.arange(x.shape[0])[:, None] * (1.0 / 10000 ** (jnp.arange(0, 4, 2) / 4))
    x1, x2 = x[:, 0::2], x[:, 1::2]
    rot = jnp.concatenate([x1 * jnp.cos(pos) - x2 * jnp.sin(pos),
                           x1 * jnp.sin(pos) + x2 * jnp.cos(pos)], axis=-1)
    return jnp.sum(jnp.tanh(rot) * jnp.cos(x))


def sinusoidal_features(x):
    """Fourier features of a coordinate MLP: sin, cos, tan, atan2, hyperbolic functions."""
    return jnp.sum(jnp.sin(x) * jnp.cosh(x / 3) + jnp.arctan2(x, 2.0 + x ** 2)
                   + jnp.tan(x / 4) + jnp.arcsinh(x) + jnp.arctan(x) + jnp.sinh(x / 2))


def inverse_trig(x):
    """``arcsin``, ``arccos`` and ``arctanh`` on (-1, 1), ``arccosh`` above 1."""
    u = jnp.tanh(x) * 0.9
    return jnp.sum(jnp.arcsin(u) * jnp.arccos(u) + jnp.arctanh(u) + jnp.arccosh(2 + x ** 2))


# Cumulative sums, sorting, selection -------------------------------------------------------


def cumulative(x):
    """A discounted return and a running product, as RL code writes them."""
    return jnp.sum(jnp.cumsum(x[::-1])[::-1] ** 2) + jnp.sum(jnp.cumprod(1 + 0.1 * x))


def running_max_log(x):
    """``lax.cummax`` and ``lax.cumlogsumexp`` (a streaming softmax normaliser)."""
    return jnp.sum(lax.cummax(x, axis=0) * x) + jnp.sum(lax.cumlogsumexp(x, axis=0))


def sort_trim(x):
    """A trimmed mean: sort, drop the extremes."""
    s = jnp.sort(x)
    return jnp.mean(s[1:-1] ** 2)


def median_loss(x):
    """``jnp.median`` of squared errors (robust regression)."""
    return jnp.median((x - 0.3) ** 2)


def top_k_mean(x):
    """``lax.top_k``: the mean of the k largest logits."""
    vals, _ = lax.top_k(x, 3)
    return jnp.sum(jnp.tanh(vals))


def select_piecewise(x):
    """``jnp.select`` with three choices and ``jnp.piecewise``: a Huber-like loss."""
    y = jnp.select([x < -1.0, x > 1.0], [-2 * x - 1, 2 * x - 1], x ** 2)
    z = jnp.piecewise(x, [x < 0, x >= 0], [lambda t: t ** 3, lambda t: jnp.sin(t)])
    return jnp.sum(y + z)


def clip_and_prod(x):
    """``jnp.clip`` (a clamp) and ``jnp.prod``."""
    return jnp.sum(jnp.clip(x, -0.5, 0.5) ** 2) + jnp.prod(1.1 + 0.1 * x)


# Linear algebra ----------------------------------------------------------------------------


def cholesky_solve(a, b):
    """A Gaussian process' posterior mean: ``cho_solve(cho_factor(K), y)``."""
    c = jsp.linalg.cho_factor(a)
    return jnp.sum(jsp.linalg.cho_solve(c, b) ** 2)


def _chol_args(rng):
    return _spd(rng, 4), _n(rng, 4, 2)


def gaussian_loglik(a, y):
    """A multivariate normal's log-likelihood with a Cholesky factor."""
    chol = jnp.linalg.cholesky(a)
    z = jsp.linalg.solve_triangular(chol, y, lower=True)
    return -0.5 * jnp.sum(z ** 2) - jnp.sum(jnp.log(jnp.diagonal(chol)))


def _loglik_args(rng):
    return _spd(rng, 4), _n(rng, 4)


def linear_solve(a, b):
    """``jnp.linalg.solve`` (an LU factorisation underneath)."""
    return jnp.sum(jnp.linalg.solve(a, b) ** 2)


def _solve_args(rng):
    return jnp.asarray(rng.normal(size=(4, 4)) + 4 * np.eye(4)), _n(rng, 4)


# Padding -----------------------------------------------------------------------------------


def pad_modes(x):
    """``jnp.pad`` with constant and edge padding, as image code writes it."""
    return jnp.sum(jnp.pad(x, ((1, 2), (0, 1))) ** 2) + jnp.sum(
        jnp.tanh(jnp.pad(x, 1, mode="edge")))


FUNCTIONS = {
    "stax_convnet": (stax_convnet, _stax_args, (0,)),
    "flax_cnn": (flax_cnn, _flax_args, (0, 1)),
    "equinox_cnn": (equinox_cnn, _equinox_args, (0,)),
    "resnet_block": (resnet_block, _resnet_args, (0, 1)),
    "depthwise_conv": (strided_dilated_conv, _depthwise_args, (0, 1)),
    "conv1d_text": (conv1d_text, lambda rng: (_n(rng, 3, 2, 3), _n(rng, 2, 5, 2)), (0, 1)),
    "max_pool_flax": (lambda x: jnp.sum(jnp.tanh(max_pool_nhwc(x))),
                      lambda rng: (_n(rng, 2, 4, 4, 3),), (0,)),
    "avg_pool_flax": (lambda x: jnp.sum(jnp.sin(avg_pool_nhwc(x))),
                      lambda rng: (_n(rng, 2, 4, 4, 3),), (0,)),
    "cs231n_conv_naive": (cs231n_conv_naive, _naive_conv_args, (0, 1, 2)),
    "cs231n_max_pool": (cs231n_max_pool, lambda rng: (_n(rng, 2, 3, 4, 4),), (0,)),
    "cs231n_batchnorm": (cs231n_batchnorm,
                         lambda rng: (_n(rng, 5, 3), _n(rng, 3), _n(rng, 3)), (0, 1, 2)),
    "cs231n_spatial_batchnorm": (cs231n_spatial_batchnorm,
                                 lambda rng: (_n(rng, 2, 3, 2, 2), _n(rng, 3), _n(rng, 3)),
                                 (0, 1, 2)),
    "layer_norm": (layer_norm, lambda rng: (_n(rng, 3, 4), _n(rng, 4), _n(rng, 4)), (0, 1, 2)),
    "bert_ffn": (bert_ffn, _bert_args, (0, 1)),
    "gelu_erf": (gelu_erf, lambda rng: (_n(rng, 5),), (0,)),
    "rotary_embedding": (rotary_embedding, lambda rng: (_n(rng, 3, 4),), (0,)),
    "sinusoidal_features": (sinusoidal_features, lambda rng: (_n(rng, 6),), (0,)),
    "inverse_trig": (inverse_trig, lambda rng: (_n(rng, 6),), (0,)),
    "cumulative": (cumulative, lambda rng: (_n(rng, 6),), (0,)),
    "running_max_log": (running_max_log, lambda rng: (_n(rng, 6, 2),), (0,)),
    "sort_trim": (sort_trim, lambda rng: (_n(rng, 7),), (0,)),
    "median_loss": (median_loss, lambda rng: (_n(rng, 7),), (0,)),
    "top_k_mean": (top_k_mean, lambda rng: (_n(rng, 8),), (0,)),
    "select_piecewise": (select_piecewise,
                         lambda rng: (jnp.array([-2.1, -0.6, -0.2, 0.3, 0.8, 1.7]),), (0,)),
    "clip_and_prod": (clip_and_prod, lambda rng: (jnp.array([-1.2, -0.3, 0.1, 0.4, 0.9]),),
                      (0,)),
    "cholesky_solve": (cholesky_solve, _chol_args, (0, 1)),
    "gaussian_loglik": (gaussian_loglik, _loglik_args, (0, 1)),
    "linear_solve": (linear_solve, _solve_args, (0, 1)),
    "pad_modes": (pad_modes, lambda rng: (_n(rng, 3, 4),), (0,)),
}
"""Every real-world style function, by name: ``(fn, make_args, argnums)``."""
