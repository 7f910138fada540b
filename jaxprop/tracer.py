"""The gate tracer: plain JAX code, differentiated by the lecture's gates.

``jaxprop.gated(f)`` traces f to a jaxpr and runs each equation as the gate that stands for
its primitive (``Gate.primitives``): ``x + y`` as the add gate, ``x @ W`` as matmul,
``jnp.maximum(0, x)`` as ReLU, ``s[jnp.arange(N), y]`` as a gather that scatter-adds its
gradient. It is the Autodidax interpreter pattern, with the gates as the interpretation. An
explicit gate call (``gates.mul``, ``losses.softmax_loss``'s fused gate) is recorded as
itself and applied once, as the gate it is. Nested ``jax.jit`` calls are opened and traced
through gates too.

Loops and branches are opened without unrolling: the body of a ``lax.scan`` (a
``fori_loop`` with static bounds), a ``lax.while_loop`` or each branch of a ``lax.cond`` /
``lax.switch`` is traced through gates, recursively, and run inside the same loop or
branch. Reverse mode through a scan is backprop through time, the body's VJP rules run from
the last step to the first; forward mode pushes tangents through the body's JVP rules; a
``while_loop`` runs in forward mode only (reverse mode is refused, naming the line).

A ``jax.custom_jvp`` or ``jax.custom_vjp`` function keeps its own rule, as under ``jax.grad``:
it runs as one step that JAX differentiates with that rule, and ``jaxprop.observe`` reports it
as a ``"custom_jvp"`` or ``"custom_vjp"`` event (a :class:`CustomRule`, with the function's
name). Forward mode through a ``custom_vjp`` function is refused, as ``jax.jvp`` refuses it.
Only the few JAX library functions in :data:`OPENED_RULES`, whose gates are tested to give
the derivative of the library's own rule, are opened into gates.

Only what the derivative needs becomes a gate. An equation runs as a gate when it depends on
a differentiated input *and* its output reaches the result along a differentiable path;
anything else (arithmetic on constants, the max that ``logsumexp`` subtracts under
``stop_gradient``, the integer indices of a gather) runs as plain JAX with no derivative at
all. So in ``jaxprop.observe`` every gate that is applied also has its rule run.

A differentiable primitive without a gate is an error at trace time, naming the primitive and
the line of the user's code it came from. ``allow_jax_rules=True`` lets JAX differentiate
such an operation with its own rule instead; ``observe`` then reports it as a ``"jax"``
event and ``explain`` marks its row "JAX's rule".

For example::

  f = jaxprop.gated(lambda x, y, z: (x + y) * z)
  jax.grad(f, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)    # (-4, -4, 3) through our rules
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import itertools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src.interpreters import ad, batching  # autodiff's tracers: what JAX differentiates
from jax.extend import core as jex

from jaxprop import coverage, gates, wiring
from jaxprop._jaxprs import called_jaxpr
from jaxprop.events import RuleEvent, notify, silenced
from jaxprop.gate import NoGateError

__all__ = ["NoGateError", "JaxRule", "CustomRule", "Gated", "gated", "LIFTS", "OPENED_RULES"]

CALLS = ("jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "custom_jvp_call",
         "custom_vjp_call", "custom_vjp_call_jaxpr", "composite", "custom_vmap_call")
"""Primitives that call a jaxpr: opened, and their equations traced through gates (a custom
rule's call only when it is one of :data:`OPENED_RULES`). ``lax.composite`` is opened into
its decomposition (JAX itself has no derivative for it), a ``jax.custom_batching``
function into its body (its batching rule is JAX's business, not the derivative's)."""

REMAT = ("remat2", "checkpoint")
"""``jax.checkpoint``'s primitives: opened, except inside a loop's body, where they stay one
operation run as ``jax.checkpoint`` of its gates (see :data:`CONTROL_FLOW`)."""

CUSTOM_CALLS = {"custom_jvp_call": "custom_jvp", "custom_vjp_call": "custom_vjp",
                "custom_vjp_call_jaxpr": "custom_vjp"}
"""The calls of a function with its own rule, and the kind of rule: kept, never opened."""

OPENED_RULES = {
    "jax.nn.relu": ("relu", "jax/_src/nn/functions.py",
                    "the relu gate passes the gradient where x > 0, as JAX's rule does (0 at "
                    "x = 0)"),
    "jax.nn.softmax": ("_softmax", "jax/_src/nn/functions.py",
                       "exp, sum and div gates: the same derivative as JAX's rule, which has "
                       "no kink (softmax's custom_jvp, under jax_softmax_custom_jvp)"),
    "jax.numpy.linalg.slogdet": ("_slogdet_lu", "jax/_src/numpy/linalg.py",
                                 "lu, abs, log and sum gates: the derivative of log|det A| is "
                                 "trace(A^-1 A_dot) by both, and the sign has none"),
}
"""JAX's own custom-rule functions that are opened into gates: name -> (the function's name,
its file in the jax package, why the gates' derivative is the library rule's).
``tests/test_no_silent_wrong.py`` checks each against ``jax.grad`` at its kinks. Every other
``custom_jvp``/``custom_vjp`` function (``jax.nn.relu6``, ``jnp.logaddexp`` and so
``jax.nn.softplus``, ``jax.scipy.special.xlogy``, the user's own) keeps its rule."""

PASS_THROUGH = ("copy", "copy_p", "optimization_barrier", "name", "device_put")
"""Primitives that return their inputs unchanged: their values pass through as they are
(``name`` is ``jax.ad_checkpoint.checkpoint_name``'s label; ``jax.device_put`` only says
where a value lives, and jaxprop's rules run on one device)."""

NO_DERIVATIVE = ("stop_gradient", "sign", "floor", "ceil", "round", "nextafter", "is_finite")
"""Primitives whose floating-point outputs have no derivative (zero, or none): plain JAX."""



CAPTURE_TAG = "jaxprop.gate#"
"""How the name of an explicit gate call recorded by :func:`capture` begins."""
_CAPTURED: dict[str, tuple] = {}


@functools.lru_cache(maxsize=8192)
def _record(gate, const_mask: tuple[bool, ...], consts: tuple, frozen: tuple):
    """The gate's JVP wiring, named so that :func:`captured` finds the call (and its
    constants, which the recorded call bakes in) in a jaxpr."""
    tag = f"{CAPTURE_TAG}{len(_CAPTURED)}"
    _CAPTURED[tag] = (gate, const_mask, consts, frozen)
    return wiring.wire(gate, "jvp", const_mask, frozen, tag)


def forget() -> None:
    """Drops the recorded gate calls' wirings and the traced programs, after a gate's rules
    were replaced in place (see :func:`jaxprop.wiring.forget`)."""
    _record.cache_clear()
    _GATED.clear()


@contextlib.contextmanager
def capture(on: bool = True):
    """While on, an explicit gate call records itself in the jaxpr being traced instead of
    wiring its rules: :func:`gated` traces a function this way, so that it can apply each
    explicit gate as the gate it is (and every other operation as its gate).

    The recorded call is a ``custom_jvp`` running the gate's JVP rules, so the function
    still works under ``jax.jvp``, ``jax.grad`` and ``jax.vmap`` while it is traced.
    """
    with wiring.intercepting(_record if on else None):
        yield


def captured(eqn) -> tuple | None:
    """``(gate, const_mask, consts, params)`` of an explicit gate call that :func:`capture`
    recorded as ``eqn``, or None for any other equation."""
    if eqn.primitive.name != "custom_jvp_call":
        return None
    info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    name = (getattr(info, "func_src_info", "") or "").split(" ", 1)[0]
    return _CAPTURED.get(name) if name.startswith(CAPTURE_TAG) else None


def _lifts() -> dict[str, tuple]:
    table = {}
    for gate in gates.GATES.values():
        for name, adapter in gate.primitives.items():
            if name in table:
                raise ValueError(f"primitive {name!r} is claimed by the gates "
                                 f"{table[name][0].name!r} and {gate.name!r}")
            table[name] = (gate, adapter)
    return table


LIFTS: dict[str, tuple] = _lifts()
"""JAX primitive name -> (the gate that stands for it, its adapter), from the gates."""


@dataclasses.dataclass(frozen=True)
class CustomRule:
    """A ``jax.custom_jvp`` or ``jax.custom_vjp`` function that kept its own rule; it takes a
    gate's place in ``jaxprop.observe`` events (``kind`` ``"custom_jvp"`` or ``"custom_vjp"``).
    """

    name: str
    kind: str
    line: str = "an unknown line"
    pattern: str = "its own rule"
    symbol: str = ""
    elementwise: bool = False


@dataclasses.dataclass(frozen=True)
class JaxRule:
    """An operation JAX differentiated with its own rule (``allow_jax_rules=True``); it takes
    a gate's place in ``jaxprop.observe`` events (``kind="jax"``)."""

    name: str
    pattern: str = "JAX's rule"
    symbol: str = ""
    elementwise: bool = False


@dataclasses.dataclass(frozen=True)
class _Const:
    """A constant known while tracing: a Python number, broadcast to ``shape``."""

    value: Any
    shape: tuple
    dtype: Any

    def array(self):
        if not self.shape:
            return np.asarray(self.value, self.dtype)
        return jnp.full(self.shape, self.value, self.dtype)


@dataclasses.dataclass
class _Op:
    eqn: Any
    ins: list
    outs: list
    gate_call: tuple | None = None
    sites: tuple = ()  # the calls (nested jits) it was opened from, innermost first
    custom: CustomRule | None = None  # a custom_jvp/custom_vjp function kept whole
    bodies: dict = dataclasses.field(default_factory=dict)  # a loop's or branch's programs


def _inexact(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _function_of(eqn) -> tuple[str, str]:
    """``(name, file)`` of the Python function a custom rule's call was traced from."""
    sub = called_jaxpr(eqn)
    info = getattr(sub[0], "debug_info", None) if sub is not None else None
    text = getattr(info, "func_src_info", None) or ""
    name, _, where = text.partition(" at ")
    return name or eqn.primitive.name, where.rsplit(":", 1)[0]


def _opened(eqn) -> bool:
    """Whether a custom rule's call is one of :data:`OPENED_RULES` (its gates are tested)."""
    name, file = _function_of(eqn)
    jax_dir = os.path.dirname(os.path.dirname(jax.__file__)) + os.sep
    return any(name == fn and file == jax_dir + path.replace("/", os.sep)
               for fn, path, _ in OPENED_RULES.values())


def _foldable(value) -> bool:
    """A scalar number known while tracing: not a tracer, not a PRNG key."""
    if isinstance(value, jax.core.Tracer) or np.ndim(value) != 0:
        return False
    dtype = getattr(value, "dtype", None)
    return dtype is None or not jax.dtypes.issubdtype(dtype, jax.dtypes.extended)


def _platform_branch(eqn):
    """The branch of a ``lax.platform_dependent`` cond that this platform runs (``jnp.diagonal``
    has one: a Pallas kernel's branch and the default), or None for any other equation."""
    platforms = eqn.params.get("branches_platforms") if eqn.primitive.name == "cond" else None
    if not platforms:
        return None
    here = {"gpu": ("cuda", "rocm")}.get(jax.default_backend(), (jax.default_backend(),))
    for branch, names in zip(eqn.params["branches"], platforms):
        if names is not None and any(p in names for p in here):
            return branch
    return next(b for b, names in zip(eqn.params["branches"], platforms) if names is None)


def _sub_jaxpr(eqn):
    """``(jaxpr, consts)`` of an equation that calls a jaxpr."""
    found = called_jaxpr(eqn)
    if found is None:
        raise TypeError(f"jaxprop tracer: cannot open {eqn.primitive.name!r}: no jaxpr in "
                        f"{sorted(eqn.params)}")
    return found


class _Program:
    """A traced function, flattened: every called jaxpr opened into one list of operations.

    A loop's body or a branch is a program of its own (``remat=True``: a ``jax.checkpoint``
    in it stays one operation, so that its policy holds inside the loop); ``sites`` are the
    equations it was opened from, for the user's line."""

    def __init__(self, closed: jex.ClosedJaxpr, remat: bool = False, sites: tuple = ()):
        self.remat = remat
        self.ops: list[_Op] = []
        self.values: dict[int, Any] = {}  # constants and literals, by ref
        self.avals: dict[int, Any] = {}
        self._next = 0
        const_refs = [self._constant(c, getattr(v, "aval", None))
                      for c, v in zip(closed.consts, closed.jaxpr.constvars)]
        self.inputs = [self._new(v.aval) for v in closed.jaxpr.invars]
        self.outputs = self._flatten(closed.jaxpr, const_refs, self.inputs, sites)

    def _new(self, aval) -> int:
        self._next += 1
        self.avals[self._next] = aval
        return self._next

    def _constant(self, value, aval) -> int:
        ref = self._new(aval if aval is not None else jax.typeof(value))
        if _foldable(value):
            value = _Const(np.asarray(value).item(), (), np.asarray(value).dtype)
        self.values[ref] = value
        return ref

    def _flatten(self, jaxpr, const_refs, in_refs, sites: tuple) -> list:
        env = dict(zip(jaxpr.constvars, const_refs))
        env.update(zip(jaxpr.invars, in_refs))

        def ref(atom):
            if isinstance(atom, jex.Literal):
                return self._constant(atom.val, atom.aval)
            return env[atom]

        for eqn in jaxpr.eqns:
            ins = [ref(a) for a in eqn.invars]
            call = captured(eqn)
            name = eqn.primitive.name
            kept = name in CUSTOM_CALLS and not _opened(eqn)
            branch = _platform_branch(eqn)
            if branch is not None:  # lax.platform_dependent: the branch this platform runs
                outs = self._flatten(branch.jaxpr, [self._constant(c, None)
                                                    for c in branch.consts], ins[1:],
                                     (eqn, *sites))
            elif (call is None and name in CALLS and not kept
                  and not (self.remat and name in REMAT)):
                sub, consts = _sub_jaxpr(eqn)
                sub_consts = [self._constant(c, getattr(v, "aval", None))
                              for c, v in zip(consts, sub.constvars)]
                outs = self._flatten(sub, sub_consts, ins, (eqn, *sites))
            else:
                if call is not None:
                    ins = ins[eqn.params.get("num_consts", 0):]
                outs = [self._new(v.aval) for v in eqn.outvars]
                self.ops.append(_Op(eqn, ins, outs, call, sites))
                if kept and call is None:
                    op = self.ops[-1]
                    op.custom = CustomRule(_function_of(eqn)[0], CUSTOM_CALLS[name],
                                           _user_line(op))
            for v, r in zip(eqn.outvars, outs):
                if not isinstance(v, jex.DropVar):
                    env[v] = r
        return [ref(a) for a in jaxpr.outvars]

    def _passes(self, op: _Op) -> list[int]:
        """The inputs of ``op`` that its outputs' derivatives flow back to."""
        if op.gate_call is not None:
            gate, const_mask = op.gate_call[0], op.gate_call[1]
            positions = [i for i, c in enumerate(const_mask) if not c]
            return [r for r, i in zip(op.ins, positions) if gate.vjp[i] is not None]
        name = op.eqn.primitive.name
        if name in NO_DERIVATIVE or not any(_inexact(self.avals[r]) for r in op.outs):
            return []
        return [r for r in op.ins if _inexact(self.avals[r])]

    def analyse(self, active_inputs: list[bool]):
        """Which refs depend on a differentiated input (active), which ones the result's
        derivative needs (needed), and which values the result needs at all (live)."""
        active = {r for r, a in zip(self.inputs, active_inputs) if a}
        for op in self.ops:
            if any(r in active for r in self._passes(op)):
                active |= {r for r in op.outs if _inexact(self.avals[r])}
        needed = {r for r in self.outputs if r in active}
        live = set(self.outputs)
        self.live_ops = []
        for op in reversed(self.ops):
            is_live = (op.gate_call is not None or bool(op.eqn.effects)
                       or any(r in live for r in op.outs))
            if is_live:
                live |= set(op.ins)
                self.live_ops.append(op)
            if any(r in needed for r in op.outs):
                needed |= {r for r in self._passes(op) if r in active}
        self.live_ops.reverse()
        return active, needed


def _user_line(op: _Op) -> str:
    """Where an operation came from: the first frame outside JAX and jaxprop, as
    ``file:line (function)``, of the equation or else of the calls (a nested ``jax.jit``,
    ``jnp.sort``'s own jit) it was opened from. An operation traced inside a gate's own
    forward computation or rule (a second derivative traces the first one's rules) is named
    by that gate and rule (:func:`jaxprop.wiring.rule_scope`), with the user's line when the
    trace has one; with neither, the innermost frame outside JAX."""
    skip = (os.path.dirname(jax.__file__) + os.sep, os.path.dirname(__file__) + os.sep,
            os.sep + "jaxlib" + os.sep, os.sep + "optax" + os.sep)
    line = fallback = None
    for eqn in (op.eqn, *op.sites):
        tb = getattr(eqn.source_info, "traceback", None)
        for frame in getattr(tb, "frames", None) or []:
            where = f"{frame.file_name}:{frame.line_num} ({frame.function_name})"
            if fallback is None and not any(s in frame.file_name for s in skip[:1] + skip[2:]):
                fallback = where
            if not any(s in frame.file_name for s in skip):
                line = where
                break
        if line is not None:
            break
    rule = next((r for r in map(_rule_of, (op.eqn, *op.sites)) if r is not None), None)
    if rule is not None:
        return rule + (f", in the call at {line}" if line else "")
    return line or fallback or f"a line JAX did not record (in {op.eqn.primitive.name!r})"


def _rule_of(eqn) -> str | None:
    """``"the VJP rule of the gate 'slice' (for x)"`` when ``eqn`` was traced inside a
    gate's own forward computation or rule, else None."""
    found = wiring.scope_of(str(getattr(eqn.source_info, "name_stack", "")))
    if found is None:
        return None
    gate, rule, x = found
    what = "forward computation" if rule == "forward" else f"{rule} rule"
    return f"the {what} of the gate {gate!r}" + (f" (for {x})" if x else "")


def _no_gate(op: _Op) -> str:
    """The message of :class:`NoGateError` for an operation no gate stands for."""
    name, where = op.eqn.primitive.name, _where(op)
    fix = ("Build that step from jaxprop.gates (or write a Gate for it)"
           if where.startswith("at ") else
           "A gate's rules must use only operations that have gates, so that derivatives of "
           "derivatives run through gates too: write that rule with such operations (or "
           f"give {name!r} a gate)")
    return (f"jaxprop: no gate for the JAX primitive {name!r} ({where}), which a "
            f"differentiated value flows through. {fix}, or pass allow_jax_rules=True to let "
            "JAX differentiate it with its own rule (observe and explain then mark it "
            "\"JAX's rule\")")


def _where(op: _Op) -> str:
    """:func:`_user_line` as a phrase: ``at file:line (function)``, or ``in the VJP rule of
    the gate 'slice' ...``."""
    line = _user_line(op)
    return ("in " if line.startswith("the ") else "at ") + line


def _materialize(value):
    return value.array() if isinstance(value, _Const) else value


def _constant_for_gate(value, gate, out_shape, other_shapes):
    """A traced constant as a gate input: a Python number where the gate broadcasts it to
    the output's shape anyway, else the array."""
    if not isinstance(value, _Const):
        return value
    if not value.shape or (gate.broadcast and np.broadcast_shapes(*other_shapes, ())
                           == tuple(out_shape)):
        return value.value
    return value.array()


def _shape_only(op: _Op, vals) -> _Const | None:
    """A broadcast, reshape or cast of a known constant is still that constant."""
    name, v = op.eqn.primitive.name, vals[0] if vals else None
    if not isinstance(v, _Const) or len(op.outs) != 1:
        return None
    if name in ("broadcast_in_dim", "reshape", "squeeze", "expand_dims",
                "convert_element_type"):
        aval = op.eqn.outvars[0].aval
        value = np.asarray(v.value).astype(aval.dtype).item()
        return _Const(value, tuple(aval.shape), aval.dtype)
    return None


def _check_outputs(op: _Op, outs, gate) -> None:
    for v, out in zip(op.eqn.outvars, outs):
        want = v.aval
        if tuple(jnp.shape(out)) != tuple(want.shape) or jnp.result_type(out) != want.dtype:
            raise AssertionError(
                f"jaxprop tracer: the gate {gate.name!r} standing for {op.eqn.primitive.name!r}"
                f" gave {jnp.result_type(out)}{list(jnp.shape(out))}, but JAX's primitive "
                f"gives {want.dtype}{list(want.shape)}; this is a bug in jaxprop, please "
                "report it")


def _bind(op: _Op, vals, stop=()):
    args = [lax.stop_gradient(v) if i in stop else v for i, v in enumerate(
        _materialize(v) for v in vals)]
    params = op.eqn.primitive.get_bind_params(op.eqn.params)  # as jax.core.eval_jaxpr
    out = op.eqn.primitive.bind(*args, **params)
    return list(out) if op.eqn.primitive.multiple_results else [out]


MIXED_OPERANDS = ("dot_general", "pow")
"""Primitives whose operands may differ in dtype (a boolean image in a matmul, an integer
exponent): a boolean or integer operand is converted to the output's dtype before the gate
takes it, as JAX computes it."""


def _promoted(op: _Op, vals) -> list:
    if op.eqn.primitive.name not in MIXED_OPERANDS:
        return list(vals)
    dtype = op.eqn.outvars[0].aval.dtype
    return [v if isinstance(v, _Const) or jnp.issubdtype(jnp.result_type(v), jnp.inexact)
            else lax.convert_element_type(v, dtype) for v in vals]


def _forward_refusal(who: str, rule: CustomRule) -> TypeError:
    return TypeError(
        f"{who}: {rule.name} (at {rule.line}) is a jax.custom_vjp function: its rule is a "
        "VJP, and forward mode cannot push a tangent through it (jax.jvp refuses it too). "
        "Use reverse mode (jaxprop.reverse, jax.grad), or give it a jax.custom_jvp rule")


def _apply_gate_call(call, vals):
    gate, const_mask, consts, frozen = call
    n_arrays = const_mask.count(False)
    if len(vals) > n_arrays:  # a last input that is a tuple of arrays (linear_solve's others)
        vals = [*vals[:n_arrays - 1], tuple(_materialize(v) for v in vals[n_arrays - 1:])]
    it_c, it_v = iter(consts), iter(vals)
    xs = [next(it_c) if c else _materialize(next(it_v)) for c in const_mask]
    out = gate(*xs, **dict(frozen))
    return jax.tree.leaves(out)


RUNNING = threading.local()
"""``RUNNING.op``: the operation :func:`run` is applying now (its gates' events come from it)."""


def run(program: _Program, values: list, active_inputs: list[bool],
        allow_jax_rules: bool) -> list:
    """Runs a traced program on ``values``, each needed operation as its gate."""
    active, needed = program.analyse(active_inputs)
    env = dict(program.values)
    env.update(zip(program.inputs, values))
    for op in program.live_ops:
        RUNNING.op = op  # jaxprop.flat names a gate's output from the op's user line
        vals = [env[r] for r in op.ins]
        name = op.eqn.primitive.name
        in_active = [r in active for r in op.ins]
        if op.gate_call is not None:
            outs = _apply_gate_call(op.gate_call, vals)
        elif name in PASS_THROUGH:
            outs = list(vals)
        elif not any(in_active) or name in NO_DERIVATIVE:
            folded = _shape_only(op, vals)
            outs = [folded] if folded is not None else _bind(
                op, vals, [i for i, a in enumerate(in_active) if a])
        elif not any(r in needed for r in op.outs):  # its derivative reaches nothing
            outs = _bind(op, vals, [i for i, a in enumerate(in_active) if a])
        elif op.custom is not None:  # JAX differentiates it with the function's own rule
            if op.custom.kind == "custom_vjp" and any(
                    _pushes_tangents(v) for v, a in zip(vals, in_active) if a):
                raise _forward_refusal("jaxprop", op.custom)
            outs = _bind(op, vals)
            notify(RuleEvent(op.custom, op.custom.kind, tuple(_materialize(v) for v in vals),
                              outs[0] if len(outs) == 1 else tuple(outs)))
        elif name in LIFTS:
            try:
                outs = _lifted(op, vals)
            except NoGateError as e:  # a gate's adapter refused these parameters
                if not allow_jax_rules:
                    raise NoGateError(f"jaxprop: {e} ({_where(op)})") from None
                outs = _jax_rule(op, vals)
        elif name in CONTROL_FLOW:
            outs = CONTROL_FLOW[name](op, vals, in_active, allow_jax_rules)
        elif allow_jax_rules:
            outs = _jax_rule(op, vals)
        elif coverage.not_gated_reason(name) is not None:
            raise NoGateError(
                f"jaxprop: the JAX primitive {name!r} ({_where(op)}), which a "
                "differentiated value flows through, is deliberately out of jaxprop's gates: "
                f"{coverage.not_gated_reason(name)}. Pass allow_jax_rules=True to let JAX "
                "differentiate it with its own rule")
        else:
            raise NoGateError(_no_gate(op))
        env.update(zip(op.outs, outs))
    return [_materialize(env[r]) for r in program.outputs]


def _lifted(op: _Op, vals) -> list:
    """The operation applied as the gate that stands for its primitive (:data:`LIFTS`)."""
    vals = _promoted(op, vals)
    gate, adapter = LIFTS[op.eqn.primitive.name]
    out_shape = op.eqn.outvars[0].aval.shape
    others = [jnp.shape(v) for v in vals if not isinstance(v, _Const)]
    xs = [_constant_for_gate(v, gate, out_shape, others) for v in vals]
    if adapter is None:  # the gate itself, its parameters named as the primitive's
        out = wiring.apply(gate, tuple(xs), {k: op.eqn.params[k] for k in gate.params})
    else:
        out = adapter(*xs, **op.eqn.params)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    _check_outputs(op, outs, gate)
    return outs


def _jax_rule(op: _Op, vals) -> list:
    """The operation as JAX runs it, differentiated by JAX's own rule (``allow_jax_rules``)."""
    outs = _bind(op, vals)
    notify(RuleEvent(JaxRule(op.eqn.primitive.name), "jax", tuple(_materialize(v) for v in vals),
                     outs[0] if len(outs) == 1 else tuple(outs)))
    return outs


def _pushes_tangents(x) -> bool:
    """Whether ``x`` is differentiated by ``jax.jvp`` (forward mode proper, not linearize)."""
    while isinstance(x, batching.BatchTracer):
        x = x.val
    return isinstance(x, ad.JVPTracer) and type(x.tangent) is not ad.Zero


def _has_tangent(x) -> bool:
    """Whether JAX differentiates ``x``: an autodiff tracer (under ``jax.vmap`` too) whose
    tangent is not a symbolic zero."""
    while isinstance(x, batching.BatchTracer):
        x = x.val
    return (isinstance(x, (ad.JVPTracer, ad.LinearizeTracer))
            and type(x.tangent) is not ad.Zero)


def differentiated(values: list) -> list[bool]:
    """Which floating-point inputs of a gated function JAX differentiates.

    Under ``jax.grad``, ``jax.jvp`` or ``jax.vmap`` of them, the inputs are JAX's autodiff
    tracers, and only those are differentiated: data passed beside the parameters is not.
    With no autodiff tracer among them (called as it is, or traced by ``jax.jit`` inside a
    transformation that it cannot see), every floating-point input is.
    """
    inexact = [jnp.issubdtype(jnp.result_type(v), jnp.inexact) for v in values]
    seen = [_has_tangent(v) for v in values]
    if any(seen):
        return [a and b for a, b in zip(inexact, seen)]
    return inexact


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, _Const)


def _aval(x):
    aval = jax.typeof(x)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=getattr(aval, "weak_type",
                                                                          False))


