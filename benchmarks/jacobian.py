"""Benchmark: our Jacobian drivers against JAX's, on the SAME gate function.

  python benchmarks/jacobian.py [--n 128] [--m 128] [--hidden 512] [--depth 3] [--repeats 41]

``jaxprop.forward.jacobian(f)`` is timed against ``jax.jit(jax.jacfwd(f))`` and
``jaxprop.reverse.jacobian(f)`` against ``jax.jit(jax.jacrev(f))``, where f is a chain of
matmul + sigmoid gates. Both sides run our rules (jacfwd our JVP rules, jacrev their
transpose), so the ratio measures what our pipeline code (basis, vmap, assembly, VJP wiring)
adds over JAX's drivers. Times are medians of interleaved samples after compiling. It also
prints, per pair, whether the two compiled programs have the same FLOPs, the same scratch
memory and the same count of each HLO operation: when they do, any time ratio away from 1 is
noise. The last line printed is the worse of the two ratios; the target is at most 1.10.
"""

from __future__ import annotations

import re
from collections import Counter

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax

from jaxprop import forward, reverse
from jaxprop.compare.measure import cost_of, time_interleaved
from jaxprop.compare.problems import chain_case


def main(argv: list[str] | None = None) -> float:
    parser = _bench.parser(__doc__)
    parser.add_argument("--n", type=int, default=128, help="input width")
    parser.add_argument("--m", type=int, default=128, help="output width")
    parser.add_argument("--hidden", type=int, default=512, help="hidden width")
    parser.add_argument("--depth", type=int, default=3, help="matmul + sigmoid layers")
    parser.add_argument("--repeats", type=int, default=41, help="timed samples per program")
    args = parser.parse_args(argv)
    case = chain_case(0, args.n, args.m, args.hidden, args.depth, "sigmoid")
    programs = {
        "jaxprop.forward.jacobian": forward.jacobian(case.fn),
        "jax.jacfwd": jax.jit(jax.jacfwd(case.fn)),
        "jaxprop.reverse.jacobian": reverse.jacobian(case.fn),
        "jax.jacrev": jax.jit(jax.jacrev(case.fn)),
    }
    times = time_interleaved(programs, case.args, args.repeats, min_sample_s=0.02)
    print(f"f: x [{args.n}] -> y [{args.m}], {args.depth} layers of matmul + sigmoid, "
          f"hidden {args.hidden}, float32")
    shapes = {}
    for name, fn in programs.items():
        compiled = fn.lower(*case.args).compile()
        cost = cost_of(compiled)
        shapes[name] = (cost.flops, cost.temp_bytes, _op_counts(compiled.as_text()))
        print(f"{name:26s} {1e3 * times[name]:9.4f} ms   {cost.flops / 1e6:9.3f} MFLOPs   "
              f"temp {cost.temp_bytes:,} B")
    for ours, theirs in (("jaxprop.forward.jacobian", "jax.jacfwd"),
                         ("jaxprop.reverse.jacobian", "jax.jacrev")):
        same = "the same" if shapes[ours] == shapes[theirs] else "DIFFERENT"
        print(f"{ours} vs {theirs}: {same} FLOPs, temp memory and HLO op counts")
    fwd = times["jaxprop.forward.jacobian"] / times["jax.jacfwd"]
    rev = times["jaxprop.reverse.jacobian"] / times["jax.jacrev"]
    print(f"forward: jaxprop.forward.jacobian / jax.jacfwd = {fwd:.3f}")
    print(f"reverse: jaxprop.reverse.jacobian / jax.jacrev = {rev:.3f}")
    worst = max(fwd, rev)
    ratios = [_bench.Ratio("jaxprop.forward.jacobian / jax.jacfwd", fwd, [fwd], 1.10),
              _bench.Ratio("jaxprop.reverse.jacobian / jax.jacrev", rev, [rev], 1.10),
              _bench.Ratio("worse of the two", worst, [worst], 1.10)]
    _bench.finish(args, "jacobian", ratios, {f"{k} ms": 1e3 * v for k, v in times.items()},
                  "worse of the two")
    return worst


def _op_counts(hlo_text: str) -> Counter:
    """How many times each HLO operation appears in a compiled module's text."""
    return Counter(re.findall(r"= \S+ ([\w-]+)\(", hlo_text))


if __name__ == "__main__":
    main()
