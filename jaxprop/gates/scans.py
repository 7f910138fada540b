"""The scans: running sums, products, maxima, minima and log-sum-exps along an axis.

Each output z_i combines the inputs x_j up to i in the scan's order (j <= i, or j >= i with
``reverse=True``):

* ``cumsum`` distributes: every x_j gets the upstream gradient of every z_i it is part of,
  so x_bar is the running sum of z_bar taken the other way (a reverse cumsum);
* ``cumprod`` switches, as mul does: each factor's gradient is z_bar times the other factors.
  The rules never divide by x, so zeros are exact;
* ``cummax`` and ``cummin`` route: each z_i's gradient goes to its running winner, the first
  element (in the scan's order) to reach the running maximum; a later tie does not take it
  over, as the max gate gives a tie to its first input;
* ``cumlogsumexp`` scales: x_j's share of z_i is exp(x_j - z_i), a running softmax.

The rules of cumprod and cumlogsumexp are first-order linear recurrences,
y_i = b_i + a_i y_(i-1), run in log2(n) steps of shifts, products and sums
(:func:`linear_scan`), so their rules are built of gated operations only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import DISTRIBUTOR, ROUTER, SCALED, SWITCHER, Gate, inputs
from jaxprop.gates.indexing import add_back, take_along

__all__ = ["cumsum", "cumprod", "cumlogsumexp", "cummax", "cummin", "shift", "linear_scan"]


def shift(x, axis: int, reverse: bool, d: int, fill):
    """x moved d places along ``axis`` in the scan's order: out_i = x_(i-d) (x_(i+d) when
    ``reverse``), and ``fill`` where that is before the start."""
    n = x.shape[axis]
    if d >= n:
        return jnp.full(x.shape, fill, x.dtype)
    pad_shape = x.shape[:axis] + (d,) + x.shape[axis + 1:]
    pad = jnp.full(pad_shape, fill, x.dtype)
    if reverse:
        return jnp.concatenate([lax.slice_in_dim(x, d, n, axis=axis), pad], axis=axis)
    return jnp.concatenate([pad, lax.slice_in_dim(x, 0, n - d, axis=axis)], axis=axis)


def linear_scan(a, b, axis: int, reverse: bool):
    """y_i = b_i + a_i y_(i-1) along ``axis`` in the scan's order (y before the start is 0),
    in log2(n) doubling steps: after the step of d, (A_i, B_i) is the map of the 2d elements
    up to i, y_i = A_i y_(i-2d) + B_i. Linear in b; only shifts, products and sums."""
    n = a.shape[axis]
    d = 1
    while d < n:
        b = b + a * shift(b, axis, reverse, d, 0)
        a = a * shift(a, axis, reverse, d, 1)
        d *= 2
    return b


def _prepare_scan(x, axis: int = 0, reverse: bool = False):
    """A scan along ``axis`` (negative counts from the end), forwards or in ``reverse``."""
    ndim = jnp.ndim(x)
    if not isinstance(axis, int) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise ValueError(f"scan: axis {axis!r} is out of range for an input of shape "
                         f"{jnp.shape(x)} (rank {ndim})")
    return inputs(x, axis=axis % ndim, reverse=bool(reverse))


def _adapter(name):
    return lambda x, *, axis, reverse: _SCANS[name](x, axis=axis, reverse=reverse)


cumsum = Gate(
    "cumsum",
    pattern=DISTRIBUTOR,
    forward=lambda x, *, axis, reverse: (lax.cumsum(x, axis, reverse), None),
    vjp=(lambda res, z_bar, *, axis, reverse: lax.cumsum(z_bar, axis, not reverse),),
    jvp=(lambda res, x_dot, *, axis, reverse: lax.cumsum(x_dot, axis, reverse),),
    local=("1 for every z_i it is part of",),
    tangent="the running sum of x_dot",
    params=("axis", "reverse"),
    prepare=_prepare_scan,
    primitives={"cumsum": _adapter("cumsum")},
    doc="""Running sum gate: z_i = sum of x_j for j <= i along ``axis`` (``jnp.cumsum``;
j >= i with ``reverse=True``).

The "gradient distributor": x_j is part of every z_i from i = j on, and each passes it
z_bar_i unchanged, so x_bar_j = sum of z_bar_i for i >= j: the running sum of z_bar taken
the other way.
""",
)


class Factors(NamedTuple):
    """Residuals of cumprod: the factors, and the product of those before each one."""

    x: Any
    before: Any


def _cumprod_forward(x, *, axis, reverse):
    z = lax.cumprod(x, axis, reverse)
    return z, Factors(x, shift(z, axis, reverse, 1, 1))


cumprod = Gate(
    "cumprod",
    pattern=SWITCHER,
    forward=_cumprod_forward,
    vjp=(lambda res, z_bar, *, axis, reverse: res.before * linear_scan(
        shift(res.x, axis, not reverse, 1, 0), z_bar, axis, not reverse),),
    jvp=(lambda res, x_dot, *, axis, reverse: linear_scan(
        res.x, x_dot * res.before, axis, reverse),),
    local=("the product of the other factors of each z_i",),
    tangent="z_dot_i = x_i z_dot_(i-1) + x_dot_i z_(i-1)",
    params=("axis", "reverse"),
    prepare=_prepare_scan,
    primitives={"cumprod": _adapter("cumprod")},
    doc="""Running product gate: z_i = product of x_j for j <= i along ``axis``
(``jnp.cumprod``; j >= i with ``reverse=True``).