class Gated:
    """``f`` traced into gates each time its argument shapes change (see :func:`gated`)."""

    def __init__(self, f: Callable, allow_jax_rules: bool = False):
        self.f = f
        self.allow_jax_rules = allow_jax_rules
        self._programs: dict = {}
        functools.update_wrapper(self, f)

    def trace(self, *args, **kwargs):
        """``(program, out_tree, dynamic leaves)`` for these arguments (cached by their
        shapes, dtypes and static values)."""
        leaves, in_tree = jax.tree.flatten((args, kwargs))
        dynamic = [i for i, x in enumerate(leaves) if _is_array(x)]
        static = tuple((i, x) for i, x in enumerate(leaves) if i not in set(dynamic))
        avals = [_aval(leaves[i]) for i in dynamic]
        try:
            key = (in_tree, static, tuple((a.shape, a.dtype, a.weak_type) for a in avals))
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in self._programs:
            program, out_tree = self._programs[key]
            return program, out_tree, [leaves[i] for i in dynamic]
        store = {}

        def flat(*dyn):
            full = list(leaves)
            for i, x in zip(dynamic, dyn):
                full[i] = x
            a, k = jax.tree.unflatten(in_tree, full)
            out_leaves, store["out_tree"] = jax.tree.flatten(self.f(*a, **k))
            return out_leaves

        with capture(True):
            closed = jax.make_jaxpr(flat)(*avals)
        program = _Program(closed)
        if key is not None and not any(isinstance(c, jax.core.Tracer) for c in closed.consts):
            if len(self._programs) >= 32:
                self._programs.pop(next(iter(self._programs)))
            self._programs[key] = (program, store["out_tree"])
        return program, store["out_tree"], [leaves[i] for i in dynamic]

    def __call__(self, *args, **kwargs):
        return self.runner(*args, **kwargs)[0](*args, **kwargs)

    def refuse_forward(self, who: str, *args, **kwargs) -> None:
        """Raises, naming the function and its line, when forward mode would meet a
        ``custom_vjp`` function on the derivative's path for these arguments."""
        program, _, dyn = self.trace(*args, **kwargs)
        _refuse_forward(who, program, dyn)

    def runner(self, *args, forward_mode: str | None = None, **kwargs):
        """``(run, out_struct)``: f traced for these arguments, and a function of the same
        arguments that runs that trace through the gates without tracing f again.
        ``out_struct`` is f's output as ``jax.ShapeDtypeStruct`` s, known before anything
        runs (the drivers check it). A forward-mode driver passes its name as
        ``forward_mode`` (see :meth:`refuse_forward`)."""
        program, out_tree, dyn = self.trace(*args, **kwargs)
        if forward_mode is not None:
            _refuse_forward(forward_mode, program, dyn)

        def run_traced(*a, **k):
            values = [x for x in jax.tree.leaves((a, k)) if _is_array(x)]
            active = differentiated(values)
            with capture(False):
                outs = run(program, values, active, self.allow_jax_rules)
            return jax.tree.unflatten(out_tree, outs)

        structs = [jax.ShapeDtypeStruct(program.avals[r].shape, program.avals[r].dtype)
                   for r in program.outputs]
        return run_traced, jax.tree.unflatten(out_tree, structs)


