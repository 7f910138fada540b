"""The training step and the compiled epoch: one ``lax.scan`` over the epoch's mini-batches.

Every pipeline differentiates the same function, ``jaxprop.objective(scores_fn, loss_fn,
reg)``: ``reverse`` through our VJP rules, ``forward`` through our JVP rules (one JVP per
parameter), ``jax`` through ``jax.value_and_grad``. The learning rate and the regularisation
strength enter the step as traced scalars (``hparams``), so one compiled epoch serves every
value of them and a sweep can ``vmap`` over both.

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
    """The model's initial float32 parameters with the course names (W/b or W1/b1/W2/b2)."""
    init, _ = MODELS[cfg.model.kind]
    if cfg.model.kind == "linear":
        scale = 1e-3 if cfg.model.weight_scale is None else cfg.model.weight_scale
        return init(key, in_dim, num_classes, weight_scale=scale, dtype=jnp.float32)
    return init(key, in_dim, cfg.model.hidden_dim, num_classes,
                weight_scale=cfg.model.weight_scale, dtype=jnp.float32)


def loss_fn(cfg: Config) -> Callable:
    """``f(params, x, y, reg) = data loss + reg * sum W^2``, built with jaxprop.objective."""
    _, scores_fn = MODELS[cfg.model.kind]
    data_loss = LOSSES[cfg.loss.kind]

    def f(params, x, y, reg):
        return jaxprop.objective(scores_fn, data_loss, reg)(params, x, y)

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
    if kind == "jax":
        return jax.value_and_grad(f)
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
