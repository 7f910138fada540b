"""The plain-jnp twins of the models and losses: the one reference jaxprop is checked against.

The same models, losses and objective as ``jaxprop.models``, ``jaxprop.losses`` and
``jaxprop.objective``, written the way a JAX user writes them: ``jnp`` operations,
``jax.nn.relu``, ``optax``'s cross-entropy, no gates. ``jax.value_and_grad`` of
``objective(...)`` is therefore JAX's own reverse mode over JAX's own primitives; none of our
VJP or JVP rules run. The training engine uses these for ``train.pipeline = "jax"``, the
comparison for its plain-JAX methods, and the tests as their plain-JAX oracle.

The kinks follow the lecture under JAX's own rules too: ``jax.nn.relu`` passes no gradient
at 0 (its custom JVP says so), and the hinge is ``relu(margin)``, so a margin of exactly 0
contributes none.

For example::

  f = objective(two_layer_scores, softmax_loss, reg=1e-3)
  loss, grads = jax.value_and_grad(f)(params, x, y)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

__all__ = ["linear_scores", "two_layer_scores", "convnet_scores", "rnn_scores", "lstm_scores",
           "svm_loss", "softmax_loss", "l2_penalty", "objective"]


def linear_scores(params: dict, x):
    """Linear classifier: s = x W + b, scores [N, C] for x [N, D]; just x W without a "b"."""
    scores = x @ params["W"]
    return scores + params["b"][None, :] if "b" in params else scores


def two_layer_scores(params: dict, x):
    """Two-layer net: s = relu(x W1 + b1) W2 + b2, scores [N, C] for x [N, D]."""
    h = jax.nn.relu(x @ params["W1"] + params["b1"][None, :])
    return h @ params["W2"] + params["b2"][None, :]


def _norm(x, gamma, beta, axes, eps=1e-5):
    """Batch norm over ``axes`` (training mode): the batch's mean and biased variance."""
    mu = jnp.mean(x, axis=axes, keepdims=True)
    return gamma * (x - mu) / jnp.sqrt(jnp.var(x, axis=axes, keepdims=True) + eps) + beta


def convnet_scores(params: dict, x, *, key=None, dropout_keep: float = 1.0):
    """CS231n's three-layer ConvNet: conv - ReLU - 2x2 max pool - affine - ReLU - affine,
    with batch norm when ``params`` has ``gamma1`` and dropout drawn from ``key``."""
    w1 = params["W1"]
    f, c, k, _ = w1.shape
    if x.ndim == 2:  # rows [N, H*W*C], channel last
        side = math.isqrt(x.shape[1] // c)
        x = x.reshape(x.shape[0], side, side, c).transpose(0, 3, 1, 2)
    pad = (k - 1) // 2
    a = lax.conv_general_dilated(x, w1, (1, 1), ((pad, pad), (pad, pad)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    a = a + params["b1"][None, :, None, None]
    if "gamma1" in params:
        a = _norm(a, params["gamma1"][None, :, None, None], params["beta1"][None, :, None, None],
                  (0, 2, 3))
    a = jax.nn.relu(a)
    n, _, h, w = a.shape
    pooled = jnp.max(a.reshape(n, f, h // 2, 2, w // 2, 2), axis=(3, 5))
    hidden = pooled.reshape(n, -1) @ params["W2"] + params["b2"][None, :]
    if "gamma1" in params:
        hidden = _norm(hidden, params["gamma2"][None, :], params["beta2"][None, :], (0,))
    hidden = jax.nn.relu(hidden)
    if key is not None and dropout_keep < 1:
        keep = jax.random.bernoulli(key, dropout_keep, hidden.shape)
        hidden = jnp.where(keep, hidden / dropout_keep, 0.0)
    return hidden @ params["W3"] + params["b3"][None, :]


def _steps(params, x):
    """x [N, T*D] (or [N, T, D]) as its T time steps, each [N, D]."""
    d = params["Wx"].shape[0]
    x = x if x.ndim == 3 else x.reshape(x.shape[0], -1, d)
    return [x[:, t] for t in range(x.shape[1])]


def rnn_scores(params: dict, x):
    """The RNN classifier, its time loop a Python loop (unrolled), as CS231n's
    ``rnn_forward`` writes it."""
    h = jnp.zeros((x.shape[0], params["Wh"].shape[0]), x.dtype)
    for x_t in _steps(params, x):
        h = jnp.tanh(x_t @ params["Wx"] + h @ params["Wh"] + params["b"][None, :])
    return h @ params["W_out"] + params["b_out"][None, :]


def lstm_scores(params: dict, x):
    """The LSTM classifier, its time loop a Python loop (unrolled), as CS231n's
    ``lstm_forward`` writes it: gates i, f, o, g in that order."""
    hidden = params["Wh"].shape[0]
    h = c = jnp.zeros((x.shape[0], hidden), x.dtype)
    for x_t in _steps(params, x):
        a = x_t @ params["Wx"] + h @ params["Wh"] + params["b"][None, :]
        i, f, o = (jax.nn.sigmoid(a[:, k * hidden:(k + 1) * hidden]) for k in range(3))
        c = f * c + i * jnp.tanh(a[:, 3 * hidden:])
        h = o * jnp.tanh(c)
    return h @ params["W_out"] + params["b_out"][None, :]


def svm_loss(scores, labels):
    """The lecture's multiclass SVM loss: 1/N sum_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1).

    Args:
      scores: [N, C] floating class scores.
      labels: [N] integer labels in [0, C).
    """
    n, c = scores.shape
    correct = scores[jnp.arange(n), labels]  # s_y, [N]
    margins = jax.nn.relu(scores - correct[:, None] + 1)
    is_y = labels[:, None] == jnp.arange(c)[None, :]
    return jnp.sum(jnp.where(is_y, 0.0, margins)) / n


def softmax_loss(scores, labels):
    """Softmax cross-entropy averaged over the batch (optax's, with integer labels)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scores, labels))


def l2_penalty(params):
    """R(W) = sum of W^2 over the leaves of rank >= 2 (the weight matrices; no 1/2)."""
    return sum(jnp.sum(w * w) for w in jax.tree.leaves(params) if jnp.ndim(w) >= 2)


def objective(scores_fn: Callable, loss_fn: Callable, reg) -> Callable:
    """``f(params, x, y) = loss_fn(scores_fn(params, x), y) + reg * l2_penalty(params)``."""

    def f(params, x, y):
        return loss_fn(scores_fn(params, x), y) + reg * l2_penalty(params)

    return f
