"""A training run: compile the epoch once, run it epoch after epoch, lose nothing.

``train(cfg, out_dir)`` first settles the output folder (``RunDir.open``: checked, locked,
refused if it holds anything unless resuming or overwriting), then loads the data, places it
and the parameters on the device mesh, compiles one epoch (a ``lax.scan`` over its
mini-batches, ``jaxprop.train.trainer``) and calls it once per epoch. After every epoch it
appends a line to ``metrics.jsonl`` and atomically rewrites the checkpoint, ``params.npz``
and ``summary.json``, so the summary always agrees with the checkpoint. SIGINT/SIGTERM let
the current epoch finish, save, and stop with exit code 130/143 (``jaxprop._signals``). A NaN
or Inf loss stops the run, keeping the last good checkpoint, and names the likely culprit.

For example::

  result = train(load_config("digits_linear_svm"), "runs/svm")
  result.summary["test_accuracy"]
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxprop._settings import diff
from jaxprop._signals import GUARD, Stop
from jaxprop.train import checkpoint, distributed, divergence, report, sharding
from jaxprop.train.experiment import Config, from_dict, to_dict, to_toml
from jaxprop.train.lock import describe_stale
from jaxprop.train.optimizers import lr_at_epoch
from jaxprop.train.rundir import RunDir, host_params, read_metrics
from jaxprop.train.trainer import Trainer, load_data

__all__ = ["EXIT_DIVERGED", "RunResult", "default_out_dir", "train"]

EXIT_DIVERGED = 3
"""Exit code of a run stopped by a NaN or Inf loss."""

STATE_LABELS = ("params", "optimizer state")


def default_out_dir(cfg: Config) -> Path:
    """``runs/<name>/`` under the current directory."""
    return Path("runs") / cfg.name


@dataclasses.dataclass
class RunResult:
    """What ``train`` returns.

    Attributes:
      status: ``"completed"``, ``"interrupted"`` or ``"diverged"``.
      exit_code: 0, 128 + signal number, or ``EXIT_DIVERGED``. A run whose every epoch was
        saved but which a signal stopped before it had drawn its plots is ``"completed"``
        with exit code 128 + signal.
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
          overwrite: bool = False, dataset=None, mesh=None, progress: bool = True,
          console=None, on_epoch_end: Callable[[int, dict], None] | None = None,
          write_plots: bool = True, history: dict | None = None) -> RunResult:
    """Trains ``cfg`` and writes the run's files into ``out_dir``.

    Args:
      cfg: the experiment.
      out_dir: output folder (default ``runs/<name>/``). A new run needs it empty or absent.
      resume: continue from ``out_dir/checkpoint.npz``; ``cfg.train.epochs`` is the total,
        and may not be below the checkpoint's epoch. Keys of ``cfg`` that differ from the
        config the checkpoint recorded are written to ``history.jsonl``.
      overwrite: start afresh in a folder that holds something, after moving it to
        ``<out_dir>.old-N``.
      dataset: a loaded ``jaxprop.data.Dataset`` (default: load ``cfg.data``).
      mesh: device mesh (default: all devices).
      progress: show the rich progress bar.
      console: a ``rich.console.Console`` for the progress bar and messages (default
        stderr).
      on_epoch_end: called as ``on_epoch_end(epochs_done, stats)`` after each saved epoch.
      write_plots: draw the SVG figures (loss, accuracy, a linear model's templates).
      history: more fields for this session's line in ``history.jsonl`` (the CLI gives its
        ``--set`` items).

    Returns:
      A RunResult. Interruption and divergence are results, not exceptions.

    Raises:
      FileExistsError: ``out_dir`` holds something (and neither resume nor overwrite), or
        another process is writing it.
      ValueError: a bad config, data or checkpoint (named), or ``cfg.train.epochs`` below
        the checkpoint's epoch.
      OSError: a file cannot be written (named); the last saved epoch stays whole.
      jaxprop._signals.Stop: a second Ctrl-C, or a signal before training started.
    """
    from rich.console import Console

    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run "
                         "in the folder, overwrite moves it aside and starts afresh")
    console = console or Console(stderr=True)
    out = Path(default_out_dir(cfg) if out_dir is None else out_dir)
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    files = None
    try:
        with distributed.together(f"opening the run folder {out}"):
            files = RunDir.open(out, mode, command="jaxprop train")
        return _train(cfg, files, resume, dataset, mesh, progress, console, on_epoch_end,
                      write_plots, history or {})
    except Stop as stop:
        if files is not None:
            stop.detail = stop.detail or files.stopped_note(resume)
        raise
    except distributed.ProcessGroupError as err:
        if files is not None and files.moved_to is not None:
            raise distributed.ProcessGroupError(
                f"{err}; --overwrite had moved what {out} held to {files.moved_to}") from None
        raise
    finally:
        if files is not None:
            files.close()


