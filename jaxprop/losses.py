"""The losses: multiclass SVM (hinge), softmax cross-entropy and L2 regularisation.

Rows of ``scores`` are examples, shape [N, C]; ``labels`` are integers in [0, C), shape [N].
The SVM and softmax losses are fused gates: one hand-written local gradient for the whole
loss, the way the CS231n assignments write it, instead of a circuit of small gates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import gates
from jaxprop.gate import Gate

__all__ = ["svm_loss", "softmax_loss", "l2_penalty", "LOSSES"]


def check_scores_labels(name: str, scores, labels) -> None:
    """Raises at trace time unless scores is [N, C] floating and labels is [N] integer."""
    s_shape, y_shape = jnp.shape(scores), jnp.shape(labels)
    if len(s_shape) != 2:
        raise ValueError(f"{name}: scores must have rank 2, [N, C]; got shape {s_shape}")
    if len(y_shape) != 1:
        raise ValueError(f"{name}: labels must have rank 1, [N]; got shape {y_shape}")
    if s_shape[0] != y_shape[0]:
        raise ValueError(
            f"{name}: batch sizes differ: scores {s_shape} has N={s_shape[0]} but "
            f"labels {y_shape} has N={y_shape[0]}"
        )
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(
            f"{name}: labels must be integer class indices in [0, C); got dtype "
            f"{jnp.result_type(labels)} (cast with .astype(jnp.int32))"
        )
    if not isinstance(labels, jax.core.Tracer):
        y = np.asarray(labels)
        if y.size and (y.min() < 0 or y.max() >= s_shape[1]):
            raise ValueError(
                f"{name}: labels must lie in [0, C) = [0, {s_shape[1]}); "
                f"got values from {y.min()} to {y.max()}"
            )


def _one_hot(labels, num_classes, dtype):
    return (labels[:, None] == jnp.arange(num_classes)[None, :]).astype(dtype)


def _nan_where_label_invalid(loss, local, labels, num_classes):
    """Under jit labels cannot be checked at trace time: a label outside [0, C) makes the loss
    and its row of the local gradient NaN, so it shows instead of being silently dropped."""
    valid = (labels >= 0) & (labels < num_classes)
    return jnp.where(jnp.all(valid), loss, jnp.nan), jnp.where(valid[:, None], local, jnp.nan)


def _svm_forward(scores, labels):
    n, c = scores.shape
    correct = jnp.take_along_axis(scores, labels[:, None], axis=1)  # s_y, [N, 1]
    is_y = _one_hot(labels, c, bool)
    margins = scores - correct + 1
    positive = (margins > 0) & ~is_y  # a margin counts only where it is > 0
    loss = jnp.sum(jnp.where(is_y, 0, jnp.maximum(margins, 0))) / n  # NaN scores stay NaN
    count = jnp.sum(positive, axis=1, keepdims=True)
    local = (positive.astype(scores.dtype) - is_y * count.astype(scores.dtype)) / n
    return _nan_where_label_invalid(loss, local, labels, c)


_svm = Gate(
    "svm_loss",
    pattern="scaled local gradient",
    forward=_svm_forward,
    vjp=(lambda local, z_bar: z_bar * local, None),
    jvp=(lambda local, s_dot: jnp.sum(local * s_dot), None),
    doc="""Multiclass SVM loss: L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1).

    Backward (fused): each positive margin sends +1 to its class j and -1 to the correct
    class, so dL/ds_ij = [margin_ij > 0] / N for j != y_i and dL/ds_iy_i = -(number of
    positive margins in row i) / N. scores_bar = L_bar * that matrix.
    Forward: L_dot = sum_ij (dL/ds_ij) s_dot_ij.
    """,
)


def svm_loss(scores, labels):
    """The lecture's multiclass SVM (hinge) loss, averaged over the batch.

    This sums the margins over the wrong classes, as CS231n's ``svm_loss_naive`` does. It is
    not optax's ``multiclass_hinge_loss``, which takes only the largest margin. A margin of
    exactly 0 contributes no gradient.

    Args:
      scores: [N, C] floating class scores.
      labels: [N] integer labels in [0, C).

    Returns:
      The scalar loss.
    """
    labels = jnp.asarray(labels) if isinstance(labels, (list, tuple)) else labels
    check_scores_labels("svm_loss", scores, labels)
    return _svm(scores, labels)


def _softmax_forward(scores, labels):
    n, c = scores.shape
    shifted = scores - jnp.max(scores, axis=1, keepdims=True)  # finite for logits of 1e4
    log_p = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=1, keepdims=True))
    loss = -jnp.sum(jnp.take_along_axis(log_p, labels[:, None], axis=1)) / n
    local = (jnp.exp(log_p) - _one_hot(labels, c, scores.dtype)) / n
    return _nan_where_label_invalid(loss, local, labels, c)


_softmax = Gate(
    "softmax_loss",
    pattern="scaled local gradient",
    forward=_softmax_forward,
    vjp=(lambda local, z_bar: z_bar * local, None),
    jvp=(lambda local, s_dot: jnp.sum(local * s_dot), None),
    doc="""Softmax cross-entropy: L = -1/N sum_i log softmax(s_i)_{y_i}.

    Backward (fused): dL/ds = (p - onehot(y)) / N with p = softmax(s); scores_bar = L_bar * that.
    Forward: L_dot = sum_ij (dL/ds_ij) s_dot_ij.
    """,
)


def softmax_loss(scores, labels):
    """Softmax cross-entropy loss, averaged over the batch.

    Computed from max-shifted scores, so it stays finite for logits of +-1e4.

    Args:
      scores: [N, C] floating logits.
      labels: [N] integer labels in [0, C).

    Returns:
      The scalar loss.
    """
    labels = jnp.asarray(labels) if isinstance(labels, (list, tuple)) else labels
    check_scores_labels("softmax_loss", scores, labels)
    return _softmax(scores, labels)


def l2_penalty(params):
    """L2 regularisation: R(W) = sum of W^2 over the weight matrices.

    Weight matrices are the leaves of rank 2 or more; biases (rank 1) are excluded. There is
    no 1/2 factor, so dR/dW = 2W. Each W feeds a copy gate into a mul gate: the swap
    multiplier gives each branch W, and the copy gate adds them to 2W.

    Args:
      params: a pytree of arrays (``{"W": ..., "b": ...}``).

    Returns:
      The scalar penalty.
    """
    total = None
    for leaf in jax.tree.leaves(params):
        if jnp.ndim(leaf) < 2:
            continue
        a, b = gates.copy(leaf)
        term = gates.sum(gates.mul(a, b))
        total = term if total is None else gates.add(total, term)
    if total is None:
        raise ValueError(
            "l2_penalty: params hold no weight matrix (no leaf of rank >= 2); got "
            f"{jax.tree.map(jnp.shape, params)}"
        )
    return total


LOSSES = {"svm": svm_loss, "softmax": softmax_loss}
"""The data losses by the name configs use for them."""
