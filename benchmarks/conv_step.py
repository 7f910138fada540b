"""One CS231n three-layer ConvNet training step: jaxprop against plain JAX and PyTorch eager.

The net of CS231n's ``ThreeLayerConvNet``: conv 7x7 with 32 filters (stride 1, pad 3), ReLU,
2x2 max pool, affine to 100, ReLU, affine to 10, softmax loss, plus L2 regularisation; N=64
images of 3x32x32, float32, NCHW. One step is value_and_grad of the parameters plus SGD.
Every framework runs in its own worker process (``_bench.Worker``) with the same number of
threads, and the parent asks them in turn for one block of ``--steps`` steps per program,
with a pause between blocks (``_bench.alternate``): no two ever compute at the same time.
The programs, all of the same ``jnp`` function ``loss`` below:

- in the jaxprop worker: ``jaxprop.reverse``, ``jaxprop.reverse.value_and_grad(loss)`` (the
  gate tracer applies each operation as its gate; the conv gate's VJP rules compute dW), and
  ``jax.grad(jaxprop.gated)``, JAX's reverse mode transposing our JVP rules;
- in the plain JAX worker: ``plain JAX``, ``jax.value_and_grad(loss)``;
- in the PyTorch worker: ``PyTorch eager``, the same net in ``torch.nn.functional``
  (``conv2d``, ``max_pool2d``, ``linear``, ``cross_entropy``), ``loss.backward()`` and an
  in-place SGD update, when ``import torch`` works (the ``bench`` extra).

The 2x2 max pool is written as a reshape and a max over the two window axes, which the max
gate differentiates (a tie would go to the window's first element; none occurs here).

The fairness check: the first program of each worker is also timed alone, in a process of
its own, and both figures are printed. Inputs are arguments of the jitted steps, never closed
over. All programs are checked to compute the same step first. The last two lines are the
ratios jaxprop.reverse / plain JAX and jaxprop.reverse / PyTorch eager, each the median of
the per-round ratios.

Run: ``python benchmarks/conv_step.py [--rounds 20] [--steps 5] [--pause 0.2] [--threads N]
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
from jax import lax

import jaxprop

N, C, HW, F, K, H, CLASSES = 64, 3, 32, 32, 7, 100, 10
POOLED = F * (HW // 2) ** 2  # 32 * 16 * 16 = 8192 features into the first affine layer
REG, LR = 1e-3, 1e-3
FLOPS = (2 * 2 * N * F * HW * HW * C * K * K  # conv forward and its weight gradient
         + 3 * 2 * N * POOLED * H + 3 * 2 * N * H * CLASSES)  # the affines, fwd and bwd
JAXPROP = ("jaxprop.reverse", "jax.grad(jaxprop.gated)")
PLAIN = "plain JAX"
TORCH = "PyTorch eager"


def loss(params, x, y):
    """The ConvNet's softmax loss with L2 regularisation, in plain jnp (NCHW, OIHW)."""
    h = lax.conv_general_dilated(x, params["W1"], (1, 1), ((3, 3), (3, 3)))
    h = jnp.maximum(h + params["b1"][None, :, None, None], 0)
    n, f, hh, ww = h.shape
    h = h.reshape(n, f, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))  # 2x2 max pool, stride 2
    h = jnp.maximum(h.reshape(n, -1) @ params["W2"] + params["b2"], 0)
    scores = h @ params["W3"] + params["b3"]
    data = optax.softmax_cross_entropy_with_integer_labels(scores, y).mean()
    return data + 0.5 * REG * sum(jnp.sum(params[k] ** 2) for k in ("W1", "W2", "W3"))


def init(key, weight_scale=1e-2):
    k1, k2, k3 = jax.random.split(key, 3)
    normal = lambda k, shape: weight_scale * jax.random.normal(k, shape, jnp.float32)  # noqa: E731
    return {"W1": normal(k1, (F, C, K, K)), "b1": jnp.zeros(F, jnp.float32),
            "W2": normal(k2, (POOLED, H)), "b2": jnp.zeros(H, jnp.float32),
            "W3": normal(k3, (H, CLASSES)), "b3": jnp.zeros(CLASSES, jnp.float32)}


def make_step(value_and_grad):
    @jax.jit
    def step(params, x, y):
        value, grads = value_and_grad(params, x, y)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), value

    return step


def jax_step(name: str):
    return make_step({
        "jaxprop.reverse": jaxprop.reverse.value_and_grad(loss),
        "jax.grad(jaxprop.gated)": jax.value_and_grad(jaxprop.gated(loss)),
        PLAIN: jax.value_and_grad(loss),
    }[name])


def jax_worker(names, params, x, y) -> dict:
    """A JAX worker: for each of ``names``, its timed block and its first step."""
    params = jax.device_put(params)
    x, y = jnp.asarray(x), jnp.asarray(y)
    table = {}
    for name in names:
        compiled = jax_step(name).lower(params, x, y).compile()
        table[name] = _jax_block(compiled, params, x, y)
        table[f"first {name}"] = lambda compiled=compiled: jax.device_get(
            compiled(params, x, y))
        table[name](1)  # warm
    return table


def _jax_block(step, params, x, y):
    def block(steps: int) -> float:
        start = time.perf_counter()
        state, value = params, None
        for _ in range(steps):
            state, value = step(state, x, y)
        value.block_until_ready()
        return (time.perf_counter() - start) / steps

    return block


