"""Is a JVP rule linear in its tangent? A look at the operations it applies to the tangent.

``jax.grad`` of a gate transposes the gate's JVP rule, and JAX can transpose only a linear
function of the tangent: additions, products with values that do not depend on the tangent,
reshapes, sums, matrix products with one side fixed. ``nonlinear_use`` traces a rule to a
jaxpr and follows the tangent through it. An operation on the tangent that JAX has no
transpose for (``exp``, a comparison, ``max``), or a product of the tangent with itself, is
reported with the line of the rule it came from, so the gate's author hears about it at the
gate's first use instead of from deep inside JAX's transpose.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
from jax.interpreters import ad

from jaxprop._jaxprs import called_jaxpr

try:  # JAX keeps some transpose rules (slice, mul, dot_general, jit) in a second table
    from jax._src.interpreters.ad import fancy_transposes as _FANCY
except ImportError:  # pragma: no cover - a JAX without it
    _FANCY = {}

__all__ = ["nonlinear_use"]

_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "custom_jvp_call",
          "custom_vjp_call", "custom_vjp_call_jaxpr")
_ONE_LINEAR = ("mul", "dot_general", "conv_general_dilated", "ragged_dot_general")
"""Bilinear operations: linear in the tangent only when one operand is free of it."""
_FIRST_ONLY = {"div": 0, "triangular_solve": 1, "custom_linear_solve": None}
"""Operations linear in one operand only (``x_dot / y``, not ``y / x_dot``)."""


def _where(eqn) -> str:
    """`` (file:line)`` of the rule's code that made ``eqn``: its first frame outside JAX."""
    skip = (os.path.dirname(jax.__file__) + os.sep, os.sep + "jaxlib" + os.sep,
            os.path.dirname(__file__) + os.sep + "_linearity.py",
            os.path.dirname(__file__) + os.sep + "gate.py")
    tb = getattr(eqn.source_info, "traceback", None)
    for frame in getattr(tb, "frames", None) or []:
        if not any(s in frame.file_name for s in skip):
            return f" ({frame.file_name}:{frame.line_num})"
    return ""


def _follow(jaxpr, linear_in: list[bool]) -> str | None:
    """The first non-linear use of the linear inputs in ``jaxpr``, or None."""
    linear = {v: flag for v, flag in zip(jaxpr.invars, linear_in)}

    def is_linear(v) -> bool:
        return linear.get(v, False) if not hasattr(v, "val") else False

    for eqn in jaxpr.eqns:
        flags = [is_linear(v) for v in eqn.invars]
        if not any(flags):
            continue
        name = eqn.primitive.name
        sub = (called_jaxpr(eqn) or (None,))[0] if name in _CALLS else None
        if sub is not None:
            found = _follow(sub, flags[len(flags) - len(sub.invars):])
            if found:
                return found
        elif name in _ONE_LINEAR and sum(flags) > 1:
            return f"'{name}' multiplies the tangent by itself{_where(eqn)}"
        elif name in _FIRST_ONLY and _FIRST_ONLY[name] is not None and any(
                f for k, f in enumerate(flags) if k != _FIRST_ONLY[name]):
            return f"'{name}' has the tangent in an operand it is not linear in{_where(eqn)}"
        elif eqn.primitive not in ad.primitive_transposes and eqn.primitive not in _FANCY:
            return f"'{name}' is applied to the tangent{_where(eqn)}"
        for v in eqn.outvars:
            linear[v] = True
    return None


def nonlinear_use(rule: Callable, tangent) -> str | None:
    """Where ``rule(tangent)`` stops being linear in ``tangent``, or None where it is linear.

    Args:
      rule: a function of the tangent alone (the gate's residuals closed over).
      tangent: an array (or tracer) of the tangent's shape and dtype.

    Returns:
      None, or a phrase such as ``"'exp' is applied to the tangent (my_gates.py:12)"``.
    """
    closed = jax.make_jaxpr(rule)(tangent)
    return _follow(closed.jaxpr, [True])
