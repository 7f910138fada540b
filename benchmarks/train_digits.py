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

Times are after compiling (the compile is reported apart), the median of interleaved
repeats, so the methods share the machine's noise. The last line is the ratio of jaxprop
to plain JAX.

Run: ``python benchmarks/train_digits.py [--repeats 5] [--json PATH]``
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


def main() -> None:
    parser = _bench.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    cfg = load_config()  # the default: two-layer net on digits, Adam, 30 epochs, batch 64
    ds = load_data(cfg)
    trainer = Trainer(cfg, ds)
    steps = trainer.steps
    jax.jit(lambda a: (a @ a).sum()).lower(jnp.ones((8, 8))).compile()  # XLA's start-up
    t0 = time.perf_counter()  # compile, and one epoch to warm every program (as plain JAX's)
    trainer.run_epoch(trainer.init_state(), 0)
    jaxprop_compile = time.perf_counter() - t0
    plain, plain_epoch, p0, opt, data_key, data = make_plain_jax(
        cfg, ds, steps, jax.device_get(trainer.init_state()[0]))
    t0 = time.perf_counter()
    jax.block_until_ready(plain_epoch(p0, opt.init(p0), jax.random.fold_in(data_key, 0), *data))
    plain_compile = time.perf_counter() - t0
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("PyTorch is not installed: skipping the PyTorch loop (optional comparison)")

    methods = {"jaxprop": lambda: jaxprop_run(trainer, cfg.train.epochs)[0],
               "plain JAX": lambda: plain()[0],
               "NumPy loop": lambda: numpy_run(cfg, ds, jax.device_get(p0))[0]}
    if have_torch:
        methods["PyTorch loop"] = lambda: torch_run(cfg, ds, jax.device_get(p0))[0]
    times = {k: [] for k in methods}
    results = {}
    # The two JAX methods alternate, in turn first, with nothing else between them; the
    # NumPy (and PyTorch) loops run after, apart: their BLAS threads keep spinning for a
    # while after each call and would slow whichever method came next.
    pairs = [["jaxprop", "plain JAX"], ["plain JAX", "jaxprop"]]
    rounds = [pairs[r % 2] for r in range(2 * args.repeats)]
    rounds += [[name for name in methods if "JAX" not in name and name != "jaxprop"]] * args.repeats
    for names in rounds:
        for name in names:
            fn = methods[name]
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    total_steps = steps * cfg.train.epochs
    print(f"default digits training: two-layer net H={cfg.model.hidden_dim}, "
          f"{cfg.train.epochs} epochs x {steps} steps = {total_steps} Adam steps, "
          f"batch {cfg.train.batch_size}; {jax.device_count()} x {jax.devices()[0].device_kind}")
    print(f"compile: jaxprop {jaxprop_compile:.2f} s, plain JAX {plain_compile:.2f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in methods:
        print(f"{name:13s} {med[name] * 1e3:9.1f} ms  ({med[name] / total_steps * 1e6:7.1f} "
              f"us/step)  test accuracy {_test_acc(results[name], ds):.4f}")
    for name in methods:
        if name != "jaxprop":
            print(f"{name} / jaxprop: {med[name] / med['jaxprop']:.2f}x")
    rounds = [a / b for a, b in zip(times["jaxprop"], times["plain JAX"])]
    ratios = [_bench.Ratio("jaxprop / plain JAX", statistics.median(rounds), rounds)]
    for name in methods:
        if name not in ("jaxprop", "plain JAX"):
            ratios.append(_bench.Ratio(f"{name} / jaxprop", med[name] / med["jaxprop"],
                                       higher_is_better=True))
    figures = {f"{name} ms": med[name] * 1e3 for name in methods}
    figures.update({"jaxprop compile s": jaxprop_compile, "plain JAX compile s": plain_compile})
    print(f"jaxprop / plain JAX: {ratios[0].value:.2f}")
    _bench.finish(args, "train_digits", ratios, figures, "jaxprop / plain JAX")


if __name__ == "__main__":
    main()