def _refuse_forward(who: str, program: _Program, dyn: list) -> None:
    active, needed = program.analyse(differentiated(dyn))
    for op in program.ops:
        if (op.custom is not None and op.custom.kind == "custom_vjp"
                and any(r in needed for r in op.outs) and any(r in active for r in op.ins)):
            raise _forward_refusal(who, op.custom)


_GATED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gated(f: Callable, *, allow_jax_rules: bool = False) -> Gated:
    """``f`` with every differentiable operation applied as a jaxprop gate.

    The result is a plain function of the same arguments: it runs under ``jax.grad``,
    ``jax.jvp``, ``jax.vmap``, ``jax.hessian`` and ``jax.jit``, and there every derivative
    comes from the gates' rules (their JVP rules by default, their VJP rules inside
    ``jaxprop.rule_set("vjp")``). The drivers of ``jaxprop.reverse`` and ``jaxprop.forward``
    apply it themselves. Only the arguments that JAX differentiates (see
    :func:`differentiated`) are traced into gates; a ``custom_jvp`` or ``custom_vjp``
    function keeps its own rule.

    Args:
      f: a function of arrays (pytrees of them), in plain JAX, built from gates, or both.
      allow_jax_rules: let JAX differentiate, with its own rule, an operation that no gate
        stands for (else it is an error naming the primitive and the line).

    Returns:
      The gated function; calling ``gated`` again on the same ``f`` returns the same one,
      so it traces ``f`` once per argument shape.
    """
    if isinstance(f, Gated) and f.allow_jax_rules == allow_jax_rules:
        return f
    try:
        per_f = _GATED.setdefault(f, {})
    except TypeError:  # not weakly referable: a fresh one each time
        return Gated(f, allow_jax_rules)
    if allow_jax_rules not in per_f:
        per_f[allow_jax_rules] = Gated(f, allow_jax_rules)
    return per_f[allow_jax_rules]




