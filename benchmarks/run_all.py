"""Runs every benchmark several times and writes docs/benchmarks.md (and the README's summary).

Each benchmark runs ``--repeats`` times, each time as a fresh process with ``--json``, one
after the other (never two at once: they would share the cores). docs/benchmarks.md gets the
machine, the date, the load average before each run, and for every ratio the median and the
range over the runs, next to its goal. The README's benchmark table, between the markers
``<!-- benchmarks: start -->`` and ``<!-- benchmarks: end -->``, is rewritten from the same
numbers, so the two never disagree. With ``--only``, the benchmarks named replace their
rows and sections in both, and every other benchmark's stay as they were (each section
gives its own date and load). The benchmarks that compare frameworks (``train_step``,
``train_digits``, ``conv_step``) also report a fairness check, each reference timed alone
against interleaved; a reference timed more than 15% slower interleaved is flagged in its
section and next to every ratio against it.

Run: ``python benchmarks/run_all.py [--repeats 3] [--only train_step,compile] [--quick]``.
``--quick`` is a smoke test: it prints its figures and writes nothing unless ``--out`` is
given (never the README).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHMARKS = {
    "train_step": (["--rounds", "30"], ["--rounds", "6", "--steps", "5"],
                   "one two-layer train step at CIFAR-10 sizes against plain JAX and "
                   "PyTorch eager, each framework in its own process"),
    "compile": (["--rounds", "5"], ["--rounds", "1"],
                "compile time of the default training epoch and of the train step"),
    "startup": (["--rounds", "3"], ["--rounds", "1"],
                "`jaxprop train` end to end, cold and warm compilation cache"),
    "train_digits": (["--repeats", "5"], ["--repeats", "1"],
                     "the default digits training against plain JAX, NumPy, PyTorch, each in "
                     "its own process"),
    "sweep": (["--repeats", "3"], ["--repeats", "1"],
              "a 4 x 4 lr x reg grid, vmapped against one config at a time"),
    "jacobian": ([], ["--repeats", "5"],
                 "full Jacobians against jax.jacfwd / jax.jacrev on the same gates"),
    "driver_reuse": ([], ["--calls", "20", "--rounds", "2"],
                     "re-creating jaxprop.reverse.grad(f) in a loop"),
    "conv_step": (["--rounds", "20"], ["--rounds", "2", "--steps", "1"],
                  "one CS231n three-layer ConvNet train step (N=64, 3x32x32, 32 filters 7x7) "
                  "against plain JAX and PyTorch eager, each framework in its own process"),
    "rnn_step": (["--rounds", "20"], ["--rounds", "2", "--steps", "1"],
                 "one LSTM train step under lax.scan (N=64, T=32, D=64, H=128) against plain "
                 "JAX, each in its own process; compile time and HLO size from T=32 to 256"),
}
"""Each benchmark: its arguments, its arguments under --quick, and what it measures."""

BUSY = 0.5
"""Other processes running on the CPUs before a run, on average over a second, above which the
machine was not quiet: the rows of that benchmark say so and judge no goal (PyTorch's OpenMP
threads, at their default, spin and slow down far more than JAX's when others hold the
cores). The 1-minute load average cannot tell: it still counts the benchmark before."""


def others_running(seconds: float = 1.0, samples: int = 20) -> float:
    """The mean number of other runnable threads on the machine (``procs_running`` of
    /proc/stat, less this one), NaN where there is no /proc/stat."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/stat") as f:
                counts += [int(line.split()[1]) - 1 for line in f
                           if line.startswith("procs_running")]
        except OSError:
            return float("nan")
        time.sleep(seconds / samples)
    return statistics.mean(counts) if counts else float("nan")


START, END = "<!-- benchmarks: start -->", "<!-- benchmarks: end -->"


def run(name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        others = others_running()
        load = os.getloadavg()[0]
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra, "--json",
                               str(out)], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"benchmarks/{name}.py failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result["load_before"] = load
    result["others_before"] = others
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


