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

In forward mode the same gate pushes tangents instead, and ``local`` states its JVP rule,
e.g. ``z_dot = x_dot*y + x*y_dot`` for mul or ``z_dot = x_dot where x > 0`` for relu.
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
      local: the local gradient as the lecture states it, e.g. ``"dz/dx = y = -4"``; in
        forward mode the JVP rule, e.g. ``"z_dot = x_dot*y + x*y_dot"``.
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
             names: tuple[str, ...], out: str = "z", mode: str = "reverse") -> Description:
    """Labels one gate application.

    Args:
      gate_name: the gate's name (``"mul"``).
      gate_pattern: the pattern the gate declares, used for gates not listed here.
      consts: per input, the Python number it was (a constant) or ``None``.
      inputs: per input, its value as a NumPy array (or the constant).
      outputs: the output value (a tuple for copy).
      names: per input, its name on the circuit (``"x"``, ``"s1"``).
      out: the output's name, for the local gradients ``d out / d x``.
      mode: ``"reverse"`` states the local gradient (VJP), ``"forward"`` the JVP rule.

    Returns:
      The :class:`Description`.
    """
    values = [np.asarray(x) for x in inputs]
    symbol = _SYMBOLS.get(gate_name, gate_name)
    if gate_name in ("add", "mul", "maximum") and any(c is not None for c in consts):
        const = next(c for c in consts if c is not None)
        symbol = f"{symbol}{fmt.number(const)}" if gate_name != "maximum" else f"max(.,{const})"
    if all(c is not None for c in consts):
        return Description(gate_pattern, "all inputs are constants: no gradient",
                           "none: every input is a constant", symbol)
    describe_fn = (_DESCRIBE if mode == "reverse" else _DESCRIBE_JVP).get(gate_name)
    if describe_fn is None:
        rule = "VJP" if mode == "reverse" else "JVP"
        return Description(gate_pattern, "", f"the gate's own {rule} rule", symbol)
    if mode == "forward":
        pattern = _DESCRIBE[gate_name](consts, values, outputs, names, out)[0]
        detail, local = describe_fn(consts, values, outputs, names, out)
        return Description(pattern, detail, local, symbol)
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


_SCALED_LOCAL = {
    "exp": ("e^x", lambda x, z: z),
    "log": ("1/x", lambda x, z: 1 / x),
    "reciprocal": ("-1/x^2", lambda x, z: -z * z),
    "sigmoid": ("(1-s)s", lambda x, s: (1 - s) * s),
}
"""The local gradient of each one-input gate, as the lecture writes it and from (x, z)."""

_DESCRIBE = {
    "add": _add,
    "mul": _mul,
    "copy": _copy,
    "maximum": _maximum,
    "relu": _relu,
    **{name: _scaled(*local) for name, local in _SCALED_LOCAL.items()},
    "matmul": _matmul,
    "sum": _sum,
    "softmax_loss": _loss("(p - onehot(y)) / N"),
    "svm_loss": _loss("([margin > 0] - count * onehot(y)) / N"),
}


def implicit_copy(name: str, n_branches: int, mode: str = "reverse") -> Description:
    """The branch point where one value feeds several gates without an explicit copy gate."""
    if mode == "forward":
        return Description(ADDER, f"{name} feeds {n_branches} gates; each gets its tangent",
                           f"every branch carries {name}_dot", "branch")
    return Description(
        ADDER, f"{name} feeds {n_branches} gates; their gradients add",
        f"1 per branch: d{name} = sum of {n_branches} branch gradients", "branch")


# Forward mode: each returns (detail, JVP rule as a formula with the values).


def _add_jvp(consts, xs, z, names, out):
    arrays = [n for n, c in zip(names, consts, strict=False) if c is None]
    return ("adds the input tangents",
            f"{out}_dot = " + " + ".join(f"{n}_dot" for n in arrays))


def _mul_jvp(consts, xs, z, names, out):
    if any(c is not None for c in consts):
        i = next(i for i, c in enumerate(consts) if c is None)
        a = fmt.number(next(c for c in consts if c is not None))
        return (f"the constant {a} x the tangent", f"{out}_dot = {a} * {names[i]}_dot")
    (nx, ny), (x, y) = names, xs
    if nx == ny:
        return ("x * x: both factors carry the tangent",
                f"{out}_dot = 2 {nx} * {nx}_dot; {nx} = {fmt.value(x)}")
    return ("each tangent x the other input",
            f"{out}_dot = {nx}_dot*{ny} + {nx}*{ny}_dot; {ny} = {fmt.value(y)}; "
            f"{nx} = {fmt.value(x)}")


def _copy_jvp(consts, xs, z, names, out):
    return "each copy carries the tangent", f"a_dot = b_dot = {names[0]}_dot"


def _maximum_jvp(consts, xs, z, names, out):
    x, y = (np.broadcast_to(v, np.shape(z)) for v in xs)
    wins = x >= y
    nx, ny = names
    return (f"takes {nx}_dot where {nx} wins, {ny}_dot elsewhere",
            f"{out}_dot = {nx}_dot where {nx} >= {ny}, else {ny}_dot; "
            f"[{nx} >= {ny}] = {fmt.value(wins)}")


def _relu_jvp(consts, xs, z, names, out):
    (x,), (n,) = xs, names
    passes = x > 0
    if passes.ndim == 0:
        detail = "passes the tangent" if passes else "blocks the tangent"
    else:
        detail = f"passes the tangent at {int(passes.sum())} of {passes.size} (where {n} > 0)"
    return (detail,
            f"{out}_dot = {n}_dot where {n} > 0; [{n} > 0] = {fmt.value(passes)}")


def _scaled_jvp(formula, compute):
    def describe_fn(consts, xs, z, names, out):
        local = compute(xs[0], np.asarray(z))
        return ("the tangent x local",
                f"{out}_dot = {formula} * {names[0]}_dot; {formula} = {fmt.value(local)}")

    return describe_fn


def _matmul_jvp(consts, xs, z, names, out):
    nx, nw = names
    return ("product rule for matrices",
            f"{out}_dot = {nx}_dot {nw} + {nx} {nw}_dot  {fmt.shape(np.shape(z))}")


def _sum_jvp(consts, xs, z, names, out):
    return "sums the tangent's elements", f"{out}_dot = sum_i {names[0]}_dot_i"


def _loss_jvp(formula):
    def describe_fn(consts, xs, z, names, out):
        return "fused loss: saved local x the tangent", formula

    return describe_fn


_DESCRIBE_JVP = {
    "add": _add_jvp,
    "mul": _mul_jvp,
    "copy": _copy_jvp,
    "maximum": _maximum_jvp,
    "relu": _relu_jvp,
    **{name: _scaled_jvp(*local) for name, local in _SCALED_LOCAL.items()},
    "matmul": _matmul_jvp,
    "sum": _sum_jvp,
    "softmax_loss": _loss_jvp("z_dot = sum((p - onehot(y)) * s_dot) / N"),
    "svm_loss": _loss_jvp("z_dot = sum(([margin > 0] - count * onehot(y)) * s_dot) / N"),
}