# ------------------------------------------------------------------- loops and branches
#
# A loop or a branch is opened too: its body is a program of its own, run through the gates
# inside ``lax.scan``, ``lax.while_loop`` or ``lax.switch``. JAX's rule for the loop is only
# the loop itself (a scan forward that saves each step's residuals, a scan backward that runs
# the body's VJP rules from the last step to the first and adds up the gradients of the
# weights every step shares); every derivative inside a step is a gate's rule.

_REVERSE = contextvars.ContextVar("jaxprop_reverse", default=False)
"""Whether the loop body being traced is differentiated in reverse mode (a while loop in it
is refused)."""


def _body(op: _Op, key, closed) -> _Program:
    """The program of one of ``op``'s bodies (built once)."""
    if key not in op.bodies:
        if isinstance(closed, jex.Jaxpr):
            closed = jex.ClosedJaxpr(closed, ())
        op.bodies[key] = _Program(closed, remat=True, sites=(op.eqn, *op.sites))
    return op.bodies[key]


def _carried(body: _Program, active: list[bool], start: int, stop: int) -> list[bool]:
    """The body's active inputs: ``active``, with each loop-carried input (``start:stop``)
    active too where the body makes its carry output active, until nothing changes (a carry
    that starts as a constant and is added a weight's product in each step)."""
    active = list(active)
    while True:
        now, _ = body.analyse(active)
        new = [a or (i >= start and i < stop and body.outputs[i - start] in now)
               for i, a in enumerate(active)]
        if new == active:
            return active
        active = new


