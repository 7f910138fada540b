"""A sweep's grid as one vmapped program vs the same grid one config at a time.

Both sides train the default digits config (two-layer net, Adam, 30 epochs) for every
(lr, reg) of a 4 x 4 grid, with the same batches and initial weights, and report the final
validation accuracies (which agree). Both sides build their programs before the clock
starts (the one-at-a-time side one Trainer, compiled once and reused for every config since
lr and reg are traced arguments; the vmapped side one grid ``Trainer``), so only training
is timed; compile times are printed apart.

With several devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2`` on a CPU) the
vmapped side spreads the 16 models over them (``Trainer.split_grid``), and the one-at-a-time
side is timed both on one device and with each batch split over all of them; the faster is
the reference.

The work has a floor: the matmul FLOPs of 16 trainings (steps and accuracies) at the rate
of the sweep's biggest GEMM measured alone (every model's first layer on the shared batch,
[B, D] @ [D, 16 H]). Against the sequential side's own rate it bounds what any batching of
the 16 can gain: ``bound = that GEMM's rate / sequential rate``. The last line is the ratio
sequential / vmapped of the training time (median of interleaved repeats; the goal is at
least 3).

Run: ``python benchmarks/sweep.py [--repeats 3] [--size 4] [--json PATH]``
"""

from __future__ import annotations

import itertools
import statistics
import time

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax
import numpy as np
from train_step import matmul_peak_gflops

from jaxprop.train import engine, sharding
from jaxprop.train.experiment import load_config
from jaxprop.train.sweep import run_sweep, sweep_trainer
from jaxprop.train.trainer import Trainer, load_data


def grid_gemm_gflops(trainer: Trainer, copies: int, repeats: int = 200) -> float:
    """The rate of the vmapped sweep's biggest GEMM alone: every model's first layer on the
    shared batch, ``[B, D] @ [D, G * H]`` (vmap folds the G weight matrices into one)."""
    ds, cfg = trainer.dataset, trainer.cfg
    b, d, n = cfg.train.batch_size, ds.in_dim, copies * cfg.model.hidden_dim
    x, w = np.ones((b, d), np.float32), np.ones((d, n), np.float32)
    mm = jax.jit(lambda x, w: x @ w)
    mm(x, w).block_until_ready()
    best = float("inf")
    for _ in range(5):  # the best of 5 rounds of back-to-back calls
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = mm(x, w)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return 2 * b * d * n / best / 1e9


def matmul_flops(trainer: Trainer) -> float:
    """The matmul FLOPs of one config's training: per step the two layers forward and the
    weight and hidden gradients back; per epoch the accuracies on the train and val sets."""
    ds, cfg = trainer.dataset, trainer.cfg
    d, c, h, b = ds.in_dim, ds.num_classes, cfg.model.hidden_dim, cfg.train.batch_size
    per_step = 2 * b * (d * h + h * c) + 2 * b * (d * h + 2 * h * c)
    evals = min(ds.x_train.shape[0], engine.TRAIN_ACC_EXAMPLES) + ds.x_val.shape[0]
    per_epoch = trainer.steps * per_step + 2 * evals * (d * h + h * c)
    return float(per_epoch * cfg.train.epochs)


