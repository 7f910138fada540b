"""The figures of a run: loss and accuracy curves, class templates, a sweep's heatmap.

They are drawn with matplotlib, jaxprop's one plotting stack (explain's circuits and compare's
figures use it too), and written as SVG with their text kept as text. Each figure is built by
a ``*_figure`` function that returns the matplotlib ``Figure`` (the tests read the data
plotted back from it) and written by the matching ``plot_*`` function.

matplotlib is imported only when a figure is drawn, so ``jaxprop ... --help`` and a run
without figures never load it (docs/DEVELOPING.md, "Figures", has the measurements).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from jaxprop.train.checkpoint import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["loss_figure", "accuracy_figure", "templates_figure", "heatmap_figure",
           "plot_loss", "plot_accuracy", "class_templates", "plot_templates", "plot_heatmap",
           "save_svg"]

_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "jaxprop"}  # text as text, stable ids


def _figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A figure; fixed margins unless a ``layout`` engine is asked for (constrained layout
    costs about 30 ms a figure, more than drawing a curve)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    return Figure(figsize=(width, height), layout=layout)


def save_svg(fig: Figure, path) -> None:
    """Writes ``fig`` to ``path`` as SVG, atomically (a reader never sees half a file)."""
    import matplotlib

    with matplotlib.rc_context(_SVG_RC):
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    atomic_write_text(path, buffer.getvalue())


def _curves(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str,
            ylabel: str) -> Figure:
    """One line per ``(label, xs, ys)``, with markers; a non-finite y is a gap in its line."""
    fig = _figure(5.6, 3.6)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    ax = fig.add_subplot()
    for label, xs, ys in series:
        ys = [y if math.isfinite(y) else np.nan for y in ys]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.8, label=label, gid=f"curve {label}")
    ax.set_title(title, fontweight="bold")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    return fig


def loss_figure(metrics: Sequence[dict], title: str = "") -> Figure:
    """Training loss per epoch (the mean over the epoch's steps)."""
    epochs = [m["epoch"] for m in metrics]
    return _curves([("train loss", epochs, [float(m["train_loss"]) for m in metrics])],
                   f"{title}: training loss" if title else "training loss", "loss")


def accuracy_figure(metrics: Sequence[dict], title: str = "") -> Figure:
    """Training and validation accuracy per epoch."""
    epochs = [m["epoch"] for m in metrics]
    return _curves([("train", epochs, [float(m["train_acc"]) for m in metrics]),
                    ("val", epochs, [float(m["val_acc"]) for m in metrics])],
                   f"{title}: accuracy" if title else "accuracy", "accuracy")


def plot_loss(metrics: Sequence[dict], path, title: str = "") -> None:
    """Writes :func:`loss_figure` to ``path``."""
    save_svg(loss_figure(metrics, title), path)


def plot_accuracy(metrics: Sequence[dict], path, title: str = "") -> None:
    """Writes :func:`accuracy_figure` to ``path``."""
    save_svg(accuracy_figure(metrics, title), path)


def class_templates(w: np.ndarray, image_shape: tuple[int, ...], bias_trick: bool) -> np.ndarray:
    """The linear classifier's templates: column c of W [D, C] reshaped to an image.

    As CS231n shows them: drop the bias row (bias trick), reshape each column to
    ``image_shape``, then rescale all templates together to [0, 1] (the weights live in
    the centred input space, so their common min and max set the grey levels).

    Returns:
      [C, *image_shape] float array in [0, 1].
    """
    w = np.asarray(w, np.float64)
    if bias_trick:
        w = w[:-1]
    pixels = int(np.prod(image_shape))
    if w.shape[0] != pixels:
        raise ValueError(f"class_templates: W has {w.shape[0]} rows (bias row dropped: "
                         f"{bias_trick}); images of shape {image_shape} need {pixels}")
    t = w.T.reshape((w.shape[1], *image_shape))
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo) if hi > lo else np.zeros_like(t)


def templates_figure(w, image_shape, class_names: Sequence[str], bias_trick: bool,
                     title: str = "") -> Figure:
    """The learned class templates, one image per class, titled by its class name."""
    t = class_templates(w, tuple(image_shape), bias_trick)
    cols = min(len(t), 10)
    rows = -(-len(t) // cols)
    fig = _figure(0.85 * cols + 0.2, 1.05 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={
        "left": 0.02, "right": 0.98, "bottom": 0.02, "top": 1 - 0.5 / (1.05 * rows + 0.4),
        "wspace": 0.12, "hspace": 0.3}).ravel()
    for ax, image, name in zip(axes, t, class_names):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest",
                  gid=f"template {name}")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{title}: class templates (columns of W)" if title else
                 "class templates (columns of W)", fontsize=10, fontweight="bold")
    return fig


def plot_templates(w, image_shape, class_names: Sequence[str], bias_trick: bool, path,
                   title: str = "") -> None:
    """Writes :func:`templates_figure` to ``path``."""
    save_svg(templates_figure(w, image_shape, class_names, bias_trick, title), path)


def heatmap_figure(lrs: Sequence[float], regs: Sequence[float], val_acc: np.ndarray,
                   title: str = "") -> Figure:
    """Validation accuracy over the lr x reg grid, each cell labelled, the best outlined.

    Args:
      val_acc: [len(lrs), len(regs)]; NaN for runs that diverged (grey, "diverged").
    """
    from matplotlib.patches import Rectangle

    acc = np.asarray(val_acc, np.float64)
    finite = np.isfinite(acc)
    fig = _figure(1.0 * len(regs) + 2.2, 0.5 * len(lrs) + 1.6, "constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("#dddddd")  # a diverged run's cell
    image = ax.imshow(np.ma.masked_invalid(acc), cmap="viridis", aspect="auto")
    lo, hi = (np.nanmin(acc), np.nanmax(acc)) if finite.any() else (0.0, 1.0)
    for i, j in np.ndindex(acc.shape):
        if finite[i, j]:
            bright = hi <= lo or (acc[i, j] - lo) / (hi - lo) > 0.6
            ax.text(j, i, f"{acc[i, j]:.3f}", ha="center", va="center", fontsize=9,
                    color="black" if bright else "white")
        else:
            ax.text(j, i, "diverged", ha="center", va="center", fontsize=9, color="gray")
    if finite.any():
        i, j = np.unravel_index(np.nanargmax(acc), acc.shape)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red",
                               linewidth=2.5))
    ax.set_xticks(range(len(regs)), [f"{r:.0e}" if r else "0" for r in regs])
    ax.set_yticks(range(len(lrs)), [f"{lr:.0e}" for lr in lrs])
    ax.set_xlabel("loss.reg")
    ax.set_ylabel("optimizer.lr")
    ax.set_title(f"{title}: val accuracy" if title else "val accuracy", fontweight="bold")
    fig.colorbar(image, ax=ax)
    return fig


def plot_heatmap(lrs: Sequence[float], regs: Sequence[float], val_acc: np.ndarray, path,
                 title: str = "") -> None:
    """Writes :func:`heatmap_figure` to ``path``."""
    save_svg(heatmap_figure(lrs, regs, val_acc, title), path)
