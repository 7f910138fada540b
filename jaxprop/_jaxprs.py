"""What the jaxpr walkers share (the tracer, the linearity check, the plain-JAX oracle)."""

from __future__ import annotations

from jax.extend import core as jex

__all__ = ["called_jaxpr"]


def called_jaxpr(eqn) -> tuple | None:
    """``(jaxpr, consts)`` of the jaxpr an equation calls (a nested jit, a custom_jvp or
    custom_vjp call, a lax.composite's decomposition, a custom_vmap function's body), or None
    when it calls none."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr", "call"):
        sub = eqn.params.get(key)
        if isinstance(sub, jex.ClosedJaxpr):
            return sub.jaxpr, sub.consts
        if isinstance(sub, jex.Jaxpr):
            return sub, ()
    return None
