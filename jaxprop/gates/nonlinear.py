"""The one-input nonlinear gates: exp, log, sigmoid, tanh, square roots and ReLU.

Each is a *scaled local gradient*: the upstream gradient times one number per element, which
the rule computes from what the forward pass saved (often the output itself). ReLU is the
lecture's router with a sparse, diagonal Jacobian that is never formed; it passes the
gradient only where ``x > 0``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import ROUTER, SCALED, Gate

__all__ = ["exp", "log", "log1p", "expm1", "sigmoid", "tanh", "sqrt", "rsqrt", "relu"]


exp = Gate(
    "exp",
    pattern=SCALED,
    forward=lambda x: (jnp.exp(x), jnp.exp(x)),
    vjp=(lambda z, z_bar: z_bar * z,),
    jvp=(lambda z, x_dot: x_dot * z,),
    local=("e^x",),
    elementwise=True,
    primitives={"exp": None},
    doc="""Exp gate: z = e^x.

The local gradient, e^x, is the output itself, saved as the residual.
""",
)


log = Gate(
    "log",
    pattern=SCALED,
    forward=lambda x: (jnp.log(x), x),
    vjp=(lambda x, z_bar: z_bar / x,),
    jvp=(lambda x, x_dot: x_dot / x,),
    local=("1/x",),
    elementwise=True,
    primitives={"log": None},
    doc="""Log gate: z = log x.

The local gradient is 1/x.
""",
)


log1p = Gate(
    "log1p",
    pattern=SCALED,
    forward=lambda x: (jnp.log1p(x), x),
    vjp=(lambda x, z_bar: z_bar / (1 + x),),
    jvp=(lambda x, x_dot: x_dot / (1 + x),),
    local=("1/(1+x)",),
    elementwise=True,
    primitives={"log1p": None},
    doc="""Log-one-plus gate: z = log(1 + x), accurate for small x.

The local gradient is 1/(1 + x).
""",
)


expm1 = Gate(
    "expm1",
    pattern=SCALED,
    forward=lambda x: (jnp.expm1(x), jnp.expm1(x)),
    vjp=(lambda z, z_bar: z_bar * (z + 1),),
    jvp=(lambda z, x_dot: x_dot * (z + 1),),
    local=("e^x",),
    elementwise=True,
    primitives={"expm1": None},
    doc="""Exp-minus-one gate: z = e^x - 1, accurate for small x.

The local gradient, e^x, is z + 1: from the output.
""",
)


sigmoid = Gate(
    "sigmoid",
    pattern=SCALED,
    forward=lambda x: (lax.logistic(x), lax.logistic(x)),
    vjp=(lambda s, z_bar: z_bar * (1 - s) * s,),
    jvp=(lambda s, x_dot: x_dot * (1 - s) * s,),
    local=("(1-s)s",),
    output="s",
    elementwise=True,
    primitives={"logistic": None},
    doc="""Sigmoid gate: s = 1 / (1 + e^-x), one gate for the slide's whole circuit.

The local gradient (1 - s) s needs only the output s, so the lecture collapses exp, add and
1/x into this one gate.
""",
)


tanh = Gate(
    "tanh",
    pattern=SCALED,
    forward=lambda x: (jnp.tanh(x), jnp.tanh(x)),
    vjp=(lambda t, z_bar: z_bar * (1 - t * t),),
    jvp=(lambda t, x_dot: x_dot * (1 - t * t),),
    local=("1-t^2",),
    output="t",
    elementwise=True,
    primitives={"tanh": None},
    doc="""Tanh gate: t = tanh x.

The local gradient 1 - t^2 comes from the output alone, like sigmoid's (1 - s) s.
""",
)


sqrt = Gate(
    "sqrt",
    pattern=SCALED,
    forward=lambda x: (jnp.sqrt(x), jnp.sqrt(x)),
    vjp=(lambda z, z_bar: z_bar * 0.5 / z,),
    jvp=(lambda z, x_dot: x_dot * 0.5 / z,),
    local=("1/(2 sqrt(x))",),
    elementwise=True,
    primitives={"sqrt": None},
    doc="""Square-root gate: z = sqrt(x).

The local gradient, 1/(2 sqrt(x)), is 0.5 / z: from the output.
""",
)


rsqrt = Gate(
    "rsqrt",
    pattern=SCALED,
    forward=lambda x: (lax.rsqrt(x), lax.rsqrt(x)),
    vjp=(lambda z, z_bar: z_bar * -0.5 * z * z * z,),
    jvp=(lambda z, x_dot: x_dot * -0.5 * z * z * z,),
    local=("-1/(2 x^(3/2))",),
    elementwise=True,
    primitives={"rsqrt": None},
    doc="""Reciprocal-square-root gate: z = 1 / sqrt(x).

The local gradient, -1/(2 x^(3/2)), is -z^3 / 2: from the output.
""",
)


relu = Gate(
    "relu",
    pattern=ROUTER,
    forward=lambda x: (jnp.maximum(x, 0), x > 0),  # the value propagates NaN
    vjp=(lambda passes, z_bar: jnp.where(passes, z_bar, 0),),
    jvp=(lambda passes, x_dot: jnp.where(passes, x_dot, 0),),
    local=("[x > 0]",),
    tangent="x_dot where x > 0",
    elementwise=True,
    doc="""ReLU gate: z = max(0, x), elementwise.

The "gradient router": the gradient passes where x > 0. The local Jacobian is diagonal and
sparse, so it is never formed: the rule only masks the upstream gradient.
""",
)
