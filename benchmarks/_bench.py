"""What the benchmarks share: the machine they ran on, interleaved timing, and their results.

Every benchmark prints its figures, then as its last line the ratio it exists to measure,
and with ``--json PATH`` writes the same results for ``run_all.py``: each ratio's median
with its per-round values and the goal it is held to, and the absolute figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

__all__ = ["Ratio", "machine", "parser", "interleaved", "median_ratio", "finish", "load"]


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


def finish(args, name: str, ratios: list[Ratio], figures: dict, headline: str) -> None:
    """Writes the JSON results (``--json``) and prints the headline ratio as the last line."""
    head = next(r for r in ratios if r.name == headline)
    if args.json:
        payload = {"benchmark": name, "machine": machine(), "load": load(),
                   "headline": headline, "ratios": [dataclasses.asdict(r) for r in ratios],
                   "figures": figures}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    print(f"{head.value:.3f}")