def torch_worker(names, params, x, y) -> dict:
    """The PyTorch worker: the same step in PyTorch eager, updating its tensors in place."""
    import torch
    import torch.nn.functional as tf

    def fresh():
        p = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in params.items()}
        return p, torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y), dtype=torch.long)

    def step(p, tx, ty):
        h = tf.max_pool2d(tf.relu(tf.conv2d(tx, p["W1"], p["b1"], padding=3)), 2)
        h = tf.relu(h.flatten(1) @ p["W2"] + p["b2"])
        value = tf.cross_entropy(h @ p["W3"] + p["b3"], ty) + 0.5 * REG * sum(
            (p[k] ** 2).sum() for k in ("W1", "W2", "W3"))
        value.backward()
        with torch.no_grad():
            for t in p.values():
                t -= LR * t.grad
                t.grad = None
        return value

    def first():
        p, tx, ty = fresh()
        value = step(p, tx, ty)
        return {k: v.detach().numpy() for k, v in p.items()}, value.item()

    state = fresh()

    def block(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step(*state)
        return (time.perf_counter() - start) / steps

    block(1)  # warm
    return {TORCH: block, f"first {TORCH}": first, "version": lambda: torch.__version__}


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def check_same_step(programs: dict[str, _bench.Worker], params) -> float:
    """Every program's first step agrees with plain JAX's; the largest parameter difference."""
    p_plain, l_plain = programs[PLAIN].call(f"first {PLAIN}")
    worst = 0.0
    for name, worker in programs.items():
        p_ours, l_ours = worker.call(f"first {name}")
        assert abs(float(l_ours) - float(l_plain)) <= 1e-5 * abs(float(l_plain)), (name, l_ours)
        for k in params:  # float32 sums in another order (and another conv algorithm)
            np.testing.assert_allclose(p_ours[k], p_plain[k], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name}: {k}")
            worst = max(worst, float(np.max(np.abs(p_ours[k] - p_plain[k]))))
    return worst


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
            "x": np.asarray(jax.random.normal(kx, (N, C, HW, HW), jnp.float32)),
            "y": np.asarray(jax.random.randint(ky, (N,), 0, CLASSES))}
    factories = {"jaxprop": (jax_worker, JAXPROP), "plain JAX": (jax_worker, (PLAIN,))}
    if have_torch():
        factories["PyTorch"] = (torch_worker, (TORCH,))
    else:
        print("PyTorch not installed: pip install -e '.[bench]' to compare with it")

    # Alone first: each worker's first program, in a process of its own, nothing else alive.
    alone = {names[0]: _bench.alone(names[0], factory, n, args.rounds, args.steps, args.pause,
                                    names=names[:1], **data)
             for factory, names in factories.values()}
    workers = {w: _bench.Worker(w, factory, n, names=names, **data)
               for w, (factory, names) in factories.items()}
    try:
        threads_line = _bench.print_threads(workers, n)
        programs = {name: workers[w] for w, (_, names) in factories.items() for name in names}
        worst = check_same_step(programs, data["params"])
        times = _bench.alternate(programs, args.rounds, args.steps, args.pause)
        torch_version = workers["PyTorch"].call("version") if "PyTorch" in workers else None
    finally:
        for worker in workers.values():
            worker.close()

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, float32; "
          + (f"PyTorch {torch_version}" if torch_version else "no PyTorch"))
    print(f"step: N={N} {C}x{HW}x{HW}, conv {F} filters {K}x{K} pad {K // 2}, ReLU, 2x2 max "
          f"pool, affine {POOLED}->{H}, ReLU, affine {H}->{CLASSES}, softmax; value_and_grad "
          f"+ SGD, jitted; {FLOPS / 1e9:.2f} GFLOP; blocks of {args.steps} steps, "
          f"{args.rounds} rounds, {args.pause} s between blocks")
    for name, t in med.items():
        print(f"  {name:26s} {t * 1e3:9.3f} ms  {FLOPS / t / 1e9:7.1f} GFLOP/s")
    print(f"largest parameter difference from plain JAX after one step: {worst:.2e}")
    fair = _bench.fairness(alone, times)
    ratios = []
    for name, ref, goal in (("jax.grad(jaxprop.gated)", PLAIN, None),
                            ("jaxprop.reverse", PLAIN, 1.0),
                            ("jaxprop.reverse", TORCH, 1.0)):
        if ref not in times:
            continue
        value, rounds = _bench.median_ratio(times, name, ref)
        ratios.append(_bench.Ratio(f"{name} / {ref}", value, rounds, goal))
    figures = {f"{name} ms": t * 1e3 for name, t in med.items()}
    figures.update({f"{name} alone ms": statistics.median(t) * 1e3 for name, t in alone.items()})
    _bench.finish(args, "conv_step", ratios, figures, f"jaxprop.reverse / {PLAIN}", fair,
                  threads_line)
    for r in ratios[1:]:  # the two ratios, last: against plain JAX, against PyTorch
        print(f"{r.name} (median of {args.rounds} interleaved rounds): {r.value:.3f}"
              + (f"  (goal <= {r.goal}: {'met' if r.met else 'NOT met'})" if r.goal else ""))


if __name__ == "__main__":
    sys.exit(main())