def _note(console, text: str) -> None:
    console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)


def _check_initial_state(cfg: Config, params: dict) -> None:
    """Refuses initial parameters that are not finite (a checkpoint must never hold them)."""
    for name, value in params.items():
        if not np.isfinite(value).all():
            scale = cfg.model.weight_scale
            cause = (f"model.weight_scale={scale:g} is too large for float32"
                     if scale is not None else "the model's initialisation overflowed")
            raise ValueError(f"the initial parameters are not finite ({name} holds NaN or "
                             f"Inf): {cause}; nothing was trained or saved")


def _setup(cfg, files: RunDir, resume: bool, dataset, mesh):
    """Data, trainer, the starting state (fresh or from the checkpoint), compiled."""
    out = files.out
    dataset = load_data(cfg) if dataset is None else dataset
    GUARD.check()
    trainer = Trainer(cfg, dataset, mesh)
    state = trainer.init_state()
    host_state = jax.device_get(state)
    extra = {"steps": 0, "train_seconds": 0.0}
    start, changed = 0, {}
    if resume:
        start, loaded, extra = checkpoint.load_checkpoint(files.checkpoint, host_state,
                                                          STATE_LABELS)
        recorded = extra.pop("config", None)
        _check_resume(cfg, files, start, recorded)
        if recorded is not None:
            changed = {k: list(v) for k, v in diff(from_dict(recorded), cfg).items()}
        files.saved = _saved_line(out, start, cfg.train.epochs)
        state = sharding.replicate(loaded, trainer.mesh)
        metrics = read_metrics(out / "metrics.jsonl", start)
    else:
        _check_initial_state(cfg, host_state[0])
        metrics = []
    GUARD.check()
    trainer.compile(state)
    GUARD.check()
    return trainer, state, start, extra, changed, metrics


def _train(cfg, files: RunDir, resume: bool, dataset, mesh, progress, console, on_epoch_end,
           write_plots: bool, history: dict) -> RunResult:
    out = files.out
    if files.moved_to is not None:
        _note(console, f"--overwrite: moved what {out} held to {files.moved_to}")
    if files.lock is not None and files.lock.stale:
        _note(console, f"{out}: {describe_stale(files.lock.stale)}")
    with distributed.together("setting up the run"):
        trainer, state, start, extra, changed, metrics = _setup(cfg, files, resume, dataset,
                                                                mesh)
    dataset = trainer.dataset

    def saved_extra():
        return {**extra, "config": to_dict(cfg)}

    notify = (lambda text: _note(console, text)) if console.is_terminal else (lambda text: None)
    status, exit_code, message = "completed", 0, ""
    bar = report.progress_bar(console, progress)
    fmt = "{:.4f}".format
    last = metrics[-1] if metrics else {"train_loss": math.nan, "train_acc": 0, "val_acc": 0}
    with GUARD.graceful(notify), bar:
        with distributed.together("writing the run's first files"), GUARD.critical():
            # the run exists, whole, before its first epoch; config.toml is written with the
            # checkpoint it belongs to, or (a full disk) neither is
            if not resume or changed:  # a good checkpoint, even at epoch 0
                files.state(start, state, saved_extra(), config=to_toml(cfg))
            else:
                files.text("config.toml", to_toml(cfg))
            files.history({"event": "resume" if resume else "start", "epoch": start,
                           **({"changed": changed} if resume else {}), **history})
            files.metrics(metrics)
            files.json("summary.json", _summary(cfg, trainer, dataset, "running", metrics,
                                                start, start, extra, resume))
            files.saved = _saved_line(out, start, cfg.train.epochs)
        task = bar.add_task("train", total=cfg.train.epochs, completed=start,
                            loss=fmt(last["train_loss"]), train=fmt(last["train_acc"]),
                            val=fmt(last["val_acc"]))
        done = start
        try:
            for epoch in range(start, cfg.train.epochs):
                received = distributed.first_signal(GUARD.received)  # the same on every process
                if received is not None:
                    status, exit_code = "interrupted", 128 + received
                    message = (
                        f"{signal.Signals(received).name}: stopped after epoch {epoch} "
                        f"of {cfg.train.epochs}; checkpoint saved in {out}/. Continue with: "
                        f"jaxprop train --out {out} --resume")
                    break
                new_state, stats, seconds = trainer.run_epoch(state, epoch)
                if not stats["finite"]:
                    where = trainer.diagnose(state, epoch)
                    status, exit_code = "diverged", EXIT_DIVERGED
                    message = (
                        f"training diverged in epoch {epoch + 1}: the loss became "
                        f"{stats['train_loss']} (NaN or Inf); {divergence.where_text(where)}. "
                        f"{divergence.advice(cfg, epoch, where, host_params(state[0]))} The last "
                        f"good checkpoint (epoch {epoch}) and params.npz are kept in {out}/.")
                    break
                state = new_state
                extra = {"steps": extra["steps"] + trainer.steps,
                         "train_seconds": extra["train_seconds"] + seconds}
                record = {"epoch": epoch + 1, "train_loss": stats["train_loss"],
                          "train_acc": stats["train_acc"], "val_acc": stats["val_acc"],
                          "lr": lr_at_epoch(cfg.optimizer, epoch), "seconds": seconds}
                metrics.append(record)
                with GUARD.critical():  # the line, the checkpoint and the summary, together
                    files.metric(record)
                    files.state(epoch + 1, state, saved_extra())
                    done = epoch + 1
                    files.json("summary.json", _summary(cfg, trainer, dataset, "running",
                                                        metrics, done, start, extra, resume))
                    files.saved = _saved_line(out, done, cfg.train.epochs)
                bar.update(task, completed=epoch + 1, loss=fmt(stats["train_loss"]),
                           train=fmt(stats["train_acc"]), val=fmt(stats["val_acc"]))
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, stats)
        except distributed.ProcessGroupError:
            raise
        except BaseException:  # a failed save, a second Ctrl-C: the others learn of it
            distributed.agree(False, f"epoch {done + 1}")  # at their next check
            raise

        final = distributed.first_signal(GUARD.received)  # every process: the same answer
        summary = _summary(cfg, trainer, dataset, status, metrics, done, start, extra, resume,
                           state=state)
        with GUARD.critical():
            files.json("summary.json", summary)
        def signalled():  # any process's signal by the end of training, or one since
            return final if final is not None else GUARD.received

        drew = write_plots and files.enabled and signalled() is None
        if drew:
            report.write_plots(cfg, dataset, host_params(state[0]), metrics, out)
        if status == "completed" and signalled() is not None:
            # every epoch is saved and the summary says so; the signal still decides the code
            exit_code = 128 + signalled()
            message = (f"{signal.Signals(signalled()).name}: stopped after the last epoch: "
                       f"all {done} epochs are saved in {out}/ and summary.json says completed"
                       + ("" if drew or not write_plots else "; the plots were not drawn "
                          f"(draw them with: jaxprop train --out {out} --resume)"))
    return RunResult(status, exit_code, message, host_params(state[0]), summary, metrics, out)


