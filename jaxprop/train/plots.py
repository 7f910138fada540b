"""The figures of a run, written as SVG: loss and accuracy curves, class templates, a heatmap.

The default run trains in about 0.2 s, and matplotlib alone takes over a second to import
and draw two curves, so a run's figures are written here directly as SVG text: axes with
round-number ticks, one polyline per series, a legend. They open in any browser. A class
template is a small raster image, embedded in its SVG as a PNG (written with ``zlib``).
Drawing every figure of a run takes milliseconds.
"""

from __future__ import annotations

import base64
import html
import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from jaxprop.train.checkpoint import atomic_write_text

__all__ = ["plot_loss", "plot_accuracy", "class_templates", "plot_templates", "plot_heatmap",
           "line_chart", "png_bytes", "nice_ticks"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
FONT = "font-family:DejaVu Sans,Arial,sans-serif"
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def _text(x, y, s, size=11, anchor="middle", extra="") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'style="{FONT}"{extra}>{html.escape(str(s))}</text>')


def _write(path, body: list[str], width: float, height: float) -> None:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">\n'
           f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
    atomic_write_text(path, svg)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _label(v: float) -> str:
    return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


def line_chart(path, series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
               title: str, xlabel: str, ylabel: str, width: int = 560,
               height: int = 360) -> None:
    """Writes a line chart: ``series`` holds ``(label, xs, ys)``; non-finite ys are gaps."""
    left, right, top, bottom = 64, 16, 46, 46
    xs_all = [x for _, xs, _ in series for x in xs]
    ys_all = [y for _, _, ys in series for y in ys if math.isfinite(y)]
    xt = nice_ticks(min(xs_all, default=0), max(xs_all, default=1))
    yt = nice_ticks(min(ys_all, default=0), max(ys_all, default=1))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / ((x1 - x0) or 1) * pw

    def py(y):
        return top + ph - (y - y0) / ((y1 - y0) or 1) * ph

    body = [_text(width / 2, 20, title, 13, extra=' font-weight="bold"')]
    for t in yt:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                    'stroke="#e5e5e5"/>')
        body.append(_text(left - 6, py(t) + 4, _label(t), 10, "end"))
    for t in xt:
        body.append(f'<line y1="{top}" y2="{top + ph}" x1="{px(t):.1f}" x2="{px(t):.1f}" '
                    'stroke="#f0f0f0"/>')
        body.append(_text(px(t), top + ph + 16, _label(t), 10))
    body.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
                'stroke="#333"/>')
    body.append(_text(left + pw / 2, height - 8, xlabel, 11))
    body.append(_text(16, top + ph / 2, ylabel, 11,
                      extra=f' transform="rotate(-90 16 {top + ph / 2:.1f})"'))
    for k, (label, xs, ys) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        runs, run = [], []
        for x, y in zip(xs, ys):
            if math.isfinite(y):
                run.append(f"{px(x):.1f},{py(y):.1f}")
            elif run:
                runs.append(run)
                run = []
        runs.append(run)
        for r in runs:
            if r:
                body.append(f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" '
                            'stroke-width="1.8"/>')
        body += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.2" '
                 f'fill="{color}"/>' for r in runs for p in r]
        lx = left + pw - 100 * (len(series) - k)  # the legend: one row above the plot
        body.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{top - 12}" y2="{top - 12}" '
                    f'stroke="{color}" stroke-width="2"/>')
        body.append(_text(lx + 26, top - 8, label, 10, "start"))
    _write(path, body, width, height)


def plot_loss(metrics: Sequence[dict], path, title: str = "") -> None:
    """Training loss per epoch (the mean over the epoch's steps)."""
    epochs = [m["epoch"] for m in metrics]
    line_chart(path, [("train loss", epochs, [float(m["train_loss"]) for m in metrics])],
               f"{title}: training loss" if title else "training loss", "epoch", "loss")


