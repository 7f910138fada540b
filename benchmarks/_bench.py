"""What the benchmarks share: the machine they ran on, interleaved timing, and their results.

Every benchmark prints its figures, then as its last line the ratio it exists to measure,
and with ``--json PATH`` writes the same results for ``run_all.py``: each ratio's median
with its per-round values and the goal it is held to, and the absolute figures.

Frameworks are compared in worker processes, one per framework (``Worker``): a worker holds
its framework's model and data and answers "time one block of N steps" requests over a
pipe. ``alternate`` asks the workers for their blocks in turn, with a pause between blocks,
so no two frameworks ever compute at the same time and none's idle threads (OpenMP's spin,
XLA's pool) are still busy when the next starts. Every worker runs with the same number of
threads (``threads()``: XLA's intra-op pool, which is the schedulable CPUs; PyTorch and the
BLAS of NumPy are set to it; ``--threads N`` pins every worker to N CPUs) and reports them.
``alone`` times one program in its own process with nothing else running, the check that the
alternation is fair to it (``fairness``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable

__all__ = ["Ratio", "machine", "parser", "interleaved", "median_ratio", "finish", "load",
           "Worker", "alternate", "alone", "fairness", "threads", "threads_option",
           "check_threads", "print_threads"]

PAUSE_S = 0.2
"""Seconds between two blocks: long enough for the last framework's threads to sleep."""
UNFAIR = 0.15
"""A program timed interleaved more than this much slower than alone is flagged."""


@dataclasses.dataclass
class Ratio:
    """A measured ratio: ``value`` (the median of ``rounds``), lower is better unless
    ``higher_is_better``; ``goal`` the bound it should meet (``0.9`` means <= 0.9, or >= 0.9
    when higher is better), None when it has none."""

    name: str
    value: float
    rounds: list[float] = dataclasses.field(default_factory=list)
    goal: float | None = None
    higher_is_better: bool = False

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


def load() -> float:
    """The 1-minute load average (the number of runnable processes, 2 cores here)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine and software a figure was measured on."""
    import jax
    import jaxlib

    try:
        import optax

        optax_version = optax.__version__
    except ImportError:  # pragma: no cover
        optax_version = "-"
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax_version,
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "platform": jax.default_backend(),
    }


def parser(doc: str) -> argparse.ArgumentParser:
    """The benchmark's argument parser, with ``--json PATH``."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write the results as JSON (for run_all.py)")
    return p


def interleaved(programs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list]:
    """Each program's result (a time, in seconds) per round; every round runs all programs,
    starting one further along each time, so none is always first or last."""
    names = list(programs)
    out: dict[str, list] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(programs[name]())
    return out


def median_ratio(times: dict[str, list], a: str, b: str) -> tuple[float, list[float]]:
    """The median of the per-round ratios ``a / b``, and those ratios."""
    ratios = [x / y for x, y in zip(times[a], times[b])]
    return statistics.median(ratios), ratios


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Seconds per call of ``fn`` (which blocks until its result is ready)."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def threads() -> int:
    """The number of threads every worker computes with: the CPUs this process may run on,
    which is the size of XLA:CPU's intra-op pool (it cannot be set apart from them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS)
        return os.cpu_count() or 1


def threads_option(p: argparse.ArgumentParser) -> None:
    """Adds ``--threads N``: every worker runs on the first N CPUs only (XLA's pool then has
    N threads), and PyTorch and BLAS get N threads; the default is every CPU."""
    p.add_argument("--threads", type=int, default=threads(), metavar="N",
                   help="threads of every framework, 1 to %(default)s (default %(default)s)")


def check_threads(p: argparse.ArgumentParser, n: int) -> int:
    if not 1 <= n <= threads():
        p.error(f"--threads must be between 1 and {threads()} (the CPUs this process may "
                f"use); got {n}")
    return n


def _pin(n: int) -> None:
    """Runs this process on the first ``n`` of its CPUs (before XLA sizes its pool)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])


def _set_threads(n: int) -> None:
    """Gives PyTorch (when imported) and the BLAS libraries loaded ``n`` threads."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n)


def _jax_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover
        return False
    return bool(getattr(xla_bridge, "_backends", None))


def _thread_report() -> dict[str, int]:
    """This process's thread settings, by library."""
    report = {}
    if "jax" in sys.modules and _jax_started():
        report["XLA intra-op (the CPUs it may use)"] = threads()
    if "torch" in sys.modules:
        report["torch.get_num_threads()"] = sys.modules["torch"].get_num_threads()
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return report
    for lib in threadpool_info():
        report[f"{lib['internal_api']} ({lib['user_api']})"] = lib["num_threads"]
    return report


