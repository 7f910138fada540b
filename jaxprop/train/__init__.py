"""Training the lecture's classifiers: jitted epochs, checkpoints, data-parallel sharding.

Modules, each holding one thing:

* ``experiment``: the settings schema of a run, and loading configs by path or name;
* ``optimizers``: the optax optimizers a config can name;
* ``engine``: the gradient pipelines, the step and the epoch (a ``lax.scan``);
* ``trainer``: the one place an epoch is compiled (single, or vmapped over a sweep's grid);
* ``loop``: ``train()``, a whole run; ``sweep``: ``run_sweep()``, a grid;
* ``rundir``, ``lock``, ``checkpoint``: the run's folder (checked, locked, never overwritten
  by accident) and its files, written atomically;
* ``divergence``: why a run diverged; ``report``, ``plots``, ``cache``, ``memory``,
  ``sharding``. (SIGINT/SIGTERM are ``jaxprop._signals``, installed before JAX is.)

For example::

  from jaxprop.train import load_config, train
  result = train(load_config(), "runs/digits")   # the default: two-layer net on digits
  result.summary["test_accuracy"]

Names are imported lazily, so ``from jaxprop.train import load_config`` loads no JAX.
"""

from typing import TYPE_CHECKING

from jaxprop._lazy import exports, typed_exports

if TYPE_CHECKING:  # the public names, once: typed_exports reads them, mypy the types
    from jaxprop.train.cache import enable_compilation_cache as enable_compilation_cache
    from jaxprop.train.experiment import Config as Config
    from jaxprop.train.experiment import load_config as load_config
    from jaxprop.train.loop import EXIT_DIVERGED as EXIT_DIVERGED
    from jaxprop.train.loop import RunResult as RunResult
    from jaxprop.train.loop import default_out_dir as default_out_dir
    from jaxprop.train.loop import train as train
    from jaxprop.train.report import print_summary as print_summary
    from jaxprop.train.sweep import run_sweep as run_sweep
    from jaxprop.train.trainer import Trainer as Trainer
    from jaxprop.train.trainer import load_data as load_data

_EXPORTS = typed_exports(__file__)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
