"""The wiring of a gate's rules into JAX, and the checks of what the rules return.

How a gate's rules are wired depends on the *rule set* that is tracing:

* ``"jvp"`` (the default): the gate is a ``jax.custom_jvp`` running our JVP rules. This works
  under ``jax.jvp``, ``jax.grad`` (JAX transposes our linear JVP rules), ``jax.vmap`` and
  ``jax.hessian``. ``jaxprop.forward`` uses it.
* ``"vjp"``: the gate is a ``jax.custom_vjp`` running our VJP rules. ``jaxprop.reverse``
  traces under it (``with rule_set("vjp")``). ``custom_vjp`` refuses ``jax.jvp``, which is
  why it is not the default.

The two functions every driver differentiates with enter the rule sets here too, so a rule
set is entered and read in this one module: :func:`pullback` (``jax.vjp`` under ``"vjp"``)
and :func:`push_forward` (``jax.linearize`` under ``"jvp"``).

The choice is a ``jax.make_user_context``: it is part of ``jax.jit``'s cache key, so a
function jitted under one rule set is retraced, never silently reused, under the other.

Each rule's output is checked when it is traced (its shape and dtype, and a JVP rule's
linearity at its first use), so a wrong rule fails with the gate's name and the input, not
deep inside JAX. Speed tricks live here too, never in a rule the student reads: see
:data:`LAYOUTS`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxprop.events import RuleEvent, notify, observing
from jaxprop.gate import (
    GateContractError,
    broadcast_shape,
    describe,
    is_constant,
    merge_inputs,
    run_forward,
    unbroadcast,
)

__all__ = ["RULE_SETS", "rule_set", "current_rule_set", "pullback", "push_forward",
           "intercepting", "apply", "wire", "forget"]

RULE_SETS = ("jvp", "vjp")
"""The two ways a gate is wired: our JVP rules (the default) or our VJP rules."""

_rule_set = jax.make_user_context("jvp")
_intercept = jax.make_user_context(None)


def current_rule_set() -> str:
    """Returns the rule set that gates use when traced now: ``"jvp"`` or ``"vjp"``."""
    return _rule_set.value


@contextlib.contextmanager
def rule_set(name: str):
    """Traces gates with our JVP rules (``"jvp"``) or our VJP rules (``"vjp"``)."""
    if name not in RULE_SETS:
        raise ValueError(f"unknown rule set {name!r}; expected one of {RULE_SETS}")
    with _rule_set(name):
        yield


@contextlib.contextmanager
def intercepting(hook: Callable | None):
    """While set, a gate call runs ``hook(gate, const_mask, consts, params)(*consts, *arrays)``
    instead of the rule set's wiring: the tracer records explicit gate calls this way. The
    hook is part of ``jax.jit``'s cache key."""
    with _intercept(hook):
        yield


def pullback(f: Callable, *primals, has_aux: bool = False, rules: str = "vjp"):
    """Runs f forward and returns ``(out, pull, aux)``: ``pull(out_bar) -> primals_bar``, one
    entry per primal, runs the rules backwards (``aux`` is None without ``has_aux``).

    ``jax.vjp`` under the ``rules`` rule set: ``"vjp"``, our VJP rules; ``"jvp"``, our JVP
    rules transposed by JAX (compare's ``reverse-transposed-jvp``). f is called as given:
    the drivers hand it already traced into gates (``jaxprop.core.prepare``).
    """
    with rule_set(rules):
        out, pull, *aux = jax.vjp(f, *primals, has_aux=has_aux)

    def pull_in_rule_set(out_bar):
        with rule_set(rules):
            return pull(out_bar)

    return out, pull_in_rule_set, aux[0] if has_aux else None


def push_forward(f: Callable, *primals, has_aux: bool = False):
    """Runs f forward once and returns ``(out, push, aux)``: ``push(*tangents) -> out_dot``,
    the linear map J, pushes tangents through our JVP rules (``jax.linearize`` under the
    ``"jvp"`` rule set; ``aux`` is None without ``has_aux``)."""
    with rule_set("jvp"):
        out, push, *aux = jax.linearize(f, *primals, has_aux=has_aux)

    def push_in_rule_set(*tangents):
        with rule_set("jvp"):
            return push(*tangents)

    return out, push_in_rule_set, aux[0] if has_aux else None


