"""The trigonometric and hyperbolic gates: sin, cos, tan, their inverses, atan2, sinh, cosh
and theirs.

Each is a *scaled local gradient*, the derivative from the calculus table: cos x for sin x,
1/(1 + x^2) for atan x, cosh x for sinh x. The rules are written with other gates (sin's
rule calls cos, cos's calls sin), so a second or third derivative runs through our rules
too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from jaxprop.gate import SCALED, Gate

__all__ = ["sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh",
           "acosh", "atanh"]


class Inputs(NamedTuple):
    """Residuals of atan2: both inputs."""

    x: Any
    y: Any


sin = Gate(
    "sin",
    pattern=SCALED,
    forward=lambda x: (jnp.sin(x), x),
    vjp=(lambda x, z_bar: z_bar * jnp.cos(x),),
    jvp=(lambda x, x_dot: x_dot * jnp.cos(x),),
    local=("cos x",),
    elementwise=True,
    primitives={"sin": None},
    doc="""Sine gate: z = sin x.

The local gradient is cos x.
""",
)


cos = Gate(
    "cos",
    pattern=SCALED,
    forward=lambda x: (jnp.cos(x), x),
    vjp=(lambda x, z_bar: -z_bar * jnp.sin(x),),
    jvp=(lambda x, x_dot: -x_dot * jnp.sin(x),),
    local=("-sin x",),
    elementwise=True,
    primitives={"cos": None},
    doc="""Cosine gate: z = cos x.

The local gradient is -sin x.
""",
)


tan = Gate(
    "tan",
    pattern=SCALED,
    forward=lambda x: (jnp.tan(x), jnp.tan(x)),
    vjp=(lambda z, z_bar: z_bar * (1 + z * z),),
    jvp=(lambda z, x_dot: x_dot * (1 + z * z),),
    local=("1 + tan^2 x",),
    elementwise=True,
    primitives={"tan": None},
    doc="""Tangent gate: z = tan x.

The local gradient, 1/cos^2 x, is 1 + tan^2 x = 1 + z^2: from the output.
""",
)


asin = Gate(
    "asin",
    pattern=SCALED,
    forward=lambda x: (jnp.arcsin(x), x),
    vjp=(lambda x, z_bar: z_bar / jnp.sqrt(1 - x * x),),
    jvp=(lambda x, x_dot: x_dot / jnp.sqrt(1 - x * x),),
    local=("1/sqrt(1-x^2)",),
    elementwise=True,
    primitives={"asin": None},
    doc="""Arcsine gate: z = asin x, for -1 < x < 1.

The local gradient is 1/sqrt(1 - x^2); it grows without bound at x = +-1.
""",
)


acos = Gate(
    "acos",
    pattern=SCALED,
    forward=lambda x: (jnp.arccos(x), x),
    vjp=(lambda x, z_bar: -z_bar / jnp.sqrt(1 - x * x),),
    jvp=(lambda x, x_dot: -x_dot / jnp.sqrt(1 - x * x),),
    local=("-1/sqrt(1-x^2)",),
    elementwise=True,
    primitives={"acos": None},
    doc="""Arccosine gate: z = acos x, for -1 < x < 1.

The local gradient is -1/sqrt(1 - x^2): asin's with the sign flipped, since
acos x = pi/2 - asin x.
""",
)


atan = Gate(
    "atan",
    pattern=SCALED,
    forward=lambda x: (jnp.arctan(x), x),
    vjp=(lambda x, z_bar: z_bar / (1 + x * x),),
    jvp=(lambda x, x_dot: x_dot / (1 + x * x),),
    local=("1/(1+x^2)",),
    elementwise=True,
    primitives={"atan": None},
    doc="""Arctangent gate: z = atan x.

The local gradient is 1/(1 + x^2).
""",
)


atan2 = Gate(
    "atan2",
    pattern=SCALED,
    forward=lambda x, y: (jnp.arctan2(x, y), Inputs(x, y)),
    vjp=(lambda res, z_bar: z_bar * res.y / (res.x * res.x + res.y * res.y),
         lambda res, z_bar: -z_bar * res.x / (res.x * res.x + res.y * res.y)),
    jvp=(lambda res, x_dot: x_dot * res.y / (res.x * res.x + res.y * res.y),
         lambda res, y_dot: -y_dot * res.x / (res.x * res.x + res.y * res.y)),
    local=("y/(x^2+y^2)", "-x/(x^2+y^2)"),
    tangent="(x_dot y - y_dot x)/(x^2+y^2)",
    broadcast=True,
    primitives={"atan2": None},
    doc="""Two-argument arctangent gate: z = atan2(x, y), the angle of the point (y, x).

Where y > 0 it is atan(x / y), and the chain rule through x / y gives the local gradients
y/(x^2 + y^2) and -x/(x^2 + y^2), which hold in every quadrant (away from the origin).
""",
)


sinh = Gate(
    "sinh",
    pattern=SCALED,
    forward=lambda x: (jnp.sinh(x), x),
    vjp=(lambda x, z_bar: z_bar * jnp.cosh(x),),
    jvp=(lambda x, x_dot: x_dot * jnp.cosh(x),),
    local=("cosh x",),
    elementwise=True,
    primitives={"sinh": None},
    doc="""Hyperbolic sine gate: z = sinh x = (e^x - e^-x)/2.

The local gradient is cosh x.
""",
)


cosh = Gate(
    "cosh",
    pattern=SCALED,
    forward=lambda x: (jnp.cosh(x), x),
    vjp=(lambda x, z_bar: z_bar * jnp.sinh(x),),
    jvp=(lambda x, x_dot: x_dot * jnp.sinh(x),),
    local=("sinh x",),
    elementwise=True,
    primitives={"cosh": None},
    doc="""Hyperbolic cosine gate: z = cosh x = (e^x + e^-x)/2.

The local gradient is sinh x (no minus sign, unlike cos).
""",
)


asinh = Gate(
    "asinh",
    pattern=SCALED,
    forward=lambda x: (jnp.arcsinh(x), x),
    vjp=(lambda x, z_bar: z_bar / jnp.sqrt(x * x + 1),),
    jvp=(lambda x, x_dot: x_dot / jnp.sqrt(x * x + 1),),
    local=("1/sqrt(x^2+1)",),
    elementwise=True,
    primitives={"asinh": None},
    doc="""Inverse hyperbolic sine gate: z = asinh x = log(x + sqrt(x^2 + 1)).

The local gradient is 1/sqrt(x^2 + 1).
""",
)


acosh = Gate(
    "acosh",
    pattern=SCALED,
    forward=lambda x: (jnp.arccosh(x), x),
    vjp=(lambda x, z_bar: z_bar / jnp.sqrt(x * x - 1),),
    jvp=(lambda x, x_dot: x_dot / jnp.sqrt(x * x - 1),),
    local=("1/sqrt(x^2-1)",),
    elementwise=True,
    primitives={"acosh": None},
    doc="""Inverse hyperbolic cosine gate: z = acosh x, for x > 1.

The local gradient is 1/sqrt(x^2 - 1); it grows without bound at x = 1.
""",
)


atanh = Gate(
    "atanh",
    pattern=SCALED,
    forward=lambda x: (jnp.arctanh(x), x),
    vjp=(lambda x, z_bar: z_bar / (1 - x * x),),
    jvp=(lambda x, x_dot: x_dot / (1 - x * x),),
    local=("1/(1-x^2)",),
    elementwise=True,
    primitives={"atanh": None},
    doc="""Inverse hyperbolic tangent gate: z = atanh x, for -1 < x < 1.

The local gradient is 1/(1 - x^2).
""",
)
