"""What a rule is checked against: finite differences, JAX's own autodiff, and the comparison.

* :func:`central_directional`: ``(f(x + h v) - f(x - h v)) / 2h``, the derivative along v
  (what a JVP rule computes) to O(h^2).
* :func:`central_coordinates`: ``d <u, f> / d x_k`` for chosen coordinates k, the entries of
  ``J^T u`` (what a VJP rule computes), each by a central difference.
* :func:`one_sided`: the left and right derivatives at a kink, each to O(h^2) from three
  points on its side: ``(-3 f(x) + 4 f(x + h e) - f(x + 2h e)) / 2h``.
* :func:`one_sided_along`: the same along the joint direction, every input moved by 1
  together: at a tie the derivative a rule that routes to one side must still get right.
* :func:`forward_as_written`: the function with every gate (every ``custom_jvp`` or
  ``custom_vjp`` function) replaced by the computation it wraps, so that ``jax.jvp`` of it is
  JAX's autodiff of the forward code, with none of our rules.
* :func:`compare`: the worst element of two sets of arrays, against ``atol + rtol |expected|``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex

from jaxprop._jaxprs import called_jaxpr

__all__ = ["Comparison", "compare", "central_directional", "central_coordinates", "one_sided",
           "one_sided_along",
           "forward_as_written", "index_text"]

_CUSTOM = ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")
_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint")


def _replace(leaves: list, i: int, value) -> list:
    out = list(leaves)
    out[i] = value
    return out


def central_directional(f: Callable, leaves: Sequence, i: int, v, h: float) -> list:
    """``(f(x_i + h v) - f(x_i - h v)) / 2h`` with the other leaves fixed: f's output leaves."""
    x = leaves[i]
    plus = jax.tree.leaves(f(*_replace(leaves, i, x + h * v)))
    minus = jax.tree.leaves(f(*_replace(leaves, i, x - h * v)))
    return [(a - b) / (2 * h) for a, b in zip(plus, minus)]


def central_coordinates(f: Callable, leaves: Sequence, i: int, u, coords, h: float,
                        batch_size: int = 32):
    """``d <u, f> / d x_i[k]`` for the flat coordinates ``coords`` of leaf i, as an array."""
    x = leaves[i]

    def pairing(xi):
        out = jax.tree.leaves(f(*_replace(leaves, i, xi)))
        return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(u), out))

    def one(k):
        e = jnp.zeros(x.size, x.dtype).at[k].set(h).reshape(x.shape)
        return (pairing(x + e) - pairing(x - e)) / (2 * h)

    return lax.map(one, jnp.asarray(coords), batch_size=batch_size)


def central_coordinates_sized(f: Callable, leaves: Sequence, i: int, u, coords, h: float,
                              batch_size: int = 32):
    """``(d <u, f> / d x_i[k], size)`` for the flat coordinates ``coords`` of leaf i, with
    ``size`` = sum |u| (|f(x + h e_k)| + |f(x - h e_k)|) / 2: what the difference's rounding
    error scales with (eps size / h)."""
    x = leaves[i]
    u = jax.tree.leaves(u)

    def one(k):
        e = jnp.zeros(x.size, x.dtype).at[k].set(h).reshape(x.shape)
        plus = jax.tree.leaves(f(*_replace(leaves, i, x + e)))
        minus = jax.tree.leaves(f(*_replace(leaves, i, x - e)))
        d = sum(jnp.vdot(w, a - b) for w, a, b in zip(u, plus, minus)) / (2 * h)
        size = sum(jnp.sum(jnp.abs(w) * (jnp.abs(a) + jnp.abs(b)) / 2)
                   for w, a, b in zip(u, plus, minus))
        return d, size

    return lax.map(one, jnp.asarray(coords), batch_size=batch_size)


def one_sided(f: Callable, leaves: Sequence, i: int, coords, h: float, batch_size: int = 32):
    """``(right, left)``: per flat coordinate k of leaf i, the one-sided derivatives of f's
    output (flattened), each from three points on its side of the kink."""
    x = leaves[i]

    def flat(xi):
        return jnp.concatenate([jnp.ravel(a) for a in
                                jax.tree.leaves(f(*_replace(leaves, i, xi)))])

    def one(k):
        e = jnp.zeros(x.size, x.dtype).at[k].set(h).reshape(x.shape)
        f0 = flat(x)
        right = (-3 * f0 + 4 * flat(x + e) - flat(x + 2 * e)) / (2 * h)
        left = (3 * f0 - 4 * flat(x - e) + flat(x - 2 * e)) / (2 * h)
        return right, left

    if len(coords) <= 8 * batch_size:  # small: one batch compiles faster than a loop
        return jax.vmap(one)(jnp.asarray(coords))
    return lax.map(one, jnp.asarray(coords), batch_size=batch_size)


