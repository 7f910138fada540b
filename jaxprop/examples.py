"""The lecture's worked examples, built from gates, with the numbers the slides show.

Each :class:`Example` holds a function built from ``jaxprop.gates``, its example arguments,
the upstream gradient the slide pulls back (``None``: ones, for a scalar output), and the
numbers the lecture states. ``jaxprop explain NAME`` and ``jaxprop.explain`` run them.

* ``simple``: f(x, y, z) = (x + y) z at (-2, 5, -4); the gradients are (-4, -4, 3).
* ``sigmoid``: the neuron 1 / (1 + e^-(w0 x0 + w1 x1 + w2)) as the slide's circuit of
  mul, add, *-1, exp, +1 and 1/x gates, at w = (2, -3, -3), x = (-1, -2): output 0.73.
* ``sigmoid-gate``: the same neuron with one sigmoid gate, local gradient (1 - s) s = 0.20.
* ``relu-vector``: relu([1, -2, 3, -1]) with upstream [4, -1, 5, 9]: dL/dx = [4, 0, 5, 0].
* ``matmul``: y = x w with x [2, 3], w [3, 4] and upstream dL/dy [2, 4]:
  dL/dx = dL/dy w^T = [[0, 16, -9], [-24, 9, -30]].
* ``two-layer``: softmax loss of the two-layer ReLU net plus L2 on a batch of 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop import gates
from jaxprop.losses import softmax_loss
from jaxprop.models import two_layer_scores
from jaxprop.objective import objective

__all__ = ["Example", "EXAMPLES", "get"]


@dataclasses.dataclass(frozen=True)
class Example:
    """One worked example of the lecture.

    Attributes:
      name: how the CLI calls it (``"simple"``).
      summary: one line for ``--help`` and the picture's title.
      fn: the function, built from gates.
      make_args: ``() -> args``, the example arguments in the default float dtype
        (float32, or float64 when ``jax_enable_x64`` is on).
      upstream: ``() -> dL/d out`` to pull back, or ``None`` for ones.
      forward_summary: the title in forward mode, where no gradient is pulled back
        (``None``: the summary).
      expected: the lecture's numbers: ``"output"`` and ``"grads"`` (one per argument,
        ``None`` for a non-float one), where the lecture states them.
    """

    name: str
    summary: str
    fn: Callable
    make_args: Callable[[], tuple]
    upstream: Callable[[], Any] | None = None
    expected: dict = dataclasses.field(default_factory=dict)
    forward_summary: str | None = None

    def args(self) -> tuple:
        return self.make_args()

    def title(self, mode: str = "reverse") -> str:
        """``name: summary``, with the forward summary in forward mode."""
        summary = self.forward_summary if mode == "forward" and self.forward_summary else \
            self.summary
        return f"{self.name}: {summary}"


def _float(x):
    return jnp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


def simple(x, y, z):
    """(x + y) z: an add gate (q = x + y), then a mul gate (f = q z)."""
    return gates.mul(gates.add(x, y), z)


def sigmoid_circuit(w0, x0, w1, x1, w2):
    """1 / (1 + e^-(w0 x0 + w1 x1 + w2)), gate by gate as the slide draws it."""
    s = gates.add(gates.add(gates.mul(w0, x0), gates.mul(w1, x1)), w2)
    return gates.reciprocal(gates.add(gates.exp(gates.mul(s, -1.0)), 1.0))


def sigmoid_neuron(w0, x0, w1, x1, w2):
    """The same neuron with one sigmoid gate: local gradient (1 - s) s."""
    return gates.sigmoid(gates.add(gates.add(gates.mul(w0, x0), gates.mul(w1, x1)), w2))


def relu_vector(x):
    """relu(x) elementwise; its Jacobian is diagonal and never formed."""
    return gates.relu(x)


def matmul(x, w):
    """y = x w, x [N, D], w [D, M]."""
    return gates.matmul(x, w)


two_layer = objective(two_layer_scores, softmax_loss, reg=0.1)
"""L = softmax_loss(relu(x W1 + b1) W2 + b2, y) + 0.1 R(W1, W2): the whole pipeline."""


def _two_layer_args():
    """A batch of N = 2 inputs of width D = 3, H = 4 hidden units, C = 3 classes."""
    params = {
        "W1": _float([[0.5, -1.2, 0.8, 0.3], [-0.7, 0.4, 1.1, -0.9], [0.2, 0.9, -0.6, 1.4]]),
        "b1": _float([0.1, -0.1, 0.2, 0.0]),
        "W2": _float([[1.0, -0.5, 0.3], [-0.8, 0.6, 1.2], [0.4, 1.1, -0.7], [-0.3, -0.9, 0.5]]),
        "b2": _float([0.0, 0.1, -0.1]),
    }
    x = _float([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]])
    y = jnp.asarray([0, 2], dtype=jnp.int32)
    return params, x, y


_SIGMOID_ARGS = (2.0, -1.0, -3.0, -2.0, -3.0)  # w0, x0, w1, x1, w2 on the slide
_SIGMOID_GRADS = (-0.20, 0.39, -0.39, -0.59, 0.20)  # dw0, dx0, dw1, dx1, dw2 (2 decimals)

EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example(
            "simple", "f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4", simple,
            lambda: tuple(_float(v) for v in (-2.0, 5.0, -4.0)),
            expected={"output": -12.0, "grads": (-4.0, -4.0, 3.0)},
        ),
        Example(
            "sigmoid", "sigmoid neuron, gate by gate: w = (2, -3, -3), x = (-1, -2)",
            sigmoid_circuit, lambda: tuple(_float(v) for v in _SIGMOID_ARGS),
            expected={"output": 0.73, "grads": _SIGMOID_GRADS},
        ),
        Example(
            "sigmoid-gate", "sigmoid neuron with one sigmoid gate: (1 - s) s = 0.20",
            sigmoid_neuron, lambda: tuple(_float(v) for v in _SIGMOID_ARGS),
            expected={"output": 0.73, "grads": _SIGMOID_GRADS},
        ),
        Example(
            "relu-vector", "relu([1, -2, 3, -1]) with upstream [4, -1, 5, 9]", relu_vector,
            lambda: (_float([1.0, -2.0, 3.0, -1.0]),),
            upstream=lambda: _float([4.0, -1.0, 5.0, 9.0]),
            expected={"output": (1.0, 0.0, 3.0, 0.0), "grads": ((4.0, 0.0, 5.0, 0.0),)},
            forward_summary="relu([1, -2, 3, -1]): one tangent per input element pushed forward",
        ),
        Example(
            "matmul", "y = x w, x [2, 3], w [3, 4], upstream dL/dy [2, 4]", matmul,
            lambda: (_float([[2, 1, -3], [-3, 4, 2]]),
                     _float([[3, 2, 1, -1], [2, 1, 3, 2], [3, 2, 1, -2]])),
            upstream=lambda: _float([[2, 3, -3, 9], [-8, 1, 4, 6]]),
            expected={
                "output": ((-1, -1, 2, 6), (5, 2, 11, 7)),
                "grads": (((0, 16, -9), (-24, 9, -30)),
                          ((28, 3, -18, 0), (-30, 7, 13, 33), (-22, -7, 17, -15))),
            },
            forward_summary="y = x w, x [2, 3], w [3, 4]: one tangent per input element "
                            "pushed forward",
        ),
        Example(
            "two-layer", "two-layer ReLU net, softmax loss + 0.1 L2, batch of 2",
            two_layer, _two_layer_args,
        ),
    )
}
"""The built-in examples by name."""


def get(name: str) -> Example:
    """Returns the built-in example ``name``, or raises naming the valid choices."""
    try:
        return EXAMPLES[name]
    except KeyError:
        raise ValueError(
            f"unknown example {name!r}; expected one of {sorted(EXAMPLES)} or "
            "'module:function' with --args"
        ) from None
