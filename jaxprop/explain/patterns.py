"""Each gate's backward behaviour in the lecture's words, worked out from its rule and values.

The lecture names five patterns:

* **distributor** (add, sum): the local gradient is 1, the upstream gradient is copied
  unchanged to every input.
* **switcher** (mul of two values, matmul): "swap multiplier", each input's gradient is the
  upstream gradient times the *other* input (for matmul ``dx = dy W^T``, ``dW = x^T dy``).
* **router** (max, relu): the upstream gradient goes to one input (max) or passes where
  ``x > 0`` and is zero elsewhere (relu).
* **adder** (copy, and every implicit branch): the gradients of the branches add.
* **scaled local gradient** (exp, log, 1/x, sigmoid, a mul by a constant, the fused losses):
  the upstream gradient times one number per element that depends on the values.

The label follows the rule, and the values refine it: a ``mul`` by a Python constant
(``mul(x, -1.0)``, the slide's ``*-1`` gate) is a *scaled local gradient*, not a switcher,
because only one input gets a gradient and the factor is fixed. A relu whose inputs are all
positive is still a *router*: the detail says that it passed everything this time.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxprop.explain import fmt

DISTRIBUTOR = "distributor"
SWITCHER = "switcher"
ROUTER = "router"
ADDER = "adder"
SCALED = "scaled local gradient"

PATTERNS = (DISTRIBUTOR, SWITCHER, ROUTER, ADDER, SCALED)
"""The lecture's five names for how a gate passes the gradient back."""


@dataclasses.dataclass(frozen=True)
class Description:
    """What the table and the picture say about one gate application.

    Attributes:
      pattern: one of :data:`PATTERNS`, or the gate's own ``pattern`` for a gate this
        module does not know.
      detail: what the values add, e.g. ``"passes 2 of 4 (where x > 0)"``.
      local: the local gradient as the lecture states it, e.g. ``"dz/dx = y = -4"``.
      symbol: the short label of the node on the circuit, e.g. ``"*"`` or ``"*-1"``.
    """

    pattern: str
    detail: str
    local: str
    symbol: str


_SYMBOLS = {
    "add": "+",
    "mul": "*",
    "copy": "copy",
    "maximum": "max",
    "exp": "exp",
    "log": "log",
    "reciprocal": "1/x",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "matmul": "matmul",
    "sum": "sum",
    "softmax_loss": "softmax loss",
    "svm_loss": "svm loss",
}


def describe(gate_name: str, gate_pattern: str, consts: tuple, inputs: tuple, outputs,
             names: tuple[str, ...], out: str = "z") -> Description:
    """Labels one gate application.

    Args:
      gate_name: the gate's name (``"mul"``).
      gate_pattern: the pattern the gate declares, used for gates not listed here.
      consts: per input, the Python number it was (a constant) or ``None``.
      inputs: per input, its value as a NumPy array (or the constant).
      outputs: the output value (a tuple for copy).
      names: per input, its name on the circuit (``"x"``, ``"s1"``).
      out: the output's name, for the local gradients ``d out / d x``.

    Returns:
      The :class:`Description`.
    """
    values = [np.asarray(x) for x in inputs]
    symbol = _SYMBOLS.get(gate_name, gate_name)
    if gate_name in ("add", "mul", "maximum") and any(c is not None for c in consts):
        const = next(c for c in consts if c is not None)
        symbol = f"{symbol}{fmt.number(const)}" if gate_name != "maximum" else f"max(.,{const})"
    describe_fn = _DESCRIBE.get(gate_name)
    if describe_fn is None:
        return Description(gate_pattern, "", "the gate's own VJP rule", symbol)
    pattern, detail, local = describe_fn(consts, values, outputs, names, out)
    return Description(pattern, detail, local, symbol)


def _add(consts, xs, z, names, out):
    arrays = [(n, x) for n, x, c in zip(names, xs, consts, strict=False) if c is None]
    detail = "copies upstream to " + (
        "both inputs" if len(arrays) == 2 else f"{arrays[0][0]}, none to the constant")
    out_shape = np.shape(z)
    summed = [n for n, x in arrays if np.shape(x) != out_shape]
    if summed:
        detail += f"; {', '.join(summed)} was broadcast, its gradient sums the copies"
    local = " = ".join(f"d{out}/d{n}" for n, _ in arrays) + " = 1"
    return DISTRIBUTOR, detail, local


