"""The functions the comparison differentiates, each built from gates beside its plain-jnp twin.

A twin computes the same numbers with ``jnp`` and ``jax.nn`` only (the two-layer net's are
``jaxprop.reference``'s), so ``jax.jacrev`` and ``jax.jacfwd`` of the twin use JAX's own
rules: the baseline our rules are measured against.

* :func:`chain_case`: x [n] through ``depth`` layers of matmul + sigmoid (or relu) to [m].
  Sweeping n against m crosses from tall Jacobians (n << m, forward's home) to wide ones
  (n >> m, reverse's home).
* :func:`deep_case`: a few inputs [n] through ``depth`` layers of width w to one scalar. The
  memory of reverse mode grows with depth (it stores every activation for the backward
  pass); forward mode's does not.
* :func:`two_layer_scores_case`: the two-layer net's scores w.r.t. one image x [1, D].
* :func:`two_layer_loss_case`: the two-layer net's softmax loss w.r.t. its parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import gates, losses, models, reference
from jaxprop.losses import objective

__all__ = [
    "Problem",
    "ACTIVATIONS",
    "chain_case",
    "deep_case",
    "two_layer_scores_case",
    "two_layer_loss_case",
    "param_count",
]

ACTIVATIONS = {"sigmoid": (gates.sigmoid, jax.nn.sigmoid), "relu": (gates.relu, jax.nn.relu)}
"""The nonlinearities a chain layer may use: (gate, plain-JAX twin) by name."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One function to differentiate, with its twin and its arguments.

    Attributes:
      name: what the tables call it.
      fn: the function built from gates.
      twin: the same function in plain jnp.
      args: the arguments, ``fn(*args)``.
      argnums: the argument(s) differentiated.
      n: input width, the number of entries differentiated (the Jacobian's columns).
      m: output width (the Jacobian's rows).
      info: extra sizes for the tables (depth, hidden width, ...).
    """

    name: str
    fn: Callable
    twin: Callable
    args: tuple
    argnums: int
    n: int
    m: int
    info: dict = dataclasses.field(default_factory=dict)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of "
                         f"{tuple(ACTIVATIONS)}")


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype, scale: float = 1.0):
    """Gaussian data drawn by NumPy: building a case compiles nothing."""
    return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _weights(rng: np.random.Generator, widths: list[int], dtype) -> list:
    return [_normal(rng, (a, b), dtype, 1.0 / np.sqrt(a))
            for a, b in zip(widths[:-1], widths[1:], strict=True)]


def _chain(act: Callable, matmul: Callable, x, weights):
    h = x
    for w in weights:
        h = act(matmul(h, w))
    return h


def chain_case(seed: int | np.random.Generator, n: int, m: int, hidden: int, depth: int,
               activation: str = "sigmoid", dtype=jnp.float32) -> Problem:
    """x [n] -> ``depth`` layers of (matmul, activation) -> y [m]; hidden width ``hidden``.

    The layer widths are n, hidden, ..., hidden, m; weights are Gaussian with variance
    1/fan_in, drawn from ``seed`` (an int or a NumPy generator). The Jacobian dy/dx is
    [m, n].
    """
    _check_activation(activation)
    if depth < 1:
        raise ValueError(f"chain depth must be at least 1, got {depth}")
    rng = _rng(seed)
    widths = [n] + [hidden] * (depth - 1) + [m]
    x = _normal(rng, (n,), dtype)
    weights = _weights(rng, widths, dtype)
    gate_act, jnp_act = ACTIVATIONS[activation]

    def fn(x, weights):
        return _chain(gate_act, gates.matmul, x, weights)

    def twin(x, weights):
        return _chain(jnp_act, jnp.matmul, x, weights)

    info = {"depth": depth, "hidden": hidden, "activation": activation}
    return Problem(f"chain n={n} m={m}", fn, twin, (x, weights), 0, n, m, info)


def deep_case(seed: int | np.random.Generator, n: int, width: int, depth: int,
              activation: str = "relu", dtype=jnp.float32) -> Problem:
    """x [n] -> ``depth`` layers of width ``width`` -> the scalar sum of the last layer.

    The gradient of one scalar with respect to a few inputs: reverse mode stores the
    ``depth`` activations [width] for its one backward pass; forward mode pushes n
    tangents [width] through and keeps none of them.
    """
    _check_activation(activation)
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    rng = _rng(seed)
    x = _normal(rng, (n,), dtype)
    weights = _weights(rng, [n] + [width] * depth, dtype)
    gate_act, jnp_act = ACTIVATIONS[activation]

    def fn(x, weights):
        return gates.sum(_chain(gate_act, gates.matmul, x, weights))

    def twin(x, weights):
        return jnp.sum(_chain(jnp_act, jnp.matmul, x, weights))

    info = {"depth": depth, "hidden": width, "activation": activation}
    return Problem(f"deep depth={depth}", fn, twin, (x, weights), 0, n, 1, info)


def _two_layer_params(rng: np.random.Generator, d: int, h: int, c: int, dtype) -> dict:
    """``models.two_layer_init``'s layout and He scales, with small non-zero biases (so that
    no ReLU sits exactly on its kink), drawn by NumPy."""
    return {
        "W1": _normal(rng, (d, h), dtype, np.sqrt(2.0 / d)),
        "b1": _normal(rng, (h,), dtype, 0.1),
        "W2": _normal(rng, (h, c), dtype, np.sqrt(2.0 / h)),
        "b2": _normal(rng, (c,), dtype, 0.1),
    }


def param_count(params) -> int:
    """The number of scalars in a pytree of arrays."""
    return sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(params))


def two_layer_scores_case(seed: int | np.random.Generator, d: int = 3072, h: int = 100, c: int = 10,
                          dtype=jnp.float32) -> Problem:
    """The two-layer net's scores [1, C] w.r.t. one input x [1, D]: a wide Jacobian."""
    rng = _rng(seed)
    params = _two_layer_params(rng, d, h, c, dtype)
    x = _normal(rng, (1, d), dtype)

    def fn(x, params):
        return models.two_layer_scores(params, x)

    def twin(x, params):
        return reference.two_layer_scores(params, x)

    info = {"hidden": h}
    return Problem(f"two-layer scores {d}->{c}", fn, twin, (x, params), 0, d, c, info)


def two_layer_loss_case(seed: int | np.random.Generator, d: int, h: int, c: int = 10,
                        batch: int = 16, reg: float = 1e-3, dtype=jnp.float32) -> Problem:
    """The two-layer net's softmax loss (plus L2) w.r.t. its parameters: one row, P columns."""
    rng = _rng(seed)
    params = _two_layer_params(rng, d, h, c, dtype)
    x = _normal(rng, (batch, d), dtype)
    y = jnp.asarray(rng.integers(0, c, (batch,)), jnp.int32)
    fn = objective(models.two_layer_scores, losses.softmax_loss, reg)
    info = {"hidden": h, "params": param_count(params)}
    twin = reference.objective(reference.two_layer_scores, reference.softmax_loss, reg)
    return Problem(f"two-layer loss H={h}", fn, twin, (params, x, y), 0, param_count(params),
                   1, info)
