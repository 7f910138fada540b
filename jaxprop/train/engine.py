"""The training step and the compiled epoch: one ``lax.scan`` over the epoch's mini-batches.

The gate pipelines differentiate ``jaxprop.objective(scores_fn, loss_fn, reg)``:
``reverse`` through our VJP rules, ``forward`` through our JVP rules (one JVP per
parameter). ``jax`` is the control: ``jax.value_and_grad`` of the plain-jnp twin of the
same model and loss (``jaxprop.plain``), JAX's own autodiff with none of our rules involved.
The learning rate and the regularisation strength enter the step as traced scalars
(``hparams``), so one compiled epoch serves every value of them and a sweep can ``vmap``
over both.

Data order: epoch ``e`` visits the training set in the order
``jax.random.permutation(fold_in(data_key, e), N)``, cut into ``N // B`` full batches of B
examples. The ``N mod B`` examples left over (a different few each epoch) wait for a later
epoch. Because the order depends only on ``(seed, epoch)``, a resumed run sees exactly the
batches an uninterrupted one does.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

import jaxprop
from jaxprop import plain
from jaxprop.config import Config
from jaxprop.losses import LOSSES
from jaxprop.models import MODELS
from jaxprop.train import sharding

__all__ = [
    "TRAIN_ACC_EXAMPLES",
    "FORWARD_WARN_PARAMS",
    "keys",
    "init_params",
    "loss_fn",
    "value_and_grad_fn",
    "make_optimizer",
    "lr_at_epoch",
    "steps_per_epoch",
    "make_epoch_fn",
    "accuracy_fn",
    "MEMORY_BUDGET_BYTES",
    "memory_budget",
    "estimate_bytes",
    "check_memory",
]

TRAIN_ACC_EXAMPLES = 10_000
"""Training accuracy is measured on the first this-many training examples each epoch."""

FORWARD_WARN_PARAMS = 2_000
"""Above this many parameters the forward pipeline warns: it costs one JVP per parameter."""


def keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(init_key, data_key)`` from the seed; epoch e shuffles with ``fold_in(data_key, e)``."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    return init_key, data_key


def init_params(cfg: Config, key, in_dim: int, num_classes: int) -> dict:
    """The model's initial float32 parameters with the course names (W/b or W1/b1/W2/b2).

    A linear model with ``data.bias_trick`` has only ``W`` [D + 1, C]: its last row is the
    bias, regularised with W, as in CS231n's ``LinearClassifier``.
    """
    init, _ = MODELS[cfg.model.kind]
    if cfg.model.kind == "linear":
        scale = 1e-3 if cfg.model.weight_scale is None else cfg.model.weight_scale
        # bias trick: the data's last column is 1, the last row of W is the bias (no "b")
        return init(key, in_dim, num_classes, weight_scale=scale, dtype=jnp.float32,
                    bias=not cfg.data.bias_trick)
    return init(key, in_dim, cfg.model.hidden_dim, num_classes,
                weight_scale=cfg.model.weight_scale, dtype=jnp.float32)


def loss_fn(cfg: Config) -> Callable:
    """``f(params, x, y, reg) = data loss + reg * sum W^2``, built with jaxprop.objective."""
    _, scores_fn = MODELS[cfg.model.kind]
    data_loss = LOSSES[cfg.loss.kind]

    def f(params, x, y, reg):
        return jaxprop.objective(scores_fn, data_loss, reg)(params, x, y)

    return f


def plain_loss_fn(cfg: Config) -> Callable:
    """The same ``f(params, x, y, reg)`` from the plain-jnp twins in ``jaxprop.plain``."""
    scores_fn = plain.MODELS[cfg.model.kind]
    data_loss = plain.LOSSES[cfg.loss.kind]

    def f(params, x, y, reg):
        return plain.objective(scores_fn, data_loss, reg)(params, x, y)

    return f


def value_and_grad_fn(cfg: Config, num_params: int | None = None) -> Callable:
    """``(params, x, y, reg) -> (loss, grads)`` from the pipeline ``cfg.train.pipeline``."""
    f = loss_fn(cfg)
    kind = cfg.train.pipeline
    if kind == "reverse":
        return jaxprop.reverse.value_and_grad(f)
    if kind == "forward":
        if num_params is not None and num_params > FORWARD_WARN_PARAMS:
            warnings.warn(
                f"train.pipeline='forward' costs one JVP per parameter: {num_params} JVPs per "
                "step for this model, each as costly as a forward pass. Expect minutes where "
                "'reverse' takes a second; use it to compare the pipelines on small nets.",
                stacklevel=2)
        return jaxprop.forward.value_and_grad(f, chunk_size=cfg.train.forward_chunk_size)
    if kind == "jax":  # JAX's autodiff of the plain-jnp twin: none of our rules
        return jax.value_and_grad(plain_loss_fn(cfg))
    raise ValueError(f"unknown train.pipeline {kind!r}; expected reverse, forward or jax")


def steps_per_epoch(cfg: Config, num_train: int) -> int:
    """``N // B`` full batches; raises if the training set is smaller than one batch."""
    if cfg.train.batch_size > num_train:
        raise ValueError(
            f"config key 'train.batch_size' ({cfg.train.batch_size}) exceeds the "
            f"{num_train} training examples; use a batch size of at most {num_train}")
    return num_train // cfg.train.batch_size


