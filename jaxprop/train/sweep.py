"""Hyperparameter sweeps: the whole lr x reg grid trained as one vmapped, compiled program.

The courses search learning rate x regularisation strength by training one model per pair
and keeping the best on the validation set. Here the learning rate and the regularisation
are traced scalars of the training step, so ``jax.vmap`` runs every pair of the grid side
by side in one compiled epoch: G models, one program, the data read once per batch.

Every run of the grid starts from the same initial weights and sees the same batches (the
config's seed), so the grid compares hyperparameters and nothing else. A run whose loss
becomes NaN or Inf is marked ``diverged`` and never picked; the others are unaffected.

For example::

  cfg = load_config(None, ["sweep.lr=[1e-3, 3e-3]", "sweep.reg=[0.0, 1e-3]"])
  result = run_sweep(cfg, "runs/digits_sweep")
  result.best   # {"lr": ..., "reg": ..., "val_acc": ..., "test_acc": ...}
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxprop._settings import apply, parse_assignment
from jaxprop._signals import GUARD, Stop
from jaxprop.train import checkpoint, plots
from jaxprop.train.experiment import SWEEP_KEYS, Config, to_toml
from jaxprop.train.rundir import RunDir
from jaxprop.train.trainer import Trainer, load_data

__all__ = ["SweepResult", "grid_of", "parse_grid", "pick_best", "sweep_trainer", "run_sweep",
           "print_sweep"]


def parse_grid(items: list[str]) -> list[str]:
    """``--grid optimizer.lr=1e-3,1e-2`` items as ``sweep.lr=[...]`` overrides.

    Raises:
      ValueError: a key that cannot be swept (listing those that can), or a bad value.
    """
    overrides, seen = [], {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in SWEEP_KEYS:
            raise ValueError(
                f"--grid expects KEY=V1,V2,... with KEY one of {', '.join(SWEEP_KEYS)} "
                f"(the values vmapped inside the step); got {item!r}")
        if key in seen:
            raise ValueError(
                f"--grid {key} is given twice ({seen[key]!r} and {item!r}); give all its "
                f"values in one: --grid {key}=V1,V2,...")
        seen[key] = item
        values = [parse_assignment(f"{key}={v}", "--grid")[1] for v in text.split(",")
                  if v.strip()]
        if not values:
            raise ValueError(f"--grid {key}: give at least one value, e.g. {key}=1e-3,1e-2")
        for value in values:  # each checked as the key the user typed, not as sweep.lr[i]
            try:
                apply(Config(), [(key, value)])
            except (TypeError, ValueError) as err:
                raise ValueError(f"--grid {key}={text}: {err}") from None
        overrides.append((f"sweep.{SWEEP_KEYS[key]}", values))
    return overrides


def grid_of(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(lrs, regs)``: the sweep lists, or the single config value where a list is empty."""
    lrs = cfg.sweep.lr or (cfg.optimizer.lr,)
    regs = cfg.sweep.reg or (cfg.loss.reg,)
    return tuple(lrs), tuple(regs)


@dataclasses.dataclass
class SweepResult:
    """What ``run_sweep`` returns.

    Attributes:
      rows: one dict per grid point: lr, reg, train_loss, train_acc, val_acc, diverged_epoch.
      best: the best row by validation accuracy (ties: the lowest final train loss), with
        ``test_acc`` and ``tied`` (how many runs share the best validation accuracy) added;
        None if every run diverged.
      val_acc: [len(lrs), len(regs)] final validation accuracies (NaN: diverged).
      params: the best run's parameters (host arrays), or None.
      seconds: wall-clock of set-up, compile and training (set-up and compile count only
        when ``run_sweep`` built the program); ``compile_seconds`` the compile alone;
        ``train_seconds`` the epochs alone.
      out_dir: where the files went.
    """

    lrs: tuple[float, ...]
    regs: tuple[float, ...]
    rows: list[dict]
    best: dict | None
    val_acc: np.ndarray
    params: dict | None
    seconds: float
    compile_seconds: float
    out_dir: Path | None
    train_seconds: float = math.nan


def pick_best(rows: list[dict]) -> tuple[int | None, int]:
    """The index of the best run and how many runs share its validation accuracy.

    Best is the highest validation accuracy; among runs tied on it (a small validation set
    makes ties common), the lowest final train loss; then the first in grid order.
    Diverged runs (NaN) never win.

    Returns:
      ``(index, tied)``: ``tied`` counts the runs with the best validation accuracy
      (1 = no tie); ``(None, 0)`` if every run diverged.
    """
    ok = [i for i, r in enumerate(rows) if math.isfinite(r["val_acc"])]
    if not ok:
        return None, 0
    top = max(rows[i]["val_acc"] for i in ok)
    tied = [i for i in ok if rows[i]["val_acc"] == top]
    best = min(tied, key=lambda i: (rows[i]["train_loss"], i))
    return best, len(tied)


