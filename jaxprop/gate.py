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
cache key. The gate also carries the facts that ``jaxprop.explain``, the README's table and
the test battery read: its ``pattern`` in the lecture's words, its circuit ``symbol``, and
the text of each rule (``local``, ``tangent``).

How the rules are wired into JAX depends on the *rule set* that is tracing:

* ``"jvp"`` (the default): the gate is a ``jax.custom_jvp`` running our JVP rules. This works
  under ``jax.jvp``, ``jax.grad`` (JAX transposes our linear JVP rules), ``jax.vmap`` and
  ``jax.hessian``. ``jaxprop.forward`` uses it.
* ``"vjp"``: the gate is a ``jax.custom_vjp`` running our VJP rules. ``jaxprop.reverse``
  traces under it. (``custom_vjp`` refuses ``jax.jvp``, which is why it is not the default.)

The choice is a ``jax.make_user_context``: it is part of ``jax.jit``'s cache key, so a
function jitted under one rule set is retraced, never silently reused, under the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import itertools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

RULE_SETS = ("jvp", "vjp")
"""The two ways a gate is wired: our JVP rules (the default) or our VJP rules."""

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



class GateContractError(TypeError):
    """A gate that breaks the contract of :class:`Gate`: the message names the gate, the
    rule (VJP or JVP, and for which input) and what was expected."""


_rule_set = jax.make_user_context("jvp")
_capturing = jax.make_user_context(False)
_observing = jax.make_user_context(())  # in jit's cache key: observed code is retraced
_observe_blocks = itertools.count()
_observers: list[Callable[..., None]] = []

CAPTURE_TAG = "jaxprop.gate#"
"""How the name of an explicit gate call recorded by ``capture`` begins (see captured)."""
_CAPTURED: dict[str, tuple] = {}


def current_pipeline() -> str:
    """Returns the rule set that gates use when traced now: ``"jvp"`` or ``"vjp"``."""
    return _rule_set.value


@contextlib.contextmanager
def pipeline(name: str):
    """Traces gates with our JVP rules (``"jvp"``) or our VJP rules (``"vjp"``)."""
    if name not in RULE_SETS:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {RULE_SETS}")
    with _rule_set(name):
        yield


@contextlib.contextmanager
def capture(on: bool = True):
    """While on, an explicit gate call records itself in the jaxpr being traced instead of
    wiring its rules: ``jaxprop.gated`` traces a function this way, so that it can apply
    each explicit gate as the gate it is (and every other operation as its gate).

    The recorded call is a ``custom_jvp`` running the gate's JVP rules, so the function
    still works under ``jax.jvp``, ``jax.grad`` and ``jax.vmap`` while it is traced.
    """
    with _capturing(on):
        yield


def captured(eqn) -> tuple | None:
    """``(gate, const_mask, consts, params)`` of an explicit gate call that ``capture``
    recorded as ``eqn``, or None for any other equation."""
    if eqn.primitive.name != "custom_jvp_call":
        return None
    info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    name = (getattr(info, "func_src_info", "") or "").split(" ", 1)[0]
    return _CAPTURED.get(name) if name.startswith(CAPTURE_TAG) else None


@contextlib.contextmanager
def observe(callback: Callable[..., None]):
    """Calls ``callback(event)`` each time a gate or one of its rules is traced.

    ``event`` is a :class:`RuleEvent`. The callback runs at trace time, with tracers under
    ``jax.jit``; it sees exactly the arrays the rule uses, so it can record which rule ran
    (tests do this) or stage a ``jax.debug.callback`` to read values (``jaxprop.explain``).
    The set of observers is part of ``jax.jit``'s cache key, so a function compiled before
    is traced again while observed: the callback sees its rules too.
    """
    _observers.append(callback)
    try:
        with _observing((*_observing.value, next(_observe_blocks))):
            yield
    finally:
        _observers.remove(callback)


