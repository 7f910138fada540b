"""``jaxprop train`` end to end, as a user waits for it: cold and warm compilation cache.

Each round runs, as fresh processes and in rotating order:

- ``jaxprop train --quiet`` on the default config (the two-layer net on the bundled digits,
  30 epochs), with an empty compilation cache (cold) and then again with the cache that run
  filled (warm);
- the reference: the same training as a plain JAX script (the same digits file read with
  NumPy, a jnp net, ``jax.value_and_grad``, optax's Adam, a ``lax.scan`` per epoch, the test
  accuracy printed), cold and warm with its own cache folder;
- ``python -c "import jax"``: the floor every JAX program pays before it does anything.

The goals are under 5 s cold and under 3 s warm on 2 cores. The last line is jaxprop's cold
time over the plain script's cold time (median of the per-round ratios).

Run: ``python benchmarks/startup.py [--rounds 3] [--json PATH]``
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench  # benchmarks/, the folder of this script, is on sys.path

PLAIN = r'''
import sys
from pathlib import Path
import importlib.util
import jax, jax.numpy as jnp, numpy as np, optax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
spec = importlib.util.find_spec("sklearn")
path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
table = np.loadtxt(path, delimiter=",")
x, y = (table[:, :-1] / 16.0).astype(np.float32), table[:, -1].astype(np.int32)
x = x - x[:1444].mean(0)
xtr, ytr, xte, yte = x[:1444], y[:1444], x[1444:], y[1444:]
k1, k2, kd = jax.random.split(jax.random.key(0), 3)
p = {"W1": 1e-2 * jax.random.normal(k1, (64, 128)), "b1": jnp.zeros(128),
     "W2": 1e-2 * jax.random.normal(k2, (128, 10)), "b2": jnp.zeros(10)}
opt = optax.adam(optax.exponential_decay(3e-3, 22, 0.95, staircase=True))
def loss(p, x, y):
    s = jax.nn.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(s, y).mean() + 1e-4 * (
        jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))
@jax.jit
def epoch(p, s, key, x, y):
    order = jax.random.permutation(key, x.shape[0])[: 22 * 64].reshape(22, 64)
    def step(c, idx):
        p, s = c
        l, g = jax.value_and_grad(loss)(p, x[idx], y[idx])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), l
    (p, s), ls = jax.lax.scan(step, (p, s), order)
    return p, s, ls.mean()
s = opt.init(p)
for e in range(30):
    p, s, l = epoch(p, s, jax.random.fold_in(kd, e), xtr, ytr)
acc = jnp.mean(jnp.argmax(jax.nn.relu(xte @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], 1) == yte)
print(f"test accuracy {float(acc):.4f}")
'''


def wall(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    p = _bench.parser(__doc__)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    jaxprop = shutil.which("jaxprop") or str(Path(sys.executable).with_name("jaxprop"))
    work = Path(tempfile.mkdtemp(prefix="jaxprop-startup-"))
    base = {k: v for k, v in os.environ.items() if k not in ("JAXPROP_CACHE_DIR", "XLA_FLAGS")}
    times: dict[str, list] = {k: [] for k in ("jaxprop cold", "jaxprop warm", "plain JAX cold",
                                             "plain JAX warm", "import jax")}
    try:
        for r in range(args.rounds):
            ours_cache, plain_cache = work / f"ours{r}", work / f"plain{r}"
            env = dict(base, JAXPROP_CACHE_DIR=str(ours_cache))

            def ours(kind, r=r, env=env):
                out = work / f"run{r}-{kind}"
                times[f"jaxprop {kind}"].append(wall(
                    [jaxprop, "train", "--quiet", "--out", str(out)], env))

            def plain(kind, r=r, cache=plain_cache):
                times[f"plain JAX {kind}"].append(wall(
                    [sys.executable, "-c", PLAIN, str(cache)], base))

            jobs = [lambda: ours("cold"), lambda: ours("warm"), lambda: plain("cold"),
                    lambda: plain("warm"),
                    lambda: times["import jax"].append(
                        wall([sys.executable, "-c", "import jax"], base))]
            # cold before warm within each program; which program goes first rotates
            order = [(0, 1), (2, 3), (4,)]
            order = order[r % 3:] + order[:r % 3]
            for group in order:
                for j in group:
                    jobs[j]()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{_bench.machine()['cpu']}, {os.cpu_count()} cores; medians of {args.rounds} rounds,"
          " each a fresh process")
    for k, v in med.items():
        print(f"  {k:16s} {v:6.2f} s")
    ratios = [
        _bench.Ratio("jaxprop train, cold cache (s)", med["jaxprop cold"],
                     times["jaxprop cold"], 5.0),
        _bench.Ratio("jaxprop train, warm cache (s)", med["jaxprop warm"],
                     times["jaxprop warm"], 3.0),
    ]
    for kind in ("cold", "warm"):
        value, rounds = _bench.median_ratio(times, f"jaxprop {kind}", f"plain JAX {kind}")
        ratios.append(_bench.Ratio(f"jaxprop train / plain JAX script, {kind}", value, rounds))
    for r in ratios:
        goal = f" (goal < {r.goal:g} s)" if r.goal else ""
        print(f"{r.name}: {r.value:.2f}{goal}")
    _bench.finish(args, "startup", ratios, {f"{k} s": v for k, v in med.items()},
                  "jaxprop train / plain JAX script, cold")


if __name__ == "__main__":
    main()