def one_sided_along(f: Callable, leaves: Sequence, h) -> tuple:
    """``(right, left, value)``: the one-sided derivatives of f's output (flattened) along the
    direction that moves every element of every leaf by 1 together, which keeps a tie a tie
    (``min(x + t, x + t)``), each from three points on its side; and f's value there."""

    def flat(t):
        out = f(*[x + t for x in leaves])
        return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(out)])

    f0 = flat(0.0)
    right = (-3 * f0 + 4 * flat(h) - flat(2 * h)) / (2 * h)
    left = (3 * f0 - 4 * flat(-h) + flat(-2 * h)) / (2 * h)
    return right, left, f0


def forward_as_written(f: Callable) -> Callable:
    """``f`` with each ``custom_jvp``/``custom_vjp`` function inlined as the code it wraps.

    ``jax.jvp`` and ``jax.vjp`` of the result use JAX's own rules for every operation of
    every gate's forward computation: the derivative of the forward code as written.
    """

    def plain(*args):
        closed, shape = jax.make_jaxpr(f, return_shape=True)(*args)
        outs = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shape), outs)

    return plain


def _evaluate(jaxpr, consts, args) -> list:
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))

    def read(atom):
        return atom.val if isinstance(atom, jex.Literal) else env[atom]

    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        name = eqn.primitive.name
        sub = called_jaxpr(eqn) if name in _CUSTOM or name in _CALLS else None
        if sub is not None:
            outs = _evaluate(sub[0], sub[1], ins)
        else:
            outs = eqn.primitive.bind(*ins, **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        for v, x in zip(eqn.outvars, outs):
            if not isinstance(v, jex.DropVar):
                env[v] = x
    return [read(a) for a in jaxpr.outvars]


def index_text(name: str, shape: tuple, flat_index: int) -> str:
    """``x[1, 2]`` for flat element 5 of an x of shape (2, 3); ``x`` for a scalar. A name
    with ``{}`` gets the index there: ``"z{} (tangent of x)"`` -> ``z[1] (tangent of x)``."""
    idx = "" if not shape else "[" + ", ".join(
        str(int(k)) for k in np.unravel_index(int(flat_index), shape)) + "]"
    return name.format(idx) if "{}" in name else name + idx


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The worst element of a comparison: the one furthest over its tolerance.

    ``abs_error`` = |got - expected| there, ``rel_error`` = abs_error / |expected| (inf where
    expected is 0 and they differ), ``where`` names the element (``x[1, 2]``), ``got`` and
    ``expected`` are the two values there, and ``ok`` says whether every element is within
    ``atol + rtol |expected|``.
    """

    ok: bool
    abs_error: float
    rel_error: float
    where: str
    got: float = math.nan
    expected: float = math.nan


def compare(got: Sequence, expected: Sequence, names: Sequence[str], *, atol, rtol: float
            ) -> Comparison:
    """Compares arrays leaf by leaf; the worst element (largest error over its tolerance).
    ``atol`` is one number, or one per leaf (each a number or an array of the leaf's shape:
    a tolerance element by element)."""
    worst = None
    atols = atol if isinstance(atol, (list, tuple)) else [atol] * len(names)
    for name, g, e, atol in zip(names, got, expected, atols, strict=True):
        g = np.asarray(g, np.float64)
        e = np.asarray(e, np.float64)
        if g.shape != e.shape:
            return Comparison(False, math.inf, math.inf,
                              f"{name}: shape {g.shape}, expected {e.shape}")
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, counted as inf below
            diff = np.abs(g - e)
        both_nan = np.isnan(g) & np.isnan(e)
        diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
        with np.errstate(invalid="ignore"):
            excess = diff / (np.asarray(atol, np.float64) + rtol * np.abs(np.nan_to_num(e)))
        if excess.size == 0:
            continue
        k = int(np.argmax(excess))
        if worst is None or excess.flat[k] > worst[0]:
            worst = (excess.flat[k], name, e.shape, k, float(diff.flat[k]), float(g.flat[k]),
                     float(e.flat[k]))
    if worst is None:
        return Comparison(True, 0.0, 0.0, "-")
    excess, name, shape, k, abs_err, g_k, e_k = worst
    rel = abs_err / abs(e_k) if e_k != 0 else (0.0 if abs_err == 0 else math.inf)
    return Comparison(bool(excess <= 1.0), abs_err, rel, index_text(name, shape, k), g_k, e_k)
