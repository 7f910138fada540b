"""The training step and the compiled epoch: one ``lax.scan`` over the epoch's mini-batches.

The gradient pipelines (``PIPELINES``) differentiate ``jaxprop.objective(scores, loss,
reg)``: ``reverse`` through our VJP rules, ``forward`` through our JVP rules (one JVP per
parameter). ``jax`` is the control: ``jax.value_and_grad`` of the plain-jnp twin of the
same model and loss (``jaxprop.reference``), JAX's own autodiff with none of our rules
involved. The learning rate and the regularisation strength enter the step as traced
scalars (``hparams``), so one compiled epoch serves every value of them and a sweep can
``vmap`` over both.

Data order: epoch ``e`` visits the training set in the order
``jax.random.permutation(fold_in(data_key, e), N)``, cut into ``N // B`` full batches of B
examples; in one process the compiled epoch draws that order and gathers each batch from
the resident training set, and in a multi-process run each process gathers its part of
every batch on the host and the epoch scans over what it is given. The ``N mod B`` examples
left over (a different few each epoch) wait for a later epoch. Because the order depends
only on ``(seed, epoch)``, a resumed run sees exactly the batches an uninterrupted one does.

Dropout, the same way: step ``s`` of epoch ``e`` draws its masks from the key
``fold_in(fold_in(dropout_key, e), s)``, ``dropout_key`` made from the seed (``keys``). The
run's random state is thus the seed its checkpoint records and the epoch it stopped at, and
a resumed run drops exactly the units an uninterrupted one does, bit for bit.

Every function here takes what it needs (a model, a loss, an optimizer), not a config.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprop import forward, reference, reverse
from jaxprop.losses import objective
from jaxprop.train import sharding

__all__ = [
    "Pipeline",
    "PIPELINES",
    "TRAIN_ACC_EXAMPLES",
    "FORWARD_WARN_PARAMS",
    "keys",
    "dropout_key",
    "step_key",
    "objective_fn",
    "value_and_grad_fn",
    "steps_per_epoch",
    "CPU_GEMM",
    "compiler_options",
    "batch_order",
    "epoch_orders",
    "make_epoch_fn",
    "make_diagnose_fn",
    "accuracy_fn",
]

CPU_GEMM: dict[str, dict | None] = {
    "default": None,
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "onednn": {"xla_cpu_use_onednn": True},
}
"""XLA:CPU's matrix-multiply backends, as the compiler options of one compiled program
(``train.cpu_gemm``; nothing global is changed). ``default`` is what this jaxlib's XLA:CPU
picks (jaxlib 0.10: YNNPACK library fusions for dots); ``eigen`` turns the library fusions
off, so dots run on XLA's own Eigen kernels; ``onednn`` sets ``xla_cpu_use_onednn``, which
uses oneDNN where jaxlib was built with it (on x86). Ignored on GPU and TPU."""


def compiler_options(cpu_gemm: str) -> dict | None:
    """The compiler options of ``CPU_GEMM[cpu_gemm]`` on this backend (None off CPU)."""
    if cpu_gemm not in CPU_GEMM:
        raise ValueError(f"train.cpu_gemm must be one of {', '.join(CPU_GEMM)}; got "
                         f"{cpu_gemm!r}")
    return CPU_GEMM[cpu_gemm] if jax.default_backend() == "cpu" else None


TRAIN_ACC_EXAMPLES = 10_000
"""Training accuracy is measured on the first this-many training examples each epoch."""

FORWARD_WARN_PARAMS = 2_000
"""Above this many parameters the forward pipeline warns: it costs one JVP per parameter."""


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Where a training step's gradients come from.

    Attributes:
      name: the name configs use (``train.pipeline``).
      build: ``(f, chunk_size) -> value_and_grad(f)`` for ``f(params, x, y, reg)``.
      reference: the step differentiates the plain-jnp twins, not the gated functions.
      rules: the rule set that runs, ``"vjp"``, ``"jvp"``, or None (JAX's own).
      summary: one line for listings.
    """

    name: str
    build: Callable[[Callable, int], Callable]
    reference: bool
    rules: str | None
    summary: str


PIPELINES: dict[str, Pipeline] = {p.name: p for p in (
    Pipeline("reverse", lambda f, chunk: reverse.value_and_grad(f), False, "vjp",
             "our VJP rules, one backward pass"),
    Pipeline("forward", lambda f, chunk: forward.value_and_grad(f, chunk_size=chunk),
             False, "jvp", "our JVP rules, one JVP per parameter (slow by design)"),
    Pipeline("jax", lambda f, chunk: jax.value_and_grad(f), True, None,
             "JAX's own autodiff of the plain-jnp twin (jaxprop.reference): the control"),
)}
"""The gradient pipelines by name."""


@jax.jit
def _split_seed(seed):
    return tuple(jax.random.split(jax.random.key(seed)))


def keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(init_key, data_key)`` from the seed; epoch e shuffles with ``fold_in(data_key, e)``.

    One small compiled program (cached on disk with the rest) instead of the op-by-op
    dispatch of ``jax.random``, which compiles each operation at a run's start.
    """
    init_key, data_key = _split_seed(np.uint32(seed))
    return init_key, data_key


@jax.jit
def _dropout_key(init_key):
    return jax.random.key_data(jax.random.fold_in(init_key, 1))


def dropout_key(init_key) -> np.ndarray:
    """The run's dropout key, a raw uint32 key from the seed's ``init_key`` (the initial
    weights draw from splits of it, this from ``fold_in(init_key, 1)``)."""
    return np.asarray(_dropout_key(init_key))


def step_key(noise, step):
    """The dropout key of one step: ``noise = (dropout_key, epoch)``, a raw uint32 key."""
    key, epoch = noise
    return jax.random.fold_in(jax.random.fold_in(key, epoch), step)


def objective_fn(model, loss, *, twin: bool = False, dropout_keep: float = 1.0) -> Callable:
    """``f(params, x, y, reg, key=None) = data loss + reg * sum W^2`` for a model and a loss.

    Built with ``jaxprop.objective`` from the gated functions, or with
    ``jaxprop.reference.objective`` from their plain-jnp twins when ``twin``. Given a ``key``
    (a training step's), a model with dropout keeps each unit with probability
    ``dropout_keep``, its masks drawn from the key.
    """
    if twin:
        scores, data_loss, build = model.reference, loss.reference, reference.objective
    else:
        scores, data_loss, build = model.scores, loss.fn, objective

    def f(params, x, y, reg, key=None):
        if key is None or not model.dropout:
            return build(scores, data_loss, reg)(params, x, y)
        return build(lambda p, xb: scores(p, xb, key=key, dropout_keep=dropout_keep),
                     data_loss, reg)(params, x, y)

    return f


def value_and_grad_fn(pipeline: str, model, loss, *, chunk_size: int = 64,
                      num_params: int | None = None, dropout_keep: float = 1.0) -> Callable:
    """``(params, x, y, reg, key=None) -> (loss, grads)`` from the named gradient pipeline."""
    entry = PIPELINES[pipeline]
    if entry.rules == "jvp" and num_params is not None and num_params > FORWARD_WARN_PARAMS:
        warnings.warn(
            f"train.pipeline={pipeline!r} costs one JVP per parameter: {num_params} JVPs per "
            "step for this model, each as costly as a forward pass. Expect minutes where "
            "'reverse' takes a second; use it to compare the pipelines on small nets.",
            stacklevel=2)
    return entry.build(objective_fn(model, loss, twin=entry.reference,
                                    dropout_keep=dropout_keep), chunk_size)


def steps_per_epoch(batch_size: int, num_train: int) -> int:
    """``N // B`` full batches; raises if the training set is smaller than one batch."""
    if batch_size > num_train:
        raise ValueError(
            f"config key 'train.batch_size' ({batch_size}) exceeds the {num_train} training "
            f"examples; use a batch size of at most {num_train}")
    return num_train // batch_size


def _accuracy(scores_fn, params, x, y):
    pred = jnp.argmax(scores_fn(params, x), axis=1)
    return jnp.mean((pred == y).astype(jnp.float32))


def batch_order(key, n: int, steps: int, batch_size: int):
    """The epoch's batches: [steps, B] indices of a permutation drawn from ``key``."""
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def epoch_orders(data_key, epochs, n: int, steps: int, batch_size: int):
    """The ``batch_order`` of each epoch in ``epochs`` ([E] ints): [E, steps, B] indices,
    epoch ``e`` drawn from ``fold_in(data_key, e)``.

    One small compiled program for a whole run; every process of a multi-process run
    computes the same orders and gathers its own part of each batch.
    """
    return jax.vmap(lambda e: batch_order(jax.random.fold_in(data_key, e), n, steps,
                                          batch_size))(epochs)


def _step_fn(value_and_grad, opt, hparams, batch_spec, noise):
    """One optimizer step on a batch: ``(params, opt_state, xb, yb, s) -> (new, loss, grads)``,
    ``s`` the step's index in the epoch (its dropout key is ``step_key(noise, s)``)."""

    def step(params, opt_state, xb, yb, s):
        xb = jax.lax.with_sharding_constraint(xb, batch_spec)
        yb = jax.lax.with_sharding_constraint(yb, batch_spec)
        loss, grads = value_and_grad(params, xb, yb, hparams["reg"], step_key(noise, s))
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss, grads

    return step


def _scan_batches(body, carry, batches, draw: tuple[int, int] | None):
    """``lax.scan`` of ``body(carry, (xb, yb, s))`` over the epoch's batches, s = 0, 1, ...

    ``batches`` is ``(data_key, epoch, x_train, y_train)`` when ``draw = (steps, B)``: the
    order is drawn here and each step gathers its batch from the resident training set (no
    copy of the set). Otherwise it is ``(xb, yb)``, the batches already gathered.
    """
    if draw is None:
        xb, yb = batches
        return jax.lax.scan(body, carry, (xb, yb, jnp.arange(xb.shape[0])))
    data_key, epoch, x, y = batches
    order = batch_order(jax.random.fold_in(data_key, epoch), x.shape[0], *draw)
    return jax.lax.scan(lambda c, step: body(c, (x[step[0]], y[step[0]], step[1])), carry,
                        (order, jnp.arange(order.shape[0])))


def make_epoch_fn(value_and_grad: Callable, scores_fn: Callable,
                  optimizer: Callable[..., optax.GradientTransformation], mesh,
                  split_batch: bool = True, draw: tuple[int, int] | None = None) -> Callable:
    """One epoch as a function to jit: a lax.scan of optimizer steps over its batches.

    Args:
      value_and_grad: ``(params, x, y, reg) -> (loss, grads)``.
      scores_fn: ``(params, x) -> scores``, for the accuracies.
      optimizer: ``lr -> optax.GradientTransformation`` (``optimizers.make_optimizer``).
      mesh: the device mesh; each batch is sharded along its ``"data"`` axis.
      split_batch: False keeps every batch whole on every device (a sweep whose models are
        spread over the devices instead, ``sharding.splits_grid``).
      draw: ``(steps, B)``: the epoch draws its own batches from the training set (one
        process); None: it is given them (each process of a multi-process run gathers its
        part on the host).

    Returns:
      ``epoch(params, opt_state, hparams, noise, batches, x_acc, y_acc, x_val, y_val) ->
      (params, opt_state, stats)``. ``noise`` is ``(dropout_key, epoch)``, whence each
      step's dropout key (``step_key``). ``batches`` is ``(data_key, epoch, x_train, y_train)``
      with ``draw``, else ``(xb, yb)``: [steps, B, ...] and [steps, B], the epoch's batches
      in order (batch axis sharded over ``"data"``). ``x_acc``/``y_acc`` are the training
      examples the training accuracy is measured on, ``hparams = {"lr": [], "reg": []}``
      float32 scalars, and ``stats`` = ``train_loss`` (mean over the steps), ``train_acc``,
      ``val_acc`` and ``finite`` (every step's loss and every final parameter finite).
    """
    batch_spec = sharding.batch_sharding(mesh) if split_batch else sharding.replicated(mesh)

    def epoch(params, opt_state, hparams, noise, batches, x_acc, y_acc, x_val, y_val):
        step = _step_fn(value_and_grad, optimizer(hparams["lr"]), hparams, batch_spec, noise)

        def body(carry, batch):
            new, loss, _ = step(*carry, *batch)
            return new, loss

        (params, opt_state), losses = _scan_batches(body, (params, opt_state), batches, draw)
        finite = jnp.all(jnp.isfinite(losses))
        for leaf in jax.tree.leaves(params):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        stats = {
            "train_loss": jnp.mean(losses),
            "train_acc": _accuracy(scores_fn, params, x_acc, y_acc),
            "val_acc": _accuracy(scores_fn, params, x_val, y_val),
            "finite": finite,
        }
        return params, opt_state, stats

    return epoch


def make_diagnose_fn(value_and_grad: Callable,
                     optimizer: Callable[..., optax.GradientTransformation], mesh,
                     draw: tuple[int, int] | None = None) -> Callable:
    """The epoch of ``make_epoch_fn`` replayed, saying where values first stopped being finite.

    The same batches, the same steps, so the same numbers; run only after an epoch diverged.

    Returns:
      ``diagnose(params, opt_state, hparams, noise, batches) -> flags`` (``noise`` and
      ``batches`` as for the epoch), each [steps] bools, True where finite: ``flags["loss"]``,
      ``flags["grads"][name]`` and ``flags["params"][name]`` (after the step's update), by
      parameter name.
    """
    batch_spec = sharding.batch_sharding(mesh)

    def diagnose(params, opt_state, hparams, noise, batches):
        step = _step_fn(value_and_grad, optimizer(hparams["lr"]), hparams, batch_spec, noise)

        def body(carry, batch):
            (new, opt_state), loss, grads = step(*carry, *batch)
            ok = lambda tree: {k: jnp.all(jnp.isfinite(v)) for k, v in tree.items()}  # noqa: E731
            return (new, opt_state), {"loss": jnp.isfinite(loss), "grads": ok(grads),
                                      "params": ok(new)}

        _, flags = _scan_batches(body, (params, opt_state), batches, draw)
        return flags

    return diagnose


@functools.cache
def accuracy_fn(scores_fn: Callable) -> Callable:
    """Jitted ``accuracy(params, x, y)``: the fraction of argmax scores equal to the labels."""
    return jax.jit(lambda params, x, y: _accuracy(scores_fn, params, x, y))


@functools.cache
def accuracies_fn(scores_fn: Callable) -> Callable:
    """Jitted ``accuracies(params, *(x, y) pairs)``: one accuracy per pair, one program (a
    run's test and val sets differ in size: two programs would compile twice at the end)."""
    return jax.jit(lambda params, *pairs: [
        _accuracy(scores_fn, params, pairs[k], pairs[k + 1]) for k in range(0, len(pairs), 2)])
