"""Compile time: jaxprop's jitted training against plain JAX's, traced and compiled afresh.

Two programs are compiled each round, each from nothing (``jax.clear_caches()`` and no
persistent compilation cache), in alternating order:

1. the default ``jaxprop train`` epoch (``Trainer``: the reverse pipeline, our VJP rules, a
   ``lax.scan`` of Adam steps drawing their batches, plus the accuracies), against the
   same training written in plain JAX (``train_digits.make_plain_jax``:
   ``jax.value_and_grad`` of a jnp net and optax's cross-entropy);
2. one train step at CIFAR-10 sizes (``train_step.py``), jaxprop's gate calls and the same
   plain-JAX function through the gate tracer, against ``jax.value_and_grad``.

Each time is split into trace (Python: building the jaxpr, our gates' checks), lowering
(StableHLO) and XLA's compile. A warm-up compile first takes XLA's one-off start-up cost
out of whichever program would come first. The last line is the median ratio of the
default epoch's total time, jaxprop / plain JAX.

Run: ``python benchmarks/compile.py [--rounds 5] [--json PATH]``
"""

from __future__ import annotations

import statistics
import time

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax
import jax.numpy as jnp
import train_digits
import train_step

import jaxprop
from jaxprop.losses import softmax_loss
from jaxprop.models import two_layer_init, two_layer_scores
from jaxprop.train.experiment import load_config
from jaxprop.train.trainer import Trainer, load_data


def stages(parts) -> tuple[float, float, float]:
    """Seconds to trace, lower and compile a program, from cold: ``parts`` is one
    ``(jitted fn, args)`` or a list of them (a training that is several programs)."""
    jax.clear_caches()
    total = [0.0, 0.0, 0.0]
    for fn, args in parts if isinstance(parts, list) else [parts]:
        t0 = time.perf_counter()
        traced = fn.trace(*args)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        lowered.compile()
        for i, t in enumerate((t1 - t0, t2 - t1, time.perf_counter() - t2)):
            total[i] += t
    return tuple(total)


def measure(programs: dict, rounds: int) -> dict[str, list[tuple[float, float, float]]]:
    """Each program's stage times per round, the order rotated every round."""
    times = {name: [] for name in programs}
    names = list(programs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(stages(programs[name]))
    return times


def report(title: str, times: dict, reference: str, figures: dict) -> dict[str, list]:
    """Prints each program's median stage times; returns the per-round total ratios."""
    print(title)
    totals = {name: [sum(t) for t in ts] for name, ts in times.items()}
    for name, ts in times.items():
        trace, lower, comp = (statistics.median(t[i] for t in ts) for i in range(3))
        print(f"  {name:22s} total {statistics.median(totals[name]):6.2f} s  "
              f"(trace {trace:5.2f}, lower {lower:5.2f}, XLA compile {comp:5.2f})")
        figures[f"{name} s"] = statistics.median(totals[name])
        figures[f"{name} trace s"] = trace
    return {name: [a / b for a, b in zip(totals[name], totals[reference])]
            for name in times if name != reference}


def main() -> None:
    parser = _bench.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    jax.jit(lambda a: jnp.tanh(a @ a).sum()).lower(jnp.ones((8, 8))).compile()  # XLA warm-up

    cfg = load_config()
    ds = load_data(cfg)
    trainer = Trainer(cfg, ds)
    params, opt_state = trainer.init_state()
    key = jax.random.fold_in(trainer.data_key, 0)
    _, plain_epoch, p0, opt, _, data = train_digits.make_plain_jax(
        cfg, ds, trainer.steps, jax.device_get(params))
    epochs = {
        "jaxprop train epoch": (trainer._epoch, (params, opt_state, *trainer.epoch_args(0))),
        "plain JAX epoch": (plain_epoch, (p0, opt.init(p0), key, *data)),
    }

    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    n, d, h, c = train_step.N, train_step.D, train_step.H, train_step.C
    step_args = (two_layer_init(kp, d, h, c, weight_scale=1e-2),
                 jax.random.normal(kx, (n, d), jnp.float32), jax.random.randint(ky, (n,), 0, c))
    steps = {
        "jaxprop.reverse": (train_step.make_step(jaxprop.reverse.value_and_grad(
            jaxprop.objective(two_layer_scores, softmax_loss, train_step.REG))), step_args),
        "jaxprop, natural code": (train_step.make_step(
            jaxprop.reverse.value_and_grad(train_step.plain_loss)), step_args),
        "plain JAX step": (train_step.make_step(jax.value_and_grad(train_step.plain_loss)),
                           step_args),
    }

    print(f"{jax.device_count()} x {jax.devices()[0].device_kind}; medians of {args.rounds} "
          "rounds, each program traced and compiled from cold")
    figures: dict = {}
    step_ratio = report("one train step, N=200 D=3072 H=100 C=10:",
                        measure(steps, args.rounds), "plain JAX step", figures)
    epoch_ratio = report(f"the default training epoch ({cfg.name}, {trainer.steps} Adam steps "
                         "in a lax.scan, plus accuracies):",
                         measure(epochs, args.rounds), "plain JAX epoch", figures)
    ratios = []
    for name, rounds in step_ratio.items():
        ratios.append(_bench.Ratio(f"compile {name} / plain JAX step",
                                   statistics.median(rounds), rounds, 1.5))
    rounds = epoch_ratio["jaxprop train epoch"]
    ratios.append(_bench.Ratio("compile jaxprop train epoch / plain JAX epoch",
                               statistics.median(rounds), rounds, 1.2))
    for r in ratios:
        print(f"{r.name}: {r.value:.2f} (goal <= {r.goal})")
    _bench.finish(args, "compile", ratios, figures,
                  "compile jaxprop train epoch / plain JAX epoch")


if __name__ == "__main__":
    main()
