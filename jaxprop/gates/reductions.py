"""The reductions: sum (the add gate with many inputs), mean, prod (the mul gate with many
inputs), and max / min over axes.

``sum`` distributes: every summed element gets the upstream gradient. ``max`` routes: the
winner of each reduction takes the whole upstream gradient, the others none; at a tie the
first winner (in C order, as ``jnp.argmax`` picks it) takes it all, as the binary max gate
gives a tie to its first input. ``prod`` switches: each factor gets z_bar times the product
of the others, found without dividing by it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprop.gate import DISTRIBUTOR, ROUTER, SWITCHER, Gate
from jaxprop.gates.scans import shift

__all__ = ["sum", "mean", "prod", "max", "min", "normalize_axes"]


def normalize_axes(name: str, x, axis) -> tuple[int, ...] | None:
    """Returns ``axis`` as sorted non-negative ints, or raises naming the bad axis."""
    if axis is None:
        return None
    if isinstance(axis, np.integer):
        axis = int(axis)
    axes = (axis,) if isinstance(axis, int) else tuple(
        int(a) if isinstance(a, np.integer) else a for a in axis)
    ndim = jnp.ndim(x)
    for a in axes:
        if not isinstance(a, int) or isinstance(a, bool) or not -ndim <= a < ndim:
            raise ValueError(
                f"{name}: axis {a!r} is out of range for an input of shape {jnp.shape(x)} "
                f"(rank {ndim}); expected ints in [{-ndim}, {ndim})"
            )
    normalized = tuple(sorted(a % ndim for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}: axis {axis!r} names the same axis twice")
    return normalized


def _spread(z_bar, axes, shape):
    """z_bar put back over the reduced axes: one copy per reduced element."""
    if axes is not None:
        z_bar = jnp.expand_dims(z_bar, axes)
    return jnp.broadcast_to(z_bar, shape)


def _axes(name):
    """The prepare hook of a reduction: ``f(x, axis=None)`` -> its input and static params."""
    def prepare(x, axis: int | tuple[int, ...] | None = None):
        return (x,), {"axes": normalize_axes(name, x, axis), "shape": tuple(jnp.shape(x))}

    return prepare


sum = Gate(  # noqa: A001 - the lecture's name
    "sum",
    pattern=DISTRIBUTOR,
    forward=lambda x, *, axes, shape: (jnp.sum(x, axis=axes), None),
    vjp=(lambda res, z_bar, *, axes, shape: _spread(z_bar, axes, shape),),
    jvp=(lambda res, x_dot, *, axes, shape: jnp.sum(x_dot, axis=axes),),
    local=("1",),
    tangent="sum_i x_dot_i",
    params=("axes", "shape"),
    prepare=_axes("sum"),
    primitives={"reduce_sum": lambda x, *, axes, **_: sum(x, tuple(axes))},
    doc="""Sum gate: z = sum_i x_i over ``axis`` (all axes by default): ``sum(x, axis=None)``.

The "gradient distributor": every summed element gets z_bar, the add gate with many
inputs: z_bar is broadcast back over the summed axes to x's ``shape``.
""",
)


def _prepare_mean(x, axis: int | tuple[int, ...] | None = None):
    """``mean(x, axis=None)``: as a sum's, refusing an axis that averages no elements."""
    xs, params = _axes("mean")(x, axis)
    if _count(**params) == 0:
        raise ValueError(f"mean: the mean over axis {axis!r} of an input of shape "
                         f"{params['shape']} averages no elements (the axis is empty)")
    return xs, params


def _count(*, axes, shape) -> int:
    """How many elements each output of a reduction over ``axes`` of ``shape`` takes in."""
    return int(np.prod([shape[a] for a in (range(len(shape)) if axes is None else axes)]))


mean = Gate(
    "mean",
    pattern=DISTRIBUTOR,
    forward=lambda x, *, axes, shape: (jnp.mean(x, axis=axes), None),
    vjp=(lambda res, z_bar, *, axes, shape: _spread(z_bar / _count(axes=axes, shape=shape),
                                                    axes, shape),),
    jvp=(lambda res, x_dot, *, axes, shape: jnp.mean(x_dot, axis=axes),),
    local=("1/n",),
    tangent="mean_i x_dot_i",
    params=("axes", "shape"),
    prepare=_prepare_mean,
    doc="""Mean gate: z = (1/n) sum_i x_i over ``axis`` (all axes by default):
``mean(x, axis=None)``.

The "gradient distributor", scaled: each of the n averaged elements gets z_bar / n.
""",
)


