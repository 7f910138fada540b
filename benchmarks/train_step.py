"""One two-layer softmax training step: jaxprop.reverse against plain JAX and PyTorch eager.

The step is value_and_grad plus SGD, in float32, at CS231n's CIFAR-10 sizes (N=200, D=3072,
H=100, C=10). The programs, timed interleaved in one process (every round runs each one,
starting one further along each time):

- ``jaxprop.reverse``: the library's model and loss (explicit gate calls), jitted;
- ``jaxprop, natural code``: the plain-JAX function below handed to
  ``jaxprop.reverse.value_and_grad`` as it is (the gate tracer applies its operations as
  gates);
- ``jaxprop.reverse, Eigen GEMM`` and ``jaxprop.reverse, oneDNN flag``: the first, compiled
  with the other XLA:CPU matmul backends ``train.cpu_gemm`` offers (``engine.CPU_GEMM``:
  compiler options of this program only, no global flag); ``plain JAX, Eigen GEMM`` the
  same for plain JAX;
- ``plain JAX``: the same net in jnp with optax's cross-entropy and ``jax.value_and_grad``,
  at JAX's defaults;
- ``PyTorch eager``: the same net, ``loss.backward()`` and an in-place SGD update, when
  ``import torch`` works (the ``bench`` extra; never needed by the library).

Inputs are arguments of the jitted steps, never closed over (XLA would constant-fold
them). All programs are checked to compute the same step first. The step is also reported
against the GEMM floor: its matmul FLOPs at the best 1024^3 float32 matmul rate measured
here. The last line is jaxprop.reverse / plain JAX, the median of the per-round ratios.

Run: ``python benchmarks/train_step.py [--rounds 30] [--steps 20] [--json PATH]``
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # PyTorch's threads: no spinning

import _bench  # noqa: E402  (benchmarks/, the folder of this script, is on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxprop  # noqa: E402
from jaxprop.train.engine import CPU_GEMM  # noqa: E402

EIGEN = CPU_GEMM["eigen"]
from jaxprop.losses import softmax_loss  # noqa: E402
from jaxprop.models import two_layer_init, two_layer_scores  # noqa: E402

N, D, H, C = 200, 3072, 100, 10
REG, LR = 1e-3, 1e-3
MATMUL_FLOPS = 4 * N * D * H + 6 * N * H * C  # fwd 2NDH + 2NHC, bwd dW1 2NDH, dW2 + dh 4NHC


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


def torch_step(params, x, y):
    """The same step in PyTorch eager: ``step()`` updates the tensors in place."""
    import torch

    p = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in params.items()}
    tx, ty = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y), dtype=torch.long)

    def step():
        h = torch.relu(tx @ p["W1"] + p["b1"])
        loss = torch.nn.functional.cross_entropy(h @ p["W2"] + p["b2"], ty) + REG * (
            (p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
        loss.backward()
        with torch.no_grad():
            for t in p.values():
                t -= LR * t.grad
                t.grad = None
        return loss

    return p, step


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
    p = _bench.parser(__doc__)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=20, help="steps per timed sample")
    args = p.parse_args()

    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    params = two_layer_init(kp, D, H, C, weight_scale=1e-2)
    x = jax.random.normal(kx, (N, D), jnp.float32)
    y = jax.random.randint(ky, (N,), 0, C)

    ours = make_step(jaxprop.reverse.value_and_grad(
        jaxprop.objective(two_layer_scores, softmax_loss, REG)))
    programs = {
        "jaxprop.reverse": ours.lower(params, x, y).compile(),
        "jaxprop, natural code": make_step(jaxprop.reverse.value_and_grad(plain_loss)).lower(
            params, x, y).compile(),
        "jaxprop.reverse, Eigen GEMM": ours.lower(params, x, y).compile(
            compiler_options=EIGEN),
        "jaxprop.reverse, oneDNN flag": ours.lower(params, x, y).compile(
            compiler_options=CPU_GEMM["onednn"]),
        "plain JAX, Eigen GEMM": make_step(jax.value_and_grad(plain_loss)).lower(
            params, x, y).compile(compiler_options=EIGEN),
        "plain JAX": make_step(jax.value_and_grad(plain_loss)).lower(params, x, y).compile(),
    }
    # Same numbers first: a benchmark of two different computations would mean nothing.
    p_plain, l_plain = programs["plain JAX"](params, x, y)
    worst = 0.0
    for name, step in programs.items():
        p_ours, l_ours = step(params, x, y)
        assert jnp.allclose(l_ours, l_plain, rtol=1e-5), (name, l_ours, l_plain)
        for k in params:  # float32 sums in another order: agree to ~1e-6 relative
            assert jnp.allclose(p_ours[k], p_plain[k], rtol=1e-4, atol=1e-7), (name, k)
            worst = max(worst, float(jnp.max(jnp.abs(p_ours[k] - p_plain[k]))))

    def timer(step):
        def run():
            start = time.perf_counter()
            state, loss = params, None
            for _ in range(args.steps):
                state, loss = step(state, x, y)
            loss.block_until_ready()
            return (time.perf_counter() - start) / args.steps
        return run

    timers = {name: timer(step) for name, step in programs.items()}
    try:
        import torch

        torch_params, torch_run = torch_step(params, x, y)
        loss = torch_run()
        assert abs(float(loss) - float(l_plain)) < 1e-4 * abs(float(l_plain)), (loss, l_plain)
        for k in params:
            np.testing.assert_allclose(torch_params[k].detach().numpy(), p_plain[k],
                                       rtol=1e-4, atol=1e-6)
        torch_params, torch_run = torch_step(params, x, y)

        def torch_timer():
            start = time.perf_counter()
            for _ in range(args.steps):
                torch_run()
            return (time.perf_counter() - start) / args.steps

        timers["PyTorch eager"] = torch_timer
        torch_note = f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_note = "PyTorch not installed: pip install -e '.[bench]' to compare with it"

    times = _bench.interleaved(timers, args.rounds)
    peak = matmul_peak_gflops()
    floor = MATMUL_FLOPS / (peak * 1e9)
    med = {name: statistics.median(t) for name, t in times.items()}

    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, float32; "
          f"{torch_note}")
    print(f"step: N={N} D={D} H={H} C={C}, value_and_grad + SGD, jitted; "
          f"{MATMUL_FLOPS / 1e6:.1f} MFLOP of matmuls")
    print(f"GEMM floor: {floor * 1e3:.3f} ms ({MATMUL_FLOPS / 1e6:.0f} MFLOP at the best "
          f"1024^3 rate measured, {peak:.1f} GFLOP/s)")
    for name, t in med.items():
        print(f"  {name:25s} {t * 1e3:8.3f} ms  {MATMUL_FLOPS / t / 1e9:7.1f} GFLOP/s  "
              f"{floor / t:5.0%} of the floor")
    print(f"largest parameter difference from plain JAX after one step: {worst:.2e}")
    ratios = []
    for name, ref, goal in (("jaxprop.reverse", "plain JAX", 0.90),
                            ("jaxprop, natural code", "plain JAX", 1.0),
                            ("jaxprop.reverse, Eigen GEMM", "plain JAX", None),
                            ("jaxprop.reverse, oneDNN flag", "plain JAX", None),
                            ("jaxprop.reverse, Eigen GEMM", "PyTorch eager", None),
                            ("jaxprop.reverse", "PyTorch eager", 0.80)):
        if ref not in times:
            continue
        value, rounds = _bench.median_ratio(times, name, ref)
        ratios.append(_bench.Ratio(f"{name} / {ref}", value, rounds, goal))
        print(f"{name} / {ref} (median of {args.rounds} interleaved rounds): {value:.3f}"
              + (f"  (goal <= {goal})" if goal else ""))
    figures = {f"{name} ms": t * 1e3 for name, t in med.items()}
    figures.update({"GEMM floor ms": floor * 1e3, "matmul peak GFLOP/s": peak,
                    "jaxprop.reverse % of floor": 100 * floor / med["jaxprop.reverse"]})
    _bench.finish(args, "train_step", ratios, figures, "jaxprop.reverse / plain JAX")


if __name__ == "__main__":
    main()
