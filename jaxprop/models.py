"""The lecture's classifiers as pure functions of a dict of parameters.

Parameters are plain dicts of arrays with the course names (``W``/``b``, or
``W1``/``b1``/``W2``/``b2``), so optax updates them as they are.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprop import gates, reference

__all__ = ["Model", "linear_init", "linear_scores", "two_layer_init", "two_layer_scores",
           "MODELS", "resolve"]


def _check_input(name: str, x, w_name: str, w) -> None:
    x_shape, w_shape = jnp.shape(x), jnp.shape(w)
    if len(x_shape) != 2:
        raise ValueError(f"{name}: x must have rank 2, [N, D]; got shape {x_shape}")
    if x_shape[1] != w_shape[0]:
        raise ValueError(
            f"{name}: input width {x_shape[1]} (x {x_shape}) does not match "
            f"params[{w_name!r}] {w_shape}, which expects D={w_shape[0]}"
        )


def _check_params(name: str, params, required: tuple[str, ...], optional=()) -> None:
    missing = [k for k in required if k not in params]
    unknown = [k for k in params if k not in required and k not in optional]
    if missing or unknown:
        problem = f"lack {missing}" if missing else f"have unknown keys {unknown}"
        raise ValueError(
            f"{name}: params {problem}; expected keys {list(required) + list(optional)}"
        )


def _check_shape(name: str, key: str, array, expected: tuple[int, ...]) -> None:
    if tuple(jnp.shape(array)) != expected:
        raise ValueError(
            f"{name}: params[{key!r}] has shape {tuple(jnp.shape(array))}; expected {expected}"
        )


def _normal(key, shape: tuple[int, ...], dtype):
    """``jax.random.normal(key, shape)``, the same numbers, drawn flat and reshaped: XLA:CPU
    compiles the flat draw several times faster (0.18 s against 0.81 s for [128, 10]), and
    a run compiles its initialisation at start-up."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def linear_init(key, in_dim: int, num_classes: int, weight_scale: float = 1e-3,
                dtype=jnp.float32, bias: bool = True) -> dict:
    """Parameters of the linear classifier, as CS231n initialises them.

    Args:
      key: a ``jax.random`` key.
      in_dim: D, the input width (with the bias trick, the data's trailing 1 included).
      num_classes: C.
      weight_scale: standard deviation of the Gaussian weights.
      dtype: floating dtype of the parameters.
      bias: whether to keep a separate bias ``b``. With the bias trick the data carries a
        constant-1 column and the last row of ``W`` is the bias, so pass ``bias=False``, as
        CS231n's ``LinearClassifier`` does.

    Returns:
      ``{"W": [D, C], "b": [C]}`` with ``b`` zero, or ``{"W": [D, C]}`` without a bias.
    """
    w = weight_scale * _normal(key, (in_dim, num_classes), dtype)
    return {"W": w, "b": jnp.zeros((num_classes,), dtype)} if bias else {"W": w}


def linear_scores(params: dict, x):
    """Linear classifier: s = x W + b, scores [N, C] for inputs x [N, D].

    A matmul gate, then an add gate whose bias gradient sums over the batch. Without a ``b``
    in ``params`` (the bias trick: the bias is the last row of W), just s = x W.
    """
    _check_params("linear_scores", params, ("W",), optional=("b",))
    _check_input("linear_scores", x, "W", params["W"])
    if "b" in params:
        _check_shape("linear_scores", "b", params["b"], (jnp.shape(params["W"])[1],))
    scores = gates.matmul(x, params["W"])
    return gates.add(scores, params["b"]) if "b" in params else scores


