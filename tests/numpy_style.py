"""The courses' code, written the NumPy way with ``jax.numpy`` standing in for NumPy.

Line for line the vectorised CS231n assignment code (``linear_svm.py``, ``softmax.py``,
``neural_net.py``) and DeepRob P1's, as a student translates it: ``X.dot(W) + b`` with
broadcasting, ``scores[np.arange(N), y]``, ``np.maximum(0, margins)``, ``.sum(axis=1)``,
``W * W``, ``probs / probs.sum(1, keepdims=True)``. No jaxprop gate is called here: the gate
tracer reads it. The ``Model`` and ``Loss`` entries make it trainable with
``jaxprop train --set model.kind=numpy_style:TWO_LAYER --set loss.kind=numpy_style:SOFTMAX``.
"""

import jax.numpy as jnp

from jaxprop.losses import Loss
from jaxprop.models import MODELS, Model


def svm_loss_vectorized(scores, y):
    """CS231n's structured SVM loss, vectorised, on the scores X.dot(W)."""
    num_train = scores.shape[0]
    correct_class_score = scores[jnp.arange(num_train), y]
    margins = jnp.maximum(0, scores - correct_class_score[:, jnp.newaxis] + 1)  # note delta = 1
    margins = margins.at[jnp.arange(num_train), y].set(0)  # margins[np.arange(N), y] = 0
    return jnp.sum(margins) / num_train


def softmax_loss_vectorized(scores, y):
    """CS231n's softmax loss, vectorised: shift for numeric stability, normalise, pick."""
    num_train = scores.shape[0]
    scores = scores - jnp.max(scores, axis=1, keepdims=True)
    exp_scores = jnp.exp(scores)
    probs = exp_scores / exp_scores.sum(axis=1, keepdims=True)
    return -jnp.sum(jnp.log(probs[jnp.arange(num_train), y])) / num_train


def linear_scores(params, X):
    """s = X.dot(W) + b."""
    return X.dot(params["W"]) + params["b"]


def two_layer_scores(params, X):
    """CS231n's TwoLayerNet forward pass: h1 = max(0, X W1 + b1), scores = h1 W2 + b2."""
    W1, b1 = params["W1"], params["b1"]
    W2, b2 = params["W2"], params["b2"]
    h1 = jnp.maximum(0, X.dot(W1) + b1)
    return h1.dot(W2) + b2


def two_layer_loss(params, X, y, reg):
    """The whole of TwoLayerNet.loss: softmax data loss plus reg * (sum W1^2 + sum W2^2)."""
    data_loss = softmax_loss_vectorized(two_layer_scores(params, X), y)
    W1, W2 = params["W1"], params["W2"]
    return data_loss + reg * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2))


TWO_LAYER = Model("cs231n_two_layer", init=MODELS["two_layer"].init, scores=two_layer_scores,
                  summary="CS231n's TwoLayerNet forward pass, NumPy style")
LINEAR = Model("cs231n_linear", init=MODELS["linear"].init, scores=linear_scores,
               summary="s = X.dot(W) + b, NumPy style")
SOFTMAX = Loss("cs231n_softmax", fn=softmax_loss_vectorized,
               summary="CS231n's softmax_loss_vectorized, on scores")
SVM = Loss("cs231n_svm", fn=svm_loss_vectorized,
           summary="CS231n's svm_loss_vectorized, on scores")