def _reversing(vals, in_active) -> bool:
    return _REVERSE.get() or (wiring.current_rule_set() == "vjp" and any(
        _has_tangent(v) for v, a in zip(vals, in_active) if a))


@contextlib.contextmanager
def _in_reverse(on: bool):
    token = _REVERSE.set(on)
    try:
        yield
    finally:
        _REVERSE.reset(token)


def _typed(outs: list, avals: list) -> list:
    """Each output in its aval's dtype (a loop's carry keeps its type from step to step)."""
    return [o if jnp.result_type(o) == a.dtype else lax.convert_element_type(o, a.dtype)
            for o, a in zip(outs, avals)]


@jax.custom_jvp
def _tangent_from_the_start(carry, other):
    """``carry``, given a (zero) tangent from the first step when ``other`` has one.

    A carry that starts as a constant and becomes differentiated in the body (h0 = 0) would
    make JAX's scan trace the body's JVP rules twice, once per tangent pattern, so each rule
    would seem to run twice; with its tangent known from the start, each is traced once."""
    return carry


@_tangent_from_the_start.defjvp
def _(primals, tangents):
    carry_dot, other_dot = tangents
    return primals[0], carry_dot + 0 * jnp.sum(other_dot).astype(carry_dot.dtype)


def _run_scan(op: _Op, vals, in_active, allow_jax_rules) -> list:
    """``lax.scan``: the body's gates run step by step; in reverse mode JAX's scan of the body
    saves each step's residuals and a reverse scan runs the body's VJP rules."""
    p = op.eqn.params
    nc, nk = p["num_consts"], p["num_carry"]
    body = _body(op, "body", p["jaxpr"])
    active = _carried(body, in_active, nc, nc + nk)
    vals = [_materialize(v) for v in vals]
    consts, init, xs = vals[:nc], vals[nc:nc + nk], vals[nc + nk:]
    carry_avals = [v.aval for v in op.eqn.outvars[:nk]]
    reversing = _reversing(vals, in_active)
    some = next((v for v, a in zip(vals, in_active) if a), None)
    init = [_tangent_from_the_start(c, some) if a and not b else c
            for c, a, b in zip(init, active[nc:nc + nk], in_active[nc:nc + nk])]

    def step_with(consts):
        def step(carry, x):
            with _in_reverse(reversing):
                outs = run(body, [*consts, *carry, *x], active, allow_jax_rules)
            return _typed(outs[:nk], carry_avals), outs[nk:]
        return step

    step = step_with(consts)
    if _UNROLL.get() is not None:
        return _explained_scan(op, step_with, consts, _typed(init, carry_avals), xs, reversing)
    carry, ys = lax.scan(step, _typed(init, carry_avals), xs, length=p["length"],
                         reverse=p["reverse"], unroll=p["unroll"])
    return [*carry, *ys]


