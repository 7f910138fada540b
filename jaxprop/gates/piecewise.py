"""The piecewise gates: the remainder (a sawtooth), clamp (a router with three inputs) and
reduce_precision (a fine staircase that passes the gradient straight through).

Kinks follow the lecture's router convention: clamp's output is ``min(max(x, lo), hi)``, and
as in the max and min gates a tie goes to x, so that the gradient is never lost nor doubled:
x takes it where lo <= x <= hi, lo where x < lo, hi where x > hi. Where lo >= hi the output
is hi whatever x is, and hi takes it (at lo == hi == x too: moving x alone, either way,
moves nothing there). ``lax.clamp``'s own rule gives nobody the gradient at a tie.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import ROUTER, SCALED, STRUCTURE, Gate

__all__ = ["rem", "clamp", "reduce_precision"]


class Winners(NamedTuple):
    """Residuals of clamp: where lo wins, and where hi wins (x wins elsewhere)."""

    lo: Any
    hi: Any


rem = Gate(
    "rem",
    pattern=SCALED,
    symbol="rem",
    forward=lambda x, y: (lax.rem(x, y), jnp.trunc(x / y)),
    vjp=(lambda q, z_bar: z_bar, lambda q, z_bar: -z_bar * q),
    jvp=(lambda q, x_dot: x_dot, lambda q, y_dot: -y_dot * q),
    local=("1", "-trunc(x/y)"),
    tangent="x_dot - y_dot trunc(x/y)",
    broadcast=True,
    primitives={"rem": None},
    doc="""Remainder gate: z = x - trunc(x/y) y, with the sign of x (``jnp.fmod``, C's
``fmod``).

Between the jumps the quotient q = trunc(x/y) is a fixed integer, so z = x - q y is linear:
the local gradients are 1 for x and -q for y. The quotient has no gradient (a staircase).
""",
)


def _clamp_forward(lo, x, hi):
    z = lax.clamp(lo, x, hi)
    hi_wins = (x > hi) | (lo >= hi)  # where lo >= hi the output is hi, whatever x is
    return z, Winners(lo=(x < lo) & ~hi_wins, hi=hi_wins)


clamp = Gate(
    "clamp",
    pattern=ROUTER,
    forward=_clamp_forward,
    vjp=(lambda won, z_bar: jnp.where(won.lo, z_bar, 0),
         lambda won, z_bar: jnp.where(won.lo | won.hi, 0, z_bar),
         lambda won, z_bar: jnp.where(won.hi, z_bar, 0)),
    jvp=(lambda won, lo_dot: jnp.where(won.lo, lo_dot, 0),
         lambda won, x_dot: jnp.where(won.lo | won.hi, 0, x_dot),
         lambda won, hi_dot: jnp.where(won.hi, hi_dot, 0)),
    local=("[x < lo < hi]", "[lo <= x <= hi, lo < hi]", "[x > hi or lo >= hi]"),
    tangent="the winner's tangent: lo_dot, x_dot or hi_dot",
    broadcast=True,
    primitives={"clamp": None},
    doc="""Clamp gate: z = min(max(x, lo), hi), elementwise (``lax.clamp(lo, x, hi)``).

The "gradient router" with three inputs: the one whose value is the output takes the whole
upstream gradient. A tie goes to x, as max and min give a tie to their first input.
""",
)


reduce_precision = Gate(
    "reduce_precision",
    pattern=STRUCTURE,
    forward=lambda x, *, exponent_bits, mantissa_bits: (
        lax.reduce_precision(x, exponent_bits, mantissa_bits), None),
    vjp=(lambda res, z_bar, **bits: z_bar,),
    jvp=(lambda res, x_dot, **bits: x_dot,),
    local=("1 (straight through)",),
    tangent="x_dot",
    params=("exponent_bits", "mantissa_bits"),
    elementwise=True,
    primitives={"reduce_precision": None},
    doc="""Reduce-precision gate: z = x rounded to fewer exponent and mantissa bits, kept in
x's dtype (a cast to bfloat16 and back, say).

The rounding is a staircase too fine to matter to a gradient: the gradient passes straight
through, unchanged (JAX's own rule rounds the tangent as well; in float64 the two agree to
the rounding of the narrow format).
""",
)
