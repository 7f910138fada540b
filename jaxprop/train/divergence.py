"""Why a run diverged: the likely culprit, from the config and from where the NaN/Inf appeared.

When an epoch makes a loss or a parameter NaN or Inf, the trainer replays it step by step
(``Trainer.diagnose``) to find the first value that stopped being finite: the loss (the
forward pass overflowed), a gradient (the backward pass did) or the parameters (the update
did). :func:`advice` turns that and the config into one sentence naming the key to change:

* the very first step of a fresh run, before any update, cannot blame the learning rate:
  with huge initial weights (or ``model.weight_scale`` above 1) it is
  ``model.weight_scale``; with a penalty ``reg * sum W^2`` that alone overflows,
  ``loss.reg``; else the inputs' scale;
* otherwise the key furthest above its usual range (``optimizer.lr`` and ``loss.reg`` above
  1, ``model.weight_scale`` above 1) is named, and the learning rate when none is.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["USUAL_MAX", "advice", "where_text"]

USUAL_MAX = {"optimizer.lr": 1.0, "loss.reg": 1.0, "model.weight_scale": 1.0}
"""Above these a value is unusual enough to be the likely culprit of a divergence."""

HUGE = 1e30
"""A sum of squared weights (or a penalty) beyond this overflows float32 within a few steps."""


def where_text(where: dict) -> str:
    """The first non-finite value, in words."""
    step, what, leaves = where.get("step"), where.get("what"), where.get("leaves", [])
    if step is None:
        return "the replayed epoch found no single step to blame"
    names = ", ".join(leaves)
    if what == "loss":
        return f"the first value that was not finite was the loss, at step {step} of the epoch"
    if what == "gradient":
        return (f"the first values that were not finite were the gradients of {names}, at "
                f"step {step} of the epoch (the loss was still finite)")
    return (f"the first values that were not finite were the parameters {names}, after the "
            f"update of step {step} of the epoch (the loss and gradients were finite)")


def _sum_of_squares(params: dict) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(sum(np.sum(np.square(np.asarray(w, np.float64)))
                         for w in params.values() if np.ndim(w) >= 2))


def culprit(cfg, epoch: int, where: dict, params: dict) -> str:
    """The dotted key most likely to blame: ``optimizer.lr``, ``loss.reg``,
    ``model.weight_scale``, or ``"inputs"``.

    Args:
      cfg: the run's config.
      epoch: the 0-based epoch that diverged.
      where: ``Trainer.diagnose``'s answer.
      params: the last good parameters (host arrays): the state the epoch started from.
    """
    sumsq = _sum_of_squares(params)
    huge_weights = not math.isfinite(sumsq) or sumsq > HUGE
    penalty = cfg.loss.reg * sumsq if math.isfinite(sumsq) else math.inf
    if epoch == 0 and where.get("step") == 1 and where.get("what") == "loss":
        # before any update: the initial weights, the penalty or the inputs
        ws = cfg.model.weight_scale
        if huge_weights or (ws is not None and ws > USUAL_MAX["model.weight_scale"]):
            return "model.weight_scale"
        if penalty > HUGE:
            return "loss.reg"
        return "inputs"
    values = {"optimizer.lr": cfg.optimizer.lr, "loss.reg": cfg.loss.reg}
    if cfg.model.weight_scale is not None and epoch == 0:
        values["model.weight_scale"] = cfg.model.weight_scale
    excess = {k: math.log10(v / USUAL_MAX[k]) for k, v in values.items() if v > 0}
    key = max(excess, key=excess.get) if excess else "optimizer.lr"
    return key if excess.get(key, 0.0) > 0 else "optimizer.lr"


def advice(cfg, epoch: int, where: dict, params: dict) -> str:
    """One sentence: the likely culprit and what to set instead."""
    key = culprit(cfg, epoch, where, params)
    if key == "optimizer.lr":
        lr = cfg.optimizer.lr
        return (f"The learning rate is likely too high (optimizer.lr={lr:g}): lower it, e.g. "
                f"--set optimizer.lr={lr / 10:g}.")
    if key == "loss.reg":
        reg = cfg.loss.reg
        return (f"The regularisation is likely too strong (loss.reg={reg:g}: the penalty "
                f"reg * sum W^2 and its gradient 2 reg W overflow float32): lower it, e.g. "
                f"--set loss.reg={reg / 1000:g}.")
    if key == "model.weight_scale":
        ws = cfg.model.weight_scale
        return (f"The initial weights are likely too large (model.weight_scale={ws:g}): the "
                "scores of the very first step overflow float32. Lower it, or use the model's "
                "default with --set model.weight_scale=none.")
    return ("The very first step overflowed with the initial weights, before any update: "
            "check the scale of the inputs (data.preprocess) and model.weight_scale.")
