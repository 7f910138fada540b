"""One two-layer softmax training step: jaxprop.reverse against plain JAX autodiff.

The step is value_and_grad plus SGD, jitted, in float32, at CS231n's CIFAR-10 sizes
(N=200, D=3072, H=100, C=10). The reference is the same net written the way a JAX user
would: plain jnp, optax's softmax cross-entropy, ``jax.value_and_grad``. jaxprop runs it
two ways: the library's model and loss (explicit gate calls), and that same plain-JAX
function handed to ``jaxprop.reverse.value_and_grad`` as it is ("natural code": the gate
tracer applies each of its operations as the matching gate). All run interleaved in one
process; the last line printed is the worse of the two median per-round time ratios,
jaxprop / plain JAX (below 1 means jaxprop is faster).

Run:  python benchmarks/train_step.py [--rounds 30] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import jaxprop
from jaxprop.losses import softmax_loss
from jaxprop.models import two_layer_init, two_layer_scores

N, D, H, C = 200, 3072, 100, 10
REG, LR = 1e-3, 1e-3


def plain_loss(params, x, y):
    h = jnp.maximum(x @ params["W1"] + params["b1"], 0)
    scores = h @ params["W2"] + params["b2"]
    data = optax.softmax_cross_entropy_with_integer_labels(scores, y).mean()
    return data + REG * (jnp.sum(params["W1"] ** 2) + jnp.sum(params["W2"] ** 2))


def make_step(value_and_grad):
    @jax.jit
    def step(params, x, y):
        loss, grads = value_and_grad(params, x, y)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), loss

    return step


def time_steps(step, params, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        params, loss = step(params, x, y)
    loss.block_until_ready()
    return (time.perf_counter() - start) / steps


def matmul_peak_gflops(repeats: int = 10) -> float:
    """This machine's float32 matmul rate, the best of several 1024^3 products."""
    a = jnp.ones((1024, 1024), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mm(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    params = two_layer_init(kp, D, H, C, weight_scale=1e-2)
    x = jax.random.normal(kx, (N, D), jnp.float32)
    y = jax.random.randint(ky, (N,), 0, C)

    ours = make_step(jaxprop.reverse.value_and_grad(
        jaxprop.objective(two_layer_scores, softmax_loss, REG)))
    natural = make_step(jaxprop.reverse.value_and_grad(plain_loss))
    plain = make_step(jax.value_and_grad(plain_loss))

    # Same numbers first: a benchmark of two different computations would mean nothing.
    p_plain, l_plain = plain(params, x, y)
    for step in (ours, natural):
        p_ours, l_ours = step(params, x, y)
        assert jnp.allclose(l_ours, l_plain, rtol=1e-5), (l_ours, l_plain)
        for k in params:  # float32 sums in a different order: agree to ~1e-6 relative
            assert jnp.allclose(p_ours[k], p_plain[k], rtol=1e-4, atol=1e-7), k

    flops = ours.lower(params, x, y).compile().cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
    analytic = 4 * N * D * H + 6 * N * H * C  # fwd 2NDH+2NHC, bwd dW1 2NDH, dW2+dh 4NHC

    steps = {"jaxprop.reverse": ours, "jaxprop, natural code": natural, "plain JAX": plain}
    times = {name: [] for name in steps}
    for r in range(args.rounds):  # each round in a rotated order: no method is always first
        names = list(steps)[r % 3:] + list(steps)[:r % 3]
        for name in names:
            times[name].append(time_steps(steps[name], params, x, y, args.steps))
    peak = matmul_peak_gflops()
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(times[name], times["plain JAX"]))
             for name in steps}

    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, float32")
    print(f"step: N={N} D={D} H={H} C={C}, value_and_grad + SGD, jitted")
    print(f"FLOPs per step: {analytic / 1e6:.1f} M (matmuls), "
          f"XLA cost analysis {flops / 1e6:.1f} M")
    for name, t in med.items():
        print(f"{name:22s}: {t * 1e3:8.3f} ms  {analytic / t / 1e9:7.1f} GFLOP/s  "
              f"{analytic / t / 1e9 / peak:4.0%} of matmul peak")
    print(f"matmul peak           : {peak:7.1f} GFLOP/s (1024^3 float32)")
    for name in ("jaxprop.reverse", "jaxprop, natural code"):
        print(f"{name} / plain JAX (median of {args.rounds} interleaved rounds): "
              f"{ratio[name]:.3f}")
    print(f"{max(ratio['jaxprop.reverse'], ratio['jaxprop, natural code']):.3f}")


if __name__ == "__main__":
    main()
