"""How much memory a run will need, estimated from its config before anything is compiled."""

from __future__ import annotations

import os

import jax
import numpy as np

__all__ = ["MEMORY_BUDGET_BYTES", "memory_budget", "estimate_bytes", "check_memory"]

MEMORY_BUDGET_BYTES = 8 * 2**30
"""The budget when the device's memory is not known: 8 GiB."""


def memory_budget() -> int:
    """Bytes a run may plan to use: 80% of the device's memory (an accelerator's
    ``bytes_limit``, or physical RAM for the CPU), else ``MEMORY_BUDGET_BYTES``."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend reports it
        stats = {}
    if stats.get("bytes_limit"):
        return int(0.8 * stats["bytes_limit"])
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return MEMORY_BUDGET_BYTES


def _num_params(cfg, in_dim: int, num_classes: int) -> int:
    from jaxprop.models import resolve

    m, model = cfg.model, resolve(cfg.model.kind)
    options = {k: getattr(m, k) for k in model.config_keys}
    shapes = jax.eval_shape(lambda: model.init(  # traced only: nothing runs
        jax.random.key(0), in_dim, num_classes, hidden_dim=m.hidden_dim,
        weight_scale=m.weight_scale, bias=not cfg.data.bias_trick, dtype=np.float32,
        **options))
    return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))


def estimate_bytes(cfg, in_dim: int, num_classes: int, num_eval: int,
                   copies: int = 1) -> dict[str, int]:
    """A lower estimate of a run's float32 working set, from the config alone (no arrays).

    Args:
      cfg: the experiment.
      in_dim: D. num_classes: C.
      num_eval: the most examples scored at once by the accuracy evaluation.
      copies: models trained side by side (a sweep's grid size).

    Returns:
      ``{"params", "optimizer", "activations", "total"}`` in bytes: parameters with their
      gradients and updates (3 copies), the optimizer state, and the activations of one
      batch (forward pipeline: ``forward_chunk_size`` tangents of them) or of one
      evaluation pass, whichever is larger.
    """
    from jaxprop.models import resolve
    from jaxprop.train.engine import PIPELINES
    from jaxprop.train.optimizers import OPTIMIZERS

    c, b = int(num_classes), cfg.train.batch_size
    p = _num_params(cfg, int(in_dim), c)
    width = resolve(cfg.model.kind).activations(cfg.model.hidden_dim, c)
    tangents = cfg.train.forward_chunk_size + 1 if PIPELINES[cfg.train.pipeline].rules == "jvp" \
        else 1
    out = {"params": 4 * 3 * p * copies,
           "optimizer": 4 * OPTIMIZERS[cfg.optimizer.name].state_copies * p * copies,
           "activations": 4 * max(b * width * tangents, num_eval * width) * copies}
    out["total"] = sum(out.values())
    return out


def check_memory(cfg, in_dim: int, num_classes: int, num_eval: int, copies: int = 1,
                 budget: int | None = None) -> int:
    """Raises ValueError, before anything is compiled or allocated, if the run cannot fit.

    Returns:
      The estimated bytes.
    """
    est = estimate_bytes(cfg, in_dim, num_classes, num_eval, copies)
    budget = memory_budget() if budget is None else budget
    if est["total"] > budget:
        gib = 2.0**30
        size = (f"model.hidden_dim={cfg.model.hidden_dim}, " if cfg.model.kind == "two_layer"
                else "")
        grid = f" x {copies} sweep runs" if copies > 1 else ""
        raise ValueError(
            f"this run needs about {est['total'] / gib:.1f} GiB ({size}"
            f"train.batch_size={cfg.train.batch_size}, D={in_dim}, C={num_classes}{grid}: "
            f"params {est['params'] / gib:.1f} GiB, optimizer state "
            f"{est['optimizer'] / gib:.1f} GiB, activations {est['activations'] / gib:.1f} GiB)"
            f", over the budget of {budget / gib:.1f} GiB; lower model.hidden_dim or "
            "train.batch_size")
    return est["total"]
