"""A training run: compile the epoch once, run it epoch after epoch, lose nothing.

``train(cfg, out_dir)`` loads the data, places it and the parameters on the device mesh,
compiles one epoch (a ``lax.scan`` over its mini-batches) and calls it once per epoch. After
every epoch it appends a line to ``metrics.jsonl`` and atomically rewrites the checkpoint
and ``params.npz``. SIGINT/SIGTERM let the current epoch finish, save, and stop with exit
code 130/143. A NaN or Inf loss stops the run, keeping the last good checkpoint.

For example::

  result = train(load_config("digits_linear_svm"), "runs/svm")
  result.summary["test_accuracy"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.config import Config, to_toml
from jaxprop.train import checkpoint, engine, plots, sharding

__all__ = [
    "EXIT_DIVERGED",
    "RunResult",
    "Trainer",
    "load_data",
    "default_out_dir",
    "enable_compilation_cache",
    "train",
]

EXIT_DIVERGED = 3
"""Exit code of a run stopped by a NaN or Inf loss."""

CHECKPOINT = "checkpoint.npz"

_COMPILED: dict = {}
"""Compiled epochs of this process, by static config and shapes (at most 16)."""


def default_out_dir(cfg: Config) -> Path:
    """``runs/<name>/`` under the current directory."""
    return Path("runs") / cfg.name


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache, so a rerun skips compiling.

    The folder is ``path``, else ``$JAXPROP_CACHE_DIR``, else ``~/.cache/jaxprop/xla``;
    ``JAXPROP_CACHE_DIR=off`` leaves the cache off. Every compiled program is cached, however
    fast it compiled or small it is. If a cache folder is already set (by the user or an
    earlier call) it is kept.

    Returns:
      The cache folder in use, or None.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = path or os.environ.get("JAXPROP_CACHE_DIR") or "~/.cache/jaxprop/xla"
    if str(path).lower() == "off":
        return None
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:  # JAX decides once per process whether the cache is on: make it look again
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
    return str(folder)


def load_data(cfg: Config):
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
      copies: models trained side by side (a sweep's grid size), for the memory check.

    Raises:
      ValueError: the batch size does not fit the data or the devices, or the run's
        estimated memory (``engine.check_memory``) is over the budget; checked before
        anything is compiled or allocated.
    """

    def __init__(self, cfg: Config, dataset, mesh=None, copies: int = 1):
        self.cfg = cfg
        self.dataset = dataset
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        sharding.check_batch_size(cfg.train.batch_size, self.mesh)
        n = int(dataset.x_train.shape[0])
        self.steps = engine.steps_per_epoch(cfg, n)
        num_eval = max(min(n, engine.TRAIN_ACC_EXAMPLES), int(dataset.x_val.shape[0]),
                       int(dataset.x_test.shape[0]))
        self.estimated_bytes = engine.check_memory(cfg, dataset.in_dim, dataset.num_classes,
                                                   num_eval, copies)
        self.init_key, self.data_key = engine.keys(cfg.seed)
        rep = sharding.replicated(self.mesh)
        self.data = jax.device_put(
            (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val), rep)
        self.hparams = jax.device_put({"lr": jnp.float32(cfg.optimizer.lr),
                                       "reg": jnp.float32(cfg.loss.reg)}, rep)
        self.num_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(
            jax.eval_shape(self._init_params)))
        self._epoch = jax.jit(engine.make_epoch_fn(cfg, self.steps, self.mesh, self.num_params))
        self._compiled = None
        self.compile_seconds = 0.0

    def _init_params(self):
        return engine.init_params(self.cfg, self.init_key, self.dataset.in_dim,
                                  self.dataset.num_classes)

    def init_state(self):
        """``(params, opt_state)`` at epoch 0, replicated over the mesh."""
        params = self._init_params()
        opt_state = engine.make_optimizer(self.cfg, self.cfg.optimizer.lr, self.steps).init(params)
        return sharding.replicate((params, opt_state), self.mesh)

    def _cache_key(self, state):
        cfg = self.cfg
        static = (cfg.model, cfg.loss.kind, cfg.optimizer.name, cfg.optimizer.lr_decay,
                  cfg.optimizer.momentum, cfg.train.batch_size, cfg.train.pipeline,
                  cfg.train.forward_chunk_size, self.steps, self.mesh,
                  jax.config.jax_enable_x64)
        shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype)), (state, self.data))
        return static, str(shapes)

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
                params, opt_state = state
                epoch_key = jax.random.fold_in(self.data_key, 0)
                self._compiled = self._epoch.lower(params, opt_state, self.hparams, epoch_key,
                                                   *self.data).compile()
                if len(_COMPILED) >= 16:
                    _COMPILED.pop(next(iter(_COMPILED)))
                _COMPILED[key] = self._compiled
            self.compile_seconds = time.perf_counter() - t0

    def run_epoch(self, state, epoch: int, hparams: dict | None = None):
        """Runs 0-based ``epoch``; returns ``(state, stats, seconds)``, stats as floats.

        ``hparams`` (``{"lr": float32 [], "reg": float32 []}``) replaces the config's learning
        rate and regularisation without recompiling.
        """
        self.compile(state)
        key = jax.random.fold_in(self.data_key, epoch)
        hparams = self.hparams if hparams is None else jax.device_put(
            {k: jnp.float32(v) for k, v in hparams.items()}, sharding.replicated(self.mesh))
        t0 = time.perf_counter()
        params, opt_state, stats = self._compiled(*state, hparams, key, *self.data)
        stats = {k: v.item() for k, v in jax.device_get(stats).items()}
        return (params, opt_state), stats, time.perf_counter() - t0

    def accuracy(self, params, x, y) -> float:
        """Accuracy of ``params`` on ``(x, y)``."""
        return float(engine.accuracy_fn(self.cfg.model.kind)(params, x, y))


