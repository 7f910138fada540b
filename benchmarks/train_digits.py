"""The full default digits training, timed four ways; prints the ratios.

1. jaxprop: ``jaxprop train``'s engine (reverse pipeline: our VJP rules), one compiled
   ``lax.scan`` per epoch.
2. plain JAX: the same net written in ``jnp``, ``jax.value_and_grad`` and
   ``optax.softmax_cross_entropy_with_integer_labels``, the same ``lax.scan`` per epoch, the
   same optax Adam and schedule, the same batches and the same per-epoch accuracies.
3. NumPy: a per-step Python loop with the flat backprop of the course assignments
   (CS231n's ``TwoLayerNet.loss``) and Adam as in CS231n's ``optim.py``.
4. PyTorch eager, the same loop, when ``import torch`` works (optional, never required).

Every method does the same work per epoch: the steps, then the accuracy on the training
set (its first ``TRAIN_ACC_EXAMPLES``) and on the validation set.

Every method runs in its own worker process (``_bench.Worker``), with the same number of
threads; the parent asks them in turn for one whole training each, with a pause between
them (``_bench.alternate``), so no two ever compute at the same time. Times are after
compiling (the compile is reported apart) and one warm-up training, the median of the
``--repeats`` rounds. The fairness check: every method is also timed alone, in a process of
its own with nothing else running, and both figures are printed; one more than 15% slower
interleaved than alone is flagged. The last line is the ratio of jaxprop to plain JAX.

Run: ``python benchmarks/train_digits.py [--repeats 5] [--pause 0.2] [--threads N] [--json PATH]``
"""

from __future__ import annotations

import statistics
import time

import _bench  # benchmarks/, the folder of this script, is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprop.train import engine
from jaxprop.train.experiment import load_config
from jaxprop.train.trainer import Trainer, load_data

METHODS = ("jaxprop", "plain JAX", "NumPy loop", "PyTorch loop")


def jaxprop_run(trainer: Trainer, epochs: int):
    state = trainer.init_state()
    for epoch in range(epochs):
        state, stats, _ = trainer.run_epoch(state, epoch)
    return jax.device_get(state[0]), stats


def make_plain_jax(cfg, ds, steps: int, p0):
    """The same training as plain JAX: jnp net, jax.value_and_grad, optax loss."""
    reg, bsz = cfg.loss.reg, cfg.train.batch_size

    def loss_fn(p, x, y):
        h = jax.nn.relu(x @ p["W1"] + p["b1"])
        s = h @ p["W2"] + p["b2"]
        data = optax.softmax_cross_entropy_with_integer_labels(s, y).mean()
        return data + reg * (jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))

    def acc(p, x, y):
        h = jax.nn.relu(x @ p["W1"] + p["b1"])
        return jnp.mean(jnp.argmax(h @ p["W2"] + p["b2"], axis=1) == y)

    opt = optax.adam(optax.exponential_decay(cfg.optimizer.lr, steps, cfg.optimizer.lr_decay,
                                             staircase=True))

    @jax.jit
    def epoch(p, s, key, x, y, xv, yv):
        order = jax.random.permutation(key, x.shape[0])[: steps * bsz].reshape(steps, bsz)

        def step(carry, idx):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, s), losses = jax.lax.scan(step, (p, s), order)
        return p, s, {"train_loss": losses.mean(), "train_acc": acc(p, x, y),
                      "val_acc": acc(p, xv, yv)}

    _, data_key = engine.keys(cfg.seed)
    data = tuple(jnp.asarray(a) for a in (ds.x_train, ds.y_train, ds.x_val, ds.y_val))

    def run():
        p, s = p0, opt.init(p0)
        for e in range(cfg.train.epochs):
            p, s, stats = epoch(p, s, jax.random.fold_in(data_key, e), *data)
            stats = jax.device_get(stats)
        return jax.device_get(p), stats

    return run, epoch, p0, opt, data_key, data