def two_layer_init(key, in_dim: int, hidden_dim: int, num_classes: int,
                   weight_scale: float | None = None, dtype=jnp.float32) -> dict:
    """Parameters of the two-layer ReLU net.

    Args:
      key: a ``jax.random`` key.
      in_dim: D.
      hidden_dim: H.
      num_classes: C.
      weight_scale: standard deviation of both weight matrices, as in CS231n's
        ``TwoLayerNet(std=...)``. ``None`` uses He initialisation, sqrt(2 / fan_in).
      dtype: floating dtype of the parameters.

    Returns:
      ``{"W1": [D, H], "b1": [H], "W2": [H, C], "b2": [C]}``, with zero biases.
    """
    k1, k2 = jax.random.split(key)
    s1 = weight_scale if weight_scale is not None else (2.0 / in_dim) ** 0.5
    s2 = weight_scale if weight_scale is not None else (2.0 / hidden_dim) ** 0.5
    return {
        "W1": s1 * _normal(k1, (in_dim, hidden_dim), dtype),
        "b1": jnp.zeros((hidden_dim,), dtype),
        "W2": s2 * _normal(k2, (hidden_dim, num_classes), dtype),
        "b2": jnp.zeros((num_classes,), dtype),
    }


def two_layer_scores(params: dict, x):
    """Two-layer net: s = relu(x W1 + b1) W2 + b2, scores [N, C] for x [N, D]."""
    _check_params("two_layer_scores", params, ("W1", "b1", "W2", "b2"))
    _check_input("two_layer_scores", x, "W1", params["W1"])
    (_, hidden), (_, classes) = jnp.shape(params["W1"]), jnp.shape(params["W2"])
    _check_shape("two_layer_scores", "W2", params["W2"], (hidden, classes))
    _check_shape("two_layer_scores", "b1", params["b1"], (hidden,))
    _check_shape("two_layer_scores", "b2", params["b2"], (classes,))
    h = gates.relu(gates.add(gates.matmul(x, params["W1"]), params["b1"]))
    return gates.add(gates.matmul(h, params["W2"]), params["b2"])


@dataclasses.dataclass(frozen=True)
class Model:
    """A classifier: its parameters' initialiser, its scores built from gates, and its twin.

    Attributes:
      name: the name configs use (``model.kind``).
      init: ``(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype) -> params``,
        the config's view of the initialiser; ``weight_scale=None`` takes the model's
        default, ``bias=False`` leaves out a separate bias where the data has the bias trick.
      scores: ``(params, x [N, D]) -> scores [N, C]``, built from gates or written in plain
        JAX (the tracer runs it through the gates either way).
      reference: the same scores in plain jnp (``jaxprop.reference``); None: ``scores``
        itself, for a model written in plain JAX.
      activations: ``(hidden_dim, num_classes) -> floats per example`` that one step holds
        (for the memory estimate made before compiling).
      summary: one line for listings.

    A user's own model is a ``Model`` in their own module, named in a config as
    ``model.kind = "module:attr"``.
    """

    name: str
    init: Callable
    scores: Callable
    reference: Callable | None = None
    activations: Callable[[int, int], int] = lambda h, c: 4 * h + 3 * c
    summary: str = ""

    def __post_init__(self):
        if self.reference is None:
            object.__setattr__(self, "reference", self.scores)


def _linear(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype):
    scale = 1e-3 if weight_scale is None else weight_scale
    return linear_init(key, in_dim, num_classes, weight_scale=scale, dtype=dtype, bias=bias)


def _two_layer(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype):
    return two_layer_init(key, in_dim, hidden_dim, num_classes, weight_scale=weight_scale,
                          dtype=dtype)


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("linear", _linear, linear_scores, reference.linear_scores,
          lambda h, c: 3 * c,  # scores, their gradient, the loss's local gradient
          "linear classifier s = x W + b (W only with the bias trick)"),
    Model("two_layer", _two_layer, two_layer_scores, reference.two_layer_scores,
          lambda h, c: 4 * h + 3 * c,
          "two-layer ReLU net s = relu(x W1 + b1) W2 + b2"),
)}
"""The classifiers by the name configs use (``model.kind``)."""


def resolve(kind: str) -> Model:
    """The model a config names: a registered name, or ``"module:attr"`` of a user's Model."""
    from jaxprop._lazy import resolve

    return resolve(MODELS, kind, Model, "model.kind", "model")
