"""The special-function gates: the error function family, 2^x and the cube root, the gamma
family (lgamma, digamma, polygamma, the incomplete gammas) and the scaled Bessel functions.

Each is a *scaled local gradient* from the table of derivatives: 2/sqrt(pi) e^{-x^2} for erf
(the exact GELU of BERT is built on it), digamma for lgamma, polygamma(n + 1) for
polygamma(n). The rules are written with other gates (lgamma's calls digamma, digamma's
calls polygamma), so a second or third derivative runs through our rules too.

Two derivatives have no gate, as JAX has no rule for them: polygamma's order n (an integer,
so it has none: its rule is None) and the second derivative of the incomplete gamma
functions in their shape a (``igamma_grad_a`` has no derivative; reaching it is an error
that names it).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import SCALED, Gate

__all__ = ["erf", "erfc", "erf_inv", "exp2", "cbrt", "lgamma", "digamma", "polygamma",
           "igamma", "igammac", "bessel_i0e", "bessel_i1e"]


class Inputs(NamedTuple):
    """Residuals: both inputs."""

    a: Any
    x: Any


class Order(NamedTuple):
    """Residuals of polygamma: the order and the input."""

    n: Any
    x: Any


class Operand(NamedTuple):
    """Residuals: the input and the output."""

    x: Any
    z: Any


def _as_arrays(*xs):
    """The inputs as arrays of one shape and floating dtype (Python numbers included), as
    the two-input special functions of ``lax`` take them."""
    dtype = jnp.result_type(*xs)
    return jnp.broadcast_arrays(*(jnp.asarray(x, dtype) for x in xs))


erf = Gate(
    "erf",
    pattern=SCALED,
    forward=lambda x: (lax.erf(x), x),
    vjp=(lambda x, z_bar: z_bar * 2 / math.sqrt(math.pi) * jnp.exp(-x * x),),
    jvp=(lambda x, x_dot: x_dot * 2 / math.sqrt(math.pi) * jnp.exp(-x * x),),
    local=("2/sqrt(pi) e^(-x^2)",),
    elementwise=True,
    primitives={"erf": None},
    doc="""Error-function gate: z = erf x = 2/sqrt(pi) (integral of e^(-t^2) from 0 to x).

The local gradient is the integrand at x: 2/sqrt(pi) e^(-x^2), the bell curve. The exact
GELU of BERT, 0.5 x (1 + erf(x / sqrt 2)), is built on it.
""",
)


erfc = Gate(
    "erfc",
    pattern=SCALED,
    forward=lambda x: (lax.erfc(x), x),
    vjp=(lambda x, z_bar: -z_bar * 2 / math.sqrt(math.pi) * jnp.exp(-x * x),),
    jvp=(lambda x, x_dot: -x_dot * 2 / math.sqrt(math.pi) * jnp.exp(-x * x),),
    local=("-2/sqrt(pi) e^(-x^2)",),
    elementwise=True,
    primitives={"erfc": None},
    doc="""Complementary error-function gate: z = erfc x = 1 - erf x, accurate for large x.

The local gradient is erf's with the sign flipped: -2/sqrt(pi) e^(-x^2).
``jax.nn.gelu(x, approximate=False)`` is written with it.
""",
)


erf_inv = Gate(
    "erf_inv",
    pattern=SCALED,
    forward=lambda x: (lax.erf_inv(x), lax.erf_inv(x)),
    vjp=(lambda z, z_bar: z_bar * math.sqrt(math.pi) / 2 * jnp.exp(z * z),),
    jvp=(lambda z, x_dot: x_dot * math.sqrt(math.pi) / 2 * jnp.exp(z * z),),
    local=("sqrt(pi)/2 e^(z^2)",),
    elementwise=True,
    primitives={"erf_inv": None},
    doc="""Inverse error-function gate: z = erf^-1 x, for -1 < x < 1.

