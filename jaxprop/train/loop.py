"""A training run: compile the epoch once, run it epoch after epoch, lose nothing.

``train(cfg, out_dir)`` loads the data, places it and the parameters on the device mesh,
compiles one epoch (a ``lax.scan`` over its mini-batches, ``jaxprop.train.trainer``) and
calls it once per epoch. After every epoch it appends a line to ``metrics.jsonl`` and
atomically rewrites the checkpoint and ``params.npz`` (``jaxprop.train.rundir``).
SIGINT/SIGTERM let the current epoch finish, save, and stop with exit code 130/143. A NaN or
Inf loss stops the run, keeping the last good checkpoint.

For example::

  result = train(load_config("digits_linear_svm"), "runs/svm")
  result.summary["test_accuracy"]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path

import jax

from jaxprop.train import checkpoint, report, sharding
from jaxprop.train.experiment import Config, to_toml
from jaxprop.train.optimizers import lr_at_epoch
from jaxprop.train.rundir import RunDir, host_params, read_metrics
from jaxprop.train.signals import Signals
from jaxprop.train.trainer import Trainer, load_data

__all__ = ["EXIT_DIVERGED", "RunResult", "default_out_dir", "train"]

EXIT_DIVERGED = 3
"""Exit code of a run stopped by a NaN or Inf loss."""


def default_out_dir(cfg: Config) -> Path:
    """``runs/<name>/`` under the current directory."""
    return Path("runs") / cfg.name


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
    files = RunDir(out)
    ckpt_path = files.checkpoint
    state = trainer.init_state()
    extra = {"steps": 0, "train_seconds": 0.0}
    start = 0
    if resume:
        start, host_state, extra = checkpoint.load_checkpoint(ckpt_path, jax.device_get(state))
        state = sharding.replicate(host_state, trainer.mesh)
        metrics = read_metrics(out / "metrics.jsonl", start)
    else:
        if ckpt_path.exists():
            console.print(f"[yellow]{out} already holds a run; starting afresh over it "
                          "(use --resume to continue it instead)[/]")
        metrics = []
        files.state(0, state, extra)  # a good checkpoint exists even if epoch 1 diverges
    files.text("config.toml", to_toml(cfg))
    files.metrics(metrics)

    status, exit_code, message = "completed", 0, ""
    signals = Signals(console)
    bar = report.progress_bar(console, progress)
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
                      "lr": lr_at_epoch(cfg.optimizer, epoch), "seconds": seconds}
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

    params = host_params(state[0])
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
        report.write_plots(cfg, dataset, params, metrics, out)
    return RunResult(status, exit_code, message, params, summary, metrics, out)