def _serve(conn, factory: Callable[..., dict], kwargs: dict, n_threads: int) -> None:
    """A worker's loop: builds ``factory(**kwargs)`` (a dict of callables) and answers
    ``(key, args)`` requests with ``("ok", table[key](*args))``, until ``None``."""
    try:
        _pin(n_threads)
        table = factory(**kwargs)
        _set_threads(n_threads)
        conn.send(("ok", _thread_report()))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the parent is gone
            return
        if request is None:
            return
        key, args = request
        try:
            conn.send(("ok", table[key](*args)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class Worker:
    """One framework in its own process: ``factory(**kwargs)``, run there, returns a dict
    of callables; ``call(key, *args)`` runs one of them there and returns its result. A
    timed program's callable takes a number of steps and returns seconds per step.
    ``factory`` must be a module-level function (the process is spawned, not forked)."""

    def __init__(self, name: str, factory: Callable[..., dict], n_threads: int, **kwargs):
        self.name = name
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, factory, kwargs, n_threads),
                                        name=f"bench-{name}", daemon=True)
        self._process.start()
        child.close()
        self.threads: dict[str, int] | None = None

    def ready(self) -> Worker:
        """Waits for the factory to finish; the worker's thread settings are then known."""
        if self.threads is None:
            self.threads = self._reply()
        return self

    def call(self, key: str, *args):
        self.ready()
        self._conn.send((key, args))
        return self._reply()

    def _reply(self):
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.name} worker died "
                               f"(exit code {self._process.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"the {self.name} worker failed:\n{value}")
        return value

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(30)
        if self._process.is_alive():  # pragma: no cover
            self._process.terminate()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def print_threads(workers: dict[str, Worker], n: int) -> str:
    """Prints every worker's thread settings; raises unless all of them are ``n``."""
    for name, worker in workers.items():
        settings = ", ".join(f"{k} {v}" for k, v in worker.ready().threads.items())
        print(f"  {name:10s} {settings or '-'}")
        wrong = {k: v for k, v in worker.threads.items() if v != n}
        if wrong:
            raise SystemExit(f"the {name} worker runs {wrong} threads, not {n}: the comparison "
                             "would not be fair")
    line = f"threads: {n} in every worker (XLA's intra-op pool, PyTorch, BLAS)"
    print(line)
    return line


def alternate(programs: dict[str, Worker], rounds: int, steps: int,
              pause: float = PAUSE_S) -> dict[str, list[float]]:
    """Seconds per step of each program, per round: every round asks each program's worker
    for one block of ``steps`` steps, one worker at a time with ``pause`` seconds between
    blocks, starting one further along each round so none is always first."""
    names = list(programs)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause)
            out[name].append(programs[name].call(name, steps))
    return out


def alone(name: str, factory: Callable[..., dict], n_threads: int, rounds: int, steps: int,
          pause: float = PAUSE_S, **kwargs) -> list[float]:
    """Seconds per step of program ``name`` timed in its own process, started for this,
    with no other worker alive: the same blocks and pauses as ``alternate``."""
    with Worker(name, factory, n_threads, **kwargs) as worker:
        return alternate({name: worker}, rounds, steps, pause)[name]


def fairness(alone_times: dict[str, list[float]],
             interleaved_times: dict[str, list[float]]) -> list[dict]:
    """Each program's median alone and interleaved, printed; flagged when interleaved is
    more than ``UNFAIR`` slower."""
    rows = []
    print("fairness: each program alone (its own process, nothing else running) and "
          "interleaved with the others")
    for name, times in alone_times.items():
        a, i = statistics.median(times), statistics.median(interleaved_times[name])
        row = {"program": name, "alone ms": a * 1e3, "interleaved ms": i * 1e3,
               "slowdown": i / a - 1, "fair": i / a - 1 <= UNFAIR}
        rows.append(row)
        print(f"  {name:28s} alone {_ms(a)}  interleaved {_ms(i)}  {i / a - 1:+6.1%}"
              + ("" if row["fair"] else f"  NOT FAIR: interleaved is more than "
                 f"{UNFAIR:.0%} slower than alone"))
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms" if seconds < 1 else f"{seconds:9.3f} s "


def finish(args, name: str, ratios: list[Ratio], figures: dict, headline: str,
           fair: list[dict] | None = None, threads_line: str = "") -> None:
    """Writes the JSON results (``--json``) and prints the headline ratio as the last line."""
    head = next(r for r in ratios if r.name == headline)
    if args.json:
        payload = {"benchmark": name, "machine": machine(), "load": load(),
                   "headline": headline, "ratios": [dataclasses.asdict(r) for r in ratios],
                   "figures": figures, "fairness": fair or [], "threads": threads_line}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    print(f"{head.value:.3f}")
