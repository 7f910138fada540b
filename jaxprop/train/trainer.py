"""The one place an epoch is compiled: a config's step, its data on the devices, its state.

A :class:`Trainer` looks up the config's model, loss, optimizer and gradient pipeline in
their registries, checks before compiling anything that the batch fits the devices and the
run fits in memory, puts the data on the device mesh, and compiles the epoch once. With a
``grid`` of (lr, reg) pairs it compiles the same epoch ``jax.vmap``-ed over the grid: every
pair trained side by side in one program (``jaxprop sweep``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import losses, models
from jaxprop.train import engine, memory, sharding
from jaxprop.train.optimizers import make_optimizer

__all__ = ["Trainer", "load_data", "clear_compiled", "model_options"]

_COMPILED: dict = {}
"""Compiled epochs of this process, by static config and shapes (at most 16)."""
_ORDER_BLOCK = 32  # epochs whose batch orders are drawn by one program


def clear_compiled() -> None:
    """Forgets the epochs compiled in this process, so the next Trainer compiles (and fills
    the persistent compilation cache) whatever trained before."""
    _COMPILED.clear()


def model_options(model, model_cfg) -> dict:
    """The ``model.*`` config keys a model's init takes beyond the common ones
    (``Model.config_keys``), by name."""
    return {k: getattr(model_cfg, k) for k in model.config_keys}


def load_data(cfg):
    """The dataset of ``cfg.data`` from ``jaxprop.data.load_dataset``."""
    from jaxprop.data import load_dataset

    d = cfg.data
    return load_dataset(d.dataset, d.root, preprocess=d.preprocess, bias_trick=d.bias_trick,
                        num_train=d.num_train)


class Trainer:
    """One config's compiled epoch, with the data already on the devices.

    Args:
      cfg: the experiment.
      dataset: a ``jaxprop.data.Dataset``.
      mesh: the device mesh (default: all devices, axis ``"data"``).
      grid: ``(lr, reg)`` pairs to train side by side, one vmapped program (a sweep); None
        trains the config's own lr and reg.

    Raises:
      ValueError: the batch size does not fit the data or the devices, or the run's
        estimated memory (``memory.check_memory``) is over the budget; checked before
        anything is compiled or allocated.
    """

    def __init__(self, cfg, dataset, mesh=None, grid: Sequence[tuple[float, float]] | None = None):
        self.cfg = cfg
        self.dataset = dataset
        self.grid = None if grid is None else [tuple(map(float, p)) for p in grid]
        self.copies = 1 if grid is None else len(self.grid)
        self.model = models.resolve(cfg.model.kind)
        self.loss = losses.resolve(cfg.loss.kind)
        self.pipeline = engine.PIPELINES[cfg.train.pipeline]
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        # a sweep on several devices spreads its models over them; otherwise each batch is
        # split over the devices and the models are replicated
        self.split_grid = grid is not None and sharding.splits_grid(self.mesh, self.copies)
        if not self.split_grid:
            sharding.check_batch_size(cfg.train.batch_size, self.mesh)
        n = int(dataset.x_train.shape[0])
        self.steps = engine.steps_per_epoch(cfg.train.batch_size, n)
        num_eval = max(min(n, engine.TRAIN_ACC_EXAMPLES), int(dataset.x_val.shape[0]),
                       int(dataset.x_test.shape[0]))
        self.estimated_bytes = memory.check_memory(cfg, dataset.in_dim, dataset.num_classes,
                                                   num_eval, self.copies)
        self.init_key, self.data_key = engine.keys(cfg.seed)
        rep = sharding.replicated(self.mesh)
        self.dropout_key = engine.dropout_key(self.init_key)
        self._state_sharding = sharding.grid_sharding(self.mesh) if self.split_grid else rep
        m = min(n, engine.TRAIN_ACC_EXAMPLES)
        self._orders: dict = {}
        self._train_data = None  # resident on the devices unless several processes share
        if jax.process_count() == 1:  # the compiled epoch draws its own batches
            self._train_data = jax.device_put((dataset.x_train, dataset.y_train), rep)
            self._data_key = jax.device_put(self.data_key, rep)
        self._draw = (self.steps, cfg.train.batch_size) if self._train_data is not None \
            else None
        self.eval_data = sharding.put(  # the accuracy sets, whole on every device
            (dataset.x_train[:m], dataset.y_train[:m], dataset.x_val, dataset.y_val), rep)
        pairs = [(cfg.optimizer.lr, cfg.loss.reg)] if grid is None else self.grid
        lrs, regs = (np.asarray([p[k] for p in pairs], np.float32) for k in (0, 1))
        self.hparams = sharding.put({"lr": lrs, "reg": regs} if grid is not None else
                                    {"lr": lrs[0], "reg": regs[0]}, self._state_sharding)
        self.optimizer = make_optimizer(cfg.optimizer, self.steps)
        self.scores_fn = self.model.reference if self.pipeline.reference else self.model.scores
        self.num_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(
            jax.eval_shape(self._init_params)))
        value_and_grad = engine.value_and_grad_fn(
            cfg.train.pipeline, self.model, self.loss, chunk_size=cfg.train.forward_chunk_size,
            num_params=self.num_params, dropout_keep=cfg.model.dropout_keep)
        self._value_and_grad = value_and_grad
        self.compiler_options = engine.compiler_options(cfg.train.cpu_gemm)
        epoch = engine.make_epoch_fn(value_and_grad, self.scores_fn, self.optimizer, self.mesh,
                                     split_batch=not self.split_grid, draw=self._draw)
        if grid is not None:
            epoch = jax.vmap(epoch, in_axes=(0, 0, 0, None, None, None, None, None, None))
        self._epoch = jax.jit(epoch, out_shardings=self._state_sharding)
        self._make_initial_state = jax.jit(self._initial_state,
                                           out_shardings=self._state_sharding)
        self._compiled = None
        self._diagnose = None
        self.compile_seconds = 0.0

    def _init_params(self, init_key=None):
        m = self.cfg.model
        key = self.init_key if init_key is None else init_key
        return self.model.init(key, self.dataset.in_dim, self.dataset.num_classes,
                               hidden_dim=m.hidden_dim, weight_scale=m.weight_scale,
                               bias=not self.cfg.data.bias_trick, dtype=jnp.float32,
                               **model_options(self.model, m))

    def _initial_state(self, init_key):
        params = self._init_params(init_key)
        state = (params, self.optimizer(self.cfg.optimizer.lr).init(params))
        if self.grid is not None:  # every pair starts from the same weights
            state = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.copies, *x.shape)), state)
        return state

    def init_state(self):
        """``(params, opt_state)`` at epoch 0, replicated over the mesh (one per grid pair,
        stacked along a leading axis, for a grid; spread over the devices along that axis
        when ``split_grid``). One compiled program makes it (the
        random draws op by op would each compile at a run's start)."""
        return self._make_initial_state(self.init_key)

    def batches(self, epoch: int):
        """The compiled epoch's ``batches`` argument for 0-based ``epoch``.

        One process: ``(data_key, epoch, x_train, y_train)``, and the epoch draws its order
        and gathers each batch on the devices. Several processes: ``(xb, yb)``, [steps, B,
        ...] sharded along the batch axis, of which each process gathers only its own part
        of each batch on the host (``sharding.batches_from_host``).
        """
        if self._train_data is not None:
            return (self._data_key, np.int32(epoch), *self._train_data)
        if epoch not in self._orders:
            first = epoch - epoch % _ORDER_BLOCK  # the orders of a block of epochs at a time
            n, b = int(self.dataset.x_train.shape[0]), self.cfg.train.batch_size
            block = np.asarray(engine.epoch_orders(
                self.data_key, np.arange(first, first + _ORDER_BLOCK), n, self.steps, b))
            self._orders = {first + i: block[i] for i in range(_ORDER_BLOCK)}
        ds, order = self.dataset, self._orders[epoch]
        return (sharding.batches_from_host(ds.x_train, order, self.mesh),
                sharding.batches_from_host(ds.y_train, order, self.mesh))

    def noise(self, epoch: int):
        """The compiled epoch's ``noise``: ``(dropout_key, epoch)``, whence each step's
        dropout key (``engine.step_key``); a function of the seed and the epoch alone, so a
        resumed run draws the masks an uninterrupted one does."""
        return sharding.put((self.dropout_key, np.int32(epoch)),
                            sharding.replicated(self.mesh))

    def epoch_args(self, epoch: int, hparams=None) -> tuple:
        """The compiled epoch's arguments after ``(params, opt_state)``."""
        return (self.hparams if hparams is None else hparams, self.noise(epoch),
                self.batches(epoch), *self.eval_data)

    def _cache_key(self, state):
        cfg = self.cfg
        static = (cfg.model, cfg.loss.kind, cfg.optimizer.name, cfg.optimizer.lr_decay,
                  cfg.optimizer.momentum, cfg.train.batch_size, cfg.train.pipeline,
                  cfg.train.forward_chunk_size, self.steps, self.mesh, self.copies,
                  self.split_grid, cfg.train.cpu_gemm, jax.config.jax_enable_x64)
        shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype)), (state, self.eval_data))
        batch = (self.dataset.x_train.shape, str(self.dataset.x_train.dtype),
                 str(self.dataset.y_train.dtype))
        return static, str(shapes), batch

    def compile(self, state) -> None:
        """Compiles the epoch ahead of time (timed as ``compile_seconds``).

        The learning rate, the regularisation, the seed and the data values are arguments
        of the compiled epoch, so a Trainer whose config differs only in those reuses the
        program compiled in this process.
        """
        if self._compiled is None:
            t0 = time.perf_counter()
            key = self._cache_key(state)
            self._compiled = _COMPILED.get(key)
            if self._compiled is None:
                self._compiled = self._epoch.lower(*state, *self.epoch_args(0)).compile(
                    compiler_options=self.compiler_options)
                if len(_COMPILED) >= 16:
                    _COMPILED.pop(next(iter(_COMPILED)))
                _COMPILED[key] = self._compiled
            self.compile_seconds = time.perf_counter() - t0

    def run_epoch(self, state, epoch: int, hparams: dict | None = None):
        """Runs 0-based ``epoch``; returns ``(state, stats, seconds)``.

        Stats are floats (NumPy arrays over the grid, for a grid). ``hparams``
        (``{"lr": ..., "reg": ...}``) replaces the config's learning rate and regularisation
        without recompiling.
        """
        self.compile(state)
        hparams = None if hparams is None else sharding.put(
            {k: np.asarray(v, np.float32) for k, v in hparams.items()}, self._state_sharding)
        t0 = time.perf_counter()  # the time includes gathering the epoch's batches
        params, opt_state, stats = self._compiled(*state, *self.epoch_args(epoch, hparams))
        stats = jax.device_get(stats)
        if self.grid is None:
            stats = {k: v.item() for k, v in stats.items()}
        return (params, opt_state), stats, time.perf_counter() - t0

    def diagnose(self, state, epoch: int) -> dict:
        """Where 0-based ``epoch``, run from ``state``, first made a value NaN or Inf.

        Replays the epoch step by step (the same batches, so the same numbers); compiled only
        when asked, after an epoch diverged. Not for a grid.

        Returns:
          ``{"step": s, "what": w, "leaves": names}``: the 1-based step, ``"loss"`` (the
          forward pass overflowed), ``"gradient"`` (the backward pass did; ``leaves`` names
          the parameters whose gradient did) or ``"parameters"`` (the update did); ``step``
          None if the replay found nothing.
        """
        if self.grid is not None:
            raise ValueError("Trainer.diagnose: a sweep's grid is not diagnosed")
        args = (*state, self.hparams, self.noise(epoch), self.batches(epoch))
        if self._diagnose is None:  # the epoch's compiler options: the same numbers
            self._diagnose = jax.jit(engine.make_diagnose_fn(
                self._value_and_grad, self.optimizer, self.mesh, self._draw),
                out_shardings=sharding.replicated(self.mesh)).lower(*args).compile(
                compiler_options=self.compiler_options)
        flags = jax.device_get(self._diagnose(*args))
        for s in range(self.steps):
            if not flags["loss"][s]:
                return {"step": s + 1, "what": "loss", "leaves": []}
            for what, tree in (("gradient", flags["grads"]), ("parameters", flags["params"])):
                bad = [k for k, v in tree.items() if not v[s]]
                if bad:
                    return {"step": s + 1, "what": what, "leaves": bad}
        return {"step": None, "what": None, "leaves": []}

    def accuracy(self, params, x, y) -> float:
        """Accuracy of ``params`` on ``(x, y)``."""
        return float(engine.accuracy_fn(self.scores_fn)(params, x, y))

    def accuracies(self, params, *pairs) -> list[float]:
        """Accuracy of ``params`` on each ``(x, y)`` of ``pairs``, in one program."""
        flat = sharding.put([a for pair in pairs for a in pair], sharding.replicated(self.mesh))
        return [float(a) for a in engine.accuracies_fn(self.scores_fn)(params, *flat)]