@dataclasses.dataclass(frozen=True)
class RuleEvent:
    """One application of a gate (``kind="forward"``) or of one of its rules.

    For ``kind="vjp"``: ``inputs`` are the gate's primal inputs, ``outputs`` its output,
    ``upstream`` the cotangent z_bar and ``downstream`` one x_bar per input (``None`` where
    the input gets no gradient). For ``kind="jvp"``: ``upstream`` holds the input tangents
    (``None`` for a symbolic zero) and ``downstream`` the output tangent. ``rule(i, t)``
    applies input i's rule of this very application (its residuals) to a tangent or
    cotangent ``t`` shaped like the output (VJP) or like the broadcast input (JVP): explain
    uses it to show the local gradient the rule really computes.
    """

    gate: Gate
    kind: str
    inputs: tuple
    outputs: Any
    upstream: Any = None
    downstream: Any = None
    rule: Callable[[int, Any], Any] | None = None
    params: tuple = ()


def _notify(event: RuleEvent) -> None:
    for callback in tuple(_observers):
        callback(event)


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
    label: Callable[..., str] | None = None
    doc: str = ""

    def __post_init__(self):
        _check_definition(self)
        object.__setattr__(self, "__doc__", self.doc)
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

    def __call__(self, *xs, **params):
        if len(xs) != self.arity:
            raise TypeError(f"{self.name} takes {self.arity} inputs, got {len(xs)}")
        if set(params) != set(self.params):
            raise TypeError(f"{self.name} takes the parameters {self.params}, got "
                            f"{tuple(sorted(params))}")
        const_mask = tuple(is_constant(x) for x in xs)
        for i, x in enumerate(xs):
            if not const_mask[i] and self.vjp[i] is not None:
                _check_float(self.name, i, x)
        if self.check is not None:
            self.check(*xs, **params)
        if self.broadcast:
            _broadcast_shape(self.name, xs, const_mask)
        frozen = tuple(sorted(params.items()))
        consts = [x for x, c in zip(xs, const_mask) if c]
        arrays = [x for x, c in zip(xs, const_mask) if not c]
        if _capturing.value:
            return _captured_wire(self, const_mask, tuple(consts), frozen)(*consts, *arrays)
        wired = _wire(self, current_pipeline(), const_mask, frozen)
        out = wired(*consts, *arrays)
        if _observers:
            _notify(RuleEvent(self, "forward", tuple(xs), out, params=frozen))
        return out

    def __repr__(self) -> str:
        return f"Gate({self.name!r}, pattern={self.pattern!r})"


def _kind(value) -> str:
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
                                f"{_kind(gate.name)}")
    name = gate.name
    if gate.pattern not in PATTERNS:
        raise GateContractError(f"gate {name!r}: pattern {gate.pattern!r} is not one of the "
                                f"lecture's patterns: {', '.join(map(repr, PATTERNS))}")
    if not callable(gate.forward):
        raise GateContractError(f"gate {name!r}: forward must be a function "
                                f"(*xs, **params) -> (z, res); got {_kind(gate.forward)}")
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
                f"{_kind(rules)}. For a one-input gate write {which}=(rule,)")
        for i, rule in enumerate(rules):
            if rule is not None and not callable(rule):
                raise GateContractError(f"gate {name!r}: the {which.upper()} rule for input "
                                        f"{i} must be a function or None; got {_kind(rule)}")
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


def is_constant(x) -> bool:
    """Python numbers (not bools) are constants: the "constant side" of add and mul gets no
    gradient and is baked into the traced program."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_float(name: str, i: int, x) -> None:
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{name}: input {i} has dtype {dtype}; gates take floating-point arrays, and "
            "the lecture's rules are written for real numbers: split a complex value into "
            "its real and imaginary parts")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name}: input {i} has dtype {dtype}; gates take floating-point arrays (or "
            "Python numbers as constants): cast it with .astype(jnp.float32)"
        )


def _broadcast_shape(name: str, xs, const_mask) -> tuple[int, ...]:
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
        shape = _broadcast_shape(gate.name, xs, const_mask)
        xs = tuple(x if c else jnp.broadcast_to(x, shape) for x, c in zip(xs, const_mask))
    return gate.forward(*xs, **params)


def _bind(rule: Callable, params: dict) -> Callable:
    """``rule`` with the gate's static parameters bound (a gate without any: ``rule``)."""
    return functools.partial(rule, **params) if params else rule


