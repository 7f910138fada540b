"""Re-creating a driver in a loop: ``jaxprop.reverse.grad(f)(x)`` against JAX's.

Code such as ``for batch in data: g = jaxprop.reverse.grad(loss)(params, batch)`` builds
the driver anew on every call. jaxprop keeps one driver per function (like ``jax.jit``
keeps one compiled program per function), so the second and later calls neither trace
nor compile. Timed per call, in a loop, after one warm-up call each:

- ``jaxprop.reverse.grad(f)(x)`` and ``jaxprop.forward.grad(f)(x)``, re-created each call;
- ``jax.jit(jax.grad(f))(x)`` re-created each call (JAX retraces it every time);
- ``jax.grad(f)(x)``, eager;
- the floor of each mode: ``g(x)`` for one ``g = jax.jit(jax.grad(f))`` (reverse) and one
  ``jax.jit(jax.jacfwd(f))`` (forward: one JVP per parameter, as ``forward.grad`` does)
  built before the loop.

The last line is the worse of jaxprop's two re-created drivers against its mode's floor:
the per-call cost of re-creating ours, as a multiple of calling JAX's compiled function.

Run: ``python benchmarks/driver_reuse.py [--calls 200] [--rounds 5] [--json PATH]``
"""

from __future__ import annotations

import statistics
import time

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax
import jax.numpy as jnp

import jaxprop


def loss(w, x):
    """A small two-layer loss, natural code: the gate tracer routes it through our rules."""
    h = jnp.maximum(x @ w["W1"], 0)
    return jnp.mean((h @ w["W2"]) ** 2) + 1e-3 * jnp.sum(w["W1"] * w["W1"])


def per_call(make, args, calls: int) -> float:
    """Seconds per ``make()(*args)`` in a loop, after a warm-up call."""
    jax.block_until_ready(make()(*args))
    t0 = time.perf_counter()
    for _ in range(calls):
        out = make()(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = _bench.parser(__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kw, kx = jax.random.split(jax.random.key(0))
    w = {"W1": 0.1 * jax.random.normal(kw, (32, 16)), "W2": jnp.ones((16, 4))}
    inputs = (w, jax.random.normal(kx, (8, 32)))
    floor, floor_fwd = jax.jit(jax.grad(loss)), jax.jit(jax.jacfwd(loss))
    methods = {
        "jaxprop.reverse.grad(f)": (lambda: jaxprop.reverse.grad(loss), args.calls),
        "jaxprop.forward.grad(f)": (lambda: jaxprop.forward.grad(loss), args.calls),
        "jax.jit(jax.grad(f))": (lambda: jax.jit(jax.grad(loss)), max(args.calls // 20, 3)),
        "jax.grad(f), eager": (lambda: jax.grad(loss), max(args.calls // 20, 3)),
        "one jax.jit(jax.grad(f))": (lambda: floor, args.calls),
        "one jax.jit(jax.jacfwd(f))": (lambda: floor_fwd, args.calls),
    }
    times = _bench.interleaved({name: (lambda make=make, calls=calls: per_call(
        make, inputs, calls)) for name, (make, calls) in methods.items()}, args.rounds)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{jax.devices()[0].device_kind}; per call, median of {args.rounds} rounds")
    for name, t in med.items():
        print(f"  {name:26s} {t * 1e6:10.1f} us")
    rev, rev_rounds = _bench.median_ratio(times, "jaxprop.reverse.grad(f)",
                                          "one jax.jit(jax.grad(f))")
    fwd, fwd_rounds = _bench.median_ratio(times, "jaxprop.forward.grad(f)",
                                          "one jax.jit(jax.jacfwd(f))")
    print(f"re-created jaxprop.reverse.grad / re-created jax.jit(jax.grad(f)): "
          f"{med['jaxprop.reverse.grad(f)'] / med['jax.jit(jax.grad(f))']:.4f}")
    print(f"re-created jaxprop.reverse.grad / one jax.jit(jax.grad(f)): {rev:.2f}")
    print(f"re-created jaxprop.forward.grad / one jax.jit(jax.jacfwd(f)): {fwd:.2f}")
    ratios = [_bench.Ratio("re-created jaxprop.reverse.grad / one jax.jit(jax.grad(f))", rev,
                           rev_rounds, 2.0),
              _bench.Ratio("re-created jaxprop.forward.grad / one jax.jit(jax.jacfwd(f))", fwd,
                           fwd_rounds, 2.0)]
    worst = max(ratios, key=lambda r: r.value)
    ratios.append(_bench.Ratio("worse re-created driver / its jitted JAX call", worst.value,
                               worst.rounds, 2.0))
    _bench.finish(args, "driver_reuse", ratios, {f"{k} us": v * 1e6 for k, v in med.items()},
                  "worse re-created driver / its jitted JAX call")


if __name__ == "__main__":
    main()
