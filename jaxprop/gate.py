"""The gate: one operation with its forward computation and two hand-written local rules.

A gate is written once, as the lecture draws it:

* ``forward(*xs) -> (z, res)`` computes the output ``z`` and the residuals ``res``: what the
  backward pass must remember from the forward pass.
* ``vjp``: one rule per input, ``(res, z_bar) -> x_bar``. This is the lecture's
  "downstream = upstream x local": ``z_bar`` is the upstream gradient, the rule multiplies it
  by the local gradient without ever forming the local Jacobian.
* ``jvp``: one rule per input, ``(res, x_dot) -> z_dot part``. Forward mode pushes tangents
  left to right; the gate's output tangent is the sum of the parts. Every rule is linear in
  its tangent, so JAX can transpose it.

A rule of ``None`` marks an input with no derivative (integer labels, say). A gate with
static parameters (the axes of a sum, the shape of a reshape) names them in ``params``; they
are passed as keywords to ``forward`` and to every rule, and they are part of the wiring's
cache key; a ``prepare`` hook turns a call in the operation's own words (``sum(x, axis=1)``)
into them. The gate also carries the facts that ``jaxprop.explain`` and the test battery
read: its ``pattern`` in the lecture's words, its circuit ``symbol``, and the lecture's text
of each local gradient (``local``, ``tangent``). Each rule is stated once, as code: the
docstring's Backward and Forward lines and the README's table are that code
(:func:`rule_text`), and residuals have names (``res.y``), never indices.

A gate is called like the operation it stands for; ``jaxprop.wiring`` wires its rules
into JAX (``custom_jvp`` or ``custom_vjp``, by the rule set tracing) and checks what they
return, and ``jaxprop.events`` lets tools watch them run.
"""

from __future__ import annotations

import dataclasses
import dis
import functools
import inspect
import linecache
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

DISTRIBUTOR = "distributor"
SWITCHER = "switcher"
ROUTER = "router"
ADDER = "adder"
SCALED = "scaled local gradient"
STRUCTURE = "structure"

PATTERNS = (DISTRIBUTOR, SWITCHER, ROUTER, ADDER, SCALED, STRUCTURE)
"""The lecture's names for how a gate passes the gradient back:

* distributor (add, sum): the local gradient is 1, upstream is copied to every input;
* switcher (mul, matmul): "swap multiplier", each input's gradient uses the *other* input;
* router (max, relu): the upstream gradient goes to one input, or passes where x > 0;
* adder (copy, every branch): the gradients of the branches add;
* scaled local gradient (exp, 1/x, sigmoid, the fused losses): upstream times one number per
  element that depends on the values;
* structure (reshape, transpose): the gradient is moved back into place, no value changes.
"""



class NoGateError(TypeError):
    """A differentiable JAX operation that no gate stands for, met while tracing into gates
    (``jaxprop.tracer`` raises it, naming the user's line; a gate's primitive adapter raises
    it for parameters its gate does not take)."""


class GateContractError(TypeError):
    """A gate that breaks the contract of :class:`Gate`: the message names the gate, the
    rule (VJP or JVP, and for which input) and what was expected."""


