"""The losses: multiclass SVM (hinge), softmax cross-entropy, L2 regularisation, and the
training objective that adds them up.

Rows of ``scores`` are examples, shape [N, C]; ``labels`` are integers in [0, C), shape [N].
The SVM and softmax losses are fused gates: one hand-written local gradient for the whole
loss, the way the CS231n assignments write it, instead of a circuit of small gates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import gates, reference
from jaxprop.gate import SCALED, Gate

__all__ = ["Loss", "svm_loss", "softmax_loss", "l2_penalty", "objective", "svm_gate",
           "softmax_gate", "check_scores_labels", "LOSSES", "resolve"]


def check_scores_labels(name: str, scores, labels):
    """Returns the labels as an array, after checking at trace time that scores is [N, C]
    floating and labels is [N] integer (and, when concrete, in [0, C)).
    """
    labels = jnp.asarray(labels) if isinstance(labels, (list, tuple)) else labels
    s_shape, y_shape = jnp.shape(scores), jnp.shape(labels)
    if not jnp.issubdtype(jnp.result_type(scores), jnp.floating):
        raise TypeError(
            f"{name}: scores must be real floating-point [N, C]; got dtype "
            f"{jnp.result_type(scores)} (the losses are defined for real scores: give the "
            "real part, or cast with .astype(jnp.float32))")
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
    return labels


def _one_hot(labels, num_classes, dtype):
    return (labels[:, None] == jnp.arange(num_classes)[None, :]).astype(dtype)


def _nan_where_label_invalid(loss, local, labels, num_classes):
    """Under jit labels cannot be checked at trace time: a label outside [0, C) makes the loss
    and its row of the local gradient NaN, so it shows instead of being silently dropped."""
    valid = (labels >= 0) & (labels < num_classes)
    return jnp.where(jnp.all(valid), loss, jnp.nan), jnp.where(valid[:, None], local, jnp.nan)


def fused_loss_gate(name: str, forward, local: str, doc: str) -> Gate:
    """A fused loss gate ``L(s, y)``: ``forward(s, y) -> (L, dL/ds)`` saves the whole local
    gradient, so both rules are one line, as the CS231n assignments write them.

    Backward: s_bar = L_bar * (dL/ds), the saved local gradient scaled by upstream.
    Forward: L_dot = sum_ij (dL/ds_ij) s_dot_ij. The labels y get no derivative.
    """
    return Gate(
        name,
        pattern=SCALED,
        symbol=name.replace("_", " "),
        forward=forward,
        vjp=(lambda local, z_bar: z_bar * local, None),
        jvp=(lambda local, s_dot: jnp.sum(local * s_dot), None),
        local=(local,),
        tangent=f"sum({local.removesuffix(' / N')} * s_dot) / N",
        doc=doc,
    )


def _svm_forward(s, y):
    scores, labels = s, y
    n, c = scores.shape
    correct = jnp.take_along_axis(scores, labels[:, None], axis=1)  # s_y, [N, 1]
    is_y = _one_hot(labels, c, bool)
    margins = scores - correct + 1
    positive = (margins > 0) & ~is_y  # a margin counts only where it is > 0
    loss = jnp.sum(jnp.where(is_y, 0, jnp.maximum(margins, 0))) / n  # NaN scores stay NaN
    count = jnp.sum(positive, axis=1, keepdims=True)
    local = (positive.astype(scores.dtype) - is_y * count.astype(scores.dtype)) / n
    return _nan_where_label_invalid(loss, local, labels, c)


svm_gate = fused_loss_gate(
    "svm_loss", _svm_forward, "([margin > 0] - count * onehot(y)) / N",
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
    return svm_gate(scores, check_scores_labels("svm_loss", scores, labels))


def _softmax_forward(s, y):
    scores, labels = s, y
    n, c = scores.shape
    shifted = scores - jnp.max(scores, axis=1, keepdims=True)  # finite for logits of 1e4
    log_p = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=1, keepdims=True))
    loss = -jnp.sum(jnp.take_along_axis(log_p, labels[:, None], axis=1)) / n
    local = (jnp.exp(log_p) - _one_hot(labels, c, scores.dtype)) / n
    return _nan_where_label_invalid(loss, local, labels, c)


softmax_gate = fused_loss_gate(
    "softmax_loss", _softmax_forward, "(p - onehot(y)) / N",
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
    return softmax_gate(scores, check_scores_labels("softmax_loss", scores, labels))


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


def objective(scores_fn: Callable, loss_fn: Callable, reg) -> Callable:
    """Builds ``f(params, x, y) = loss_fn(scores_fn(params, x), y) + reg * l2_penalty(params)``.

    The one function every pipeline differentiates: ``jaxprop.reverse.grad(f)``,
    ``jaxprop.forward.grad(f)`` and ``jax.grad(f)`` all take it as it is.

    Args:
      scores_fn: ``(params, x) -> scores [N, C]``, e.g. ``models.two_layer_scores``.
      loss_fn: ``(scores, labels) -> scalar``, e.g. ``losses.softmax_loss``.
      reg: the regularisation strength, a Python number or a scalar array (a sweep can vmap
        over it). With ``reg == 0`` the penalty is left out.

    Returns:
      ``f(params, x, y) -> scalar``.

    For example::

      f = objective(two_layer_scores, softmax_loss, reg=1e-3)
      loss, grads = jaxprop.reverse.value_and_grad(f)(params, x, y)
    """

    _check_reg(reg)

    def f(params, x, y):
        _check_reg(reg)
        loss = loss_fn(scores_fn(params, x), y)
        if isinstance(reg, (int, float)) and reg == 0:
            return loss
        return gates.add(loss, gates.mul(reg, l2_penalty(params)))

    return f


def _check_reg(reg) -> None:
    """``reg`` must be one real number: an array of them would make the loss an array."""
    if isinstance(reg, bool):
        raise TypeError("objective: reg must be a number; got a bool")
    if jnp.shape(reg) != ():
        raise ValueError(f"objective: reg must be a scalar (one regularisation strength); got "
                         f"shape {jnp.shape(reg)}")
    dtype = jnp.result_type(reg)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"objective: reg must be a real number; got dtype {dtype}")


@dataclasses.dataclass(frozen=True)
class Loss:
    """A data loss: the function built from gates, its fused gate, and its plain-jnp twin.

    Attributes:
      name: the name configs use (``loss.kind``).
      fn: ``(scores [N, C], labels [N]) -> scalar``, built from gates or written in plain
        JAX (the tracer runs it through the gates either way).
      gate: the fused gate ``fn`` applies after checking its inputs (None: none).
      reference: the same loss in plain jnp (``jaxprop.reference``); None: ``fn`` itself.
      summary: one line for listings.

    A user's own loss is a ``Loss`` in their own module, named in a config as
    ``loss.kind = "module:attr"``.
    """

    name: str
    fn: Callable
    gate: Gate | None = None
    reference: Callable | None = None
    summary: str = ""

    def __post_init__(self):
        if self.reference is None:
            object.__setattr__(self, "reference", self.fn)


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (
    Loss("softmax", softmax_loss, softmax_gate, reference.softmax_loss,
         "softmax cross-entropy, -log softmax(s)_y, averaged over the batch"),
    Loss("svm", svm_loss, svm_gate, reference.svm_loss,
         "multiclass SVM (hinge), sum over j != y of max(0, s_j - s_y + 1), averaged"),
)}
"""The data losses by the name configs use for them (``loss.kind``)."""


def resolve(kind: str) -> Loss:
    """The loss a config names: a registered name, or ``"module:attr"`` of a user's Loss."""
    from jaxprop._lazy import resolve

    return resolve(LOSSES, kind, Loss, "loss.kind", "loss")