# ------------------------------------------------------------------- loops under explain
#
# ``jaxprop.explain`` shows a scan the lecture's way: the first steps unrolled (the body's
# gates applied step by step in Python, so their events are ordinary events of the explained
# trace, each labelled with its step), and the remaining steps as one lax.scan whose gates
# send no event, shown as one summary row with the carry's gradient in and out.

_UNROLL = contextvars.ContextVar("jaxprop_unroll", default=None)
_STEP = contextvars.ContextVar("jaxprop_step", default=())


@contextlib.contextmanager
def unroll_for_explain(steps: int | None):
    """Inside, each ``lax.scan`` runs its first ``steps`` steps unrolled, and a cond all its
    branches with the chosen outputs selected (explain only; ``None``: as they are)."""
    token = _UNROLL.set(steps)
    try:
        yield
    finally:
        _UNROLL.reset(token)


def scan_step() -> str | None:
    """The loop step being traced under :func:`unroll_for_explain` (``"t=1"``), or None."""
    return ",".join(_STEP.get()) or None


@contextlib.contextmanager
def _at_step(label: str):
    token = _STEP.set((*_STEP.get(), label))
    try:
        yield
    finally:
        _STEP.reset(token)


_BRANCH = contextvars.ContextVar("jaxprop_branch", default=())
_CONDS = itertools.count()


