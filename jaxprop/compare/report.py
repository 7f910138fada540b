"""One run of the comparison: the chosen sections, then the CSVs, figures and tables."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxprop.compare import sections
from jaxprop.compare.pipelines import PIPELINES

__all__ = ["run_compare", "markdown_tables"]

_DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _fmt(value, spec: str = ".3g") -> str:
    if value == "" or value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _table(head: list[str], rows) -> list[str]:
    """A markdown table: the header, then one line per row of cells."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in cells) + " |" for cells in rows)]


def _pivot(rows, row_key, value: Callable[[dict], str], head: list[str], keys) -> list[str]:
    cells = []
    for k in keys:
        group = {r["pipeline"]: r for r in rows if row_key(r) == k}
        first = next(iter(group.values()))
        cells.append([first[h] for h in head] + [value(group[p]) for p in PIPELINES])
    return _table(head + list(PIPELINES), cells)


_CHEAP_TABLES = (
    ("Cheap gradient: cost of the loss gradient / cost of the forward pass", "P (params)", (
        ("reverse-ours FLOPs", "reverse-ours grad", "flops_over_forward"),
        ("reverse-ours time", "reverse-ours grad", "time_over_forward"),
        ("reverse-jax FLOPs", "reverse-jax grad", "flops_over_forward"),
        ("forward-ours FLOPs", "forward-ours grad", "flops_over_forward"),
        ("forward-ours time", "forward-ours grad", "time_over_forward"),
        ("forward-jax FLOPs", "forward-jax grad", "flops_over_forward"))),
    ("One JVP: two reverse passes (`jvp_from_vjp`) vs a direct JVP", "P", (
        ("jvp_from_vjp / jvp FLOPs", "jvp_from_vjp", "flops_over_jvp"),
        ("same, before XLA's optimizations", "jvp_from_vjp", "unoptimized_flops_over_jvp"),
        ("jvp_from_vjp / jvp time", "jvp_from_vjp", "time_over_jvp"),
        ("jax.jvp / jvp FLOPs", "jvp (jax)", "flops_over_jvp"),
        ("jvp / forward pass FLOPs", "jvp (ours)", "flops_over_forward"))),
)
"""The cheap-gradient section's tables: title, the parameter column's name, and per column
its name, the program and the measurement."""


def _unique(seq):
    return list(dict.fromkeys(seq))


def markdown_tables(summary: dict) -> str:
    """The report's tables, in markdown, from a run's summary."""
    out: list[str] = []
    rows = summary.get("rows", [])
    width = [r for r in rows if r["section"] == "width"]
    if width:
        keys = _unique(r["n"] for r in width)
        out += ["### Width sweep: time per full Jacobian (ms, median)", ""]
        out += _pivot(width, lambda r: r["n"], lambda r: _fmt(1e3 * r["time_s"]),
                      ["n", "m"], keys)
        out += ["", "### Width sweep: MFLOPs per full Jacobian (XLA cost analysis)", ""]
        out += _pivot(width, lambda r: r["n"], lambda r: _fmt(r["flops"] / 1e6),
                      ["n", "m"], keys)
        c = summary["crossover"]
        out += ["", f"Crossover n/m (ours, forward vs reverse): time {_fmt(c['time_ours'])}, "
                f"FLOPs {_fmt(c['flops_ours'])}; plain JAX: time {_fmt(c['time_jax'])}, "
                f"FLOPs {_fmt(c['flops_jax'])}.", ""]
    depth = [r for r in rows if r["section"] == "depth"]
    if depth:
        keys = _unique(r["depth"] for r in depth)
        out += ["### Depth sweep: temp memory (KiB, XLA memory analysis)", ""]
        out += _pivot(depth, lambda r: r["depth"], lambda r: _fmt(r["temp_bytes"] / 1024),
                      ["depth", "n"], keys)
        out += ["", "### Depth sweep: time per gradient (ms, median)", ""]
        out += _pivot(depth, lambda r: r["depth"], lambda r: _fmt(1e3 * r["time_s"]),
                      ["depth", "n"], keys)
        out.append("")
    two = [r for r in rows if r["section"] == "two_layer"]
    if two:
        out += ["### Two-layer net", ""]
        out += _table(["case", "n", "m", "pipeline", "time (ms)", "MFLOPs", "memory (MiB)",
                       "rel. error"],
                      ([r["case"], r["n"], r["m"], r["pipeline"], _fmt(1e3 * r["time_s"]),
                        _fmt(r["flops"] / 1e6), _fmt(r["total_bytes"] / 2**20),
                        _fmt(r["max_rel_err"], ".1e")] for r in two))
        out.append("")
    cheap = summary.get("cheap_gradient", [])
    by_hidden = {h: {r["program"]: r for r in cheap if r["hidden"] == h}
                 for h in _unique(r["hidden"] for r in cheap)}
    for title, params, columns in _CHEAP_TABLES if cheap else ():
        out += [f"### {title}", ""]
        out += _table(["H", params] + [c[0] for c in columns],
                      ([h, g["forward pass"]["params"]] +
                       [_fmt(g[program][key]) for _, program, key in columns]
                       for h, g in by_hidden.items()))
        out.append("")
    big = summary.get("big_jacobian")
    if big:
        out += [f"### The {big['N']} x {big['D']} by {big['D']} x {big['M']} matmul "
                f"({big['dtype']})", "",
                "| quantity | bytes |", "|---|---|",
                f"| VJP program: arguments (x, w, y_bar) | {big['vjp_argument_bytes']:,} |",
                f"| VJP program: output (x_bar, w_bar) | {big['vjp_output_bytes']:,} |",
                f"| VJP program: temp | {big['vjp_temp_bytes']:,} |",
                f"| VJP program: total | {big['vjp_total_bytes']:,} |",
                f"| (ND + DM + NM) entries | {big['operand_bytes']:,} |",
                f"| full Jacobian dy/dx, (NM) x (ND) entries | {big['jacobian_x_bytes']:,} |",
                f"| full Jacobian dy/d(x, w), (NM) x (ND + DM) entries "
                f"| {big['jacobian_xw_bytes']:,} |", "",
                f"VJP FLOPs: {_fmt(big['vjp_flops'])}; VJP time: "
                f"{_fmt(big['vjp_time_s'])} s.", ""]
        for label, message in big["refusals"].items():
            out.append(f"- `{label}`: {message}")
        out.append("")
    return "\n".join(out)