def _others(x, axes):
    """For each element of x, the product of the other elements of its reduction: the
    product of those before it times the product of those after it (two running products),
    so no element is divided by, and a zero is exact."""
    axes = tuple(range(x.ndim)) if axes is None else axes
    keep = [a for a in range(x.ndim) if a not in axes]
    perm = keep + list(axes)
    moved = jnp.transpose(x, perm)
    rows = moved.reshape(moved.shape[: len(keep)] + (-1,))
    last = rows.ndim - 1
    before = shift(lax.cumprod(rows, last), last, False, 1, 1)
    after = shift(lax.cumprod(rows, last, reverse=True), last, True, 1, 1)
    return jnp.transpose((before * after).reshape(moved.shape), np.argsort(perm))


prod = Gate(
    "prod",
    pattern=SWITCHER,
    forward=lambda x, *, axes, shape: (jnp.prod(x, axis=axes), _others(x, axes)),
    vjp=(lambda others, z_bar, *, axes, shape: _spread(z_bar, axes, shape) * others,),
    jvp=(lambda others, x_dot, *, axes, shape: jnp.sum(x_dot * others, axis=axes),),
    local=("the product of the other factors",),
    tangent="sum_i x_dot_i times the other factors",
    params=("axes", "shape"),
    prepare=_axes("prod"),
    primitives={"reduce_prod": lambda x, *, axes, **_: prod(x, tuple(axes))},
    doc="""Product gate: z = prod_i x_i over ``axis`` (all axes by default):
``prod(x, axis=None)`` (``jnp.prod``).

The "gradient switcher", the mul gate with many inputs: each factor's gradient is z_bar
times the product of the other factors. That product is the running product of the factors
before it times that of the factors after it, never z / x_i: with one zero factor only the
zero gets a gradient (the product of the rest), and with two none does.
""",
)


def _first_winner(x, axes, pick):
    """The one-hot mask, shaped like x, of each reduction's first winner (argmax or argmin)."""
    axes = tuple(range(x.ndim)) if axes is None else axes
    keep = [a for a in range(x.ndim) if a not in axes]
    perm = keep + list(axes)
    moved = jnp.transpose(x, perm)
    rows = moved.reshape(moved.shape[: len(keep)] + (-1,))
    index = pick(rows, axis=-1)
    onehot = jnp.arange(rows.shape[-1]).reshape((1,) * index.ndim + (-1,)) == index[..., None]
    return jnp.transpose(onehot.reshape(moved.shape), np.argsort(perm))


def _extremum(name: str, reduce, pick) -> Gate:
    word = {"max": "largest", "min": "smallest"}[name]
    return Gate(
        name,
        pattern=ROUTER,
        forward=lambda x, *, axes, shape: (reduce(x, axis=axes), _first_winner(x, axes, pick)),
        vjp=(lambda wins, z_bar, *, axes, shape: jnp.where(wins, _spread(z_bar, axes, shape),
                                                           0),),
        jvp=(lambda wins, x_dot, *, axes, shape: jnp.sum(jnp.where(wins, x_dot, 0),
                                                         axis=axes),),
        local=(f"[x is the {word}]",),
        tangent=f"x_dot of the {word}",
        params=("axes", "shape"),
        prepare=_axes(name),
        primitives={f"reduce_{name}": lambda x, *, axes, **_: _reduce(name)(x, tuple(axes))},
        doc=f"""{name.title()} gate: z = {name} over ``axis`` of x (all axes by default):
``{name}(x, axis=None)``.

The "gradient router": the {word} element of each reduction takes the whole upstream
gradient, the others none; a tie goes to the first (in C order).
""",
    )


max = _extremum("max", jnp.max, jnp.argmax)  # noqa: A001 - jnp's name
min = _extremum("min", jnp.min, jnp.argmin)  # noqa: A001 - jnp's name


def _reduce(name):
    return {"max": max, "min": min}[name]