def plot_accuracy(metrics: Sequence[dict], path, title: str = "") -> None:
    """Training and validation accuracy per epoch."""
    epochs = [m["epoch"] for m in metrics]
    line_chart(path, [("train", epochs, [float(m["train_acc"]) for m in metrics]),
                      ("val", epochs, [float(m["val_acc"]) for m in metrics])],
               f"{title}: accuracy" if title else "accuracy", "epoch", "accuracy")


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG file of an 8-bit grey [h, w] or RGB [h, w, 3] image."""
    a = np.ascontiguousarray(image, np.uint8)
    h, w = a.shape[:2]
    color = 2 if a.ndim == 3 else 0
    rows = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


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
    """One figure of the learned class templates, each titled by its class name."""
    t = class_templates(w, tuple(image_shape), bias_trick)
    c = t.shape[0]
    cols = min(c, 10)
    rows = -(-c // cols)
    cell, pad = 72, 22
    width, height = cols * (cell + 8) + 8, rows * (cell + pad + 8) + 36
    body = [_text(width / 2, 20, f"{title}: class templates (columns of W)" if title else
                  "class templates (columns of W)", 12, extra=' font-weight="bold"')]
    for i in range(c):
        r, k = divmod(i, cols)
        x, y = 8 + k * (cell + 8), 36 + r * (cell + pad + 8)
        data = base64.b64encode(png_bytes(np.rint(255 * t[i]))).decode("ascii")
        body.append(_text(x + cell / 2, y + 12, class_names[i], 10))
        body.append(f'<image x="{x}" y="{y + pad - 4}" width="{cell}" height="{cell}" '
                    f'style="image-rendering:pixelated" href="data:image/png;base64,{data}"/>')
    _write(path, body, width, height)


def _viridis(f: float) -> str:
    f = min(max(f, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    k = min(int(f), len(_VIRIDIS) - 2)
    a, b = _VIRIDIS[k], _VIRIDIS[k + 1]
    rgb = [round(a[j] + (b[j] - a[j]) * (f - k)) for j in range(3)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def plot_heatmap(lrs: Sequence[float], regs: Sequence[float], val_acc: np.ndarray, path,
                 title: str = "") -> None:
    """Validation accuracy over the lr x reg grid, the best cell outlined.

    Args:
      val_acc: [len(lrs), len(regs)]; NaN for runs that diverged.
    """
    acc = np.asarray(val_acc, np.float64)
    finite = np.isfinite(acc)
    lo, hi = (np.nanmin(acc), np.nanmax(acc)) if finite.any() else (0.0, 1.0)
    cw, ch, left, top = 78, 34, 86, 40
    width, height = left + cw * len(regs) + 70, top + ch * len(lrs) + 50
    body = [_text(width / 2, 20, f"{title}: val accuracy" if title else "val accuracy", 12,
                  extra=' font-weight="bold"')]
    best = np.unravel_index(np.nanargmax(acc), acc.shape) if finite.any() else None
    for i, lr in enumerate(lrs):
        body.append(_text(left - 6, top + ch * i + ch / 2 + 4, f"{lr:.0e}", 10, "end"))
        for j in range(len(regs)):
            x, y = left + cw * j, top + ch * i
            if finite[i, j]:
                f = (acc[i, j] - lo) / (hi - lo) if hi > lo else 1.0
                body.append(f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" '
                            f'fill="{_viridis(f)}"/>')
                color = "black" if f > 0.6 else "white"
                body.append(_text(x + cw / 2, y + ch / 2 + 4, f"{acc[i, j]:.3f}", 10,
                                  extra=f' fill="{color}"'))
            else:
                body.append(f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="#ddd"/>')
                body.append(_text(x + cw / 2, y + ch / 2 + 4, "diverged", 10,
                                  extra=' fill="gray"'))
    for j, reg in enumerate(regs):
        body.append(_text(left + cw * j + cw / 2, top + ch * len(lrs) + 16,
                          f"{reg:.0e}" if reg else "0", 10))
    body.append(_text(left + cw * len(regs) / 2, height - 10, "loss.reg", 11))
    body.append(_text(14, top + ch * len(lrs) / 2, "optimizer.lr", 11,
                      extra=f' transform="rotate(-90 14 {top + ch * len(lrs) / 2:.1f})"'))
    if best is not None:
        i, j = best
        body.append(f'<rect x="{left + cw * j + 1}" y="{top + ch * i + 1}" width="{cw - 2}" '
                    f'height="{ch - 2}" fill="none" stroke="red" stroke-width="2.5"/>')
    bx = left + cw * len(regs) + 16
    for k in range(20):  # the colour bar, best at the top
        body.append(f'<rect x="{bx}" y="{top + k * ch * len(lrs) / 20:.1f}" width="14" '
                    f'height="{ch * len(lrs) / 20 + 0.5:.1f}" fill="{_viridis(1 - k / 19)}"/>')
    body.append(_text(bx + 18, top + 8, f"{hi:.3f}", 9, "start"))
    body.append(_text(bx + 18, top + ch * len(lrs), f"{lo:.3f}", 9, "start"))
    _write(path, body, width, height)
