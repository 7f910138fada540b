"""The arithmetic gates: add, sub, mul, div, 1/x, powers, max, min, abs, where and select.

The binary gates broadcast like NumPy and take Python numbers as constants (no gradient flows
to a constant). Kinks follow the lecture: ``maximum`` routes the whole gradient to ``x`` where
``x >= y`` (a tie sends all of it to the first input, none lost and none doubled), and
``minimum`` to ``x`` where ``x <= y``; ``jnp.maximum`` splits a tie half and half instead.

Each gate names the JAX primitives it stands for (``primitives``), so that
``jaxprop.gated`` reads ``x + y``, ``x / y``, ``x ** 2``, ``jnp.maximum(0, x)`` or
``jnp.where(c, x, y)`` in plain JAX code as these gates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import DISTRIBUTOR, ROUTER, SCALED, SWITCHER, Gate, inputs, is_constant

__all__ = ["add", "sub", "neg", "mul", "div", "reciprocal", "pow", "integer_pow", "maximum",
           "minimum", "abs", "select", "select_n", "where"]


class Inputs(NamedTuple):
    """Residuals: both inputs (mul's swap multiplier reads the other one)."""

    x: Any
    y: Any


class Quotient(NamedTuple):
    """Residuals of div: the divisor and the output."""

    y: Any
    z: Any


class Power(NamedTuple):
    """Residuals of pow: base, exponent and output."""

    x: Any
    y: Any
    z: Any


def _is(value, number) -> bool:
    """``value`` is the Python-number constant ``number`` (not an array)."""
    return is_constant(value) and value == number


add = Gate(
    "add",
    pattern=DISTRIBUTOR,
    symbol="+",
    forward=lambda x, y: (x + y, None),
    vjp=(lambda res, z_bar: z_bar, lambda res, z_bar: z_bar),
    jvp=(lambda res, x_dot: x_dot, lambda res, y_dot: y_dot),
    local=("1", "1"),
    tangent="x_dot + y_dot",
    broadcast=True,
    primitives={"add": None, "add_any": None},
    doc="""Add gate: z = x + y.

The "gradient distributor": the local gradient is 1, so the upstream gradient is copied
unchanged to every input. A broadcast input (a bias ``b`` of shape [C] added to scores [N, C])
was copied N times, so its gradient sums over the batch.
""",
)


sub = Gate(
    "sub",
    pattern=DISTRIBUTOR,
    symbol="-",
    forward=lambda x, y: (x - y, None),
    vjp=(lambda res, z_bar: z_bar, lambda res, z_bar: -z_bar),
    jvp=(lambda res, x_dot: x_dot, lambda res, y_dot: -y_dot),
    local=("1", "-1"),
    tangent="x_dot - y_dot",
    broadcast=True,
    primitives={"sub": None},
    doc="""Subtract gate: z = x - y.

The "gradient distributor", with a sign.
""",
)


mul = Gate(
    "mul",
    pattern=SWITCHER,
    const_pattern=SCALED,
    symbol="*",
    forward=lambda x, y: (x * y, Inputs(x, y)),
    vjp=(lambda res, z_bar: z_bar * res.y, lambda res, z_bar: z_bar * res.x),
    jvp=(lambda res, x_dot: x_dot * res.y, lambda res, y_dot: res.x * y_dot),
    local=("y", "x"),
    tangent="x_dot*y + x*y_dot",
    broadcast=True,
    primitives={"mul": None, "neg": lambda x: mul(x, -1.0)},  # -x is the slide's *-1 gate
    doc="""Multiply gate: z = x * y.

The "swap multiplier": each input's local gradient is the *other* input. By a constant a (the
slide's ``*-1`` gate) it is a scaled local gradient instead.
""",
)


neg = Gate(
    "neg",
    pattern=SCALED,
    symbol="-x",
    forward=lambda x: (-x, None),
    vjp=(lambda res, z_bar: -z_bar,),
    jvp=(lambda res, x_dot: -x_dot,),
    local=("-1",),
    elementwise=True,
    doc="""Negate gate: z = -x.

A scaled local gradient, by -1: the slide's ``*-1`` gate (``-x`` in traced code is that mul
gate, as the slide draws it).
""",
)


reciprocal = Gate(
    "reciprocal",
    pattern=SCALED,
    symbol="1/x",
    forward=lambda x: (1 / x, 1 / x),
    vjp=(lambda z, z_bar: -z_bar * z * z,),
    jvp=(lambda z, x_dot: -x_dot * z * z,),
    local=("-1/x^2",),
    elementwise=True,
    doc="""Reciprocal gate ("1/x" on the slide): z = 1/x.

The local gradient, -1/x^2, is -z^2: the output, saved as the residual.
""",
)


div = Gate(
    "div",
    pattern=SCALED,
    symbol="/",
    forward=lambda x, y: (x / y, Quotient(y, x / y)),
    vjp=(lambda res, z_bar: z_bar / res.y, lambda res, z_bar: -z_bar * res.z / res.y),
    jvp=(lambda res, x_dot: x_dot / res.y, lambda res, y_dot: -y_dot * res.z / res.y),
    local=("1/y", "-x/y^2"),
    tangent="x_dot/y - y_dot x/y^2",
    broadcast=True,
    # 1 / y is the slide's 1/x gate
    primitives={"div": lambda x, y: reciprocal(y) if _is(x, 1.0) else div(x, y)},
    doc="""Divide gate: z = x / y.

Each local gradient (1/y, and -x/y^2 = -z/y) is one number per element: a scaled local
gradient (1 / y alone is the reciprocal gate).
""",
)


def _log_where_positive(x):
    """log x, and 0 where x == 0 (there x^y has no slope in y for y > 0)."""
    return jnp.log(jnp.where(x == 0, 1, x))


pow = Gate(  # noqa: A001 - the lecture's name
    "pow",
    pattern=SCALED,
    symbol="**",
    forward=lambda x, y: (x**y, Power(x, y, x**y)),
    vjp=(lambda res, z_bar: z_bar * res.y * res.x ** (res.y - 1),
         lambda res, z_bar: z_bar * _log_where_positive(res.x) * res.z),
    jvp=(lambda res, x_dot: x_dot * res.y * res.x ** (res.y - 1),
         lambda res, y_dot: y_dot * _log_where_positive(res.x) * res.z),
    local=("y x^(y-1)", "log(x) x^y"),
    broadcast=True,
    primitives={"pow": None},
    doc="""Power gate: z = x ** y.

The local gradients are y x^(y-1) and log(x) x^y (0 where x = 0).
""",
)


def _integer_pow_local(x, *, y):
    return y * lax.integer_pow(x, y - 1) if y != 0 else jnp.zeros_like(x)


integer_pow = Gate(
    "integer_pow",
    pattern=SCALED,
    symbol="**n",
    forward=lambda x, *, y: (lax.integer_pow(x, y), x),
    vjp=(lambda x, z_bar, *, y: z_bar * _integer_pow_local(x, y=y),),
    jvp=(lambda x, x_dot, *, y: x_dot * _integer_pow_local(x, y=y),),
    local=("y x^(y-1)",),
    elementwise=True,
    params=("y",),
    primitives={"integer_pow": None, "square": lambda x: integer_pow(x, y=2)},
    label=lambda names, *, y: f"{names[0]}^{y}",
    doc="""Integer power gate: z = x ** n for a fixed integer n (``x ** 2``, ``x ** 3``).

The local gradient is n x^(n-1), as micrograd's ``__pow__`` has it.
""",
)


maximum = Gate(
    "maximum",
    pattern=ROUTER,
    symbol="max",
    forward=lambda x, y: (jnp.maximum(x, y), x >= y),  # the value propagates NaN
    vjp=(
        lambda x_wins, z_bar: jnp.where(x_wins, z_bar, 0),
        lambda x_wins, z_bar: jnp.where(x_wins, 0, z_bar),
    ),
    jvp=(
        lambda x_wins, x_dot: jnp.where(x_wins, x_dot, 0),
        lambda x_wins, y_dot: jnp.where(x_wins, 0, y_dot),
    ),
    local=("[x >= y]", "[x < y]"),
    tangent="x_dot where x >= y, else y_dot",
    broadcast=True,
    # jnp.maximum(0, x) and jax.nn.relu's max(x, 0) are the relu gate
    primitives={"max": lambda x, y: _relu()(y) if _is(x, 0) else _relu()(x) if _is(y, 0)
                else maximum(x, y)},
    doc="""Max gate: z = max(x, y), elementwise.

The "gradient router": the larger input takes the whole upstream gradient and the other
gets zero. A tie routes it all to x.
""",
)


def _relu():
    from jaxprop.gates.nonlinear import relu

    return relu


minimum = Gate(
    "minimum",
    pattern=ROUTER,
    symbol="min",
    forward=lambda x, y: (jnp.minimum(x, y), x <= y),
    vjp=maximum.vjp,  # max's router, with x_wins where x <= y
    jvp=maximum.jvp,
    local=("[x <= y]", "[x > y]"),
    tangent="x_dot where x <= y, else y_dot",
    broadcast=True,
    primitives={"min": None},
    doc="""Min gate: z = min(x, y), elementwise.

The "gradient router": the smaller input takes the whole upstream gradient. A tie routes it
all to x.
""",
)


abs = Gate(  # noqa: A001 - the lecture's name
    "abs",
    pattern=SCALED,
    symbol="|x|",
    forward=lambda x: (jnp.abs(x), jnp.where(x >= 0, 1, -1).astype(jnp.result_type(x))),
    vjp=(lambda sign, z_bar: z_bar * sign,),
    jvp=(lambda sign, x_dot: x_dot * sign,),
    local=("(1 if x >= 0 else -1)",),
    elementwise=True,
    primitives={"abs": None},
    doc="""Absolute value gate: z = |x|.

The local gradient is sign(x). At the kink x = 0 it takes the right-hand derivative, 1,
as jax.grad does (PyTorch passes 0 there).
""",
)


def _select_forward(c, f, t):
    shape = jnp.shape(c)
    dtype = jnp.result_type(*[v for v in (f, t) if not is_constant(v)])
    f, t = (jnp.broadcast_to(jnp.asarray(v, dtype), shape) if is_constant(v) else v
            for v in (f, t))
    return lax.select_n(c, f, t), c


select = Gate(
    "select",
    pattern=ROUTER,
    symbol="where",
    forward=_select_forward,
    vjp=(None, lambda c, z_bar: jnp.where(c, 0, z_bar), lambda c, z_bar: jnp.where(c, z_bar, 0)),
    jvp=(None, lambda c, f_dot: jnp.where(c, 0, f_dot), lambda c, t_dot: jnp.where(c, t_dot, 0)),
    local=(None, "[not c]", "[c]"),
    tangent="case_dot where picked",
    broadcast=True,
    primitives={"select_n": lambda c, *cases: select_n(c, *cases)},
    doc="""Select gate: z = case_0 where c is False (0), case_1 where c is True (1).

The "gradient router": each case takes the upstream gradient where it was picked,
zero elsewhere; the condition c gets no gradient. ``jnp.where(c, x, y)`` is
``select(c, y, x)``; :func:`select_n` picks among n cases with a chain of these gates.
""",
)


where = Gate(
    "where",
    pattern=ROUTER,
    forward=lambda c, x, y: _select_forward(c, y, x),
    vjp=(None, lambda c, z_bar: jnp.where(c, z_bar, 0), lambda c, z_bar: jnp.where(c, 0, z_bar)),
    jvp=(None, lambda c, x_dot: jnp.where(c, x_dot, 0), lambda c, y_dot: jnp.where(c, 0, y_dot)),
    local=(None, "[c]", "[not c]"),
    tangent="x_dot where c, else y_dot",
    broadcast=True,
    prepare=lambda c, x, y: inputs(jnp.asarray(c), x, y),
    doc="""Where gate: z = x where c, else y (``jnp.where(c, x, y)``).

The "gradient router": x takes the upstream gradient where c holds, y elsewhere; the
condition c gets no gradient. It is the select gate with its cases in jnp's order.
""",
)


def select_n(c, *cases):
    """``lax.select_n(c, *cases)``: case k where c == k (``jnp.select`` with several
    choices, ``jnp.piecewise``), as a chain of select gates: the last case, replaced by case
    n-2 where c == n-2, ..., by case 0 where c == 0. A router: each case gets the upstream
    gradient where c picks it, zero elsewhere."""
    if not cases:
        raise ValueError("select_n: give at least one case")
    if len(cases) <= 2:
        return cases[0] if len(cases) == 1 else select(c, *cases)
    c = jnp.asarray(c)
    dtype = jnp.result_type(*[v for v in cases if not is_constant(v)])
    out = cases[-1]
    for k in range(len(cases) - 2, -1, -1):
        if is_constant(out) and is_constant(cases[k]):  # no gradient to route: plain
            out = jnp.where(c == k, jnp.asarray(cases[k], dtype), jnp.asarray(out, dtype))
        else:
            out = select(c == k, out, cases[k])
    return out