def apply(gate, xs: tuple, params: dict):
    """``gate`` applied to its inputs ``xs`` and static ``params``, wired for the rule set
    tracing now; raises a clear error for inputs the gate cannot take."""
    if len(xs) != gate.arity:
        raise TypeError(f"{gate.name} takes {gate.arity} inputs, got {len(xs)}")
    if set(params) != set(gate.params):
        raise TypeError(f"{gate.name} takes the parameters {gate.params}, got "
                        f"{tuple(sorted(params))}")
    const_mask = tuple(is_constant(x) for x in xs)
    for i, x in enumerate(xs):
        if not const_mask[i] and gate.vjp[i] is not None:
            _check_float(gate.name, i, x)
    if gate.check is not None:
        gate.check(*xs, **params)
    if gate.broadcast:
        broadcast_shape(gate.name, xs, const_mask)
    frozen = tuple(sorted(params.items()))
    consts = tuple(x for x, c in zip(xs, const_mask) if c)
    arrays = [x for x, c in zip(xs, const_mask) if not c]
    if _intercept.value is not None:
        return _intercept.value(gate, const_mask, consts, frozen)(*consts, *arrays)
    out = wire(gate, current_rule_set(), const_mask, frozen)(*consts, *arrays)
    if observing():
        notify(RuleEvent(gate, "forward", tuple(xs), out, params=frozen))
    return out


RULE_SCOPE = "jaxprop_rule"
"""How the named scope of a gate's own computation begins (see :func:`rule_scope`)."""


def rule_scope(gate, rule: str, i: int | None = None):
    """A ``jax.named_scope`` around a gate's forward computation or one of its rules
    (``rule``: ``"forward"``, ``"VJP"`` or ``"JVP"``, for input ``i``): the operations traced
    inside carry it in their name stack, so the tracer can say whose rule an operation
    without a gate came from (:func:`scope_of` reads it back)."""
    name = "" if i is None else gate.input_names[i]
    return jax.named_scope(f"{RULE_SCOPE}({gate.name},{rule},{name})")


def scope_of(name_stack: str) -> tuple[str, str, str] | None:
    """``(gate name, rule, input name or "")`` of the innermost :func:`rule_scope` in a
    name stack, or None."""
    found = re.findall(re.escape(RULE_SCOPE) + r"\(([^,()]+),(\w+),(\w*)\)", name_stack)
    return tuple(found[-1]) if found else None


CPU_LAYOUT_MIN_SIZE = 2**16
"""From this many elements of x on, matmul's weight gradient runs in the CPU GEMM's layout."""


def _xt_dy_cpu_layout(x, dy):
    """x^T dy computed as (dy^T x)^T: the same product in the operand layout XLA:CPU's GEMM
    runs fastest (1.2 ms against 1.8 ms at N=200, D=3072, M=100; see
    benchmarks/train_step.py). The barrier stops XLA folding the transpose back."""
    return lax.optimization_barrier(dy.T @ x).T


