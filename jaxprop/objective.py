"""The training objective: data loss plus L2 regularisation."""

from __future__ import annotations

from collections.abc import Callable

from jaxprop import gates
from jaxprop.losses import l2_penalty


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

    def f(params, x, y):
        loss = loss_fn(scores_fn(params, x), y)
        if isinstance(reg, (int, float)) and reg == 0:
            return loss
        return gates.add(loss, gates.mul(reg, l2_penalty(params)))

    return f
