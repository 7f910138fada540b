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

from jaxprop._lazy import exports

_EXPORTS = {
    "load_config": "jaxprop.train.experiment",
    "Config": "jaxprop.train.experiment",
    "EXIT_DIVERGED": "jaxprop.train.loop",
    "RunResult": "jaxprop.train.loop",
    "default_out_dir": "jaxprop.train.loop",
    "train": "jaxprop.train.loop",
    "Trainer": "jaxprop.train.trainer",
    "load_data": "jaxprop.train.trainer",
    "enable_compilation_cache": "jaxprop.train.cache",
    "print_summary": "jaxprop.train.report",
    "run_sweep": "jaxprop.train.sweep",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