def numpy_run(cfg, ds, p0, seed: int = 0):
    """Per-step Python loop, flat backprop (CS231n TwoLayerNet.loss), CS231n-style Adam."""
    p = {k: np.array(v, np.float32) for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    x, y = ds.x_train, ds.y_train
    n, bsz, reg = x.shape[0], cfg.train.batch_size, cfg.loss.reg
    steps = n // bsz
    n_acc = min(n, engine.TRAIN_ACC_EXAMPLES)
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    rng = np.random.default_rng(seed)
    for epoch in range(cfg.train.epochs):
        lr = cfg.optimizer.lr * cfg.optimizer.lr_decay ** epoch
        order = rng.permutation(n)
        for i in range(steps):
            idx = order[i * bsz:(i + 1) * bsz]
            xb, yb = x[idx], y[idx]
            # forward
            h_pre = xb @ p["W1"] + p["b1"]
            h = np.maximum(0, h_pre)
            scores = h @ p["W2"] + p["b2"]
            shifted = scores - scores.max(axis=1, keepdims=True)
            probs = np.exp(shifted)
            probs /= probs.sum(axis=1, keepdims=True)
            # backward: dscores = (p - 1[y]) / N, then the matmul/add/relu gates
            dscores = probs
            dscores[np.arange(bsz), yb] -= 1
            dscores /= bsz
            grads = {"W2": h.T @ dscores + 2 * reg * p["W2"], "b2": dscores.sum(axis=0)}
            dh = dscores @ p["W2"].T
            dh[h_pre <= 0] = 0
            grads["W1"] = xb.T @ dh + 2 * reg * p["W1"]
            grads["b1"] = dh.sum(axis=0)
            t += 1
            for k in p:  # CS231n optim.adam
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v2[k] = b2 * v2[k] + (1 - b2) * grads[k] ** 2
                mt, vt = m[k] / (1 - b1 ** t), v2[k] / (1 - b2 ** t)
                p[k] -= lr * mt / (np.sqrt(vt) + eps)
        # the same per-epoch evaluation as the JAX sides: train and val accuracy
        stats = {"train_acc": _np_acc(p, x[:n_acc], y[:n_acc]),
                 "val_acc": _np_acc(p, ds.x_val, ds.y_val)}
    return p, stats


def _np_acc(p, x, y):
    h = np.maximum(0, x @ p["W1"] + p["b1"])
    return float(np.mean(np.argmax(h @ p["W2"] + p["b2"], axis=1) == y))


def torch_run(cfg, ds, p0):
    import torch

    p = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in p0.items()}
    opt = torch.optim.Adam(p.values(), lr=cfg.optimizer.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.optimizer.lr_decay)
    x, y = torch.tensor(ds.x_train), torch.tensor(ds.y_train, dtype=torch.long)
    n, bsz = x.shape[0], cfg.train.batch_size
    xv, yv = torch.tensor(ds.x_val), torch.tensor(ds.y_val, dtype=torch.long)
    n_acc = min(int(x.shape[0]), engine.TRAIN_ACC_EXAMPLES)
    gen = torch.Generator().manual_seed(cfg.seed)

    def acc(xs, ys):
        with torch.no_grad():
            s = torch.relu(xs @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            return (s.argmax(dim=1) == ys).float().mean().item()

    for _ in range(cfg.train.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(n // bsz):
            idx = order[i * bsz:(i + 1) * bsz]
            s = torch.relu(x[idx] @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            loss = torch.nn.functional.cross_entropy(s, y[idx]) + cfg.loss.reg * (
                (p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        # the same per-epoch evaluation as the JAX sides: train and val accuracy
        stats = {"train_acc": acc(x[:n_acc], y[:n_acc]), "val_acc": acc(xv, yv)}
    return {k: v.detach().numpy() for k, v in p.items()}, stats


def _test_acc(p, ds):
    h = np.maximum(0, ds.x_test @ p["W1"] + p["b1"])
    return float(np.mean(np.argmax(h @ p["W2"] + p["b2"], axis=1) == ds.y_test))


def worker(method: str, p0) -> dict:
    """A worker for ``method``: its training, timed per run (``table[method](runs)``), the
    parameters it ended with, and its compile time (JAX methods)."""
    cfg = load_config()  # the default: two-layer net on digits, Adam, 30 epochs, batch 64
    ds = load_data(cfg)
    compile_s = None
    if method == "jaxprop":
        trainer = Trainer(cfg, ds)
        t0 = time.perf_counter()  # compile, and one epoch to warm every program
        jax.block_until_ready(trainer.run_epoch(trainer.init_state(), 0))
        compile_s = time.perf_counter() - t0
        train = lambda: jaxprop_run(trainer, cfg.train.epochs)[0]  # noqa: E731
    elif method == "plain JAX":
        steps = ds.x_train.shape[0] // cfg.train.batch_size
        plain, epoch, p0, opt, data_key, data = make_plain_jax(cfg, ds, steps, p0)
        t0 = time.perf_counter()
        jax.block_until_ready(epoch(p0, opt.init(p0), jax.random.fold_in(data_key, 0), *data))
        compile_s = time.perf_counter() - t0
        train = lambda: plain()[0]  # noqa: E731
    elif method == "NumPy loop":
        train = lambda: numpy_run(cfg, ds, p0)[0]  # noqa: E731
    else:
        train = lambda: torch_run(cfg, ds, p0)[0]  # noqa: E731
    last = {"params": train()}  # warm

    def block(runs: int) -> float:
        start = time.perf_counter()
        for _ in range(runs):
            last["params"] = train()
        return (time.perf_counter() - start) / runs

    return {method: block, "params": lambda: {k: np.asarray(v) for k, v in last["params"].items()},
            "compile": lambda: compile_s}


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = _bench.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timed trainings")
    parser.add_argument("--pause", type=float, default=_bench.PAUSE_S,
                        help="seconds between two trainings (default %(default)s)")
    _bench.threads_option(parser)
    args = parser.parse_args()
    n = _bench.check_threads(parser, args.threads)

    cfg = load_config()
    ds = load_data(cfg)
    trainer = Trainer(cfg, ds)
    p0 = jax.device_get(trainer.init_state()[0])
    methods = list(METHODS)
    if not have_torch():
        methods.remove("PyTorch loop")
        print("PyTorch is not installed: skipping the PyTorch loop (optional comparison)")

    # Alone first: each method in a process of its own, with no other worker alive.
    alone = {m: _bench.alone(m, worker, n, args.repeats, 1, args.pause, method=m, p0=p0)
             for m in methods}
    workers = {m: _bench.Worker(m, worker, n, method=m, p0=p0) for m in methods}
    try:
        threads_line = _bench.print_threads(workers, n)
        times = _bench.alternate(workers, args.repeats, 1, args.pause)
        results = {m: w.call("params") for m, w in workers.items()}
        compile_s = {m: workers[m].call("compile") for m in ("jaxprop", "plain JAX")}
    finally:
        for w in workers.values():
            w.close()

    steps = trainer.steps
    total_steps = steps * cfg.train.epochs
    print(f"default digits training: two-layer net H={cfg.model.hidden_dim}, "
          f"{cfg.train.epochs} epochs x {steps} steps = {total_steps} Adam steps, "
          f"batch {cfg.train.batch_size}; {jax.device_count()} x {jax.devices()[0].device_kind}; "
          f"{args.repeats} rounds, {args.pause} s between trainings")
    print(f"compile: jaxprop {compile_s['jaxprop']:.2f} s, "
          f"plain JAX {compile_s['plain JAX']:.2f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in methods:
        print(f"{name:13s} {med[name] * 1e3:9.1f} ms  ({med[name] / total_steps * 1e6:7.1f} "
              f"us/step)  test accuracy {_test_acc(results[name], ds):.4f}")
    fair = _bench.fairness(alone, times)
    ratios = []
    for name in methods:
        if name == "jaxprop":
            continue
        value, rounds = _bench.median_ratio(times, name, "jaxprop")
        if name == "plain JAX":
            value, rounds = _bench.median_ratio(times, "jaxprop", name)
            ratios.insert(0, _bench.Ratio("jaxprop / plain JAX", value, rounds))
        else:
            ratios.append(_bench.Ratio(f"{name} / jaxprop", value, rounds,
                                       higher_is_better=True))
            alone_ratio = statistics.median(alone[name]) / statistics.median(alone["jaxprop"])
            print(f"{name} / jaxprop: {value:.2f}x interleaved, {alone_ratio:.2f}x each alone")
    figures = {f"{name} ms": med[name] * 1e3 for name in methods}
    figures.update({f"{name} alone ms": statistics.median(alone[name]) * 1e3 for name in methods})
    figures.update({"jaxprop compile s": compile_s["jaxprop"],
                    "plain JAX compile s": compile_s["plain JAX"]})
    print(f"jaxprop / plain JAX: {ratios[0].value:.2f}")
    _bench.finish(args, "train_digits", ratios, figures, "jaxprop / plain JAX", fair,
                  threads_line)


if __name__ == "__main__":
    main()
