"""A sweep's grid as one vmapped program vs the same grid one config at a time.

Both sides train the default digits config (two-layer net, Adam, 30 epochs) for every
(lr, reg) of a 4 x 4 grid, with the same batches and initial weights, and report the final
validation accuracies (which agree). Both sides build their programs before the clock
starts (the one-at-a-time side one Trainer, compiled once and reused for every config since
lr and reg are traced arguments; the vmapped side one grid ``Trainer``), so only training
is timed; compile times are printed apart. The last line is the ratio sequential / vmapped
of the training time (median of interleaved repeats; the goal is at least 3).

Run: ``python benchmarks/sweep.py [--repeats 3] [--size 4] [--json PATH]``
"""

from __future__ import annotations

import itertools
import statistics
import time

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax
import numpy as np

from jaxprop.train.experiment import load_config
from jaxprop.train.sweep import run_sweep, sweep_trainer
from jaxprop.train.trainer import Trainer, load_data


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
    trainer = Trainer(cfg, ds)
    t0 = time.perf_counter()
    trainer.compile(trainer.init_state())
    seq_compile = time.perf_counter() - t0

    def sequential():
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

    seq_times, vm_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        seq_acc = sequential()
        seq_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = vmapped()
        vm_times.append(time.perf_counter() - t0)
    rounds = [a / b for a, b in zip(seq_times, vm_times)]
    vm_acc = np.array([r["val_acc"] for r in result.rows])
    seq, vm = statistics.median(seq_times), statistics.median(vm_times)
    print(f"grid: {len(pairs)} configs ({args.size} lr x {args.size} reg), default digits "
          f"two-layer net, {cfg.train.epochs} epochs; {jax.device_count()} x "
          f"{jax.devices()[0].device_kind}")
    print(f"max |val acc difference| vmapped vs one at a time: "
          f"{np.nanmax(np.abs(vm_acc - seq_acc)):.4f}")
    print(f"one at a time: {seq:.2f} s (+ compile once {seq_compile:.2f} s)")
    print(f"vmapped sweep: {vm:.2f} s (+ compile once {grid.compile_seconds:.2f} s)")
    ratio = _bench.Ratio("sequential / vmapped training time", statistics.median(rounds),
                         rounds, 3.0, higher_is_better=True)
    print(f"sequential / vmapped training time: {ratio.value:.2f} (goal >= 3)")
    _bench.finish(args, "sweep", [ratio], {"sequential s": seq, "vmapped s": vm,
                                          "configs": len(pairs)},
                  "sequential / vmapped training time")


if __name__ == "__main__":
    main()