def main() -> None:
    parser = _bench.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=4, help="grid of size x size")
    args = parser.parse_args()
    lrs = list(np.geomspace(3e-4, 1e-2, args.size))
    regs = [0.0, *np.geomspace(1e-4, 1e-2, args.size - 1)]
    cfg = load_config(None, [("sweep.lr", [float(x) for x in lrs]),
                             ("sweep.reg", [float(x) for x in regs])])
    ds = load_data(cfg)
    pairs = list(itertools.product(cfg.sweep.lr, cfg.sweep.reg))

    jax.block_until_ready(jax.jit(lambda x: x + 1)(np.float32(0)))  # backend up before timing
    meshes = {"1 device": sharding.make_mesh(jax.devices()[:1])}
    if jax.device_count() > 1:
        meshes[f"{jax.device_count()} devices, batch split"] = sharding.make_mesh()
    trainers = {}
    for name, mesh in meshes.items():
        trainers[name] = Trainer(cfg, ds, mesh)
        t0 = time.perf_counter()
        trainers[name].compile(trainers[name].init_state())
        seq_compile = time.perf_counter() - t0

    def sequential(trainer):
        accs = []
        for lr, reg in pairs:
            state = trainer.init_state()
            for epoch in range(cfg.train.epochs):
                state, stats, _ = trainer.run_epoch(state, epoch, {"lr": lr, "reg": reg})
            accs.append(stats["val_acc"])
        return np.array(accs)

    grid = sweep_trainer(cfg, ds)  # the vmapped side's Trainer, data and compile, untimed
    grid.compile(grid.init_state())

    def vmapped():
        return run_sweep(cfg, progress=False, write=False, trainer=grid)

    seq_times = {name: [] for name in trainers}
    vm_times = []
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            t0 = time.perf_counter()
            seq_acc = sequential(trainer)
            seq_times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = vmapped()
        vm_times.append(time.perf_counter() - t0)
    best = min(seq_times, key=lambda name: statistics.median(seq_times[name]))
    rounds = [a / b for a, b in zip(seq_times[best], vm_times)]
    vm_acc = np.array([r["val_acc"] for r in result.rows])
    seq, vm = statistics.median(seq_times[best]), statistics.median(vm_times)
    flops = matmul_flops(trainers[best]) * len(pairs)
    peak = matmul_peak_gflops()
    print(f"grid: {len(pairs)} configs ({args.size} lr x {args.size} reg), default digits "
          f"two-layer net, {cfg.train.epochs} epochs; {jax.device_count()} x "
          f"{jax.devices()[0].device_kind}"
          + (f"; the vmapped sweep spreads its models over the {jax.device_count()} devices"
             if grid.split_grid else ""))
    print(f"max |val acc difference| vmapped vs one at a time: "
          f"{np.nanmax(np.abs(vm_acc - seq_acc)):.4f}")
    for name, times in seq_times.items():
        t = statistics.median(times)
        print(f"one at a time, {name}: {t:.2f} s, {flops / t / 1e9:.1f} GFLOP/s of matmul"
              + (" (the reference)" if name == best else ""))
    print(f"  (compile once {seq_compile:.2f} s)")
    print(f"vmapped sweep: {vm:.2f} s, {flops / vm / 1e9:.1f} GFLOP/s "
          f"(+ compile once {grid.compile_seconds:.2f} s)")
    shape_rate = grid_gemm_gflops(trainers[best], len(pairs))
    seq_rate = flops / seq / 1e9
    bound = shape_rate / seq_rate
    print(f"floor: {flops / 1e9:.2f} GFLOP of matmul; at the best 1024^3 rate measured "
          f"({peak:.1f} GFLOP/s) {flops / peak / 1e9:.2f} s, at the rate of the sweep's "
          f"biggest GEMM alone ({shape_rate:.1f} GFLOP/s) {flops / shape_rate / 1e9:.2f} s. "
          f"One at a time runs at {seq_rate:.1f} GFLOP/s, so even with every FLOP at that "
          f"GEMM's rate the {len(pairs)} batched could be at most {bound:.1f}x faster here")
    ratio = _bench.Ratio("sequential / vmapped training time", statistics.median(rounds),
                         rounds, 3.0, higher_is_better=True)
    print(f"sequential / vmapped training time: {ratio.value:.2f} (goal >= 3)")
    _bench.finish(args, "sweep", [ratio], {"sequential s": seq, "vmapped s": vm,
                                          "configs": len(pairs), "GFLOP": flops / 1e9,
                                          "matmul peak GFLOP/s": peak,
                                          "biggest GEMM GFLOP/s": shape_rate,
                                          "bound at that GEMM's rate": bound},
                  "sequential / vmapped training time")


if __name__ == "__main__":
    main()
