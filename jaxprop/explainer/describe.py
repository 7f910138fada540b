"""Each gate application in the lecture's words, from the gate's own facts and its rule's values.

Everything here reads the gate, never its name: the pattern (``gate.pattern``, or
``gate.const_pattern`` when an input is a Python-number constant: a mul by a constant is a
*scaled local gradient*, not a switcher), the circuit symbol, and the text of each rule
(``gate.local``, ``gate.tangent``). The numbers come from the rule that ran: ``local`` holds,
per input, what the gate's VJP rule (reverse mode) or JVP rule (forward mode) computes from
this application's residuals, the diagonal of the local Jacobian for an elementwise gate
(the rule applied to ones) or the whole local Jacobian of a small non-elementwise one (the
rule applied to unit vectors). A gate that gives no text is described by those values alone.

The lecture's patterns decide how the values are worded:

* **distributor**: the local gradient is 1, upstream is copied to every input;
* **switcher**: each input's gradient is upstream times the *other* input;
* **router**: upstream goes to one input, or passes where a condition holds;
* **adder**: the gradients of the branches add;
* **scaled local gradient**: upstream times one number per element;
* **structure**: the gradient is moved back into place.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from jaxprop.explainer import fmt
from jaxprop.gate import (
    ADDER,
    DISTRIBUTOR,
    PATTERNS,
    ROUTER,
    STRUCTURE,
    SWITCHER,
)

__all__ = ["PATTERNS", "Description", "describe", "implicit_copy"]


@dataclasses.dataclass(frozen=True)
class Description:
    """What the table and the picture say about one gate application.

    Attributes:
      pattern: one of :data:`jaxprop.gate.PATTERNS`.
      detail: what the values add, e.g. ``"passes 2 of 4 (where x > 0)"``.
      local: the local gradient as the lecture states it with the rule's values, e.g.
        ``"dz/dx = y = -4"``; in forward mode the JVP rule, ``"z_dot = x_dot*y + x*y_dot"``.
      symbol: the short label of the node on the circuit, e.g. ``"*"`` or ``"*-1"``.
    """

    pattern: str
    detail: str
    local: str
    symbol: str


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_FIELD = re.compile(r"\{(\w+)(\^T)?\}")


def _symbol(gate, consts) -> str:
    given = [c for c in consts if c is not None]
    if len(given) != 1 or len(consts) != 2:
        return gate.symbol
    c = fmt.number(given[0])
    if gate.symbol in ("+", "-", "*", "/"):
        return f"{gate.symbol}{c}"
    return f"{gate.symbol}(.,{c})" if consts[1] is not None else f"{gate.symbol}({c},.)"


def _bare(text: str, gate, names, consts) -> str:
    """A formula that is just one of the gate's inputs, as that input's wire name (for a
    constant, its value: a letter such as the slide's ``a`` could be the name of one of the
    user's arguments); any other formula as it is."""
    if text in gate.input_names:
        i = gate.input_names.index(text)
        if consts[i] is not None:
            return fmt.number(consts[i])
        return names[i]
    return text


def _tokens(text: str, gate, names, consts, out: str) -> str:
    """The gate's own names in ``text`` replaced by the wire names (``x_dot`` by ``s1_dot``)."""
    mapping = {gate.output: out, f"{gate.output}_dot": f"{out}_dot"}
    for n, wire, c in zip(gate.input_names, names, consts, strict=False):
        mapping[n] = fmt.number(c) if c is not None else wire
        mapping[f"{n}_dot"] = f"{wire}_dot"
    return re.sub(r"\b\w+\b", lambda m: mapping.get(m.group(0), m.group(0)), text)


def _fields(text: str, gate, shapes) -> str:
    """``{x}`` as the shape of the gate's input (or output) named x; ``{w^T}`` reversed."""

    def shape(m):
        s = shapes.get(m.group(1))
        if s is None:
            return m.group(0)
        return fmt.shape(s[::-1] if m.group(2) else s)

    return _FIELD.sub(shape, text)


def _mask_detail(gate, local, names, consts, mode: str) -> str:
    arrays = [i for i, c in enumerate(consts) if c is None and local[i] is not None]
    if not arrays:
        return ""
    masks = [np.asarray(local[i]) != 0 for i in arrays]
    if len(arrays) == 1:
        i, mask = arrays[0], masks[0]
        where = gate.local[i] or ""
        where = _tokens(where.strip("[]"), gate, names, consts, "z") if where else ""
        cond = f" (where {where})" if where else ""
        if mask.ndim == 0:
            verb = "passes" if mask else "blocks"
            return f"{verb} upstream" if mode == "reverse" else f"{verb} the tangent"
        k, n = int(mask.sum()), mask.size
        if mode == "reverse":
            return f"passes {k} of {n}{cond}, 0 elsewhere"
        return f"passes the tangent at {k} of {n}{cond}"
    (i, j), (a, b) = arrays[:2], masks[:2]
    if mode == "forward":
        return f"takes {names[i]}_dot where {names[i]} wins, {names[j]}_dot elsewhere"
    if a.ndim == 0:
        return f"routes all of upstream to {names[i] if a else names[j] if b else 'neither'}"
    return f"routes to {names[i]} at {int(a.sum())} of {a.size}, to {names[j]} elsewhere"


def _detail(gate, pattern, consts, inputs, outputs, local, names, mode) -> str:
    arrays = [n for n, c in zip(names, consts, strict=False) if c is None]
    elementwise = gate.elementwise
    reverse = mode == "reverse"
    if pattern == DISTRIBUTOR:
        if not elementwise:
            return "copies upstream to every element" if reverse else \
                "sums the tangent's elements"
        if not reverse:
            return "adds the input tangents"
        detail = "copies upstream to " + (
            "both inputs" if len(arrays) == 2 else
            f"{arrays[0]}, none to the constant" if len(arrays) == 1 else "every input")
        out_shape = np.shape(outputs)
        summed = [n for n, x, c in zip(names, inputs, consts, strict=False)
                  if c is None and np.shape(x) != out_shape]
        if summed:
            detail += f"; {', '.join(summed)} was broadcast, its gradient sums the copies"
        return detail
    if pattern == SWITCHER:
        if not elementwise:
            return "matrix swap multiplier: each uses the other" if reverse else \
                "product rule for matrices"
        if len(arrays) == 2 and arrays[0] == arrays[1]:
            return "swap multiplier on x * x: the two branches add" if reverse else \
                "x * x: both factors carry the tangent"
        return "swap multiplier: upstream x the other input" if reverse else \
            "each tangent x the other input"
    if pattern == ROUTER:
        if not elementwise:  # a slice, a gather: an index, not a comparison, picks
            return ("sends each picked element's gradient back where it was read" if reverse
                    else "picks the tangents of the picked elements")
        return _mask_detail(gate, local, names, consts, mode)
    if pattern == ADDER:
        return "the branch gradients add" if reverse else "each copy carries the tangent"
    if pattern == STRUCTURE:
        return "moves the gradient back into place" if reverse else \
            "moves the tangent into place"
    # scaled local gradient
    given = [c for c in consts if c is not None]
    if given and elementwise:
        a = fmt.number(given[0])
        return f"upstream x the constant {a}" if reverse else f"the constant {a} x the tangent"
    if not elementwise:
        return "fused: upstream x the saved local gradient" if reverse else \
            "fused: the saved local gradient x the tangent"
    values = [np.asarray(v) for v in local if v is not None]
    spread = " (elementwise)" if values and values[0].ndim else ""
    return f"upstream x local{spread}" if reverse else f"the tangent x local{spread}"


def _value(v) -> str:
    return fmt.value(v)


def _reverse_local(gate, consts, local, names, out, shapes) -> str:
    parts = []
    jacobians = []
    for i, (name, c) in enumerate(zip(names, consts, strict=False)):
        if c is not None or gate.vjp[i] is None:
            continue
        text = gate.local[i]
        if not gate.elementwise:
            formula = _fields(text, gate, shapes) if text else None
            if formula is None:
                parts.append(f"d{out}/d{name}: J = "
                             f"{_value(local[i]) if local[i] is not None else '(not formed)'}")
            elif _FIELD.search(text):  # a dimension analysis: dx = dy w^T  [N, D] = ...
                parts.append(f"d{name} = {formula}")
            else:
                parts.append(f"d{out}/d{name} = {formula}")
            if formula and local[i] is not None:
                jacobians.append(f"{name} {_value(local[i])}")
            continue
        if text is None:
            parts.append(f"d{out}/d{name} = {_value(local[i])}")
            continue
        formula = _bare(text, gate, names, consts)
        if _NUMBER.match(formula):
            parts.append(f"d{out}/d{name} = {formula}")
        elif formula in names and names.count(name) > 1 and formula == name:
            parts.append(f"d{out}/d{name} = {formula} = {_value(local[i])} (twice)")
            break
        else:
            parts.append(f"d{out}/d{name} = {formula} = {_value(local[i])}")
    # the add gate's "ds1/dx = ds1/dy = 1": equal local gradients, said once
    if len(parts) > 1 and all(p.endswith(" = 1") and p.count(" = ") == 1 for p in parts):
        parts = [" = ".join(p.split(" = ")[0] for p in parts) + " = 1"]
    text = "; ".join(parts)
    if jacobians:
        text += "; local Jacobian by the rule: " + ", ".join(jacobians)
    return text


def _forward_local(gate, consts, local, names, out, shapes) -> str:
    active = [i for i, c in enumerate(consts) if c is None and gate.jvp[i] is not None]
    suffix = []
    if gate.tangent and all(c is None for c in consts):
        rule = _tokens(_fields(gate.tangent, gate, shapes), gate, names, consts, out)
    else:
        terms = []
        for i in active:
            text = gate.local[i]
            formula = "local" if text is None else _bare(text, gate, names, consts)
            terms.append(f"{names[i]}_dot" if formula == "1" else f"{formula} * {names[i]}_dot")
        rule = " + ".join(terms) or "0"
    if gate.elementwise:
        for i in active:
            text = gate.local[i]
            formula = "local" if text is None else _bare(text, gate, names, consts)
            if not _NUMBER.match(formula) and local[i] is not None:
                suffix.append(f"{formula} = {_value(local[i])}")
    return "; ".join([f"{out}_dot = {rule}", *suffix])


def describe(gate, consts: tuple, inputs: tuple, outputs, local: tuple,
             names: tuple[str, ...], out: str = "z", mode: str = "reverse") -> Description:
    """Labels one gate application.

    Args:
      gate: the :class:`jaxprop.gate.Gate`.
      consts: per input, the Python number it was (a constant) or ``None``.
      inputs: per input, its value as a NumPy array (or the constant).
      outputs: the output value (a tuple for copy).
      local: per input, the local gradient the rule computed: the Jacobian's diagonal for an
        elementwise gate, the Jacobian [out size, in size] for a small other one, or None.
      names: per input, its name on the circuit (``"x"``, ``"s1"``).
      out: the output's name.
      mode: ``"reverse"`` states the local gradient (VJP), ``"forward"`` the JVP rule.
    """
    symbol = _symbol(gate, consts)
    if all(c is not None for c in consts):
        return Description(gate.pattern, "all inputs are constants: no gradient",
                           "none: every input is a constant", symbol)
    pattern = gate.const_pattern if gate.const_pattern and any(
        c is not None for c in consts) else gate.pattern
    shapes = {n: np.shape(x) for n, x in zip(gate.input_names, inputs, strict=False)}
    shapes[gate.output] = np.shape(outputs) if not isinstance(outputs, tuple) else None
    detail = _detail(gate, pattern, consts, inputs, outputs, local, names, mode)
    text = (_reverse_local if mode == "reverse" else _forward_local)(
        gate, consts, local, names, out, shapes)
    return Description(pattern, detail, text, symbol)


def implicit_copy(name: str, n_branches: int, mode: str = "reverse") -> Description:
    """The branch point where one value feeds several gates without an explicit copy gate."""
    if mode == "forward":
        return Description(ADDER, f"{name} feeds {n_branches} gates; each gets its tangent",
                           f"every branch carries {name}_dot", "branch")
    return Description(
        ADDER, f"{name} feeds {n_branches} gates; their gradients add",
        f"1 per branch: d{name} = sum of {n_branches} branch gradients", "branch")

