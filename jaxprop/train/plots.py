"""PNG figures of a run: loss and accuracy curves, class templates, a sweep's heatmap.

Matplotlib draws off-screen (the Agg backend), so figures are written on machines without a
display. Nothing here is imported until a figure is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["plot_loss", "plot_accuracy", "class_templates", "plot_templates", "plot_heatmap"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    _pyplot().close(fig)


def plot_loss(metrics: Sequence[dict], path, title: str = "") -> None:
    """Training loss per epoch (the mean over the epoch's steps)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    epochs = [m["epoch"] for m in metrics]
    ax.plot(epochs, [m["train_loss"] for m in metrics], marker="o", ms=3, label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: training loss" if title else "training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_accuracy(metrics: Sequence[dict], path, title: str = "") -> None:
    """Training and validation accuracy per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    epochs = [m["epoch"] for m in metrics]
    ax.plot(epochs, [m["train_acc"] for m in metrics], marker="o", ms=3, label="train")
    ax.plot(epochs, [m["val_acc"] for m in metrics], marker="s", ms=3, label="val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: accuracy" if title else "accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


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


def plot_templates(w, image_shape, class_names: Sequence[str], bias_trick: bool, path,
                   title: str = "") -> None:
    """One grid image of the learned class templates, titled by class name."""
    plt = _pyplot()
    t = class_templates(w, tuple(image_shape), bias_trick)
    c = t.shape[0]
    cols = min(c, 10)
    rows = -(-c // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < c:
            gray = t[i].ndim == 2
            ax.imshow(t[i], cmap="gray" if gray else None, interpolation="nearest",
                      vmin=0, vmax=1)
            ax.set_title(str(class_names[i]), fontsize=9)
    fig.suptitle(f"{title}: class templates (columns of W)" if title else
                 "class templates (columns of W)", fontsize=10)
    _save(fig, path)


def plot_heatmap(lrs: Sequence[float], regs: Sequence[float], val_acc: np.ndarray, path,
                 title: str = "") -> None:
    """Validation accuracy over the lr x reg grid, the best cell outlined.

    Args:
      val_acc: [len(lrs), len(regs)]; NaN for runs that diverged.
    """
    plt = _pyplot()
    acc = np.asarray(val_acc, np.float64)
    fig, ax = plt.subplots(figsize=(1.1 * len(regs) + 2.6, 0.55 * len(lrs) + 1.9))
    im = ax.imshow(np.ma.masked_invalid(acc), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(regs)), [f"{r:.0e}" if r else "0" for r in regs])
    ax.set_yticks(range(len(lrs)), [f"{r:.0e}" for r in lrs])
    ax.set_xlabel("loss.reg")
    ax.set_ylabel("optimizer.lr")
    lo, hi = (np.nanmin(acc), np.nanmax(acc)) if np.isfinite(acc).any() else (0.0, 1.0)
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            finite = np.isfinite(acc[i, j])
            bright = finite and hi > lo and (acc[i, j] - lo) / (hi - lo) > 0.6
            text = f"{acc[i, j]:.3f}" if finite else "diverged"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if bright else "white" if finite else "gray")
    if np.isfinite(acc).any():
        i, j = np.unravel_index(np.nanargmax(acc), acc.shape)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    fig.colorbar(im, ax=ax, label="val accuracy")
    ax.set_title(f"{title}: val accuracy" if title else "val accuracy", fontsize=10)
    _save(fig, path)