@dataclasses.dataclass(frozen=True, eq=False)
class Gate:
    """A gate with hand-written local rules. See the module docstring for the contract.

    Args:
      name: the gate's name, as the lecture says it (``"mul"``).
      pattern: the lecture's name for the backward pattern, one of :data:`PATTERNS`.
      forward: ``(*xs, **params) -> (z, res)``.
      vjp: one rule ``(res, z_bar, **params) -> x_bar`` per input, or ``None``.
      jvp: one rule ``(res, x_dot, **params) -> z_dot`` per input, or ``None``.
      symbol: its label on the circuit (``"*"``); the name by default.
      local: per input, the local gradient d z / d x_i as the lecture writes it, in the
        names of ``forward``'s parameters and ``output`` (``("y", "x")`` for mul,
        ``("(1-s)s",)`` for sigmoid). ``None`` (or leaving it out): explain shows values.
      tangent: the JVP rule as the lecture writes it (``"x_dot*y + x*y_dot"``).
      output: the output's name in ``local`` and ``tangent`` (``"s"`` for sigmoid).
      const_pattern: the pattern when some input is a Python-number constant (a mul by a
        constant is a *scaled local gradient*, not a switcher); None: ``pattern``.
      params: names of the static keyword parameters of ``forward`` and the rules.
      broadcast: elementwise gate; array inputs are broadcast to a common shape, the way
        NumPy does, and each VJP sums its gradient back over the broadcast axes (a broadcast
        copies its input, and copies add their gradients).
      elementwise: z[i] depends on x[i] only, so the local Jacobian is diagonal (implied by
        ``broadcast``).
      check: optional ``(*xs, **params) -> None`` that raises on bad shapes or dtypes.
      primitives: the JAX primitives this gate stands for, when ``jaxprop.gated`` traces
        plain JAX code: primitive name -> ``(*inputs, **primitive_params) -> output`` that
        applies the gate (None: the gate applied to the inputs as they are, its ``params``
        taken from the primitive's of the same names).
      prepare: ``(*args, **kwargs) -> (xs, params)``, the one hook for static parameters:
        it turns a call in the operation's own words (``sum(x, axis=1)``) into the gate's
        inputs and static params (``(x,), {"axes": (1,), "shape": (2, 3)}``). A call that
        already gives ``arity`` inputs and exactly ``params`` as keywords skips it (the
        tracer and ``jaxprop.check`` call a gate that way).
      label: ``(input_names, **params) -> name`` for its output in explain (``w[0]`` for a
        slice of w); None: the output gets a step name (``s3``).
      doc: the gate's rules in the lecture's words; becomes its ``__doc__``.
    """

    name: str
    pattern: str
    forward: Callable[..., tuple[Any, Any]]
    vjp: Sequence[Callable[..., Any] | None]
    jvp: Sequence[Callable[..., Any] | None]
    symbol: str = ""
    local: Sequence[str | None] = ()
    tangent: str = ""
    output: str = "z"
    const_pattern: str | None = None
    params: tuple[str, ...] = ()
    broadcast: bool = False
    elementwise: bool = False
    check: Callable[..., None] | None = None
    primitives: dict = dataclasses.field(default_factory=dict)
    prepare: Callable[..., tuple[tuple, dict]] | None = None
    label: Callable[..., str] | None = None
    doc: str = ""

    def __post_init__(self):
        _check_definition(self)
        object.__setattr__(self, "__doc__", self.doc.rstrip() + "\n\n" + self.rule_lines())
        object.__setattr__(self, "vjp", tuple(self.vjp))
        object.__setattr__(self, "jvp", tuple(self.jvp))
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "symbol", self.symbol or self.name)
        object.__setattr__(self, "elementwise", self.elementwise or self.broadcast)
        local = tuple(self.local) + (None,) * (len(self.vjp) - len(self.local))
        object.__setattr__(self, "local", local)

    @property
    def arity(self) -> int:
        return len(self.vjp)

    @functools.cached_property
    def input_names(self) -> tuple[str, ...]:
        """The names of ``forward``'s positional parameters (``("x", "y")``)."""
        try:
            names = [p.name for p in inspect.signature(self.forward).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            names = []
        names = names[: self.arity]
        return tuple(names) + tuple(f"x{i}" for i in range(len(names), self.arity))

    def rule_lines(self) -> str:
        """The rules as written in the code, one line per input: the docstring ends with
        these lines and the README's table shows them (see :func:`rule_text`)."""
        out = self.output
        back = [f"{n}_bar = {rule_text(r)}" for n, r in zip(self.input_names, self.vjp) if r]
        fwd = [f"{out}_dot += {rule_text(r)}" for r in self.jvp if r is not None]
        return "Backward: " + "; ".join(back) + "\nForward: " + "; ".join(fwd) + "\n"

    def __call__(self, *xs, **params):
        from jaxprop.wiring import apply

        if self.prepare is not None and not (
                len(xs) == self.arity and params and set(params) == set(self.params)):
            xs, params = self.prepare(*xs, **params)
        return apply(self, tuple(xs), params)

    def __repr__(self) -> str:
        return f"Gate({self.name!r}, pattern={self.pattern!r})"


def describe(value) -> str:
    """A value as an error message names it: ``a function``, ``a tuple of 1``, ``float32[3]``."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    if callable(value):
        return "a function"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def _signature_error(fn, n_positional: int, params) -> str | None:
    """Why ``fn`` cannot be called with ``n_positional`` arguments and the keywords
    ``params``, or None (also when its signature cannot be read)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*([None] * n_positional), **{p: None for p in params})
    except TypeError as e:
        return str(e)
    return None


