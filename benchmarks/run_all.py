"""Runs every benchmark several times and writes docs/benchmarks.md (and the README's summary).

Each benchmark runs ``--repeats`` times, each time as a fresh process with ``--json``, one
after the other (never two at once: they would share the cores). docs/benchmarks.md gets the
machine, the date, the load average before each run, and for every ratio the median and the
range over the runs, next to its goal. The README's benchmark table, between the markers
``<!-- benchmarks: start -->`` and ``<!-- benchmarks: end -->``, is rewritten from the same
numbers, so the two never disagree.

Run: ``python benchmarks/run_all.py [--repeats 3] [--only train_step,compile] [--quick]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHMARKS = {
    "train_step": (["--rounds", "30"], ["--rounds", "6", "--steps", "5"],
                   "one two-layer train step at CIFAR-10 sizes against plain JAX and "
                   "PyTorch eager"),
    "compile": (["--rounds", "5"], ["--rounds", "1"],
                "compile time of the default training epoch and of the train step"),
    "startup": (["--rounds", "3"], ["--rounds", "1"],
                "`jaxprop train` end to end, cold and warm compilation cache"),
    "train_digits": (["--repeats", "5"], ["--repeats", "1"],
                     "the default digits training against plain JAX, NumPy, PyTorch"),
    "sweep": (["--repeats", "3"], ["--repeats", "1"],
              "a 4 x 4 lr x reg grid, vmapped against one config at a time"),
    "jacobian": ([], ["--repeats", "5"],
                 "full Jacobians against jax.jacfwd / jax.jacrev on the same gates"),
    "driver_reuse": ([], ["--calls", "20", "--rounds", "2"],
                     "re-creating jaxprop.reverse.grad(f) in a loop"),
}
"""Each benchmark: its arguments, its arguments under --quick, and what it measures."""

START, END = "<!-- benchmarks: start -->", "<!-- benchmarks: end -->"


def run(name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        load = os.getloadavg()[0]
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra, "--json",
                               str(out)], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"benchmarks/{name}.py failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result["load_before"] = load
    result["stdout"] = done.stdout
    return result


def _fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def _goal(ratio: dict) -> str:
    if ratio["goal"] is None:
        return "-"
    return ("≥ " if ratio["higher_is_better"] else "≤ ") + f"{ratio['goal']:g}"


def _met(ratio: dict, values: list[float]) -> str:
    if ratio["goal"] is None:
        return ""
    hi = ratio["higher_is_better"]
    ok = [v >= ratio["goal"] if hi else v <= ratio["goal"] for v in values]
    return "yes" if all(ok) else "no" if not any(ok) else f"in {sum(ok)} of {len(ok)} runs"


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    """One row per ratio: its median and range over the runs."""
    rows = []
    for name, runs in results.items():
        for k, ratio in enumerate(runs[0]["ratios"]):
            values = [r["ratios"][k]["value"] for r in runs]
            rows.append({"benchmark": name, "ratio": ratio["name"], "goal": _goal(ratio),
                         "median": statistics.median(values), "min": min(values),
                         "max": max(values), "runs": len(values),
                         "met": _met(ratio, values),
                         "headline": ratio["name"] == runs[0]["headline"]})
    return rows


def summary_table(rows: list[dict], headline_only: bool = False) -> str:
    lines = ["| benchmark | ratio | goal | median | range | goal met |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if headline_only and not (r["headline"] or r["goal"] != "-"):
            continue
        lines.append(f"| `{r['benchmark']}` | {r['ratio']} | {r['goal']} | "
                     f"{_fmt(r['median'])} | {_fmt(r['min'])}–{_fmt(r['max'])} | {r['met']} |")
    return "\n".join(lines)


def write_doc(path: Path, results: dict[str, list[dict]], rows: list[dict], argv: list[str],
              date: str) -> None:
    first = next(iter(results.values()))[0]["machine"]
    loads = [r["load_before"] for runs in results.values() for r in runs]
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    doc = [
        "# Benchmarks",
        "",
        f"Written by `python benchmarks/run_all.py{' ' + ' '.join(argv) if argv else ''}` on "
        f"{date}. Every ratio is the median of interleaved rounds within one run (see each "
        "script's docstring); the table gives, over the runs, the median of those ratios and "
        "their range. Lower is better unless the goal says ≥. Machines are shared and noisy: "
        "a figure from one machine may not hold on the next; rerun the command to check.",
        "",
        f"- machine: {first['cpu']}, {first['cores']} cores, JAX device {first['device']}",
        f"- software: Python {first['python']}, jax {first['jax']}, jaxlib {first['jaxlib']}, "
        f"optax {first['optax']}, PyTorch {torch_version}",
        f"- load: the 1-minute load average before each run was between {min(loads):.2f} "
        f"and {max(loads):.2f}",
        "",
        "## Summary",
        "",
        summary_table(rows),
        "",
    ]
    for name, runs in results.items():
        doc += [f"## `{name}`", "", BENCHMARKS[name][2] + ".", "",
                f"`python benchmarks/{name}.py {' '.join(BENCHMARKS[name][0])}`".replace(
                    " `", "`"), ""]
        keys = list(runs[0]["figures"])
        doc += ["| figure | median | range |", "|---|---|---|"]
        for key in keys:
            values = [r["figures"][key] for r in runs]
            doc.append(f"| {key} | {_fmt(statistics.median(values))} | "
                       f"{_fmt(min(values))}–{_fmt(max(values))} |")
        doc += ["", "The last run's output:", "", "```", runs[-1]["stdout"].rstrip(), "```", ""]
    path.write_text("\n".join(doc))


def write_readme(rows: list[dict], date: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to rewrite")
    block = "\n".join([
        START,
        summary_table(rows, headline_only=True),
        "",
        f"From [docs/benchmarks.md](docs/benchmarks.md) ({date}, "
        f"{rows[0]['runs']} runs each): regenerate both with `python benchmarks/run_all.py`.",
        END,
    ])
    head, rest = text.split(START, 1)
    readme.write_text(head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of each benchmark")
    p.add_argument("--only", default=None, help="comma-separated benchmark names")
    p.add_argument("--quick", action="store_true", help="few rounds: a smoke test, not figures")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    names = list(BENCHMARKS) if args.only is None else args.only.split(",")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; expected some of {list(BENCHMARKS)}")
    results: dict[str, list[dict]] = {}
    for name in names:
        extra = BENCHMARKS[name][1] if args.quick else BENCHMARKS[name][0]
        for k in range(args.repeats):
            print(f"{name} run {k + 1}/{args.repeats} ...", flush=True)
            results.setdefault(name, []).append(run(name, extra))
    rows = summarise(results)
    date = datetime.date.today().isoformat()
    write_doc(args.out, results, rows, argv, date)
    print(summary_table(rows))
    print(f"wrote {args.out}")
    if not args.no_readme and args.only is None and not args.quick:
        write_readme(rows, date)
        print("rewrote the README's benchmark table")


if __name__ == "__main__":
    main()