def sweep_trainer(cfg: Config, dataset=None, mesh=None) -> Trainer:
    """The grid's Trainer: every (lr, reg) pair of ``cfg``'s grid in one vmapped epoch."""
    lrs, regs = grid_of(cfg)
    dataset = load_data(cfg) if dataset is None else dataset
    return Trainer(cfg, dataset, mesh, grid=list(itertools.product(lrs, regs)))


def run_sweep(cfg: Config, out_dir: str | os.PathLike | None = None, *, dataset=None,
              mesh=None, progress: bool = True, console=None,
              write: bool = True, trainer: Trainer | None = None,
              overwrite: bool = False) -> SweepResult:
    """Trains every (lr, reg) of the grid at once and picks the best by validation accuracy.

    Args:
      cfg: the experiment; ``cfg.sweep.lr`` and ``cfg.sweep.reg`` hold the grid.
      out_dir: output folder (default ``runs/<name>_sweep/``).
      dataset: a loaded ``jaxprop.data.Dataset`` (default: load ``cfg.data``).
      mesh: device mesh (default: all devices). When the devices divide the G models,
        each device trains G / devices of them on whole batches (``Trainer.split_grid``);
        otherwise each batch is split over the devices and the models are replicated.
      progress: show a progress bar.
      console: rich console for the bar (default stderr).
      write: write ``sweep.csv``, ``heatmap.svg``, ``summary.json``, ``params.npz`` (best)
        and ``config.toml`` (the best config).
      trainer: the grid's Trainer (``sweep_trainer(cfg)``), built and compiled beforehand
        (a benchmark times the training alone this way); ``dataset`` and ``mesh`` are then
        ignored.
      overwrite: sweep into a folder that holds something, after moving it to
        ``<out_dir>.old-N``; without it such a folder is refused before anything is trained.

    Returns:
      A SweepResult.

    Raises:
      FileExistsError: ``out_dir`` holds something (and not ``overwrite``), or another
        process is writing it; checked before anything is loaded or trained.
    """
    files = None
    if write:
        out = Path(out_dir) if out_dir is not None else Path("runs") / f"{cfg.name}_sweep"
        files = RunDir.open(out, "overwrite" if overwrite else "new", command="jaxprop sweep",
                            resumable=False)
    try:
        return _sweep(cfg, files, dataset, mesh, progress, console, trainer)
    except Stop as stop:
        if files is not None:
            stop.detail = stop.detail or files.stopped_note()
        raise
    finally:
        if files is not None:
            files.close()


def _sweep(cfg: Config, files: RunDir | None, dataset, mesh, progress: bool, console,
           trainer: Trainer | None) -> SweepResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = console or Console(stderr=True)
    if files is not None and files.moved_to is not None:
        console.print(f"--overwrite: moved what {files.out} held to {files.moved_to}",
                      style="yellow", markup=False, highlight=False, soft_wrap=True)
    t_start = time.perf_counter()
    if trainer is None:
        trainer = sweep_trainer(cfg, dataset, mesh)
    elif trainer.cfg != cfg or trainer.grid is None:
        raise ValueError("run_sweep: trainer was built for another config (or not a grid)")
    dataset, pairs, g = trainer.dataset, trainer.grid, trainer.copies
    lrs, regs = grid_of(cfg)
    state = trainer.init_state()
    GUARD.check()
    trainer.compile(state)
    GUARD.check()
    compile_seconds = trainer.compile_seconds
    t_train = time.perf_counter()

    diverged = np.zeros(g, dtype=np.int64)  # 0: finite; e: first epoch with NaN/Inf
    bar = Progress(TextColumn(f"sweep of {g}: epoch"), MofNCompleteColumn(), BarColumn(),
                   TextColumn("best val {task.fields[best]}"), console=console,
                   disable=not progress)
    with bar:
        task = bar.add_task("sweep", total=cfg.train.epochs, best="-")
        for epoch in range(cfg.train.epochs):
            GUARD.check()
            state, stats, _ = trainer.run_epoch(state, epoch)
            newly = (~stats["finite"]) & (diverged == 0)
            diverged[newly] = epoch + 1
            ok = diverged == 0
            best = f"{np.max(stats['val_acc'][ok]):.4f}" if ok.any() else "-"
            bar.update(task, completed=epoch + 1, best=best)
    seconds = time.perf_counter() - t_start
    train_seconds = time.perf_counter() - t_train

    rows = []
    for i, (lr, reg) in enumerate(pairs):
        bad = bool(diverged[i])
        rows.append({
            "lr": lr, "reg": reg,
            "train_loss": math.nan if bad else float(stats["train_loss"][i]),
            "train_acc": math.nan if bad else float(stats["train_acc"][i]),
            "val_acc": math.nan if bad else float(stats["val_acc"][i]),
            "diverged_epoch": int(diverged[i]) or None,
        })
    val = np.array([r["val_acc"] for r in rows]).reshape(len(lrs), len(regs))
    best, best_params = None, None
    i, ties = pick_best(rows)
    if i is not None:
        best_params = {k: np.asarray(v[i]) for k, v in jax.device_get(state[0]).items()}
        best = dict(rows[i])
        best["tied"] = ties
        best["test_acc"] = trainer.accuracy(best_params, dataset.x_test, dataset.y_test)
    out = None
    if files is not None:
        out = files.out
        with GUARD.critical():  # the sweep's files, all of them or none
            _write(cfg, files, lrs, regs, rows, val, best, best_params, seconds,
                   compile_seconds, trainer)
    return SweepResult(lrs, regs, rows, best, val, best_params, seconds, compile_seconds, out,
                       train_seconds)


