"""The benchmark harness works (benchmarks/_bench.py, benchmarks/run_all.py): worker
processes, alternation, the fairness check and the merge of the tables. Only the harness,
on toy programs, fast: the benchmarks themselves are never run by the suite."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import _bench  # noqa: E402
import run_all  # noqa: E402


def toy_worker(program: str, seconds: float) -> dict:
    """A worker whose program sleeps ``seconds`` a step and records when it ran."""
    spans = []

    def block(steps: int) -> float:
        start = time.perf_counter()
        time.sleep(seconds * steps)
        spans.append((time.time(), time.time() - (time.perf_counter() - start)))
        return (time.perf_counter() - start) / steps

    return {program: block, "spans": lambda: spans, "fail": lambda: 1 / 0,
            "cpus": lambda: len(os.sched_getaffinity(0))}


def test_workers_take_turns_and_report_their_threads():
    n = _bench.threads()
    workers = {k: _bench.Worker(k, toy_worker, n, program=k, seconds=s)
               for k, s in (("a", 0.002), ("b", 0.004))}
    try:
        assert _bench.print_threads(workers, n).startswith(f"threads: {n} ")
        times = _bench.alternate(workers, rounds=3, steps=2, pause=0.01)
        spans = sorted((start, end) for w in workers.values() for end, start in w.call("spans"))
        with pytest.raises(RuntimeError, match="(?s)the a worker failed.*ZeroDivisionError"):
            workers["a"].call("fail")
    finally:
        for w in workers.values():
            w.close()
    assert [len(t) for t in times.values()] == [3, 3]
    assert 0.002 <= min(times["a"]) and 0.004 <= min(times["b"])
    assert _bench.median_ratio(times, "a", "b")[0] < 1
    # No two blocks overlap: each starts after the one before it ended.
    assert all(nxt[0] >= prev[1] for prev, nxt in zip(spans, spans[1:]))


def test_threads_1_pins_the_worker_to_one_cpu():
    with _bench.Worker("a", toy_worker, 1, program="a", seconds=0) as worker:
        assert worker.call("cpus") == 1
    with pytest.raises(SystemExit):
        p = _bench.parser("x")
        _bench.threads_option(p)
        _bench.check_threads(p, _bench.threads() + 1)


def test_the_fairness_check_flags_a_program_slower_interleaved(capsys):
    alone = _bench.alone("a", toy_worker, _bench.threads(), rounds=2, steps=1, pause=0,
                         program="a", seconds=0.001)
    assert len(alone) == 2
    rows = _bench.fairness({"a": [1.0, 1.0], "b": [1.0]}, {"a": [1.1, 1.1], "b": [1.2]})
    assert [r["fair"] for r in rows] == [True, False]
    out = capsys.readouterr().out
    assert "b" in out.splitlines()[-1] and "NOT FAIR" in out.splitlines()[-1]
    assert "NOT FAIR" not in out.splitlines()[-2]


def _result(name: str, value: float, fair: bool = True) -> dict:
    return {"benchmark": name, "headline": "x / y", "load_before": 1.0, "stdout": "out",
            "machine": {"cpu": "cpu", "cores": 2, "device": "1 x cpu", "python": "3",
                        "jax": "j", "jaxlib": "j", "optax": "o"},
            "ratios": [{"name": "x / y", "value": value, "rounds": [], "goal": 0.8,
                        "higher_is_better": False}],
            "figures": {"x ms": 1.0}, "threads": "threads: 2 in every worker",
            "fairness": [{"program": "y", "alone ms": 1.0, "interleaved ms": 1.3,
                          "slowdown": 0.3 if not fair else 0.0, "fair": fair}]}


def test_run_all_only_keeps_the_other_benchmarks_rows(tmp_path):
    doc, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    readme.write_text(f"intro\n{run_all.START}\nold\n{run_all.END}\nrest\n")
    first = {"train_step": [_result("train_step", 0.7)], "compile": [_result("compile", 1.0)]}
    run_all.write_doc(doc, first, run_all.summarise(first), [], "2026-01-01")
    run_all.write_readme(run_all.summarise(first), readme)
    again = {"train_step": [_result("train_step", 0.9, fair=False)]}
    run_all.write_doc(doc, again, run_all.summarise(again), ["--only", "train_step"],
                      "2026-01-02")
    run_all.write_readme(run_all.summarise(again), readme)
    text, top = doc.read_text(), readme.read_text()
    for table in (text.split("## Summary")[1].split("\n## ")[0], top):
        rows = [line for line in table.splitlines() if line.startswith("| `")]
        assert [r.split(" | ")[0] for r in rows] == ["| `train_step`", "| `compile`"]
        assert "| 0.900 | 0.900–0.900 | not judged: y timed >15% slower" in rows[0]
        assert "| 1.000 |" in rows[1] and rows[1].endswith("| no |")
    assert text.count("## `compile`") == 1 and text.count("## `train_step`") == 1
    assert "Run on 2026-01-01" in text.split("## `compile`")[1]
    assert "Run on 2026-01-02" in text.split("## `train_step`")[1].split("## `")[0]
    assert "**not fair**" in text and "sections of `compile` are kept" in text
    busy = _result("compile", 0.5) | {"others_before": 5.0}
    assert run_all.summarise({"compile": [busy]})[0]["met"] == (
        "not judged: busy machine (5.0 other processes running before a run)")
    assert top.startswith("intro\n") and top.endswith(f"{run_all.END}\nrest\n")