def branch_path() -> tuple:
    """The branches being traced under :func:`unroll_for_explain`: ``(cond, index)`` pairs."""
    return _BRANCH.get()


@dataclasses.dataclass(frozen=True)
class BranchChoice:
    """Which branch of one cond ran (``kind="branch"`` events, explain only): ``inputs`` are
    the branch index and the operands, ``outputs`` the cond's outputs, ``upstream`` each
    branch's outputs, ``downstream`` the operands as each branch received them."""

    cond: int
    name: str = "cond"


def _explained_cond(branches, index, operands) -> list:
    """Every branch's gates run in the explained trace, labelled ``branch i``; the outputs
    are the chosen branch's, and an event tells explain which branch ran, so that it shows
    that branch's rows only."""
    cond = next(_CONDS)
    chosen = jnp.clip(index, 0, len(branches) - 1)
    outs, fed = [], []
    for i, fn in enumerate(branches):
        # a branch that did not run gets its operands under stop_gradient: its rules' NaN
        # (log at 0 given a zero gradient) never reaches the operands' gradients
        guarded = [jnp.where(chosen == i, o, lax.stop_gradient(o))
                   if jnp.issubdtype(jnp.result_type(o), jnp.inexact) else o
                   for o in operands]
        token = _BRANCH.set((*_BRANCH.get(), (cond, i)))
        try:
            with _at_step(f"branch {i}"):
                outs.append(fn(*guarded))
        finally:
            _BRANCH.reset(token)
        fed.append(tuple(guarded))
    picked = [o[0] if len(o) == 1 else lax.select_n(chosen, *o) for o in zip(*outs)]
    notify(RuleEvent(BranchChoice(cond), "branch", (chosen, *operands), tuple(picked),
                     tuple(tuple(o) for o in outs), tuple(fed)))
    return picked


@dataclasses.dataclass(frozen=True)
class ScanSteps:
    """The steps of a scan that explain summarises in one row (``kind="forward"`` and
    ``"vjp"`` events take a gate's place): ``first..last``, ``count`` of them."""

    first: int
    last: int
    count: int
    line: str
    name: str = "scan"
    pattern: str = "loop steps"
    symbol: str = "scan"
    elementwise: bool = False
    vjp: tuple = ()


def _explained_scan(op: _Op, step_with, consts, init, xs, reversing) -> list:
    p = op.eqn.params
    length, nk = p["length"], len(init)
    k = min(_UNROLL.get(), length)
    order = list(range(length))[::-1] if p["reverse"] else list(range(length))
    carry, ys = list(init), {}
    step = step_with(consts)
    for t in order[:k]:
        with _at_step(f"t={t}"):
            carry, y = step(carry, [x[t] for x in xs])
        ys[t] = y
    rest = order[k:]
    if rest:
        lo, hi = min(rest), max(rest) + 1
        summary = ScanSteps(rest[0], rest[-1], len(rest), _user_line(op))
        carry, rest_ys = _summarised(summary, step_with, consts, carry,
                                     [x[lo:hi] for x in xs], p["reverse"], reversing)
    else:
        rest_ys = None
    stacked = []
    for j in range(len(op.eqn.outvars) - nk):
        done = [ys[t][j] for t in sorted(ys)]
        parts = [jnp.stack(done)] if done else []
        if rest_ys is not None:
            parts.insert(0 if p["reverse"] else len(parts), rest_ys[j])
        stacked.append(parts[0] if len(parts) == 1 else jnp.concatenate(parts))
    return [*carry, *stacked]


