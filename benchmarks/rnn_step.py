"""One LSTM training step under ``lax.scan``: jaxprop.reverse against plain JAX.

The step is value_and_grad plus SGD, float32, batch N=64, T=32 steps, input D=64, hidden
H=128, the loss a softmax over C=10 classes of the last hidden state. The LSTM is
``jaxprop.models.lstm_forward`` (plain JAX, the time loop a ``lax.scan``): jaxprop.reverse
runs it through the scan gate (the body's VJP rules in a reverse scan); plain JAX is
``jax.value_and_grad`` of the very same code. Each framework runs in its own worker process
(``_bench.Worker``), with the same number of threads, and the two are asked in turn for one
block of ``--steps`` steps (``_bench.alternate``); each is also timed alone, for the fairness
check. Inputs are arguments of the jitted steps, never closed over.

It also prints how the compile time and the size of the compiled program (HLO text) grow
from T=32 to T=256 steps, for both: a scan that is never unrolled keeps both flat.
The last line is jaxprop.reverse / plain JAX, the median of the per-round ratios.

Run: ``python benchmarks/rnn_step.py [--rounds 20] [--steps 5] [--pause 0.2] [--threads N]
[--json PATH]``
"""

from __future__ import annotations

import statistics
import sys
import time

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprop
from jaxprop.models import lstm_forward

N, T, D, H, C = 64, 32, 64, 128, 10
LR = 1e-2
OURS, PLAIN = "jaxprop.reverse", "plain JAX"
LENGTHS = (32, 256)


def loss(params, x, y):
    """The LSTM over x [N, T, D], softmax cross-entropy of the last state's scores."""
    h = lstm_forward(x, jnp.zeros((x.shape[0], H), x.dtype), params["Wx"], params["Wh"],
                     params["b"])
    scores = h[:, -1] @ params["W_out"] + params["b_out"][None, :]
    return optax.softmax_cross_entropy_with_integer_labels(scores, y).mean()


def init(key) -> dict:
    k1, k2, k3 = jax.random.split(key, 3)
    return {"Wx": jax.random.normal(k1, (D, 4 * H), jnp.float32) / D ** 0.5,
            "Wh": jax.random.normal(k2, (H, 4 * H), jnp.float32) / H ** 0.5,
            "b": jnp.zeros((4 * H,), jnp.float32),
            "W_out": jax.random.normal(k3, (H, C), jnp.float32) / H ** 0.5,
            "b_out": jnp.zeros((C,), jnp.float32)}


def make_step(name: str):
    value_and_grad = {OURS: jaxprop.reverse.value_and_grad, PLAIN: jax.value_and_grad}[name]

    @jax.jit
    def step(params, x, y):
        value, grads = value_and_grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), value

    return step


def growth(name: str, params, y) -> dict:
    """Compile seconds and compiled HLO characters of the step at each of ``LENGTHS``."""
    out = {}
    for t in LENGTHS:
        x = jnp.zeros((N, t, D), jnp.float32)
        lowered = make_step(name).lower(params, x, y)
        start = time.perf_counter()
        compiled = lowered.compile()
        out[t] = (time.perf_counter() - start, len(compiled.as_text()))
    return out


def worker(names, params, x, y) -> dict:
    """A worker: for its one program, the timed block, the first step and the growth."""
    (name,) = names
    params = jax.device_put(params)
    x, y = jnp.asarray(x), jnp.asarray(y)
    step = make_step(name)
    jax.block_until_ready(step(params, x, y))  # compile and warm

    def block(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            jax.block_until_ready(step(params, x, y))
        return (time.perf_counter() - start) / steps

    def first():
        p, value = step(params, x, y)
        return jax.device_get(p), float(value)

    return {name: block, f"first {name}": first, "growth": lambda: growth(name, params, y)}


def main() -> None:
    p = _bench.parser(__doc__)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--steps", type=int, default=5, help="steps per timed block")
    p.add_argument("--pause", type=float, default=_bench.PAUSE_S,
                   help="seconds between two blocks (default %(default)s)")
    _bench.threads_option(p)
    args = p.parse_args()
    n = _bench.check_threads(p, args.threads)

    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    data = {"params": jax.device_get(init(kp)),
            "x": np.asarray(jax.random.normal(kx, (N, T, D), jnp.float32)),
            "y": np.asarray(jax.random.randint(ky, (N,), 0, C))}
    names = (OURS, PLAIN)
    alone = {name: _bench.alone(name, worker, n, args.rounds, args.steps, args.pause,
                                names=(name,), **data) for name in names}
    workers = {name: _bench.Worker(name, worker, n, names=(name,), **data) for name in names}
    try:
        threads_line = _bench.print_threads(workers, n)
        (p_ours, l_ours), (p_plain, l_plain) = (workers[m].call(f"first {m}") for m in names)
        assert abs(l_ours - l_plain) <= 1e-5 * abs(l_plain), (l_ours, l_plain)
        for k in p_plain:  # float32 sums in another order
            np.testing.assert_allclose(p_ours[k], p_plain[k], rtol=1e-4, atol=1e-6, err_msg=k)
        times = _bench.alternate(workers, args.rounds, args.steps, args.pause)
        grown = {name: workers[name].call("growth") for name in names}
    finally:
        for w in workers.values():
            w.close()

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, float32")
    print(f"step: LSTM N={N} T={T} D={D} H={H} (lax.scan), softmax over {C} classes of the "
          f"last state; value_and_grad + SGD, jitted; blocks of {args.steps} steps, "
          f"{args.rounds} rounds, {args.pause} s between blocks")
    for name, t in med.items():
        print(f"  {name:18s} {t * 1e3:9.3f} ms")
    fair = _bench.fairness(alone, times)
    figures = {f"{name} ms": t * 1e3 for name, t in med.items()}
    a, b = LENGTHS
    print(f"growth from T={a} to T={b} (compile seconds, compiled HLO characters):")
    for name, g in grown.items():
        (ca, sa), (cb, sb) = g[a], g[b]
        print(f"  {name:18s} compile {ca:6.3f} s -> {cb:6.3f} s ({cb / ca:5.2f}x)   "
              f"HLO {sa} -> {sb} chars ({sb / sa:5.2f}x)")
        figures[f"{name} compile growth"] = cb / ca
        figures[f"{name} HLO growth"] = sb / sa
    value, rounds = _bench.median_ratio(times, OURS, PLAIN)
    ratios = [_bench.Ratio(f"{OURS} / {PLAIN}", value, rounds, 1.1)]
    print(f"{OURS} / {PLAIN} (median of {args.rounds} interleaved rounds): {value:.3f}  "
          f"(goal <= 1.1: {'met' if ratios[0].met else 'NOT met'})")
    _bench.finish(args, "rnn_step", ratios, figures, ratios[0].name, fair, threads_line)


if __name__ == "__main__":
    sys.exit(main())