def _mul(consts, xs, z, names, out):
    if any(c is not None for c in consts):
        i = next(i for i, c in enumerate(consts) if c is None)
        a = next(c for c in consts if c is not None)
        return (SCALED, f"upstream x the constant {fmt.number(a)}",
                f"d{out}/d{names[i]} = a = {fmt.number(a)}")
    (nx, ny), (x, y) = names, xs
    if nx == ny:
        return (SWITCHER, "swap multiplier on x * x: the two branches add",
                f"d{out}/d{nx} = {nx} = {fmt.value(x)} (twice)")
    return (SWITCHER, "swap multiplier: upstream x the other input",
            f"d{out}/d{nx} = {ny} = {fmt.value(y)}; d{out}/d{ny} = {nx} = {fmt.value(x)}")


def _copy(consts, xs, z, names, out):
    return ADDER, "the branch gradients add", "1 per branch: dx = da + db"


def _maximum(consts, xs, z, names, out):
    x, y = (np.broadcast_to(v, np.shape(z)) for v in xs)
    wins = x >= y
    nx, ny = names
    if wins.ndim == 0:
        detail = f"routes all of upstream to {nx if wins else ny}"
    else:
        detail = f"routes to {nx} at {int(wins.sum())} of {wins.size}, to {ny} elsewhere"
    return ROUTER, detail, f"d{out}/d{nx} = [{nx} >= {ny}] = {fmt.value(wins)}"


def _relu(consts, xs, z, names, out):
    (x,), (n,) = xs, names
    passes = x > 0
    if passes.ndim == 0:
        detail = "passes upstream" if passes else "blocks upstream"
    else:
        detail = f"passes {int(passes.sum())} of {passes.size} (where {n} > 0), 0 elsewhere"
    return ROUTER, detail, f"[{n} > 0] = {fmt.value(passes)}"


def _scaled(formula, compute):
    def describe_fn(consts, xs, z, names, out):
        local = compute(xs[0], np.asarray(z))
        spread = "" if np.ndim(local) == 0 else " (elementwise)"
        return (SCALED, f"upstream x local{spread}",
                f"d{out}/d{names[0]} = {formula} = {fmt.value(local)}")

    return describe_fn


def _matmul(consts, xs, z, names, out):
    (nx, nw), (x, w) = names, xs
    n_d, d_m = fmt.shape(np.shape(x)), fmt.shape(np.shape(w))
    n_m = fmt.shape(np.shape(z))
    return (SWITCHER, "matrix swap multiplier: each uses the other",
            f"d{nx} = dy {nw}^T  {n_d} = {n_m}{fmt.shape(np.shape(w)[::-1])}; "
            f"d{nw} = {nx}^T dy  {d_m}")


def _sum(consts, xs, z, names, out):
    return (DISTRIBUTOR, "copies upstream to every element",
            f"d{out}/d{names[0]}_i = 1")


def _loss(formula):
    def describe_fn(consts, xs, z, names, out):
        return SCALED, "fused loss: upstream x saved local", formula

    return describe_fn


_DESCRIBE = {
    "add": _add,
    "mul": _mul,
    "copy": _copy,
    "maximum": _maximum,
    "relu": _relu,
    "exp": _scaled("e^x", lambda x, z: z),
    "log": _scaled("1/x", lambda x, z: 1 / x),
    "reciprocal": _scaled("-1/x^2", lambda x, z: -z * z),
    "sigmoid": _scaled("(1-s)s", lambda x, s: (1 - s) * s),
    "matmul": _matmul,
    "sum": _sum,
    "softmax_loss": _loss("(p - onehot(y)) / N"),
    "svm_loss": _loss("([margin > 0] - count * onehot(y)) / N"),
}


def implicit_copy(name: str, n_branches: int) -> Description:
    """The branch point where one value feeds several gates without an explicit copy gate."""
    return Description(
        ADDER, f"{name} feeds {n_branches} gates; their gradients add",
        f"1 per branch: d{name} = sum of {n_branches} branch gradients", "branch")
