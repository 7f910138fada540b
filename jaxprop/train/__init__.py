"""Training the lecture's classifiers: jitted epochs, checkpoints, data-parallel sharding.

Modules: ``engine`` (the step and the compiled epoch), ``run`` (a whole run and its files),
``checkpoint`` (atomic saves), ``sharding`` (the device mesh), ``plots`` (the PNGs).

For example::

  from jaxprop.config import load_config
  from jaxprop.train import train
  result = train(load_config(), "runs/digits")   # the default: two-layer net on digits
  result.summary["test_accuracy"]
"""

from jaxprop.train.run import (
    EXIT_DIVERGED,
    RunResult,
    Trainer,
    default_out_dir,
    enable_compilation_cache,
    load_data,
    print_summary,
    train,
)

__all__ = [
    "EXIT_DIVERGED",
    "RunResult",
    "Trainer",
    "default_out_dir",
    "enable_compilation_cache",
    "load_data",
    "print_summary",
    "train",
]