The derivative of an inverse is one over the derivative: 1 / (2/sqrt(pi) e^(-z^2)) =
sqrt(pi)/2 e^(z^2), from the output.
""",
)


exp2 = Gate(
    "exp2",
    pattern=SCALED,
    forward=lambda x: (jnp.exp2(x), jnp.exp2(x)),
    vjp=(lambda z, z_bar: z_bar * math.log(2) * z,),
    jvp=(lambda z, x_dot: x_dot * math.log(2) * z,),
    local=("log(2) 2^x",),
    elementwise=True,
    primitives={"exp2": None},
    doc="""Base-two exponential gate: z = 2^x = e^(x log 2).

The local gradient is log(2) 2^x: the output times log 2.
""",
)


cbrt = Gate(
    "cbrt",
    pattern=SCALED,
    forward=lambda x: (jnp.cbrt(x), jnp.cbrt(x)),
    vjp=(lambda z, z_bar: z_bar / (3 * z * z),),
    jvp=(lambda z, x_dot: x_dot / (3 * z * z),),
    local=("1/(3 x^(2/3))",),
    elementwise=True,
    primitives={"cbrt": None},
    doc="""Cube-root gate: z = x^(1/3), for every real x (cbrt(-8) = -2).

The local gradient, 1/(3 x^(2/3)), is 1/(3 z^2): from the output.
""",
)


lgamma = Gate(
    "lgamma",
    pattern=SCALED,
    forward=lambda x: (lax.lgamma(x), x),
    vjp=(lambda x, z_bar: z_bar * lax.digamma(x),),
    jvp=(lambda x, x_dot: x_dot * lax.digamma(x),),
    local=("digamma(x)",),
    elementwise=True,
    primitives={"lgamma": None},
    doc="""Log-gamma gate: z = log |Gamma(x)| (``jax.scipy.special.gammaln``).

The local gradient is the digamma function, Gamma'(x)/Gamma(x): the derivative of a log is
the derivative over the value.
""",
)


digamma = Gate(
    "digamma",
    pattern=SCALED,
    forward=lambda x: (lax.digamma(x), x),
    vjp=(lambda x, z_bar: z_bar * lax.polygamma(jnp.ones_like(x), x),),
    jvp=(lambda x, x_dot: x_dot * lax.polygamma(jnp.ones_like(x), x),),
    local=("polygamma(1, x)",),
    elementwise=True,
    primitives={"digamma": None},
    doc="""Digamma gate: z = psi(x) = d/dx log Gamma(x).

The local gradient is the trigamma function, polygamma(1, x).
""",
)


polygamma = Gate(
    "polygamma",
    pattern=SCALED,
    forward=lambda n, x: (lax.polygamma(*_as_arrays(n, x)), Order(n, x)),
    vjp=(None, lambda res, z_bar: z_bar * lax.polygamma(*_as_arrays(res.n + 1, res.x))),
    jvp=(None, lambda res, x_dot: x_dot * lax.polygamma(*_as_arrays(res.n + 1, res.x))),
    local=(None, "polygamma(n+1, x)"),
    broadcast=True,
    primitives={"polygamma": None},
    doc="""Polygamma gate: z = psi^(n)(x), the n-th derivative of digamma.

The local gradient in x is the next one, polygamma(n + 1, x). The order n is an integer
(held in a float array): it has no derivative.
""",
)


def _gamma_density(a, x):
    """x^(a-1) e^(-x) / Gamma(a): the integrand of the incomplete gamma at its upper end."""
    return jnp.exp((a - 1) * jnp.log(x) - x - lax.lgamma(a))


igamma = Gate(
    "igamma",
    pattern=SCALED,
    forward=lambda a, x: (lax.igamma(*_as_arrays(a, x)), Inputs(*_as_arrays(a, x))),
    vjp=(lambda res, z_bar: z_bar * lax.igamma_grad_a(res.a, res.x),
         lambda res, z_bar: z_bar * _gamma_density(res.a, res.x)),
    jvp=(lambda res, a_dot: a_dot * lax.igamma_grad_a(res.a, res.x),
         lambda res, x_dot: x_dot * _gamma_density(res.a, res.x)),
    local=("igamma_grad_a(a, x)", "x^(a-1) e^(-x) / Gamma(a)"),
    broadcast=True,
    primitives={"igamma": None},
    doc="""Regularized lower incomplete gamma gate: z = P(a, x) = (integral of t^(a-1) e^(-t)
from 0 to x) / Gamma(a) (``jax.scipy.special.gammainc``), for a, x > 0.

