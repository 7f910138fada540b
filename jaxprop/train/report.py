"""What a run shows a person: the progress bar, the summary table and the run's figures."""

from __future__ import annotations

import sys
from pathlib import Path

from jaxprop.train import plots

__all__ = ["progress_bar", "print_summary", "write_plots"]


def progress_bar(console, enabled: bool):
    """The per-epoch bar: epochs done, loss, train and validation accuracy, time."""
    from rich import progress as rp

    return rp.Progress(
        rp.TextColumn("epoch"), rp.MofNCompleteColumn(), rp.BarColumn(),
        rp.TextColumn("loss {task.fields[loss]}  train {task.fields[train]}  "
                      "val {task.fields[val]}"),
        rp.TimeElapsedColumn(), console=console, disable=not enabled, transient=False)


def print_summary(result, console=None) -> None:
    """The final summary of a ``RunResult`` as a rich table (stdout by default)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(file=sys.stdout)
    s = result.summary
    # user-given strings (the name, the folder) are text, never rich markup: "mk[/]up"
    table = Table(title=escape(f"{s['name']}: {s['status']}"), show_header=False)
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
        table.add_row(k, escape(v))
    console.print(table)


def write_plots(cfg, dataset, params: dict, metrics: list, out: Path) -> None:
    """Loss and accuracy curves, and a linear model's class templates, as SVG (matplotlib)."""
    if metrics:
        plots.plot_loss(metrics, out / "loss.svg", cfg.name)
        plots.plot_accuracy(metrics, out / "accuracy.svg", cfg.name)
    if cfg.model.kind == "linear":
        plots.plot_templates(params["W"], dataset.image_shape, dataset.class_names,
                             dataset.bias_trick, out / "templates.svg", cfg.name)
