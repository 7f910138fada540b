"""The optax optimizers a config can name, with the courses' step decay of the learning rate.

Each entry builds its optax transformation from a schedule and the ``[optimizer]`` table,
and says how many copies of the parameters its state holds (for the memory estimate made
before anything is compiled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import optax

__all__ = ["Optimizer", "OPTIMIZERS", "make_optimizer", "lr_at_epoch"]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One optimizer.

    Attributes:
      name: the name configs use (``optimizer.name``).
      build: ``(schedule, optimizer_config) -> optax.GradientTransformation``.
      state_copies: copies of the parameters in its state (Adam: 2).
      summary: one line for listings.
    """

    name: str
    build: Callable[..., optax.GradientTransformation]
    state_copies: int
    summary: str


OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("sgd", lambda schedule, c: optax.sgd(schedule), 0,
              "plain SGD, the courses' update W -= lr * dW"),
    Optimizer("momentum", lambda schedule, c: optax.sgd(schedule, momentum=c.momentum), 1,
              "SGD with momentum (optimizer.momentum)"),
    Optimizer("adam", lambda schedule, c: optax.adam(schedule), 2, "Adam"),
)}
"""The optimizers by name."""


def make_optimizer(config, steps_per_epoch: int) -> Callable[..., optax.GradientTransformation]:
    """Returns ``optimizer(lr)``: the configured optax optimizer for a learning rate.

    The schedule is the courses' step decay, ``lr * lr_decay ** epoch``. ``lr`` may be a
    traced scalar (a sweep vmaps over it); the state's structure does not depend on it, so a
    state made with one learning rate is updated by an optimizer built with another.

    Args:
      config: the ``[optimizer]`` table (``jaxprop.train.experiment.OptimizerConfig``).
      steps_per_epoch: optimizer steps per epoch, the decay's period.
    """
    entry = OPTIMIZERS[config.name]

    def optimizer(lr) -> optax.GradientTransformation:
        schedule = optax.exponential_decay(lr, transition_steps=steps_per_epoch,
                                           decay_rate=config.lr_decay, staircase=True)
        return entry.build(schedule, config)

    return optimizer


def lr_at_epoch(config, epoch: int, lr: float | None = None) -> float:
    """The learning rate used during (0-based) epoch ``epoch``."""
    base = config.lr if lr is None else lr
    return float(base * config.lr_decay ** epoch)
