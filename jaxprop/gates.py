"""The lecture's gates, each with its hand-written local rules.

Notation (Autodidax's): ``z`` is a gate's output, ``z_bar`` the upstream gradient dL/dz,
``x_bar`` a downstream gradient dL/dx, ``x_dot`` an input tangent and ``z_dot`` the output
tangent. Each rule sits under its forward computation, as in micrograd. Every gate works on
arrays of any shape where that makes sense; ``add``, ``mul`` and ``maximum`` broadcast like
NumPy and take Python numbers as constants (no gradient flows to a constant).

Kinks follow the lecture, and both modes share the convention:

* ``relu`` passes the gradient only where ``x > 0`` (at ``x == 0`` it passes nothing);
* ``maximum`` routes the whole gradient to ``x`` where ``x >= y``: a tie sends all of it to
  the first input, none lost and none doubled. (JAX's ``jnp.maximum`` splits a tie half and
  half instead.)

``GATES`` lists every gate of this module by name; it is built from the module itself, so a
new gate is registered by being written here.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import (
    ADDER,
    DISTRIBUTOR,
    ROUTER,
    SCALED,
    SWITCHER,
    Gate,
    is_constant,
)

__all__ = [
    "add",
    "sub",
    "neg",
    "mul",
    "copy",
    "maximum",
    "exp",
    "log",
    "reciprocal",
    "sigmoid",
    "relu",
    "matmul",
    "sum",
    "mean",
    "GATES",
    "pattern_table",
]


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
    doc="""Add gate: z = x + y.

Backward ("gradient distributor"): x_bar = z_bar, y_bar = z_bar. The local gradient is 1, so
the upstream gradient is copied unchanged to every input. A broadcast input (a bias ``b`` of
shape [C] added to scores [N, C]) was copied N times, so its gradient sums over the batch.
Forward: z_dot = x_dot + y_dot.
""",
)


mul = Gate(
    "mul",
    pattern=SWITCHER,
    const_pattern=SCALED,
    symbol="*",
    forward=lambda x, y: (x * y, (x, y)),
    vjp=(lambda res, z_bar: z_bar * res[1], lambda res, z_bar: z_bar * res[0]),
    jvp=(lambda res, x_dot: x_dot * res[1], lambda res, y_dot: res[0] * y_dot),
    local=("y", "x"),
    tangent="x_dot*y + x*y_dot",
    broadcast=True,
    doc="""Multiply gate: z = x * y.

Backward ("swap multiplier"): x_bar = z_bar * y, y_bar = z_bar * x. Each input's local
gradient is the *other* input. By a constant a (the slide's ``*-1`` gate) it is a scaled
local gradient instead: x_bar = z_bar * a.
Forward: z_dot = x_dot * y + x * y_dot.
""",
)


copy = Gate(
    "copy",
    pattern=ADDER,
    forward=lambda x: ((x, x), None),
    vjp=(lambda res, z_bar: z_bar[0] + z_bar[1],),
    jvp=(lambda res, x_dot: (x_dot, x_dot),),
    local=("1 per branch: x_bar = a_bar + b_bar",),
    tangent="(x_dot, x_dot), one per branch",
    doc="""Copy gate: (a, b) = (x, x), the branch point where one value feeds two gates.

Backward ("gradient adder"): x_bar = a_bar + b_bar. The gradients of the branches add.
Forward: (a_dot, b_dot) = (x_dot, x_dot).
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
    doc="""Max gate: z = max(x, y), elementwise.

Backward ("gradient router"): the larger input takes the whole upstream gradient and the
other gets zero: x_bar = z_bar * [x >= y], y_bar = z_bar * [x < y]. A tie routes it all to x.
Forward: z_dot = x_dot where x >= y, else y_dot.
""",
)


exp = Gate(
    "exp",
    pattern=SCALED,
    forward=lambda x: (jnp.exp(x), jnp.exp(x)),
    vjp=(lambda z, z_bar: z_bar * z,),
    jvp=(lambda z, x_dot: x_dot * z,),
    local=("e^x",),
    elementwise=True,
    doc="""Exp gate: z = e^x.

Backward: x_bar = z_bar * e^x. The local gradient is the output itself, saved as the residual.
Forward: z_dot = x_dot * e^x.
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
    doc="""Log gate: z = log x.

Backward: x_bar = z_bar / x. Forward: z_dot = x_dot / x.
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

Backward: x_bar = z_bar * (-1/x^2) = -z_bar * z^2. Forward: z_dot = -x_dot * z^2.
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
    doc="""Sigmoid gate: s = 1 / (1 + e^-x), one gate for the slide's whole circuit.

Backward: x_bar = z_bar * (1 - s) * s. The local gradient needs only the output s, so the
lecture collapses exp, add and 1/x into this one gate.
Forward: z_dot = x_dot * (1 - s) * s.
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

Backward: x_bar = z_bar where x > 0, else 0. The local Jacobian is diagonal and sparse, so it
is never formed: the rule only masks the upstream gradient.
Forward: z_dot = x_dot where x > 0, else 0.
""",
)


def _check_matmul(x, w):
    x_shape, w_shape = jnp.shape(x), jnp.shape(w)
    if len(w_shape) != 2 or len(x_shape) < 1:
        raise ValueError(
            f"matmul: expected x of shape [..., D] and w of shape [D, M]; "
            f"got x {x_shape} and w {w_shape}"
        )
    if x_shape[-1] != w_shape[0]:
        raise ValueError(
            f"matmul: inner dimensions differ: x {x_shape} has D={x_shape[-1]} but "
            f"w {w_shape} has D={w_shape[0]}"
        )