@functools.lru_cache(maxsize=8192)
def _wire(gate: Gate, rule_set: str, const_mask: tuple[bool, ...], frozen: tuple):
    """The JAX-visible function of ``gate`` for one rule set, constant pattern and set of
    static parameters."""
    return _build_wire(gate, rule_set, const_mask, frozen)


@functools.lru_cache(maxsize=8192)
def _captured_wire(gate: Gate, const_mask: tuple[bool, ...], consts: tuple, frozen: tuple):
    """The gate's JVP wiring, named so that ``captured`` finds the call (and its constants,
    which the recorded call bakes in) in a jaxpr."""
    tag = f"{CAPTURE_TAG}{len(_CAPTURED)}"
    _CAPTURED[tag] = (gate, const_mask, consts, frozen)
    return _build_wire(gate, "jvp", const_mask, frozen, tag)


def _build_wire(gate: Gate, rule_set: str, const_mask: tuple[bool, ...], frozen: tuple,
                tag: str | None = None):
    params = dict(frozen)
    positions = [i for i, c in enumerate(const_mask) if not c]
    n_const = len(const_mask) - len(positions)
    vjps = [None if r is None else _bind(r, params) for r in gate.vjp]
    jvps = [None if r is None else _bind(r, params) for r in gate.jvp]

    def merge(consts, arrays):
        return merge_inputs(const_mask, consts, arrays)

    def forward(xs):
        return _checked_forward(gate, run_forward(gate, xs, const_mask, params))

    if rule_set == "jvp":

        @functools.partial(jax.custom_jvp, nondiff_argnums=tuple(range(n_const)))
        def wired(*args):
            return forward(merge(args[:n_const], args[n_const:]))[0]

        def jvp_rule(*args):
            consts, (primals, tangents) = args[:n_const], args[n_const:]
            xs = merge(consts, primals)
            z, res = forward(xs)
            z_dot = None
            x_dots = []
            for i, x_dot in zip(positions, tangents):
                rule = jvps[i]
                if rule is None or isinstance(x_dot, SymbolicZero):
                    x_dots.append(None)
                    continue
                x_dots.append(x_dot)
                if gate.broadcast:
                    x_dot = jnp.broadcast_to(x_dot, jnp.shape(z))
                if i not in _LINEAR_CHECKED.setdefault(gate, set()):
                    _check_linear(gate, i, rule, res, x_dot)
                part = _checked_tangent(gate, i, rule(res, x_dot), z)
                part = jax.tree.map(_like, part, z)  # z_dot takes z's dtype
                z_dot = part if z_dot is None else jax.tree.map(jnp.add, z_dot, part)
            if z_dot is None:
                z_dot = jax.tree.map(jnp.zeros_like, z)
            if _observers and not _capturing.value:
                _notify(RuleEvent(gate, "jvp", xs, z, tuple(x_dots), z_dot,
                                  lambda i, t: jvps[i](res, t), frozen))
            return z, z_dot

        wired.defjvp(jvp_rule, symbolic_zeros=True)
        if tag is not None:
            wired.fun.__name__ = tag
        return wired

    @functools.partial(jax.custom_vjp, nondiff_argnums=tuple(range(n_const)))
    def wired(*args):
        return forward(merge(args[:n_const], args[n_const:]))[0]

    def fwd(*args):
        xs = merge(args[:n_const], args[n_const:])
        z, res = forward(xs)
        res = jax.tree.map(jnp.asarray, res)  # a constant kept as a residual must be an array
        return z, (args[n_const:], z, res)

    def bwd(*args):
        (arrays, z, res), z_bar = args[n_const], args[n_const + 1]
        xs = merge(args[:n_const], arrays)
        x_bars = []
        for i in positions:
            rule = vjps[i]
            if rule is None:
                x_bars.append(None)
                continue
            x_bar = _checked_cotangent(gate, i, rule(res, z_bar), xs[i], z)
            if gate.broadcast:
                x_bar = unbroadcast(x_bar, np.shape(xs[i]))
            x_bars.append(x_bar.astype(jnp.result_type(xs[i])))
        if _observers:
            _notify(RuleEvent(gate, "vjp", xs, z, z_bar, tuple(x_bars),
                              lambda i, t: vjps[i](res, t), frozen))
        return tuple(x_bars)

    wired.defvjp(fwd, bwd)
    return wired


