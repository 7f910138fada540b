"""One two-layer softmax training step: jaxprop.reverse against plain JAX and PyTorch eager.

The step is value_and_grad plus SGD, in float32, at CS231n's CIFAR-10 sizes (N=200, D=3072,
H=100, C=10). Every framework runs in its own worker process (``_bench.Worker``), with the
same number of threads, and the parent asks them in turn for one block of ``--steps`` steps
per program, with a pause between blocks (``_bench.alternate``): no two ever compute at the
same time. The programs:

- in the jaxprop worker: ``jaxprop.reverse``, the library's model and loss (explicit gate
  calls), jitted; ``jaxprop, natural code``, the plain-JAX function below handed to
  ``jaxprop.reverse.value_and_grad`` as it is (the gate tracer applies its operations as
  gates); ``jaxprop.reverse, Eigen GEMM`` and ``jaxprop.reverse, oneDNN flag``, the first
  compiled with the other XLA:CPU matmul backends ``train.cpu_gemm`` offers
  (``engine.CPU_GEMM``: compiler options of this program only, no global flag);
- in the plain JAX worker: ``plain JAX``, the same net in jnp with optax's cross-entropy and
  ``jax.value_and_grad``, at JAX's defaults, and ``plain JAX, Eigen GEMM``;
- in the PyTorch worker: ``PyTorch eager``, the same net, ``loss.backward()`` and an
  in-place SGD update, at PyTorch's defaults (but its number of threads, set equal), when
  ``import torch`` works (the ``bench`` extra; never needed by the library).

The fairness check: the first program of each worker is also timed alone, in a process of
its own started for it with nothing else running, and both figures are printed; one more
than 15% slower interleaved than alone is flagged. Inputs are arguments of the jitted
steps, never closed over (XLA would constant-fold them). All programs are checked to
compute the same step first. The step is also reported against the GEMM floor: its matmul
FLOPs at the best 1024^3 float32 matmul rate measured here. The last line is
jaxprop.reverse / plain JAX, the median of the per-round ratios.

Run: ``python benchmarks/train_step.py [--rounds 30] [--steps 20] [--pause 0.2] [--threads N]
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
from jaxprop import wiring
from jaxprop.gates import linalg
from jaxprop.losses import softmax_loss
from jaxprop.models import two_layer_init, two_layer_scores
from jaxprop.train.engine import CPU_GEMM

N, D, H, C = 200, 3072, 100, 10
REG, LR = 1e-3, 1e-3
MATMUL_FLOPS = 4 * N * D * H + 6 * N * H * C  # fwd 2NDH + 2NHC, bwd dW1 2NDH, dW2 + dh 4NHC
JAXPROP = ("jaxprop.reverse", "jaxprop, natural code", "jaxprop.reverse, Eigen GEMM",
           "jaxprop.reverse, oneDNN flag")
PLAIN = ("plain JAX", "plain JAX, Eigen GEMM")
TORCH = "PyTorch eager"


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


def jax_steps(name: str):
    """The jitted step of program ``name`` and its compiler options."""
    ours = jaxprop.objective(two_layer_scores, softmax_loss, REG)
    return {
        "jaxprop.reverse": (make_step(jaxprop.reverse.value_and_grad(ours)), None),
        "jaxprop, natural code": (make_step(jaxprop.reverse.value_and_grad(plain_loss)), None),
        "jaxprop.reverse, Eigen GEMM": (make_step(jaxprop.reverse.value_and_grad(ours)),
                                        CPU_GEMM["eigen"]),
        "jaxprop.reverse, oneDNN flag": (make_step(jaxprop.reverse.value_and_grad(ours)),
                                         CPU_GEMM["onednn"]),
        "plain JAX": (make_step(jax.value_and_grad(plain_loss)), None),
        "plain JAX, Eigen GEMM": (make_step(jax.value_and_grad(plain_loss)), CPU_GEMM["eigen"]),
    }[name]


OPS = ("forward GEMM x @ W1", "weight-gradient GEMM x^T dh")
"""The step's two big products (N x D x H each, 99% of its FLOPs), timed apart."""


