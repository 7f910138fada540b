"""The lecture's gates, each with its hand-written local rules.

Notation (Autodidax's): ``z`` is a gate's output, ``z_bar`` the upstream gradient dL/dz,
``x_bar`` a downstream gradient dL/dx, ``x_dot`` an input tangent and ``z_dot`` the output
tangent. Each rule sits under its forward computation, as in micrograd.

The modules hold the gates by kind:

* ``arithmetic``: add (distributor), sub, mul (swap multiplier), div, 1/x, powers, max and
  min (routers), abs, where, select (n cases: a chain of selects);
* ``nonlinear``: exp, log, sigmoid ((1 - s) s), tanh, sqrt, ReLU (a sparse Jacobian, never
  formed);
* ``reductions``: sum, mean, prod (never dividing by x), max and min over axes;
* ``structure``: copy (the gradient adder), broadcast, reshape, squeeze, transpose, cast, tile;
* ``indexing``: slices, dynamic slices and updates, gathers (the pick ``s[arange(N), y]``
  scatter-adds its gradient), scatters (set and min/max route, add distributes, multiply
  switches), concatenate, split;
* ``linalg``: matmul, ``dx = dy W^T``, ``dW = x^T dy``, and ``dot_general`` in full;
* ``trig``: sin (cos x), cos, tan, their inverses (atan: 1/(1+x^2)), atan2, sinh, cosh and
  theirs;
* ``special``: erf (2/sqrt(pi) e^(-x^2)), erfc, erf_inv, exp2, cbrt, lgamma (digamma),
  digamma, polygamma, the incomplete gammas, the scaled Bessel functions;
* ``piecewise``: rem (a sawtooth), clamp (a router with three inputs), reduce_precision;
* ``stacking``: unstack (and ``jnp.stack``, applied as reshape and concatenate gates);
* ``approx``: the approximate top-k (a router: each picked element takes its gradient).
* ``scans``: cumsum (a reverse cumsum back), cumprod, cumlogsumexp, cummax and cummin
  (routers to the running winner);
* ``sorting``: sort and top_k (the gradient moved back through the order found).

Kinks follow the lecture, and both modes share the convention: ``relu`` passes the gradient
only where ``x > 0``; ``maximum`` routes a tie all to its first input (``jnp.maximum`` splits
it half and half).

``GATES`` lists every gate by name; it is built from the modules themselves, so a new gate
is registered by being written in one of them.
"""

from __future__ import annotations

from jaxprop.gate import Gate
from jaxprop.gates import (
    approx,
    arithmetic,
    indexing,
    linalg,
    nonlinear,
    piecewise,
    reductions,
    scans,
    sorting,
    special,
    stacking,
    structure,
    trig,
)
from jaxprop.gates.approx import approx_top_k
from jaxprop.gates.arithmetic import (
    abs,
    add,
    div,
    integer_pow,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    reciprocal,
    select,
    select_n,
    sub,
    where,
)
from jaxprop.gates.indexing import (
    concatenate,
    dynamic_slice,
    dynamic_update_slice,
    gather,
    scatter,
    scatter_add,
    scatter_max,
    scatter_min,
    scatter_mul,
    slice,
    split,
)
from jaxprop.gates.linalg import dot_general, matmul
from jaxprop.gates.nonlinear import exp, expm1, log, log1p, relu, rsqrt, sigmoid, sqrt, tanh
from jaxprop.gates.piecewise import clamp, reduce_precision, rem
from jaxprop.gates.reductions import max, mean, min, prod, sum
from jaxprop.gates.scans import cumlogsumexp, cummax, cummin, cumprod, cumsum
from jaxprop.gates.sorting import sort, top_k
from jaxprop.gates.special import (
    bessel_i0e,
    bessel_i1e,
    cbrt,
    digamma,
    erf,
    erf_inv,
    erfc,
    exp2,
    igamma,
    igammac,
    lgamma,
    polygamma,
)
from jaxprop.gates.stacking import unstack
from jaxprop.gates.structure import (
    broadcast_to,
    cast,
    copy,
    expand_dims,
    reshape,
    rev,
    squeeze,
    tile,
    transpose,
)
from jaxprop.gates.trig import (
    acos,
    acosh,
    asin,
    asinh,
    atan,
    atan2,
    atanh,
    cos,
    cosh,
    sin,
    sinh,
    tan,
)

__all__ = [
    "add", "sub", "neg", "mul", "div", "reciprocal", "pow", "integer_pow", "maximum",
    "minimum", "abs", "select", "where",
    "exp", "log", "log1p", "expm1", "sigmoid", "tanh", "sqrt", "rsqrt", "relu",
    "sum", "mean", "max", "min",
    "copy", "broadcast_to", "reshape", "squeeze", "expand_dims", "transpose", "rev", "cast",
    "slice", "dynamic_slice", "gather", "scatter", "scatter_add", "scatter_mul",
    "scatter_max", "scatter_min", "concatenate", "split",
    "matmul", "dot_general",
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh",
    "atanh", "erf", "erfc", "erf_inv", "exp2", "cbrt", "lgamma", "digamma", "polygamma",
    "igamma", "igammac", "bessel_i0e", "bessel_i1e", "rem", "clamp", "reduce_precision",
    "unstack", "approx_top_k",
    "cumsum", "cumprod", "cumlogsumexp", "cummax", "cummin", "sort", "top_k", "prod",
    "dynamic_update_slice", "tile", "select_n",
    "GATES", "pattern_table",
]

_MODULES = (arithmetic, nonlinear, reductions, structure, indexing, linalg)
_MODULES += (trig, special, piecewise, stacking, approx)
_MODULES += (scans, sorting)

GATES: dict[str, Gate] = {
    g.name: g for module in _MODULES for g in vars(module).values() if isinstance(g, Gate)}
"""Every gate, by name: the one registry of gates."""


def pattern_table() -> str:
    """The README's table of the lecture's patterns, written from the gates' own rules: each
    rule as its code is written (:func:`jaxprop.gate.rule_text`)."""
    lines = ["| gate | lecture pattern | local gradient | VJP rules | JVP rules |",
             "|---|---|---|---|---|"]
    for gate in GATES.values():
        local = "; ".join(f"`{n}: {_plain(t)}`" for n, t in zip(gate.input_names, gate.local) if t)
        backward, forward = gate.rule_lines().splitlines()
        lines.append(f"| `{gate.name}` | {gate.pattern} | {local} "
                     f"| `{backward.removeprefix('Backward: ')}` "
                     f"| `{forward.removeprefix('Forward: ')}` |")
    return "\n".join(lines) + "\n"


def _plain(text: str) -> str:
    """A local gradient's text without the dimension analysis explain shows after two spaces."""
    return text.split("  ")[0]