def _unfair(ratio_name: str, runs: list[dict]) -> str:
    """A note when the harness was not fair to a program of this ratio in some run."""
    programs = [p.strip() for p in ratio_name.split(" / ")]
    flagged = [sum(1 for r in runs for f in r.get("fairness", [])
                   if f["program"] == p and not f["fair"]) for p in programs]
    notes = [f"{p} timed >15% slower interleaved than alone in {k} of {len(runs)} runs"
             for p, k in zip(programs, flagged) if k]
    return ("; ".join(notes) + " (see its fairness check)") if notes else ""


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    """One row per ratio: its median and range over the runs."""
    rows = []
    for name, runs in results.items():
        for k, ratio in enumerate(runs[0]["ratios"]):
            values = [r["ratios"][k]["value"] for r in runs]
            met = _met(ratio, values)
            notes = _unfair(ratio["name"], runs)
            busy = max(r.get("others_before", 0.0) for r in runs)
            if busy > BUSY:
                notes = "; ".join(filter(None, [notes, f"busy machine ({busy:.1f} other "
                                                       "processes running before a run)"]))
            if notes:  # a goal is judged on fair, quiet runs only
                met = f"not judged: {notes}" if met else notes
            rows.append({"benchmark": name, "ratio": ratio["name"], "goal": _goal(ratio),
                         "median": statistics.median(values), "min": min(values),
                         "max": max(values), "runs": len(values),
                         "met": met,
                         "headline": ratio["name"] == runs[0]["headline"]})
    return rows


TABLE_HEAD = ["| benchmark | ratio | goal | median | range | goal met |",
              "|---|---|---|---|---|---|"]


def _against_a_peer(ratio: str) -> bool:
    return any(peer in ratio for peer in ("PyTorch", "NumPy"))


def table_rows(rows: list[dict], headline_only: bool = False) -> dict[str, list[str]]:
    """The table's lines, by benchmark. ``headline_only``: the headline ratios, those with
    a goal and those against PyTorch or NumPy (the README's)."""
    lines: dict[str, list[str]] = {}
    for r in rows:
        if headline_only and not (r["headline"] or r["goal"] != "-"
                                  or _against_a_peer(r["ratio"])):
            continue
        lines.setdefault(r["benchmark"], []).append(
            f"| `{r['benchmark']}` | {r['ratio']} | {r['goal']} | {_fmt(r['median'])} | "
            f"{_fmt(r['min'])}–{_fmt(r['max'])} | {r['met']} |")
    return lines


def summary_table(rows: list[dict], headline_only: bool = False) -> str:
    return "\n".join(TABLE_HEAD + [line for lines in table_rows(rows, headline_only).values()
                                   for line in lines])


def _old_rows(text: str) -> dict[str, list[str]]:
    """An existing table's lines, by benchmark."""
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"\| `(\w+)` \|", line)
        if m:
            lines.setdefault(m.group(1), []).append(line)
    return lines


def merged_table(new: dict[str, list[str]], old: dict[str, list[str]]) -> str:
    """The new lines of the benchmarks rerun, the old lines of the others, in BENCHMARKS'
    order."""
    lines = list(TABLE_HEAD)
    for name in list(BENCHMARKS) + [n for n in old if n not in BENCHMARKS]:
        lines += new[name] if name in new else old.get(name, [])
    return "\n".join(lines)


def _old_sections(text: str) -> dict[str, str]:
    """An existing docs/benchmarks.md's sections, by benchmark; a section without its own
    date gets the one of the file's header."""
    header = re.search(r"on (\d{4}-\d{2}-\d{2})\.", text)
    load = re.search(r"load average before each run was between ([\d.]+) and ([\d.]+)", text)
    sections = {}
    for part in re.split(r"^(?=## `)", text, flags=re.M)[1:]:
        name = re.match(r"## `(\w+)`", part).group(1)
        if "\nRun on " not in part and header and load:
            title, rest = part.split("\n", 1)
            part = (f"{title}\n\nRun on {header.group(1)}; the 1-minute load average before "
                    f"each run was between {load.group(1)} and {load.group(2)}.\n{rest}")
        sections[name] = part.rstrip() + "\n"
    return sections


def section(name: str, runs: list[dict], date: str) -> str:
    """A benchmark's section: what it measures, its command, date and load, its figures,
    its fairness check and its last run's output."""
    loads = [r["load_before"] for r in runs]
    doc = [f"## `{name}`", "", BENCHMARKS[name][2] + ".", "",
           f"`python benchmarks/{name}.py {' '.join(BENCHMARKS[name][0])}`".replace(" `", "`"),
           "", f"Run on {date}, {len(runs)} run{'s' if len(runs) > 1 else ''}; the 1-minute load "
           f"average before each run was between {min(loads):.2f} and {max(loads):.2f}"
           + (f", with {max(r['others_before'] for r in runs):.1f} other processes running "
              "at most" if all("others_before" in r for r in runs) else "") + "."
           + (f" {runs[-1]['threads'][0].upper()}{runs[-1]['threads'][1:]}."
              if runs[-1].get("threads") else ""), ""]
    keys = list(runs[0]["figures"])
    doc += ["| figure | median | range |", "|---|---|---|"]
    for key in keys:
        values = [r["figures"][key] for r in runs]
        doc.append(f"| {key} | {_fmt(statistics.median(values))} | "
                   f"{_fmt(min(values))}–{_fmt(max(values))} |")
    if runs[0].get("fairness"):
        doc += ["", "Fairness check: each program timed alone (its own process, nothing else "
                "running) and interleaved with the others, medians over the runs. The "
                "interleaved figures are the ones compared.", "",
                "| program | alone ms | interleaved ms | interleaved / alone | fair in |",
                "|---|---|---|---|---|"]
        for k, row in enumerate(runs[0]["fairness"]):
            per_run = [r["fairness"][k] for r in runs]
            fair = sum(f["fair"] for f in per_run)
            doc.append(
                f"| {row['program']} | {_fmt(statistics.median(f['alone ms'] for f in per_run))} "
                f"| {_fmt(statistics.median(f['interleaved ms'] for f in per_run))} | "
                f"{_fmt(statistics.median(1 + f['slowdown'] for f in per_run))} | "
                f"{fair} of {len(per_run)} runs"
                + ("" if fair == len(per_run) else " (**not fair**: more than 15% slower "
                   "interleaved)") + " |")
    doc += ["", "The last run's output:", "", "```", runs[-1]["stdout"].rstrip(), "```", ""]
    return "\n".join(doc)