def _matmul_w_bar(rule):
    def fast(res, dy):
        x, dy2 = res.x.reshape(-1, res.x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        if x.size < CPU_LAYOUT_MIN_SIZE:  # small products: the extra transpose costs more
            return rule(res, dy)
        return lax.platform_dependent(x, dy2, default=lambda x, dy: x.T @ dy,
                                      cpu=_xt_dy_cpu_layout)

    return fast


LAYOUTS: dict[tuple[str, int], Callable] = {("matmul", 1): _matmul_w_bar}
"""Speed tricks, kept out of the rules the student reads: (gate name, input) -> a function
of the VJP rule that returns a rule computing the same x_bar in a faster operand layout."""


def forget(gate=None) -> None:
    """Drops every wiring built so far and the linearity already checked (of ``gate`` only, or
    of every gate): after a gate's rules were replaced in place (``tests/mutation.py``)."""
    wire.cache_clear()
    if gate is None:
        _LINEAR_CHECKED.clear()
    else:
        _LINEAR_CHECKED.pop(gate, None)


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


def _bind(rule: Callable, params: dict) -> Callable:
    """``rule`` with the gate's static parameters bound (a gate without any: ``rule``)."""
    return functools.partial(rule, **params) if params else rule


@functools.lru_cache(maxsize=8192)
def wire(gate, rule_set: str, const_mask: tuple[bool, ...], frozen: tuple,
         name: str | None = None):
    """The JAX-visible function of ``gate`` for one rule set, constant pattern and set of
    static parameters ``frozen`` (sorted ``(name, value)`` pairs); it takes the constants,
    then the arrays. ``name``: the name of the wired function (the tracer finds it by it)."""
    params = dict(frozen)
    positions = [i for i, c in enumerate(const_mask) if not c]
    n_const = len(const_mask) - len(positions)
    vjps = [None if r is None else _bind(r, params) for r in gate.vjp]
    vjps = [LAYOUTS[gate.name, i](r) if (gate.name, i) in LAYOUTS and r is not None else r
            for i, r in enumerate(vjps)]
    jvps = [None if r is None else _bind(r, params) for r in gate.jvp]

    def merge(consts, arrays):
        return merge_inputs(const_mask, consts, arrays)

    def forward(xs):
        with rule_scope(gate, "forward"):
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
                with rule_scope(gate, "JVP", i):
                    part = _checked_tangent(gate, i, rule(res, x_dot), z)
                part = jax.tree.map(_like, part, z)  # z_dot takes z's dtype
                z_dot = part if z_dot is None else jax.tree.map(jnp.add, z_dot, part)
            if z_dot is None:
                z_dot = jax.tree.map(jnp.zeros_like, z)
            if observing() and _intercept.value is None:
                notify(RuleEvent(gate, "jvp", xs, z, tuple(x_dots), z_dot,
                                  lambda i, t: jvps[i](res, t), frozen))
            return z, z_dot

        wired.defjvp(jvp_rule, symbolic_zeros=True)
        if name is not None:
            wired.fun.__name__ = name
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
            with rule_scope(gate, "VJP", i):
                x_bar = _checked_cotangent(gate, i, rule(res, z_bar), xs[i], z)
            if gate.broadcast:
                x_bar = unbroadcast(x_bar, np.shape(xs[i]))
            x_bars.append(x_bar.astype(jnp.result_type(xs[i])))
        if observing():
            notify(RuleEvent(gate, "vjp", xs, z, z_bar, tuple(x_bars),
                              lambda i, t: vjps[i](res, t), frozen))
        return tuple(x_bars)

    wired.defvjp(fwd, bwd)
    return wired


_LINEAR_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per gate, the inputs whose JVP rule was found linear at its first use."""


def _input(gate, i: int) -> str:
    return f"input {i} ({gate.input_names[i]})"


def _checked_forward(gate, out):
    """``forward``'s ``(z, res)``, checked at each trace: a pair, z floating point."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise GateContractError(
            f"gate {gate.name!r}: forward must return (z, res), the output and the residuals "
            f"its rules read; got {describe(out)}. A forward that returns only z (as in "
            "micrograd) can return (z, x), or (z, None) when the rules need nothing")
    for leaf in jax.tree.leaves(out[0]):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise GateContractError(
                f"gate {gate.name!r}: forward's output z has dtype {dtype}; a gate's output "
                "is floating point (its inputs' dtype)")
    return out


def _checked_cotangent(gate, i: int, x_bar, x, z):
    """Input i's VJP rule output, checked: one floating array shaped like x (or, for a
    broadcasting gate, like the output, before the copies are summed back)."""
    if isinstance(x_bar, (int, float)) and not isinstance(x_bar, bool):
        x_bar = jnp.full(np.shape(x), x_bar, jnp.result_type(x))
    shape, dtype = np.shape(x), jnp.result_type(x)
    allowed = {tuple(shape)} | ({tuple(np.shape(z))} if gate.broadcast else set())
    if not hasattr(x_bar, "shape") or not hasattr(x_bar, "dtype"):
        raise GateContractError(
            f"gate {gate.name!r}: the VJP rule for {_input(gate, i)} returned "
            f"{describe(x_bar)}; expected one array x_bar shaped like the input, "
            f"{dtype}{list(shape)}")
    if tuple(x_bar.shape) not in allowed or not jnp.issubdtype(x_bar.dtype, jnp.inexact):
        raise GateContractError(
            f"gate {gate.name!r}: the VJP rule for {_input(gate, i)} returned "
            f"{describe(x_bar)}; expected x_bar shaped like the input, {dtype}{list(shape)}"
            + (f" (or like the output, {list(np.shape(z))})" if gate.broadcast else ""))
    return x_bar


def _checked_tangent(gate, i: int, part, z):
    """Input i's JVP rule output, checked: floating, with the structure and shapes of z."""
    want = jax.tree.structure(z)
    if jax.tree.structure(part) != want:
        raise GateContractError(
            f"gate {gate.name!r}: the JVP rule for {_input(gate, i)} returned {describe(part)}; "
            f"expected z_dot shaped like the output: {describe(z)}")
    for p, o in zip(jax.tree.leaves(part), jax.tree.leaves(z)):
        if np.shape(p) != np.shape(o) or not jnp.issubdtype(jnp.result_type(p), jnp.inexact):
            raise GateContractError(
                f"gate {gate.name!r}: the JVP rule for {_input(gate, i)} returned "
                f"{describe(jnp.asarray(p))}; expected z_dot shaped like the output, "
                f"{jnp.result_type(o)}{list(np.shape(o))}")
    return part


def _check_linear(gate, i: int, rule, res, x_dot) -> None:
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


def _like(part, z):
    return part.astype(jnp.result_type(z))