def _check_definition(gate: Gate) -> None:
    """The checks a gate passes when it is defined (see :class:`GateContractError`)."""
    if not isinstance(gate.name, str) or not gate.name:
        raise GateContractError(f"a Gate needs a name, a non-empty string; got "
                                f"{describe(gate.name)}")
    name = gate.name
    if gate.pattern not in PATTERNS:
        raise GateContractError(f"gate {name!r}: pattern {gate.pattern!r} is not one of the "
                                f"lecture's patterns: {', '.join(map(repr, PATTERNS))}")
    if not callable(gate.forward):
        raise GateContractError(f"gate {name!r}: forward must be a function "
                                f"(*xs, **params) -> (z, res); got {describe(gate.forward)}")
    if isinstance(gate.params, str) or not all(isinstance(p, str) for p in gate.params):
        raise GateContractError(f"gate {name!r}: params must be a tuple of parameter names "
                                f"(strings); got {gate.params!r}")
    shapes = {"vjp": "rule(res, z_bar, **params) -> x_bar",
              "jvp": "rule(res, x_dot, **params) -> z_dot part"}
    for which, rules in (("vjp", gate.vjp), ("jvp", gate.jvp)):
        if callable(rules) or not isinstance(rules, (tuple, list)):
            raise GateContractError(
                f"gate {name!r}: {which}= must be a tuple with one rule per input, each "
                f"{shapes[which]} (None for an input with no derivative); got "
                f"{describe(rules)}. For a one-input gate write {which}=(rule,)")
        for i, rule in enumerate(rules):
            if rule is not None and not callable(rule):
                raise GateContractError(f"gate {name!r}: the {which.upper()} rule for input "
                                        f"{i} must be a function or None; got {describe(rule)}")
    if not gate.vjp:
        raise GateContractError(f"gate {name!r}: a gate needs at least one input: give one "
                                "VJP and one JVP rule per input")
    if len(gate.vjp) != len(gate.jvp):
        raise GateContractError(
            f"gate {name!r}: {len(gate.vjp)} VJP rules but {len(gate.jvp)} JVP rules; give "
            "one of each per input (None for an input with no derivative)")
    for i, (v, j) in enumerate(zip(gate.vjp, gate.jvp)):
        if (v is None) != (j is None):
            has, lacks = ("JVP", "VJP") if v is None else ("VJP", "JVP")
            raise GateContractError(
                f"gate {name!r}: input {i} has a {has} rule but no {lacks} rule; give both, "
                "or None for both (an input with no derivative)")
    why = _signature_error(gate.forward, len(gate.vjp), gate.params)
    if why is not None:
        raise GateContractError(
            f"gate {name!r}: forward cannot take the gate's {len(gate.vjp)} inputs"
            f"{' and its params ' + str(gate.params) if gate.params else ''}: {why}")
    for which, rules in (("vjp", gate.vjp), ("jvp", gate.jvp)):
        for i, rule in enumerate(rules):
            why = None if rule is None else _signature_error(rule, 2, gate.params)
            if why is not None:
                raise GateContractError(
                    f"gate {name!r}: the {which.upper()} rule for input {i} cannot be called "
                    f"as {shapes[which]}: {why}")
    if isinstance(gate.local, str) or len(gate.local) > len(gate.vjp) or not all(
            t is None or isinstance(t, str) for t in gate.local):
        raise GateContractError(
            f"gate {name!r}: local= must hold at most one text (or None) per input, "
            f"{len(gate.vjp)} here; got {gate.local!r}")


def rule_text(rule: Callable) -> str:
    """A rule as its code is written: a lambda's body (``z_bar * res.y``), or for a named
    function its call (``_scatter_back(idx, z_bar)``). The docstrings' rule lines and the
    README's table are written from it, so a wrong rule reads wrong."""
    code = getattr(rule, "__code__", None)
    if code is None or code.co_name != "<lambda>":
        args = ", ".join(code.co_varnames[:2]) if code is not None else "..."
        return f"{getattr(rule, '__name__', 'rule')}({args})"
    spans = [i.positions for i in dis.get_instructions(code)
             if i.positions is not None and None not in i.positions
             and (i.positions.lineno, i.positions.col_offset)
             != (i.positions.end_lineno, i.positions.end_col_offset)]
    (l0, c0), (l1, c1) = (min((p.lineno, p.col_offset) for p in spans),
                          max((p.end_lineno, p.end_col_offset) for p in spans))
    lines = [linecache.getline(code.co_filename, n) for n in range(l0, l1 + 1)]
    text = "".join(lines)[c0:len("".join(lines)) - len(lines[-1]) + c1]
    return " ".join(text.split()).replace("( ", "(")


def inputs(*xs, **params) -> tuple[tuple, dict]:
    """What a ``prepare`` hook returns: the gate's inputs ``xs`` and its static ``params``."""
    return xs, params


def is_constant(x) -> bool:
    """Python numbers (not bools) are constants: the "constant side" of add and mul gets no
    gradient and is baked into the traced program."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def broadcast_shape(name: str, xs, const_mask) -> tuple[int, ...]:
    shapes = [np.shape(x) for x, c in zip(xs, const_mask) if not c]
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(
            f"{name}: input shapes {tuple(shapes)} do not broadcast together"
        ) from None


def run_forward(gate: Gate, xs: tuple, const_mask: tuple[bool, ...], params: dict):
    """``gate.forward`` on ``xs``; a broadcasting gate first stretches its arrays to one shape
    (its constants stay Python numbers)."""
    if gate.broadcast:
        shape = broadcast_shape(gate.name, xs, const_mask)
        xs = tuple(x if c else jnp.broadcast_to(x, shape) for x, c in zip(xs, const_mask))
    return gate.forward(*xs, **params)


def merge_inputs(const_mask: tuple[bool, ...], consts, arrays) -> tuple:
    """The inputs in their order, from the constants and the arrays given apart."""
    it_c, it_a = iter(consts), iter(arrays)
    return tuple(next(it_c) if c else next(it_a) for c in const_mask)


def unbroadcast(x_bar, shape: tuple[int, ...]):
    """Sums a gradient back to ``shape`` over the axes that broadcasting added or stretched.

    A broadcast input was copied along those axes, and at a copy the gradients add.
    """
    shape = tuple(shape)
    if x_bar.shape == shape:
        return x_bar
    lead = x_bar.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and x_bar.shape[lead + i] != 1
    )
    return jnp.sum(x_bar, axis=axes).reshape(shape)