def write_doc(path: Path, results: dict[str, list[dict]], rows: list[dict], argv: list[str],
              date: str) -> None:
    """Writes docs/benchmarks.md; benchmarks not in ``results`` keep their rows and sections
    from the file as it was."""
    old = path.read_text() if path.exists() else ""
    first = next(iter(results.values()))[0]["machine"]
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    kept = [n for n in _old_sections(old) if n not in results]
    doc = [
        "# Benchmarks",
        "",
        f"Written by `python benchmarks/run_all.py{' ' + ' '.join(argv) if argv else ''}` on "
        f"{date}" + (f" (the sections of {', '.join(f'`{n}`' for n in kept)} are kept from "
                     "an earlier run, on the date each gives)" if kept else "") + ". "
        "Every ratio is the median of interleaved rounds within one run (see each "
        "script's docstring); the table gives, over the runs, the median of those ratios and "
        "their range. Lower is better unless the goal says ≥. Frameworks are compared each in "
        "its own process, with equal threads, taking turns (`benchmarks/_bench.py`); each "
        "such benchmark checks the harness against the references timed alone. Machines are "
        "shared and noisy: a figure from one machine may not hold on the next; rerun the "
        "command to check.",
        "",
        f"- machine: {first['cpu']}, {first['cores']} cores, JAX device {first['device']}",
        f"- software: Python {first['python']}, jax {first['jax']}, jaxlib {first['jaxlib']}, "
        f"optax {first['optax']}, PyTorch {torch_version}",
        "- load: each section gives the 1-minute load average before each of its runs",
        "",
        "## Summary",
        "",
        merged_table(table_rows(rows), _old_rows(old.split("## Summary", 1)[-1].split(
            "\n## ", 1)[0]) if old else {}),
        "",
    ]
    sections = _old_sections(old)
    sections.update({name: section(name, runs, date) for name, runs in results.items()})
    for name in list(BENCHMARKS) + [n for n in sections if n not in BENCHMARKS]:
        if name in sections:
            doc.append(sections[name])
    path.write_text("\n".join(doc))


def write_readme(rows: list[dict], readme: Path = ROOT / "README.md") -> None:
    """Rewrites the README's table; benchmarks not in ``rows`` keep their lines."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to rewrite")
    head, rest = text.split(START, 1)
    old_block, tail = rest.split(END, 1)
    block = "\n".join([
        START,
        merged_table(table_rows(rows, headline_only=True), _old_rows(old_block)),
        "",
        "From [docs/benchmarks.md](docs/benchmarks.md), which gives each benchmark's date, "
        "load and fairness check: regenerate both with `python benchmarks/run_all.py`.",
        END,
    ])
    readme.write_text(head + block + tail)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of each benchmark")
    p.add_argument("--only", default=None, help="comma-separated benchmark names")
    p.add_argument("--quick", action="store_true", help="few rounds: a smoke test, not figures")
    p.add_argument("--out", type=Path, default=None,
                   help="the file to write (default docs/benchmarks.md; none with --quick)")
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
    print(summary_table(rows))
    out = args.out or (None if args.quick else ROOT / "docs" / "benchmarks.md")
    if out is not None:
        write_doc(out, results, rows, argv, date)
        print(f"wrote {out}" + (f" (the rows of {', '.join(names)}; the others kept)"
                                if args.only else ""))
    if not args.no_readme and not args.quick:
        write_readme(rows)
        print("rewrote the README's benchmark table" + (" (those rows)" if args.only else ""))


if __name__ == "__main__":
    main()