def run_compare(config, log: Callable[[str], None] | None = None) -> dict:
    """Runs the sections ``config.sections`` and writes their outputs to ``config.out``.

    Writes ``compare.csv`` (one row per pipeline and size), ``cheap_gradient.csv``,
    ``big_jacobian.json``, ``tables.md`` and the figures ``time_vs_width.png``,
    ``memory_vs_depth.png`` and ``cheap_gradient.png``.

    Args:
      config: the ``Plan`` (``jaxprop.compare.load_config``).
      log: progress messages (default: stderr).

    Returns:
      A summary: ``rows``, ``cheap_gradient``, ``big_jacobian``, ``crossover``, ``files``.
    """
    from jaxprop.compare import figures  # matplotlib loads only when a run writes figures

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    dtype = _DTYPES[config.dtype]
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype 'float64' needs 64-bit JAX: set JAX_ENABLE_X64=1, or use "
                         "dtype = 'float32'")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = config.repeats
    chosen = config.sections
    rows: list[dict] = []
    summary: dict = {"rows": rows, "files": [], "crossover": {}}
    seed = config.seed
    sample = config.min_sample_ms / 1e3
    if "width" in chosen:
        log("width sweep (n vs m)")
        rows += sections.width_sweep(config.width, seed, dtype, repeats, log, sample)
    if "depth" in chosen:
        log("depth sweep (memory)")
        rows += sections.depth_sweep(config.depth, seed, dtype, repeats, log, sample)
    if "two_layer" in chosen:
        log("two-layer net")
        rows += sections.two_layer_sweep(config.two_layer, seed, dtype, repeats, log, sample)
    if "cheap_gradient" in chosen:
        log("cheap gradient")
        summary["cheap_gradient"] = sections.cheap_gradient_sweep(
            config.cheap_gradient, seed, dtype, repeats, log, min_sample_s=sample)
    if "big_jacobian" in chosen:
        log("the 256 GB Jacobian")
        summary["big_jacobian"] = sections.big_jacobian(config.big_jacobian, dtype, repeats,
                                                      log)
    files = summary["files"]
    if rows:
        files.append(_write_csv(out / "compare.csv", rows))
    width = [r for r in rows if r["section"] == "width"]
    if width:
        cross = summary["crossover"]
        for metric, tag in (("time_s", "time"), ("flops", "flops")):
            cross[f"{tag}_ours"] = sections.crossover(width, "forward-ours", "reverse-ours",
                                                    metric)
            cross[f"{tag}_jax"] = sections.crossover(width, "forward-jax", "reverse-jax", metric)
        w = config.width
        files.append(figures.plot_width(
            width, out / "time_vs_width.png", cross["time_ours"], cross["flops_ours"],
            f"Full Jacobian of a {w.depth}-layer matmul+{w.activation} chain, "
            f"x [n] -> y [m], n*m = {w.product}, hidden {w.hidden}, {config.dtype}"))
    depth = [r for r in rows if r["section"] == "depth"]
    if depth:
        d = config.depth
        files.append(figures.plot_depth(
            depth, out / "memory_vs_depth.png",
            f"Gradient of sum(chain(x)), x [{d.inputs}], width {d.width}, "
            f"{d.activation}: reverse stores activations, forward does not"))
    if summary.get("cheap_gradient"):
        c = config.cheap_gradient
        files.append(_write_csv(out / "cheap_gradient.csv", summary["cheap_gradient"]))
        files.append(figures.plot_cheap_gradient(
            summary["cheap_gradient"], out / "cheap_gradient.png",
            f"Two-layer softmax loss, D={c.input}, N={c.batch}, H in {list(c.hiddens)}: "
            "gradient cost over forward-pass cost"))
    if summary.get("big_jacobian"):
        path = out / "big_jacobian.json"
        path.write_text(json.dumps(summary["big_jacobian"], indent=2) + "\n")
        files.append(path)
    tables = out / "tables.md"
    tables.write_text(markdown_tables(summary))
    files.append(tables)
    return summary