def _matmul_w_bar(res, z_bar):
    x, _ = res
    x, z_bar = x.reshape(-1, x.shape[-1]), z_bar.reshape(-1, z_bar.shape[-1])
    if x.size < CPU_LAYOUT_MIN_SIZE:  # small products: the extra transpose costs more
        return _xt_dy(x, z_bar)
    return lax.platform_dependent(x, z_bar, default=_xt_dy, cpu=_xt_dy_cpu_layout)


CPU_LAYOUT_MIN_SIZE = 2**16
"""From this many elements of x on, matmul's weight gradient takes the CPU GEMM's layout."""


def _xt_dy(x, z_bar):
    """w_bar = x^T z_bar."""
    return x.T @ z_bar


def _xt_dy_cpu_layout(x, z_bar):
    """w_bar = x^T z_bar, computed as (z_bar^T x)^T: the same product in the operand layout
    XLA:CPU's GEMM runs fastest (1.2 ms against 1.8 ms at N=200, D=3072, M=100; see
    benchmarks/train_step.py). The barrier stops XLA folding the transpose back."""
    return lax.optimization_barrier(z_bar.T @ x).T


matmul = Gate(
    "matmul",
    pattern=SWITCHER,
    forward=lambda x, w: (x @ w, (x, w)),
    vjp=(lambda res, z_bar: z_bar @ res[1].T, _matmul_w_bar),
    jvp=(lambda res, x_dot: x_dot @ res[1], lambda res, w_dot: res[0] @ w_dot),
    local=("dy w^T  {x} = {y}{w^T}", "x^T dy  {w}"),
    tangent="x_dot w + x w_dot  {y}",
    output="y",
    check=_check_matmul,
    doc="""Matrix multiply gate: y = x w, with x [N, D] and w [D, M].

Backward, by dimension analysis (the only way the shapes fit):
    x_bar = y_bar w^T     [N, D] = [N, M] [M, D]
    w_bar = x^T y_bar     [D, M] = [D, N] [N, M]
The local Jacobian dy/dx would be [N, M, N, D]; it is never formed. x may have any number of
leading axes, [..., D]; w_bar then contracts over all of them.
Forward: y_dot = x_dot w + x w_dot.
""",
)


def _distribute(res, z_bar, *, axes, shape):
    if axes is not None:
        z_bar = jnp.expand_dims(z_bar, axes)
    return jnp.broadcast_to(z_bar, shape)


_sum = Gate(
    "sum",
    pattern=DISTRIBUTOR,
    forward=lambda x, *, axes, shape: (jnp.sum(x, axis=axes), None),
    vjp=(_distribute,),
    jvp=(lambda res, x_dot, *, axes, shape: jnp.sum(x_dot, axis=axes),),
    local=("1",),
    tangent="sum_i x_dot_i",
    params=("axes", "shape"),
    doc="""Sum gate: z = sum_i x_i over ``axes`` (all axes when None).

Backward ("gradient distributor"): x_bar_i = z_bar for every i, the add gate with many
inputs: z_bar is broadcast back over the summed axes to x's ``shape``.
Forward: z_dot = sum_i x_dot_i.
""",
)


def sum(x, axis: int | tuple[int, ...] | None = None):  # noqa: A001 - the lecture's name
    """Sum gate: z = sum_i x_i over ``axis`` (all axes by default).

    Backward ("gradient distributor"): x_bar_i = z_bar for every i, the add gate with many
    inputs. Forward: z_dot = sum_i x_dot_i.
    """
    return _sum(x, axes=_normalize_axes("sum", x, axis), shape=tuple(jnp.shape(x)))


def _normalize_axes(name: str, x, axis) -> tuple[int, ...] | None:
    """Returns ``axis`` as sorted non-negative ints, or raises naming the bad axis."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = jnp.ndim(x)
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(
                f"{name}: axis {a!r} is out of range for an input of shape {jnp.shape(x)} "
                f"(rank {ndim}); expected ints in [{-ndim}, {ndim})"
            )
    normalized = tuple(sorted(a % ndim for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}: axis {axis!r} names the same axis twice")
    return normalized


def mean(x, axis: int | tuple[int, ...] | None = None):
    """Mean: a sum gate, then a mul gate by the constant 1/n."""
    axes = _normalize_axes("mean", x, axis)
    shape = jnp.shape(x)
    n = 1
    for a in range(len(shape)) if axes is None else axes:
        n *= shape[a]
    return mul(sum(x, axes), 1.0 / n)


def neg(x):
    """Negation: a mul gate by the constant -1."""
    return mul(x, -1.0)


def sub(x, y):
    """Subtraction: x + (-1) * y, an add gate after a mul gate."""
    return add(x, -y) if is_constant(y) else add(x, neg(y))


GATES: dict[str, Gate] = {g.name: g for g in list(globals().values()) if isinstance(g, Gate)}
"""Every gate of this module, by name: the one registry of gates."""


def pattern_table() -> str:
    """The README's table of the lecture's patterns, written from the gates' own facts."""
    lines = ["| gate | lecture pattern | local gradient (VJP rule) | JVP rule |",
             "|---|---|---|---|"]
    for gate in GATES.values():
        out = gate.output
        names = gate.input_names
        local = "; ".join(f"{'d' if '{' in t else f'd{out}/d'}{n} = {_plain(t)}"
                          for n, t in zip(names, gate.local) if t is not None)
        tangent = f"{out}_dot = " + (_plain(gate.tangent) if gate.tangent else " + ".join(
            f"{_plain(t)} * {n}_dot" for n, t in zip(names, gate.local) if t is not None))
        lines.append(f"| `{gate.name}` | {gate.pattern} | `{local}` | `{tangent}` |")
    return "\n".join(lines) + "\n"


def _plain(text: str) -> str:
    """A rule's text without the dimension analysis that explain appends after two spaces."""
    return text.split("  ")[0]
