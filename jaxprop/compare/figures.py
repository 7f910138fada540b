"""The figures of ``jaxprop compare``: time against n/m, memory against depth, cheap gradient."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

from jaxprop.compare.pipelines import PIPELINES
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


def _two_panels():
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    return fig, fig.subplots(1, 2)


def _plot(ax, rows, x_key: str, y_key: str, key: str, styles: dict, floor=None) -> None:
    """One line per entry of ``styles``: the rows whose ``key`` names it, y against x
    (y at least ``floor``, for a log axis)."""
    for name, style in styles.items():
        pts = sorted((r[x_key], r[y_key]) for r in rows if r[key] == name)
        ys = [p[1] if floor is None else max(p[1], floor) for p in pts]
        ax.plot([p[0] for p in pts], ys, label=name, **style)


_PIPELINE_STYLES = {name: p.style for name, p in PIPELINES.items()}


def plot_width(rows: list[dict], path: Path, crossover_time: float | None,
               crossover_flops: float | None, title: str) -> Path:
    """Time and FLOPs of the full Jacobian against n/m (log-log), crossover marked."""
    fig, axes = _two_panels()
    for ax, key, label, cross in (
        (axes[0], "time_s", "wall time per Jacobian (s, median)", crossover_time),
        (axes[1], "flops", "FLOPs per Jacobian (XLA cost analysis)", crossover_flops),
    ):
        _plot(ax, rows, "n_over_m", key, "pipeline", _PIPELINE_STYLES)
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
    fig, axes = _two_panels()
    for ax, key, label in (
        (axes[0], "temp_bytes", "temp memory (bytes, XLA memory analysis)"),
        (axes[1], "time_s", "wall time per gradient (s, median)"),
    ):
        floor = 1 if key == "temp_bytes" else None  # a log axis has no 0 bytes
        _plot(ax, rows, "depth", key, "pipeline", _PIPELINE_STYLES, floor)
        _log_log(ax, "depth (number of matmul + activation layers)", label, 2)
    return _save(fig, axes, title, path)


def plot_cheap_gradient(rows: list[dict], path: Path, title: str) -> Path:
    """The gradient's cost over the forward pass's, against the number of parameters."""
    programs = {name: style for name, style in GRADIENT_PROGRAMS.items() if style}
    fig, axes = _two_panels()
    for ax, key, label in (
        (axes[0], "flops_over_forward", "FLOPs / FLOPs of the forward pass"),
        (axes[1], "time_over_forward", "time / time of the forward pass"),
    ):
        _plot(ax, rows, "params", key, "program", programs)
        ax.axhspan(3, 5, color="grey", alpha=0.15, label="3-5x (cheap gradient)")
        _log_log(ax, "number of parameters P of the two-layer net", label)
    return _save(fig, axes, title, path)