def _timed_block(fn):
    def block(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps

    return block


def jax_worker(names, params, x, y) -> dict:
    """A JAX worker: for each of ``names``, its timed block and its first step; in the
    jaxprop worker also the step's two big products as the matmul gate computes them."""
    params = jax.device_put(params)
    x, y = jnp.asarray(x), jnp.asarray(y)
    table = {"peak": matmul_peak_gflops}
    if "jaxprop.reverse" in names:
        dh = jnp.ones((N, H), jnp.float32)
        fwd = jax.jit(lambda x, w: linalg.matmul(x, w)).lower(x, params["W1"]).compile()
        w_bar = wiring.LAYOUTS["matmul", 1](linalg.matmul.vjp[1])  # as the wiring runs it
        grad = jax.jit(lambda x, dh: w_bar(linalg.Operands(x, None), dh)).lower(x, dh).compile()
        table[f"jaxprop: {OPS[0]}"] = _timed_block(lambda: fwd(x, params["W1"]).block_until_ready())
        table[f"jaxprop: {OPS[1]}"] = _timed_block(lambda: grad(x, dh).block_until_ready())
    for name in names:
        step, options = jax_steps(name)
        compiled = step.lower(params, x, y).compile(compiler_options=options)
        table[name] = _jax_block(compiled, params, x, y)
        table[f"first {name}"] = _jax_first(compiled, params, x, y)
        table[name](2)  # warm
    return table


def _jax_block(step, params, x, y):
    def block(steps: int) -> float:
        start = time.perf_counter()
        state, loss = params, None
        for _ in range(steps):
            state, loss = step(state, x, y)
        loss.block_until_ready()
        return (time.perf_counter() - start) / steps

    return block


def _jax_first(step, params, x, y):
    return lambda: jax.device_get(step(params, x, y))


def torch_worker(names, params, x, y) -> dict:
    """The PyTorch worker: the same step in PyTorch eager, updating its tensors in place."""
    import torch

    def fresh():
        p = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in params.items()}
        return p, torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y), dtype=torch.long)

    def step(p, tx, ty):
        h = torch.relu(tx @ p["W1"] + p["b1"])
        loss = torch.nn.functional.cross_entropy(h @ p["W2"] + p["b2"], ty) + REG * (
            (p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
        loss.backward()
        with torch.no_grad():
            for t in p.values():
                t -= LR * t.grad
                t.grad = None
        return loss

    def first():
        p, tx, ty = fresh()
        loss = step(p, tx, ty)
        return {k: v.detach().numpy() for k, v in p.items()}, loss.item()

    state = fresh()
    block = _timed_block(lambda: step(*state))
    block(2)  # warm
    tx, w1, dh = state[1], state[0]["W1"].detach(), torch.ones((N, H))
    return {TORCH: block, f"first {TORCH}": first, "version": lambda: torch.__version__,
            # the products as autograd computes them: mm, and mm's weight gradient x.t() @ dh
            f"PyTorch: {OPS[0]}": _timed_block(lambda: tx @ w1),
            f"PyTorch: {OPS[1]}": _timed_block(lambda: tx.t() @ dh)}


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


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    p = _bench.parser(__doc__)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--pause", type=float, default=_bench.PAUSE_S,
                   help="seconds between two blocks (default %(default)s)")
    _bench.threads_option(p)
    args = p.parse_args()
    n = _bench.check_threads(p, args.threads)

    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    data = {"params": jax.device_get(two_layer_init(kp, D, H, C, weight_scale=1e-2)),
            "x": np.asarray(jax.random.normal(kx, (N, D), jnp.float32)),
            "y": np.asarray(jax.random.randint(ky, (N,), 0, C))}
    factories = {"jaxprop": (jax_worker, JAXPROP), "plain JAX": (jax_worker, PLAIN)}
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
        breakdown = {}
        if "PyTorch" in workers:  # the step's two big products, in each framework
            ops = {f"{w}: {op}": workers[w] for w in ("jaxprop", "PyTorch") for op in OPS}
            breakdown = _bench.alternate(ops, max(5, args.rounds // 3), args.steps, args.pause)
        peak = workers["jaxprop"].call("peak")
        torch_version = workers["PyTorch"].call("version") if "PyTorch" in workers else None
    finally:
        for worker in workers.values():
            worker.close()

    floor = MATMUL_FLOPS / (peak * 1e9)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, float32; "
          + (f"PyTorch {torch_version}" if torch_version else "no PyTorch"))
    print(f"step: N={N} D={D} H={H} C={C}, value_and_grad + SGD, jitted; "
          f"{MATMUL_FLOPS / 1e6:.1f} MFLOP of matmuls; blocks of {args.steps} steps, "
          f"{args.rounds} rounds, {args.pause} s between blocks")
    print(f"GEMM floor: {floor * 1e3:.3f} ms ({MATMUL_FLOPS / 1e6:.0f} MFLOP at the best "
          f"1024^3 rate measured, {peak:.1f} GFLOP/s)")
    for name, t in med.items():
        print(f"  {name:28s} {t * 1e3:8.3f} ms  {MATMUL_FLOPS / t / 1e9:7.1f} GFLOP/s  "
              f"{floor / t:5.0%} of the floor")
    print(f"largest parameter difference from plain JAX after one step: {worst:.2e}")
    fair = _bench.fairness(alone, times)
    ratios = []
    for name, ref, goal in (("jaxprop.reverse", "plain JAX", 0.90),
                            ("jaxprop, natural code", "plain JAX", 1.0),
                            ("jaxprop.reverse, Eigen GEMM", "plain JAX", None),
                            ("jaxprop.reverse, oneDNN flag", "plain JAX", None),
                            ("jaxprop.reverse, Eigen GEMM", TORCH, None),
                            ("jaxprop.reverse", TORCH, 0.80)):
        if ref not in times:
            continue
        value, rounds = _bench.median_ratio(times, name, ref)
        ratios.append(_bench.Ratio(f"{name} / {ref}", value, rounds, goal))
        print(f"{name} / {ref} (median of {args.rounds} interleaved rounds): {value:.3f}"
              + (f"  (goal <= {goal}: {'met' if value <= goal else 'NOT met'})" if goal else ""))
    if breakdown:
        print_breakdown(breakdown, med, ratios[-1])
    figures = {f"{name} ms": t * 1e3 for name, t in med.items()}
    figures.update({f"{name}: {op} ms": statistics.median(breakdown[f"{name}: {op}"]) * 1e3
                    for name in ("jaxprop", "PyTorch") for op in OPS if breakdown})
    figures.update({f"{name} alone ms": statistics.median(t) * 1e3 for name, t in alone.items()})
    figures.update({"GEMM floor ms": floor * 1e3, "matmul peak GFLOP/s": peak,
                    "jaxprop.reverse % of floor": 100 * floor / med["jaxprop.reverse"]})
    if TORCH in alone:
        each_alone = statistics.median(alone["jaxprop.reverse"]) / statistics.median(alone[TORCH])
        print(f"jaxprop.reverse / {TORCH}, each alone: {each_alone:.3f}")
        figures[f"jaxprop.reverse / {TORCH}, each alone"] = each_alone
    _bench.finish(args, "train_step", ratios, figures, "jaxprop.reverse / plain JAX",
                  fair, threads_line)


def print_breakdown(breakdown: dict[str, list[float]], med: dict[str, float],
                    ratio: _bench.Ratio) -> None:
    """Where the step's time goes in jaxprop and in PyTorch: the two big products, each
    timed alone in the same workers, and the rest of the step; and, when jaxprop misses
    its goal against PyTorch, how far."""
    print(f"where the time goes (the two products timed apart, in the same workers, "
          f"medians of {len(next(iter(breakdown.values())))} rounds):")
    print(f"  {'':30s} {'jaxprop.reverse':>16s} {TORCH:>16s}")
    steps = {"jaxprop": med["jaxprop.reverse"], "PyTorch": med[TORCH]}
    rest = dict(steps)
    for op in OPS:
        t = {w: statistics.median(breakdown[f"{w}: {op}"]) for w in steps}
        rest = {w: rest[w] - t[w] for w in steps}
        print(f"  {op:30s} {t['jaxprop'] * 1e3:13.3f} ms {t['PyTorch'] * 1e3:13.3f} ms")
    print(f"  {'the rest of the step':30s} {rest['jaxprop'] * 1e3:13.3f} ms "
          f"{rest['PyTorch'] * 1e3:13.3f} ms")
    print(f"  {'the step':30s} {steps['jaxprop'] * 1e3:13.3f} ms "
          f"{steps['PyTorch'] * 1e3:13.3f} ms")
    if not ratio.met:
        products = steps["jaxprop"] - rest["jaxprop"]
        print(f"goal missed: jaxprop.reverse takes {ratio.value:.2f}x PyTorch's step, the goal "
              f"is <= {ratio.goal}x, {ratio.value / ratio.goal - 1:.0%} too slow; its two "
              f"products alone take {products / steps['PyTorch']:.2f}x PyTorch's whole step")


def check_same_step(programs: dict[str, _bench.Worker], params) -> float:
    """Every program's first step agrees with plain JAX's; the largest parameter difference.
    A benchmark of two different computations would mean nothing."""
    p_plain, l_plain = programs["plain JAX"].call("first plain JAX")
    worst = 0.0
    for name, worker in programs.items():
        p_ours, l_ours = worker.call(f"first {name}")
        assert abs(float(l_ours) - float(l_plain)) <= 1e-5 * abs(float(l_plain)), (name, l_ours)
        for k in params:  # float32 sums in another order: agree to ~1e-6 relative
            np.testing.assert_allclose(p_ours[k], p_plain[k], rtol=1e-4, atol=1e-7,
                                       err_msg=f"{name}: {k}")
            worst = max(worst, float(np.max(np.abs(p_ours[k] - p_plain[k]))))
    return worst


if __name__ == "__main__":
    sys.exit(main())
