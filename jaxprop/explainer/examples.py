"""The lecture's worked examples, with the numbers the slides show: one entry each.

Each :class:`Example` names a function built from gates (in ``jaxprop.explainer.lecture``),
its example arguments, the upstream gradient the slide pulls back (``None``: ones, for a
scalar output), and the numbers the lecture states. ``jaxprop explain NAME`` and
``jaxprop.explain`` run them. This table holds plain Python values and loads no JAX, so
``jaxprop explain --help`` can list it at once.

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
import importlib
from typing import Any

__all__ = ["Example", "EXAMPLES", "get"]


def _arrays(value):
    """Python values as arrays: floats in the default float dtype (float32, or float64 with
    ``jax_enable_x64``), a list marked ``("int", [...])`` as int32, dicts leaf by leaf."""
    import jax
    import jax.numpy as jnp

    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, tuple) and value and value[0] == "int":
        return jnp.asarray(value[1], dtype=jnp.int32)
    return jnp.asarray(value, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


@dataclasses.dataclass(frozen=True)
class Example:
    """One worked example of the lecture.

    Attributes:
      name: how the CLI calls it (``"simple"``).
      summary: one line for ``--help`` and the picture's title.
      function: the function's name in ``jaxprop.explainer.lecture``.
      arguments: the example arguments as Python values (see ``args``).
      upstream_value: dL/d out to pull back, or ``None`` for ones.
      expected: the lecture's numbers: ``"output"`` and ``"grads"`` (one per argument),
        where the lecture states them.
      forward_summary: the title in forward mode, where no gradient is pulled back
        (``None``: the summary).
    """

    name: str
    summary: str
    function: str
    arguments: tuple
    upstream_value: Any = None
    expected: dict = dataclasses.field(default_factory=dict)
    forward_summary: str | None = None

    @property
    def fn(self):
        """The function, built from gates."""
        return getattr(importlib.import_module("jaxprop.explainer.lecture"), self.function)

    def args(self) -> tuple:
        """The example arguments as arrays (float32, or float64 under jax_enable_x64)."""
        return tuple(_arrays(a) for a in self.arguments)

    @property
    def upstream(self):
        """``() -> dL/d out`` as an array, or None for ones."""
        if self.upstream_value is None:
            return None
        return lambda: _arrays(self.upstream_value)

    def title(self, mode: str = "reverse") -> str:
        """``name: summary``, with the forward summary in forward mode."""
        summary = self.forward_summary if mode == "forward" and self.forward_summary else \
            self.summary
        return f"{self.name}: {summary}"


_SIGMOID_ARGS = (2.0, -1.0, -3.0, -2.0, -3.0)  # w0, x0, w1, x1, w2 on the slide
_SIGMOID_GRADS = (-0.20, 0.39, -0.39, -0.59, 0.20)  # dw0, dx0, dw1, dx1, dw2 (2 decimals)

_TWO_LAYER_ARGS = (  # a batch of N = 2 inputs of width D = 3, H = 4 hidden units, C = 3
    {"W1": [[0.5, -1.2, 0.8, 0.3], [-0.7, 0.4, 1.1, -0.9], [0.2, 0.9, -0.6, 1.4]],
     "b1": [0.1, -0.1, 0.2, 0.0],
     "W2": [[1.0, -0.5, 0.3], [-0.8, 0.6, 1.2], [0.4, 1.1, -0.7], [-0.3, -0.9, 0.5]],
     "b2": [0.0, 0.1, -0.1]},
    [[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]],
    ("int", [0, 2]),
)

EXAMPLES: dict[str, Example] = {e.name: e for e in (
    Example("simple", "f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4", "simple",
            (-2.0, 5.0, -4.0), expected={"output": -12.0, "grads": (-4.0, -4.0, 3.0)}),
    Example("sigmoid", "sigmoid neuron, gate by gate: w = (2, -3, -3), x = (-1, -2)",
            "sigmoid_circuit", _SIGMOID_ARGS,
            expected={"output": 0.73, "grads": _SIGMOID_GRADS}),
    Example("sigmoid-gate", "sigmoid neuron with one sigmoid gate: (1 - s) s = 0.20",
            "sigmoid_neuron", _SIGMOID_ARGS,
            expected={"output": 0.73, "grads": _SIGMOID_GRADS}),
    Example("relu-vector", "relu([1, -2, 3, -1]) with upstream [4, -1, 5, 9]", "relu_vector",
            ([1.0, -2.0, 3.0, -1.0],), upstream_value=[4.0, -1.0, 5.0, 9.0],
            expected={"output": (1.0, 0.0, 3.0, 0.0), "grads": ((4.0, 0.0, 5.0, 0.0),)},
            forward_summary="relu([1, -2, 3, -1]): one tangent per input element pushed "
                            "forward"),
    Example("matmul", "y = x w, x [2, 3], w [3, 4], upstream dL/dy [2, 4]", "matmul",
            ([[2, 1, -3], [-3, 4, 2]], [[3, 2, 1, -1], [2, 1, 3, 2], [3, 2, 1, -2]]),
            upstream_value=[[2, 3, -3, 9], [-8, 1, 4, 6]],
            expected={
                "output": ((-1, -1, 2, 6), (5, 2, 11, 7)),
                "grads": (((0, 16, -9), (-24, 9, -30)),
                          ((28, 3, -18, 0), (-30, 7, 13, 33), (-22, -7, 17, -15))),
            },
            forward_summary="y = x w, x [2, 3], w [3, 4]: one tangent per input element "
                            "pushed forward"),
    Example("two-layer", "two-layer ReLU net, softmax loss + 0.1 L2, batch of 2",
            "two_layer", _TWO_LAYER_ARGS),
)}
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