def _saved_line(out: Path, epoch: int, epochs: int) -> str:
    if epoch >= epochs:
        return f"the run in {out} is complete and saved ({epoch} epochs)"
    return (f"the run in {out} is saved at epoch {epoch} of {epochs}; continue with: "
            f"jaxprop train --out {out} --resume")


def _check_resume(cfg: Config, files: RunDir, start: int, recorded: dict | None) -> None:
    """Refuses a checkpoint whose epoch cannot be continued with ``cfg``."""
    where = f"checkpoint {str(files.checkpoint)!r}"
    if recorded is not None:
        try:
            then = from_dict(recorded)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where} records a config this version cannot read ({err})") \
                from None
        if start > then.train.epochs:
            raise ValueError(
                f"{where} says epoch {start}, beyond the train.epochs={then.train.epochs} of "
                "the config it records: it was not written by this run (start afresh with "
                "--overwrite)")
    if cfg.train.epochs < start:
        raise ValueError(
            f"train.epochs={cfg.train.epochs} is below the {start} epochs the run in "
            f"{files.out} has already trained: a resumed run cannot undo epochs. Give "
            f"train.epochs of at least {start}, or start afresh with --overwrite")


def _summary(cfg: Config, trainer: Trainer, dataset, status: str, metrics: list, done: int,
             start: int, extra: dict, resume: bool, state=None) -> dict:
    """``summary.json`` after ``done`` epochs. While ``"running"`` (no ``state`` given) the
    accuracies are the last epoch's and there is no test accuracy."""
    final = state is not None
    last = metrics[-1] if metrics else None
    if final:
        test_acc, val_acc = trainer.accuracies(state[0], (dataset.x_test, dataset.y_test),
                                               (dataset.x_val, dataset.y_val))
    return {
        "name": cfg.name,
        "status": status,
        "test_accuracy": test_acc if final else None,
        "val_accuracy": val_acc if final else (last["val_acc"] if last else None),
        "train_accuracy": last["train_acc"] if last else None,
        "final_train_loss": last["train_loss"] if last else None,
        "epochs": done,
        "epochs_planned": cfg.train.epochs,
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
