"""The lecture's gates, each with its hand-written local rules.

Notation (Autodidax's): ``z`` is a gate's output, ``z_bar`` the upstream gradient dL/dz,
``x_bar`` a downstream gradient dL/dx, ``x_dot`` an input tangent and ``z_dot`` the output
tangent. Each rule sits under its forward computation, as in micrograd.

The modules hold the gates by kind:

* ``arithmetic``: add (distributor), sub, neg, mul (swap multiplier), div, 1/x, powers, max
  and min (routers), abs, select and where (``select_n``, n cases: a chain of selects);
* ``nonlinear``: exp, log, sigmoid ((1 - s) s), tanh, sqrt, ReLU (a sparse Jacobian, never
  formed);
* ``reductions``: sum, mean, prod (never dividing by x), max and min over axes;
* ``structure``: copy (the gradient adder), broadcast, reshape, squeeze, expand_dims,
  transpose, reverse, cast, tile;
* ``indexing``: slices and pads (each the other's transpose), dynamic slices and updates,
  gathers (the pick ``s[arange(N), y]`` scatter-adds its gradient), scatters (set and
  min/max route, add distributes, multiply switches), concatenate, split;
* ``linalg``: matmul, ``dx = dy W^T``, ``dW = x^T dy``, and ``dot_general`` in full;
  triangular, tridiagonal and general linear solves, and the factorizations (Cholesky, LU,
  QR, the symmetric eigen-decomposition, the SVD), whose rules are solves and matmuls;
* ``convolution``: conv, ``dx`` the "full" convolution of dy with the flipped filters,
  ``dW`` the correlation of x with dy;
* ``windows``: max and min pooling (routers: each window's first winner), sum and average
  pooling (distributors), and JAX's max-pool gradient steps (select and scatter/gather add);
* ``trig``: sin (cos x), cos, tan, their inverses (atan: 1/(1+x^2)), atan2, sinh, cosh and
  theirs;
* ``special``: erf (2/sqrt(pi) e^(-x^2)), erfc, erf_inv, exp2, cbrt, lgamma (digamma),
  digamma, polygamma, the incomplete gammas, the scaled Bessel functions;
* ``piecewise``: rem (a sawtooth), clamp (a router with three inputs), reduce_precision;
* ``stacking``: unstack (and ``jnp.stack``, applied as reshape and concatenate gates);
* ``approx``: the approximate top-k (a router: each picked element takes its gradient);
* ``scans``: cumsum (a reverse cumsum back), cumprod, cumlogsumexp, cummax and cummin
  (routers to the running winner);
* ``sorting``: sort and top_k (the gradient moved back through the order found);
* ``norm``: batch norm, spatial batch norm and layer norm as fused gates (CS231n's simplified
  backward), and inverted dropout with its key or mask as an argument.

Kinks follow the lecture, and both modes share the convention: ``relu`` passes the gradient
only where ``x > 0``; ``maximum`` routes a tie all to its first input (``jnp.maximum`` splits
it half and half).

``GATES`` lists every gate by name, and each is public under its name (``gates.tanh`` is
``GATES["tanh"]``). It is found in the package's modules themselves (:func:`find_gates`), so
a new gate, or a new module of gates, is registered by being written there.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from jaxprop.gate import Gate, GateContractError


def find_gates(package: ModuleType) -> dict[str, Gate]:
    """Every gate defined in the modules of ``package``, by name (modules in alphabetical
    order): a gates module is found by being in the package, with no list to edit."""
    found: dict[str, Gate] = {}
    for info in pkgutil.iter_modules(package.__path__, prefix=package.__name__ + "."):
        for gate in vars(importlib.import_module(info.name)).values():
            if not isinstance(gate, Gate):
                continue
            if found.setdefault(gate.name, gate) is not gate:
                raise GateContractError(f"two gates are named {gate.name!r} (one in "
                                        f"{info.name}): a gate's name is its key in GATES")
    return found


GATES: dict[str, Gate] = find_gates(sys.modules[__name__])
"""Every gate, by name: the one registry of gates. Each is also ``jaxprop.gates.<name>``."""

globals().update(GATES)
__all__ = [*GATES, "GATES", "find_gates", "pattern_table"]

if TYPE_CHECKING:  # every public name of this package is a gate of GATES
    def __getattr__(name: str) -> Gate: ...


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