def make_optimizer(cfg: Config, lr, steps: int) -> optax.GradientTransformation:
    """The optax optimizer with the course's step decay: lr * lr_decay ** epoch.

    ``lr`` may be a traced scalar. The state's structure does not depend on it, so a state
    made with one learning rate is updated by an optimizer built with another.
    """
    schedule = optax.exponential_decay(lr, transition_steps=steps,
                                       decay_rate=cfg.optimizer.lr_decay, staircase=True)
    name = cfg.optimizer.name
    if name == "sgd":
        return optax.sgd(schedule)
    if name == "momentum":
        return optax.sgd(schedule, momentum=cfg.optimizer.momentum)
    if name == "adam":
        return optax.adam(schedule)
    raise ValueError(f"unknown optimizer.name {name!r}; expected sgd, momentum or adam")


def lr_at_epoch(cfg: Config, epoch: int, lr: float | None = None) -> float:
    """The learning rate used during (0-based) epoch ``epoch``."""
    base = cfg.optimizer.lr if lr is None else lr
    return float(base * cfg.optimizer.lr_decay ** epoch)


def _accuracy(scores_fn, params, x, y):
    pred = jnp.argmax(scores_fn(params, x), axis=1)
    return jnp.mean((pred == y).astype(jnp.float32))


def make_epoch_fn(cfg: Config, steps: int, mesh, num_params: int | None = None) -> Callable:
    """One epoch as a function to jit: a lax.scan of ``steps`` optimizer steps.

    Returns:
      ``epoch(params, opt_state, hparams, key, x_train, y_train, x_val, y_val) ->
      (params, opt_state, stats)`` with ``hparams = {"lr": [], "reg": []}`` float32 scalars
      and ``stats`` = ``train_loss`` (mean over the steps), ``train_acc``, ``val_acc`` and
      ``finite`` (every step's loss and every final parameter finite).
    """
    batch_size = cfg.train.batch_size
    vg = value_and_grad_fn(cfg, num_params)
    _, scores_fn = MODELS[cfg.model.kind]
    if cfg.train.pipeline == "jax":  # the control run touches none of our gates
        scores_fn = plain.MODELS[cfg.model.kind]
    batch_spec = sharding.batch_sharding(mesh)

    def epoch(params, opt_state, hparams, key, x_train, y_train, x_val, y_val):
        opt = make_optimizer(cfg, hparams["lr"], steps)
        n = x_train.shape[0]
        order = jax.random.permutation(key, n)[: steps * batch_size]
        order = order.reshape(steps, batch_size)

        def step(carry, idx):
            params, opt_state = carry
            xb = jax.lax.with_sharding_constraint(x_train[idx], batch_spec)
            yb = jax.lax.with_sharding_constraint(y_train[idx], batch_spec)
            loss, grads = vg(params, xb, yb, hparams["reg"])
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
        m = min(n, TRAIN_ACC_EXAMPLES)
        finite = jnp.all(jnp.isfinite(losses))
        for leaf in jax.tree.leaves(params):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        stats = {
            "train_loss": jnp.mean(losses),
            "train_acc": _accuracy(scores_fn, params, x_train[:m], y_train[:m]),
            "val_acc": _accuracy(scores_fn, params, x_val, y_val),
            "finite": finite,
        }
        return params, opt_state, stats

    return epoch


@functools.cache
def accuracy_fn(model_kind: str) -> Callable:
    """Jitted ``accuracy(params, x, y)``: the fraction of argmax scores equal to the labels."""
    _, scores_fn = MODELS[model_kind]
    return jax.jit(lambda params, x, y: _accuracy(scores_fn, params, x, y))


MEMORY_BUDGET_BYTES = 8 * 2**30
"""The budget when the device's memory is not known: 8 GiB."""

_OPT_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}


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
        import os

        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return MEMORY_BUDGET_BYTES


def estimate_bytes(cfg: Config, in_dim: int, num_classes: int, num_eval: int,
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
    d, c, b = int(in_dim), int(num_classes), cfg.train.batch_size
    if cfg.model.kind == "linear":
        p = d * c + (0 if cfg.data.bias_trick else c)
        width = 3 * c  # scores, their gradient, the loss's local gradient
    else:
        h = cfg.model.hidden_dim
        p = d * h + h + h * c + c
        width = 4 * h + 3 * c
    batch_width = width * (cfg.train.forward_chunk_size + 1 if cfg.train.pipeline == "forward"
                           else 1)
    out = {"params": 4 * 3 * p * copies,
           "optimizer": 4 * _OPT_COPIES[cfg.optimizer.name] * p * copies,
           "activations": 4 * max(b * batch_width, num_eval * width) * copies}
    out["total"] = sum(out.values())
    return out


def check_memory(cfg: Config, in_dim: int, num_classes: int, num_eval: int, copies: int = 1,
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
