"""Measuring a compiled program: FLOPs and memory from XLA, wall time by interleaved medians.

FLOPs come from ``compiled.cost_analysis()`` and memory from ``compiled.memory_analysis()``,
so they describe the program XLA will run, not a model of it. Wall times are medians of
repeats taken after compiling, with the programs being compared interleaved in one loop so
that a burst of load on a shared machine hits all of them alike.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import jax

__all__ = ["Cost", "compile_fn", "flops_of", "memory_of", "cost_of", "time_interleaved"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """What XLA says one compiled program costs.

    Attributes:
      flops: floating-point operations (``nan`` when XLA does not report them).
      temp_bytes: scratch memory the program allocates: for reverse mode this holds the
        activations stored for the backward pass.
      argument_bytes: the inputs.
      output_bytes: the result.
    """

    flops: float
    temp_bytes: int
    argument_bytes: int
    output_bytes: int

    @property
    def total_bytes(self) -> int:
        """temp + argument + output bytes: the memory the program needs while it runs."""
        return self.temp_bytes + self.argument_bytes + self.output_bytes


def compile_fn(fn: Callable, *args):
    """Compiles ``fn`` for ``args`` (arrays or ``jax.ShapeDtypeStruct``) without running it."""
    return jax.jit(fn).lower(*args).compile()


def flops_of(compiled) -> float:
    """FLOPs of a compiled program, whatever shape ``cost_analysis()`` returns.

    Depending on the JAX version and backend, ``cost_analysis()`` returns a dict, a list
    holding one dict per device program, or ``None``; the FLOPs of a list are summed and a
    missing count is ``nan``.
    """
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return math.nan
    return flops_from_analysis(analysis)


def flops_from_analysis(analysis) -> float:
    """The ``"flops"`` entry of a cost analysis given as a dict, a list of dicts or None."""
    if analysis is None:
        return math.nan
    if isinstance(analysis, Mapping):
        value = analysis.get("flops")
        return math.nan if value is None else float(value)
    if isinstance(analysis, Sequence) and not isinstance(analysis, (str, bytes)):
        counts = [flops_from_analysis(item) for item in analysis]
        counts = [c for c in counts if not math.isnan(c)]
        return float(sum(counts)) if counts else math.nan
    raise TypeError(f"cost_analysis() returned {type(analysis).__name__}; expected a dict, "
                    "a list of dicts or None")


def memory_of(compiled) -> tuple[int, int, int]:
    """``(temp, argument, output)`` bytes of a compiled program (zeros if not reported)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        stats = None
    if stats is None:
        return 0, 0, 0
    if isinstance(stats, Sequence):  # one entry per device program in some versions
        parts = [memory_of_stats(s) for s in stats]
        return tuple(sum(p[i] for p in parts) for i in range(3))
    return memory_of_stats(stats)


def memory_of_stats(stats) -> tuple[int, int, int]:
    return (int(getattr(stats, "temp_size_in_bytes", 0)),
            int(getattr(stats, "argument_size_in_bytes", 0)),
            int(getattr(stats, "output_size_in_bytes", 0)))


def cost_of(compiled) -> Cost:
    """The :class:`Cost` of a compiled program."""
    return Cost(flops_of(compiled), *memory_of(compiled))


def time_interleaved(fns: Mapping[str, Callable], args: tuple, repeats: int,
                     min_sample_s: float = 5e-3) -> dict[str, float]:
    """Median seconds per call of each already-compiled ``fns[name](*args)``.

    Each function first runs once (warm-up), then is timed in samples of enough calls to
    last ``min_sample_s``; the samples of all functions alternate, repeat by repeat.

    Args:
      fns: name -> callable taking ``*args``.
      args: the arguments, shared by all functions.
      repeats: samples per function (at least 1).
      min_sample_s: shortest sample, so that a microsecond call is not timed alone.

    Returns:
      name -> median seconds per call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats}")
    calls = {}
    for name, fn in fns.items():
        jax.block_until_ready(fn(*args))
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        once = max(time.perf_counter() - start, 1e-7)
        calls[name] = max(1, min(1000, math.ceil(min_sample_s / once)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            k = calls[name]
            start = time.perf_counter()
            for _ in range(k):
                out = fn(*args)
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / k)
    return {name: statistics.median(s) for name, s in samples.items()}