@dataclasses.dataclass
class RunResult:
    """What ``train`` returns.

    Attributes:
      status: ``"completed"``, ``"interrupted"`` or ``"diverged"``.
      exit_code: 0, 128 + signal number, or ``EXIT_DIVERGED``.
      message: a line for the user (how to resume, what went wrong), or "".
      params: the last good parameters (host NumPy arrays, course names).
      summary: the contents of ``summary.json``.
      metrics: the lines of ``metrics.jsonl``.
      out_dir: where everything was written.
    """

    status: str
    exit_code: int
    message: str
    params: dict
    summary: dict
    metrics: list
    out_dir: Path


class _Signals:
    """SIGINT/SIGTERM set a flag (the epoch in flight finishes); a second SIGINT aborts."""

    def __init__(self, console):
        self.received: int | None = None
        self.console = console

    def _handler(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        self.console.print(f"[yellow]{signal.Signals(signum).name} received: finishing this "
                           "epoch, then saving a checkpoint (Ctrl-C again to abort now)[/]")

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


class _RunFiles:
    """The run's files in ``out``. Only process 0 writes: the hosts of a multi-host run
    hold the same replicated parameters and share one output folder."""

    def __init__(self, out: Path):
        self.out = out
        self.enabled = jax.process_index() == 0

    def text(self, name: str, text: str) -> None:
        if self.enabled:
            checkpoint.atomic_write_text(self.out / name, text)

    def state(self, epoch: int, state, extra: dict) -> None:
        """The checkpoint (params and optimizer state) and params.npz, both atomically."""
        if self.enabled:
            checkpoint.save_checkpoint(self.out / CHECKPOINT, epoch, state, extra)
            checkpoint.save_npz(self.out / "params.npz", _host(state[0]))

    def metric(self, record: dict) -> None:
        if self.enabled:
            _append_line(self.out / "metrics.jsonl", record)


def _read_metrics(path: Path, upto: int) -> list[dict]:
    """The records of ``metrics.jsonl`` up to epoch ``upto``.

    A crash in the middle of an append leaves a torn last line: it is dropped (the file is
    rewritten from the kept records by the caller). An undecodable line anywhere else means
    the file was damaged some other way, and raises.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "epoch" not in record:
                raise ValueError("not an epoch record")
        except ValueError as err:
            if k == len(numbered) - 1:
                break  # the torn tail of an interrupted append
            raise ValueError(
                f"{str(path)!r} line {lineno} is not a metrics record ({err}); fix or delete "
                "that line, or start afresh without --resume") from None
        records.append(record)
    return [m for m in records if m["epoch"] <= upto]


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _host(tree) -> dict:
    return {k: np.asarray(v) for k, v in jax.device_get(tree).items()}


def _progress(console, total: int, done: int, enabled: bool):
    from rich import progress as rp

    return rp.Progress(
        rp.TextColumn("epoch"), rp.MofNCompleteColumn(), rp.BarColumn(),
        rp.TextColumn("loss {task.fields[loss]}  train {task.fields[train]}  "
                      "val {task.fields[val]}"),
        rp.TimeElapsedColumn(), console=console, disable=not enabled, transient=False)


def train(cfg: Config, out_dir: str | os.PathLike | None = None, *, resume: bool = False,
          dataset=None, mesh=None, progress: bool = True, console=None,
          on_epoch_end: Callable[[int, dict], None] | None = None,
          write_plots: bool = True) -> RunResult:
    """Trains ``cfg`` and writes the run's files into ``out_dir``.

    Args:
      cfg: the experiment.
      out_dir: output folder (default ``runs/<name>/``).
      resume: continue from ``out_dir/checkpoint.npz``; ``cfg.train.epochs`` is the total.
      dataset: a loaded ``jaxprop.data.Dataset`` (default: load ``cfg.data``).
      mesh: device mesh (default: all devices).
      progress: show the rich progress bar.
      console: a ``rich.console.Console`` for the progress bar and messages (default
        stderr).
      on_epoch_end: called as ``on_epoch_end(epochs_done, stats)`` after each saved epoch.
      write_plots: draw the PNGs (about a second of matplotlib).

    Returns:
      A RunResult. Interruption and divergence are results, not exceptions.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    out = Path(default_out_dir(cfg) if out_dir is None else out_dir)
    dataset = load_data(cfg) if dataset is None else dataset
    trainer = Trainer(cfg, dataset, mesh)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    files = _RunFiles(out)
    state = trainer.init_state()
    extra = {"steps": 0, "train_seconds": 0.0}
    start = 0
    if resume:
        start, host_state, extra = checkpoint.load_checkpoint(ckpt_path, jax.device_get(state))
        state = sharding.replicate(host_state, trainer.mesh)
        metrics = _read_metrics(out / "metrics.jsonl", start)
    else:
        if ckpt_path.exists():
            console.print(f"[yellow]{out} already holds a run; starting afresh over it "
                          "(use --resume to continue it instead)[/]")
        metrics = []
        files.state(0, state, extra)  # a good checkpoint exists even if epoch 1 diverges
    files.text("config.toml", to_toml(cfg))
    files.text("metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))

    status, exit_code, message = "completed", 0, ""
    signals = _Signals(console)
    bar = _progress(console, cfg.train.epochs, start, progress)
    fmt = "{:.4f}".format
    last = metrics[-1] if metrics else {"train_loss": math.nan, "train_acc": 0, "val_acc": 0}
    with signals.installed(), bar:
        task = bar.add_task("train", total=cfg.train.epochs, completed=start,
                            loss=fmt(last["train_loss"]), train=fmt(last["train_acc"]),
                            val=fmt(last["val_acc"]))
        trainer.compile(state)
        for epoch in range(start, cfg.train.epochs):
            new_state, stats, seconds = trainer.run_epoch(state, epoch)
            if not stats["finite"]:
                status, exit_code = "diverged", EXIT_DIVERGED
                message = (
                    f"training diverged in epoch {epoch + 1}: the loss became "
                    f"{stats['train_loss']} (NaN or Inf). The learning rate is likely too high "
                    f"(optimizer.lr={cfg.optimizer.lr:g}): lower it, e.g. --set "
                    f"optimizer.lr={cfg.optimizer.lr / 10:g}. The last good checkpoint "
                    f"(epoch {epoch}) and params.npz are kept in {out}/.")
                break
            state = new_state
            extra = {"steps": extra["steps"] + trainer.steps,
                     "train_seconds": extra["train_seconds"] + seconds}
            record = {"epoch": epoch + 1, "train_loss": stats["train_loss"],
                      "train_acc": stats["train_acc"], "val_acc": stats["val_acc"],
                      "lr": engine.lr_at_epoch(cfg, epoch), "seconds": seconds}
            metrics.append(record)
            files.metric(record)
            files.state(epoch + 1, state, extra)
            bar.update(task, completed=epoch + 1, loss=fmt(stats["train_loss"]),
                       train=fmt(stats["train_acc"]), val=fmt(stats["val_acc"]))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, stats)
            if signals.received is not None and epoch + 1 < cfg.train.epochs:
                status, exit_code = "interrupted", 128 + signals.received
                message = (
                    f"{signal.Signals(signals.received).name}: stopped after epoch {epoch + 1} "
                    f"of {cfg.train.epochs}; checkpoint saved in {out}/. Continue with: "
                    f"jaxprop train --out {out} --resume")
                break

    params = _host(state[0])
    done = metrics[-1]["epoch"] if metrics else start
    summary = {
        "name": cfg.name,
        "status": status,
        "test_accuracy": trainer.accuracy(state[0], dataset.x_test, dataset.y_test),
        "val_accuracy": trainer.accuracy(state[0], dataset.x_val, dataset.y_val),
        "train_accuracy": metrics[-1]["train_acc"] if metrics else None,
        "final_train_loss": metrics[-1]["train_loss"] if metrics else None,
        "epochs": done,
        "steps": extra["steps"],
        "steps_per_epoch": trainer.steps,
        "train_seconds": extra["train_seconds"],
        "compile_seconds": trainer.compile_seconds,
        "devices": int(trainer.mesh.devices.size),
        "device_kind": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "pipeline": cfg.train.pipeline,
        "dataset": cfg.data.dataset,
        "model": cfg.model.kind,
        "loss": cfg.loss.kind,
        "optimizer": cfg.optimizer.name,
        "num_params": trainer.num_params,
        "num_train": int(dataset.x_train.shape[0]),
        "resumed_from_epoch": start if resume else None,
        "jax_version": jax.__version__,
    }
    files.text("summary.json", json.dumps(summary, indent=2) + "\n")
    if write_plots and files.enabled:
        _write_plots(cfg, dataset, params, metrics, out)
    return RunResult(status, exit_code, message, params, summary, metrics, out)


def _write_plots(cfg: Config, dataset, params: dict, metrics: list, out: Path) -> None:
    if metrics:
        plots.plot_loss(metrics, out / "loss.png", cfg.name)
        plots.plot_accuracy(metrics, out / "accuracy.png", cfg.name)
    if cfg.model.kind == "linear":
        plots.plot_templates(params["W"], dataset.image_shape, dataset.class_names,
                             dataset.bias_trick, out / "templates.png", cfg.name)


def print_summary(result: RunResult, console=None) -> None:
    """The final summary as a rich table (stdout by default)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(file=sys.stdout)
    s = result.summary
    table = Table(title=f"{s['name']}: {s['status']}", show_header=False)
    rows = [
        ("test accuracy", f"{s['test_accuracy']:.4f}"),
        ("val accuracy", f"{s['val_accuracy']:.4f}"),
        ("train accuracy", "-" if s["train_accuracy"] is None else f"{s['train_accuracy']:.4f}"),
        ("epochs / steps", f"{s['epochs']} / {s['steps']}"),
        ("train time", f"{s['train_seconds']:.2f} s (+ compile {s['compile_seconds']:.2f} s)"),
        ("pipeline", s["pipeline"]),
        ("devices", f"{s['devices']} x {s['device_kind']}"),
        ("outputs", str(result.out_dir)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