def _write(cfg, files: RunDir, lrs, regs, rows, val, best, best_params, seconds,
           compile_seconds, trainer) -> None:
    out = files.out
    if not files.enabled:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    checkpoint.atomic_write_text(out / "sweep.csv", buf.getvalue())
    plots.plot_heatmap(lrs, regs, val, out / "heatmap.svg", cfg.name)
    summary = {
        "name": cfg.name, "grid_size": len(rows), "lrs": list(lrs), "regs": list(regs),
        "best": best, "epochs": cfg.train.epochs, "steps": cfg.train.epochs * trainer.steps,
        "seconds": seconds, "compile_seconds": compile_seconds,
        "devices": int(trainer.mesh.devices.size), "pipeline": cfg.train.pipeline,
        "diverged": sum(r["diverged_epoch"] is not None for r in rows),
        "tied_best": best["tied"] if best is not None else 0,
    }
    checkpoint.atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    checkpoint.atomic_write_text(out / "sweep_config.toml", to_toml(cfg))
    if best is not None:
        best_cfg = dataclasses.replace(
            cfg, optimizer=dataclasses.replace(cfg.optimizer, lr=best["lr"]),
            loss=dataclasses.replace(cfg.loss, reg=best["reg"]),
            sweep=dataclasses.replace(cfg.sweep, lr=(), reg=()))
        checkpoint.atomic_write_text(out / "best_config.toml", to_toml(best_cfg))
        checkpoint.save_npz(out / "params.npz", best_params)


def print_sweep(result: SweepResult, console=None) -> None:
    """The grid as a rich table, best row highlighted, then the best config."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(file=sys.stdout)
    table = Table(title=f"sweep: {len(result.rows)} runs in {result.seconds:.2f} s "
                        f"(compile {result.compile_seconds:.2f} s)")
    for col in ("optimizer.lr", "loss.reg", "train loss", "train acc", "val acc"):
        table.add_column(col, justify="right")
    for r in result.rows:
        is_best = result.best is not None and (r["lr"], r["reg"]) == (
            result.best["lr"], result.best["reg"])
        cells = [f"{r['lr']:g}", f"{r['reg']:g}"]
        if r["diverged_epoch"] is not None:
            cells += ["diverged", f"(epoch {r['diverged_epoch']})", "-"]
        else:
            cells += [f"{r['train_loss']:.4f}", f"{r['train_acc']:.4f}", f"{r['val_acc']:.4f}"]
        table.add_row(*cells, style="bold green" if is_best else None)
    console.print(table)
    if result.best is None:
        console.print("every run diverged: lower the learning rates")
    else:
        b = result.best
        tie = (f"  ({b['tied']} runs tied on val accuracy; picked the lowest train loss)"
               if b.get("tied", 1) > 1 else "")
        console.print(f"best: optimizer.lr={b['lr']:g} loss.reg={b['reg']:g}  val accuracy "
                      f"{b['val_acc']:.4f}  test accuracy {b['test_acc']:.4f}"
                      + (f"  ({escape(str(result.out_dir))})" if result.out_dir else "")
                      + tie)
