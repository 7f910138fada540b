"""The figures of ``jaxprop compare``: time against n/m, memory against depth, cheap gradient."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

from jaxprop.compare.methods import METHODS
from jaxprop.compare.sections import GRADIENT_PROGRAMS

__all__ = ["plot_width", "plot_depth", "plot_cheap_gradient"]


def _legend_below(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 7),
               fontsize=9, frameon=False)


def _log_log(ax, xlabel: str, ylabel: str, xbase: int = 10) -> None:
    ax.set_xscale("log", base=xbase)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def _save(fig, axes, title: str, path: Path) -> Path:
    _legend_below(fig, axes[0])
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return path


def _series(rows, name, x_key, y_key):
    pts = sorted((r[x_key], r[y_key]) for r in rows if r["pipeline"] == name)
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_width(rows: list[dict], path: Path, crossover_time: float | None,
               crossover_flops: float | None, title: str) -> Path:
    """Time and FLOPs of the full Jacobian against n/m (log-log), crossover marked."""
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label, cross in (
        (axes[0], "time_s", "wall time per Jacobian (s, median)", crossover_time),
        (axes[1], "flops", "FLOPs per Jacobian (XLA cost analysis)", crossover_flops),
    ):
        for name, method in METHODS.items():
            xs, ys = _series(rows, name, "n_over_m", key)
            ax.plot(xs, ys, label=name, **method.style)
        _log_log(ax, "n / m  (n inputs, m outputs)", label, 2)
        if cross is not None:
            ax.axvline(cross, color="black", linewidth=1)
            ax.annotate(f"crossover\nn/m = {cross:.2g}", xy=(cross, 0.5),
                        xycoords=("data", "axes fraction"), ha="left", va="center",
                        xytext=(5, 0), textcoords="offset points",
                        bbox=dict(boxstyle="round", fc="white", ec="black", lw=0.5))
    return _save(fig, axes, title + "\ntall J (n << m, left): forward mode is cheaper; wide "
                 "J (n >> m, right): reverse mode", path)


def plot_depth(rows: list[dict], path: Path, title: str) -> Path:
    """XLA's temp memory (what the program allocates beyond its inputs and output) and time
    against depth."""
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label in (
        (axes[0], "temp_bytes", "temp memory (bytes, XLA memory analysis)"),
        (axes[1], "time_s", "wall time per gradient (s, median)"),
    ):
        for name, method in METHODS.items():
            xs, ys = _series(rows, name, "depth", key)
            if key == "temp_bytes":
                ys = [max(y, 1) for y in ys]  # a log axis has no 0 bytes
            ax.plot(xs, ys, label=name, **method.style)
        _log_log(ax, "depth (number of matmul + activation layers)", label, 2)
    return _save(fig, axes, title, path)


def plot_cheap_gradient(rows: list[dict], path: Path, title: str) -> Path:
    """The gradient's cost over the forward pass's, against the number of parameters."""
    programs = {name: style for name, style in GRADIENT_PROGRAMS.items() if style}
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label in (
        (axes[0], "flops_over_forward", "FLOPs / FLOPs of the forward pass"),
        (axes[1], "time_over_forward", "time / time of the forward pass"),
    ):
        for name, style in programs.items():
            pts = sorted((r["params"], r[key]) for r in rows if r["program"] == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, **style)
        ax.axhspan(3, 5, color="grey", alpha=0.15, label="3-5x (cheap gradient)")
        _log_log(ax, "number of parameters P of the two-layer net", label)
    return _save(fig, axes, title, path)