The local gradient in x is the integrand at its upper end over Gamma(a): x^(a-1) e^(-x) /
Gamma(a). In the shape a it has no closed form: JAX's ``igamma_grad_a`` computes it, and
that function has no derivative of its own (a second derivative in a is an error naming it).
""",
)


igammac = Gate(
    "igammac",
    pattern=SCALED,
    forward=lambda a, x: (lax.igammac(*_as_arrays(a, x)), Inputs(*_as_arrays(a, x))),
    vjp=(lambda res, z_bar: -z_bar * lax.igamma_grad_a(res.a, res.x),
         lambda res, z_bar: -z_bar * _gamma_density(res.a, res.x)),
    jvp=(lambda res, a_dot: -a_dot * lax.igamma_grad_a(res.a, res.x),
         lambda res, x_dot: -x_dot * _gamma_density(res.a, res.x)),
    local=("-igamma_grad_a(a, x)", "-x^(a-1) e^(-x) / Gamma(a)"),
    broadcast=True,
    primitives={"igammac": None},
    doc="""Regularized upper incomplete gamma gate: z = Q(a, x) = 1 - P(a, x)
(``jax.scipy.special.gammaincc``).

The local gradients are igamma's with the sign flipped.
""",
)


class Scaled(NamedTuple):
    """Residuals of i0e: the input, the output and the side of the kink at 0 (1 or -1)."""

    x: Any
    z: Any
    side: Any


def _i0e_forward(x):
    z = lax.bessel_i0e(x)
    return z, Scaled(x, z, jnp.where(x >= 0, 1, -1).astype(z.dtype))


bessel_i0e = Gate(
    "bessel_i0e",
    pattern=SCALED,
    forward=_i0e_forward,
    vjp=(lambda res, z_bar: z_bar * (lax.bessel_i1e(res.x) - res.side * res.z),),
    jvp=(lambda res, x_dot: x_dot * (lax.bessel_i1e(res.x) - res.side * res.z),),
    local=("i1e(x) - sign(x) i0e(x)",),
    elementwise=True,
    primitives={"bessel_i0e": None},
    doc="""Scaled Bessel gate of order 0: z = i0e(x) = e^(-|x|) I0(x).

I0' = I1, and the scale e^(-|x|) adds -sign(x) times the value: i1e(x) - sign(x) i0e(x).
The scale has a kink at x = 0, where the gate takes the right-hand derivative, -1, as the
abs gate does (jax.grad gives 0 there, the mean of the two sides).
""",
)


def _i1e_slope(x, z):
    """i0e(x) - i1e(x) (sign(x) + 1/x), and its limit 1/2 at x = 0 (x = 1 stands in there,
    so that no 1/0 reaches a derivative of it)."""
    safe_x = jnp.where(x == 0, 1, x)
    return jnp.where(x == 0, 0.5, lax.bessel_i0e(safe_x) - z * (jnp.sign(safe_x) + 1 / safe_x))


bessel_i1e = Gate(
    "bessel_i1e",
    pattern=SCALED,
    forward=lambda x: (lax.bessel_i1e(x), Operand(x, lax.bessel_i1e(x))),
    vjp=(lambda res, z_bar: z_bar * _i1e_slope(res.x, res.z),),
    jvp=(lambda res, x_dot: x_dot * _i1e_slope(res.x, res.z),),
    local=("i0e(x) - i1e(x) (sign(x) + 1/x)",),
    elementwise=True,
    primitives={"bessel_i1e": None},
    doc="""Scaled Bessel gate of order 1: z = i1e(x) = e^(-|x|) I1(x).

I1' = I0 - I1/x, and the scale e^(-|x|) adds -sign(x) times the value:
i0e(x) - i1e(x) (sign(x) + 1/x), which tends to 1/2 at x = 0.
""",
)