The "gradient switcher", mul's swap with many factors: dz_i/dx_j is the product of the
other factors of z_i. Forward: z_dot_i = x_i z_dot_(i-1) + x_dot_i z_(i-1) (the product
rule, one step at a time). Backward: x_bar_j = before_j * s_j, where before_j = z_(j-1)
(the factors before x_j) and s_j = z_bar_j + x_(j+1) s_(j+1) (the factors after it, met
on the way back). Both are linear recurrences, solved with products and sums only: nothing
is divided by x, so one zero, or two, give the exact gradient.
""",
)


class Shares(NamedTuple):
    """Residuals of cumlogsumexp: x_j's share exp(x_j - z_j) of z_j, and the decay
    exp(z_(i-1) - z_i) from one output to the next (both in [0, 1])."""

    share: Any
    decay: Any


def _cumlogsumexp_forward(x, *, axis, reverse):
    z = lax.cumlogsumexp(x, axis, reverse)
    # While z is -inf (only -inf so far) the scan is a tie, as in a running max: the first
    # element takes it all (share 1, carried on with decay 1); -inf - -inf is never formed.
    empty = z == -jnp.inf
    first = lax.broadcasted_iota(jnp.int32, z.shape, axis) == (
        z.shape[axis] - 1 if reverse else 0)
    share = jnp.where(empty, first.astype(z.dtype), jnp.exp(jnp.where(empty, 0.0, x - z)))
    step = shift(z, axis, reverse, 1, -jnp.inf) - z
    decay = jnp.where(empty, 1.0, jnp.exp(jnp.where(empty, 0.0, step)))
    return z, Shares(share, decay)


cumlogsumexp = Gate(
    "cumlogsumexp",
    pattern=SCALED,
    forward=_cumlogsumexp_forward,
    vjp=(lambda res, z_bar, *, axis, reverse: res.share * linear_scan(
        shift(res.decay, axis, not reverse, 1, 0), z_bar, axis, not reverse),),
    jvp=(lambda res, x_dot, *, axis, reverse: linear_scan(
        res.decay, res.share * x_dot, axis, reverse),),
    local=("exp(x_j - z_i) for every z_i it is part of",),
    tangent="z_dot_i = exp(x_i - z_i) x_dot_i + exp(z_(i-1) - z_i) z_dot_(i-1)",
    params=("axis", "reverse"),
    prepare=_prepare_scan,
    primitives={"cumlogsumexp": _adapter("cumlogsumexp")},
    doc="""Running log-sum-exp gate: z_i = log of the sum of exp(x_j) for j <= i along
``axis`` (``lax.cumlogsumexp``; j >= i with ``reverse=True``).

A "scaled local gradient": x_j's share of z_i is dz_i/dx_j = exp(x_j - z_i), the softmax
of the x_j up to i. Split as exp(x_j - z_j) exp(z_j - z_i), both factors are at most 1,
and the rules are linear recurrences in them (no exp of a large number):
x_bar_j = exp(x_j - z_j) t_j with t_j = z_bar_j + exp(z_j - z_(j+1)) t_(j+1). A run of -inf
at the start is a tie, as in a running max: the first takes its gradient.
""",
)


def _winners(x, z, axis, reverse):
    """For each z_i, the index along ``axis`` of its running winner: where the running
    extreme was last reached anew (a later tie does not count; a NaN wins from its place)."""
    before = shift(z, axis, reverse, 1, 0)
    first = lax.broadcasted_iota(jnp.int32, z.shape, axis) == (
        z.shape[axis] - 1 if reverse else 0)
    record = first | ((z != before) & (before == before))
    iota = lax.broadcasted_iota(jnp.int32, z.shape, axis)
    if reverse:
        return lax.cummin(jnp.where(record, iota, z.shape[axis] - 1), axis, reverse=True)
    return lax.cummax(jnp.where(record, iota, 0), axis)


def _running_extreme(name: str, scan) -> Gate:
    word = {"cummax": "largest", "cummin": "smallest"}[name]

    def forward(x, *, axis, reverse):
        z = scan(x, axis, reverse)
        return z, _winners(x, z, axis, reverse)

    return Gate(
        name,
        pattern=ROUTER,
        forward=forward,
        vjp=(lambda wins, z_bar, *, axis, reverse: add_back(z_bar, wins, axis, z_bar.shape),),
        jvp=(lambda wins, x_dot, *, axis, reverse: take_along(x_dot, wins, axis),),
        local=(f"1 for each z_i where x_j is the running {word}, else 0",),
        tangent=f"the running {word}'s x_dot",
        params=("axis", "reverse"),
        prepare=_prepare_scan,
        primitives={name: _adapter(name)},
        doc=f"""Running {word[:-3]} gate: z_i = the {word} x_j for j <= i along ``axis``
(``lax.{name}``; j >= i with ``reverse=True``).

The "gradient router": each z_i's gradient goes to its running winner, the x_j whose value
it holds; a winner collects the gradients of all the z_i it holds (a scatter-add of z_bar
at the winners). At a tie the first in the scan's order keeps it (the lower index, or the
higher one with ``reverse=True``), as the max gate gives a tie to its first input;
``jax.grad`` splits a tie instead.
""",
    )


cummax = _running_extreme("cummax", lax.cummax)
cummin = _running_extreme("cummin", lax.cummin)

_SCANS = {"cumsum": cumsum, "cumprod": cumprod, "cumlogsumexp": cumlogsumexp,
          "cummax": cummax, "cummin": cummin}