def _summarised(summary: ScanSteps, step_with, consts, carry, xs, reverse, reversing):
    """The remaining steps as one lax.scan whose gates send no event; one event of its own
    (and in reverse mode one ``"vjp"`` event with the carry's gradient in and out)."""
    nc, nk = len(consts), len(carry)

    def flat(*vals):  # every array an argument: the silenced scan closes over no tracer
        with silenced(), unroll_for_explain(None):  # loops inside it run as they are
            c, ys = lax.scan(step_with(list(vals[:nc])), list(vals[nc:nc + nk]),
                             list(vals[nc + nk:]), length=summary.count, reverse=reverse)
        return (*c, *ys)

    # the row's inputs: the weights every step shares (floating-point ones), then the carry
    shown = [i for i, c in enumerate(consts)
             if jnp.issubdtype(jnp.result_type(c), jnp.inexact)] + list(range(nc, nc + nk))

    n_out = nk or None  # the row's outputs: the carry, or the ys of a scan without one

    def event(kind, vals, out, out_bar=None, in_bars=None):
        one = (lambda t: t[0]) if len(out[:n_out]) == 1 else tuple
        ins = tuple(vals[i] for i in shown)
        bars = None if in_bars is None else tuple(in_bars[i] for i in shown)
        if kind == "jvp":  # upstream: which input tangents flow; downstream: none named
            notify(RuleEvent(summary, kind, ins, one(out[:n_out]), bars))
        else:
            notify(RuleEvent(summary, kind, ins, one(out[:n_out]),
                             None if out_bar is None else one(out_bar[:n_out]), bars))

    if not reversing:
        out = flat(*consts, *carry, *xs)
        event("forward", [*consts, *carry], out)
        if wiring.current_rule_set() == "jvp":  # forward mode: explain shows the tangents
            event("jvp", [*consts, *carry], out, in_bars=[True] * (nc + nk))
        return list(out[:nk]), list(out[nk:])

    @jax.custom_vjp
    def rest(*vals):
        return flat(*vals)

    def fwd(*vals):
        with silenced():
            out, pull = jax.vjp(flat, *vals)
        return out, (vals, out, pull)

    def bwd(res, out_bar):
        vals, out, pull = res
        with silenced():
            in_bars = pull(out_bar)
        event("vjp", vals, out, out_bar, in_bars)
        return in_bars

    rest.defvjp(fwd, bwd)
    out = rest(*consts, *carry, *xs)
    event("forward", [*consts, *carry], out)
    return list(out[:nk]), list(out[nk:])


def _run_while(op: _Op, vals, in_active, allow_jax_rules) -> list:
    """``lax.while_loop`` (and ``fori_loop`` with bounds known only at run time): forward
    mode pushes tangents through the body's JVP rules; reverse mode is refused, as by JAX."""
    p = op.eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    vals = [_materialize(v) for v in vals]
    if _UNROLL.get() is not None:
        raise ValueError(
            f"explain: cannot show the while loop at {_user_line(op)} (lax.while_loop, or "
            "lax.fori_loop with bounds known only at run time): its steps are not known "
            "before it runs. Write it with lax.scan or lax.fori_loop with static bounds, "
            "which explain shows step by step")
    if _reversing(vals, in_active):
        raise ValueError(
            f"jaxprop: reverse mode cannot differentiate the while loop at {_user_line(op)} "
            "(lax.while_loop, or lax.fori_loop with bounds known only at run time): its "
            "number of steps is not known before it runs, so the steps cannot be saved to "
            "run backwards (jax.grad refuses it too). Write it with lax.scan, or "
            "lax.fori_loop with static bounds (Python ints), which run in both modes; or "
            "use forward mode (jaxprop.forward)")
    cond_consts, body_consts, init = vals[:cn], vals[cn:cn + bn], vals[cn + bn:]
    body = _body(op, "body", p["body_jaxpr"])
    active = _carried(body, in_active[cn:], bn, len(in_active) - cn)
    test = jex.jaxpr_as_fun(p["cond_jaxpr"])
    carry_avals = [v.aval for v in op.eqn.outvars]

    def step(carry):
        return _typed(run(body, [*body_consts, *carry], active, allow_jax_rules), carry_avals)

    return list(lax.while_loop(lambda carry: test(*cond_consts, *carry)[0], step,
                               _typed(init, carry_avals)))


def _run_cond(op: _Op, vals, in_active, allow_jax_rules) -> list:
    """``lax.cond`` and ``lax.switch``: a router. Each branch is traced through its gates,
    and only the branch taken runs, so only its gates get the gradient."""
    branches = [_body(op, i, b) for i, b in enumerate(op.eqn.params["branches"])]
    index, *operands = [_materialize(v) for v in vals]
    active = list(in_active[1:])
    out_avals = [v.aval for v in op.eqn.outvars]

    def branch(program):
        return lambda *a: _typed(run(program, list(a), active, allow_jax_rules), out_avals)

    if _UNROLL.get() is not None:
        return _explained_cond([branch(b) for b in branches], index, operands)
    return list(lax.switch(index, [branch(b) for b in branches], *operands))


def _run_remat(op: _Op, vals, in_active, allow_jax_rules) -> list:
    """``jax.checkpoint`` inside a loop's body: its gates run under ``jax.checkpoint`` with
    the user's policy, so what the policy says to recompute is not saved at each step."""
    p = op.eqn.params
    body = _body(op, "body", p["jaxpr"])
    active = list(in_active)

    def fn(*a):
        return run(body, list(a), active, allow_jax_rules)

    if _UNROLL.get() is not None:  # explain: the same values, the gates in the outer trace
        return fn(*[_materialize(v) for v in vals])
    return list(jax.checkpoint(fn, prevent_cse=p["prevent_cse"], policy=p["policy"])(
        *[_materialize(v) for v in vals]))


CONTROL_FLOW = {"scan": _run_scan, "while": _run_while, "cond": _run_cond,
                "checkpoint": _run_remat, "remat2": _run_remat}
"""Primitives that hold a body (a loop, the branches of a cond, a checkpointed step): each
body is traced through gates, recursively, and run inside the same JAX loop or branch."""
