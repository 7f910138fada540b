"""Watching gates run: :func:`observe` and the :class:`RuleEvent` each gate application sends.

The wiring (``jaxprop.wiring``) and the tracer send an event each time a gate or one of its
rules is traced; ``jaxprop.explain`` and the tests listen.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["RuleEvent", "observe", "observing", "notify"]

_observing = jax.make_user_context(())  # in jit's cache key: observed code is retraced
_observe_blocks = itertools.count()
_observers: list[Callable[..., None]] = []


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

    gate: Any  # a jaxprop.gate.Gate, or the tracer's JaxRule / CustomRule
    kind: str
    inputs: tuple
    outputs: Any
    upstream: Any = None
    downstream: Any = None
    rule: Callable[[int, Any], Any] | None = None
    params: tuple = ()


_silent = contextvars.ContextVar("jaxprop_silent", default=False)


@contextlib.contextmanager
def silenced():
    """No event is sent while inside (explain's summarised loop steps: their gates run in
    an inner trace whose values cannot be handed back)."""
    token = _silent.set(True)
    try:
        yield
    finally:
        _silent.reset(token)


def observing() -> bool:
    """Whether anyone observes now (the wiring builds no event otherwise)."""
    return bool(_observers) and not _silent.get()


def notify(event: RuleEvent) -> None:
    """Sends ``event`` to every observer."""
    if _silent.get():
        return
    for callback in tuple(_observers):
        callback(event)