_LINEAR_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per gate, the inputs whose JVP rule was found linear at its first use."""


def _input(gate: Gate, i: int) -> str:
    return f"input {i} ({gate.input_names[i]})"


def _checked_forward(gate: Gate, out):
    """``forward``'s ``(z, res)``, checked at each trace: a pair, z floating point."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise GateContractError(
            f"gate {gate.name!r}: forward must return (z, res), the output and the residuals "
            f"its rules read; got {_kind(out)}. A forward that returns only z (as in "
            "micrograd) can return (z, x), or (z, None) when the rules need nothing")
    for leaf in jax.tree.leaves(out[0]):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise GateContractError(
                f"gate {gate.name!r}: forward's output z has dtype {dtype}; a gate's output "
                "is floating point (its inputs' dtype)")
    return out


def _checked_cotangent(gate: Gate, i: int, x_bar, x, z):
    """Input i's VJP rule output, checked: one floating array shaped like x (or, for a
    broadcasting gate, like the output, before the copies are summed back)."""
    if isinstance(x_bar, (int, float)) and not isinstance(x_bar, bool):
        x_bar = jnp.full(np.shape(x), x_bar, jnp.result_type(x))
    shape, dtype = np.shape(x), jnp.result_type(x)
    allowed = {tuple(shape)} | ({tuple(np.shape(z))} if gate.broadcast else set())
    if not hasattr(x_bar, "shape") or not hasattr(x_bar, "dtype"):
        raise GateContractError(
            f"gate {gate.name!r}: the VJP rule for {_input(gate, i)} returned "
            f"{_kind(x_bar)}; expected one array x_bar shaped like the input, "
            f"{dtype}{list(shape)}")
    if tuple(x_bar.shape) not in allowed or not jnp.issubdtype(x_bar.dtype, jnp.inexact):
        raise GateContractError(
            f"gate {gate.name!r}: the VJP rule for {_input(gate, i)} returned "
            f"{_kind(x_bar)}; expected x_bar shaped like the input, {dtype}{list(shape)}"
            + (f" (or like the output, {list(np.shape(z))})" if gate.broadcast else ""))
    return x_bar


def _checked_tangent(gate: Gate, i: int, part, z):
    """Input i's JVP rule output, checked: floating, with the structure and shapes of z."""
    want = jax.tree.structure(z)
    if jax.tree.structure(part) != want:
        raise GateContractError(
            f"gate {gate.name!r}: the JVP rule for {_input(gate, i)} returned {_kind(part)}; "
            f"expected z_dot shaped like the output: {_kind(z)}")
    for p, o in zip(jax.tree.leaves(part), jax.tree.leaves(z)):
        if np.shape(p) != np.shape(o) or not jnp.issubdtype(jnp.result_type(p), jnp.inexact):
            raise GateContractError(
                f"gate {gate.name!r}: the JVP rule for {_input(gate, i)} returned "
                f"{_kind(jnp.asarray(p))}; expected z_dot shaped like the output, "
                f"{jnp.result_type(o)}{list(np.shape(o))}")
    return part


def _check_linear(gate: Gate, i: int, rule, res, x_dot) -> None:
    """At a JVP rule's first use: raise unless it is linear in its tangent."""
    from jaxprop._linearity import nonlinear_use

    why = nonlinear_use(lambda t: rule(res, t), x_dot)
    if why is not None:
        name = gate.input_names[i]
        raise GateContractError(
            f"gate {gate.name!r}: the JVP rule for {_input(gate, i)} is not linear in its "
            f"tangent {name}_dot: {why}. JAX transposes the JVP rule to get jax.grad, so it "
            f"must be linear: multiply {name}_dot only by values computed from the inputs "
            "or the residuals, and add the parts")
    _LINEAR_CHECKED[gate].add(i)


def merge_inputs(const_mask: tuple[bool, ...], consts, arrays) -> tuple:
    """The inputs in their order, from the constants and the arrays given apart."""
    it_c, it_a = iter(consts), iter(arrays)
    return tuple(next(it_c) if c else next(it_a) for c in const_mask)


def _like(part, z):
    return part.astype(jnp.result_type(z))


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
