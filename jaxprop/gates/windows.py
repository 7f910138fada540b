"""The pooling gates: max, min and sum pooling over sliding windows, as ``lax.reduce_window``
slides them, and the two steps JAX's own max-pool gradient is made of.

A window has a size per axis (``window``), steps by ``strides``, and may run over
``padding``, over the holes that ``base_dilation`` puts between x's elements, and skip
elements (``window_dilation``). Padding and holes hold nothing: no element, no gradient.

* ``max_pool`` and ``min_pool`` route: each window's winner takes the window's whole upstream
  gradient, the others none. An element that wins several (overlapping) windows gets the sum
  of their gradients. At a tie the first element of the window wins (C order, the window's
  rows first), as the max gate gives a tie to the first.
* ``sum_pool`` distributes: each input gets the sum of the gradients of the windows it
  belongs to; ``avg_pool`` gives each z_bar / n, n the window's size. In traced code an
  average pool is a sum pool, then a div gate.
* ``select_and_scatter_add`` and ``select_and_gather_add`` are the max pool's two linear
  halves, the primitives of ``jax.grad`` and ``jax.jvp`` of a max pool: each window's
  upstream gradient added at its winner, and each window's winner's tangent picked. They
  appear when a max pool's gradient is differentiated again; their rules are each other.

The rules are written with gathers, scatter-adds and window sums, which have gates, so a
pool's gradient differentiates again through the gates (``jaxprop.hessian``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprop.gate import DISTRIBUTOR, ROUTER, Gate, NoGateError, inputs
from jaxprop.gates.arithmetic import add, maximum, minimum

__all__ = ["max_pool", "min_pool", "sum_pool", "avg_pool", "select_and_scatter_add",
           "select_and_gather_add"]

_WINDOW = ("window_dimensions", "window_strides", "padding", "base_dilation",
           "window_dilation")
"""``lax.reduce_window``'s static parameters, under the names its primitives give them."""

_PARAMS = (*_WINDOW, "in_shape")
_PAD_NAMES = ("VALID", "SAME", "SAME_LOWER")


# ------------------------------------------------------------------------- the windows


def _ints(name: str, what: str, value, ndim: int, default: int | None = None):
    """``value`` as a tuple of ``ndim`` positive ints, or a one-line error naming it."""
    if value is None and default is not None:
        return (default,) * ndim
    try:
        out = tuple(int(v) for v in value)
        ok = all(float(v) == int(v) for v in value) and len(out) == ndim
    except (TypeError, ValueError):
        ok = False
    if not ok or any(v < 1 for v in out):
        raise ValueError(f"{name}: {what} must be {ndim} positive ints, one per axis of x "
                         f"(rank {ndim}); got {value!r}")
    return out


def _pads(name: str, padding, shape, window, strides, window_dilation):
    """``padding`` ("VALID", "SAME", "SAME_LOWER", or one (low, high) pair per axis) as pairs."""
    ndim = len(shape)
    if isinstance(padding, str):
        if padding.upper() not in _PAD_NAMES:
            raise ValueError(f"{name}: padding {padding!r} is not one of {_PAD_NAMES} or a "
                             "sequence of (low, high) pairs")
        spans = tuple((w - 1) * r + 1 for w, r in zip(window, window_dilation))
        return tuple((int(lo), int(hi)) for lo, hi in
                     lax.padtype_to_pads(shape, spans, strides, padding.upper()))
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != ndim:
        raise ValueError(f"{name}: padding must be one of {_PAD_NAMES} or {ndim} (low, high) "
                         f"pairs of ints, one per axis of x; got {padding!r}")
    return pairs


def _window_params(name: str, x, window, strides=None, padding="VALID", base_dilation=None,
                   window_dilation=None) -> dict:
    """A pool's arguments, in ``lax.reduce_window``'s words, as the gate's static params."""
    shape = tuple(jnp.shape(x))
    ndim = len(shape)
    window = _ints(name, "window", window, ndim)
    strides = _ints(name, "strides", strides, ndim, default=1)
    base_dilation = _ints(name, "base_dilation", base_dilation, ndim, default=1)
    window_dilation = _ints(name, "window_dilation", window_dilation, ndim, default=1)
    pads = _pads(name, padding, shape, window, strides, window_dilation)
    return dict(window_dimensions=window, window_strides=strides, padding=pads,
                base_dilation=base_dilation, window_dilation=window_dilation, in_shape=shape)


def _out_shape(*, window_dimensions, window_strides, padding, base_dilation, window_dilation,
               in_shape) -> tuple[int, ...]:
    """How many windows fit along each axis (0 where none does)."""
    out = []
    for n, w, s, (lo, hi), b, r in zip(in_shape, window_dimensions, window_strides, padding,
                                       base_dilation, window_dilation):
        length = lo + ((n - 1) * b + 1 if n else 0) + hi
        span = (w - 1) * r + 1
        out.append((length - span) // s + 1 if length >= span else 0)
    return tuple(out)


def _window_sum(x, *, window_dimensions, window_strides, padding, base_dilation,
                window_dilation, **_):
    """The sum of x over each window (JAX's ``reduce_window_sum``)."""
    return lax.reduce_window(x, np.zeros((), jnp.result_type(x)), lax.add, window_dimensions,
                             window_strides, padding, base_dilation, window_dilation)


def _first_of(select: str, best, other, last: bool = False):
    """Of two candidates ``(value, flat index)``, the winner: the larger (smaller) value, the
    smaller index at a tie (the larger with ``last``, tests/mutation.py's tie mutant); NaN
    beats any number, as ``lax.max`` propagates it."""
    (v, i), (w, j) = best, other
    nan_v, nan_w = jnp.isnan(v), jnp.isnan(w)
    beats = (w > v) if select == "max" else (w < v)
    beats = beats | (nan_w & ~nan_v)
    tie = (w == v) | (nan_w & nan_v)
    take = beats | (tie & ((j > i) if last else (j < i)))
    return jnp.where(take, w, v), jnp.where(take, j, i)


def _winners(select: str, x, *, window_dimensions, window_strides, padding, base_dilation,
             window_dilation, in_shape, last: bool = False):
    """Each window's winner, as its flat index into x (C order): the first largest (or
    smallest) element; ``x.size`` for a window of padding and holes only.

    x is padded and dilated with the identity (-inf for max), its flat indices with
    ``x.size``; then the windows are reduced one axis at a time, keeping ``(value, index)``
    pairs. "Larger value, else smaller index" is a total order, so the axes' order does not
    change the winner, and the smallest index is the window's first element in C order."""
    size = math.prod(in_shape)
    if size >= np.iinfo(np.int32).max:
        raise ValueError(f"pooling: x has {size} elements, more than int32 indices reach")
    params = dict(window_dimensions=window_dimensions, window_strides=window_strides,
                  padding=padding, base_dilation=base_dilation,
                  window_dilation=window_dilation, in_shape=in_shape)
    out_shape = _out_shape(**params)
    if 0 in out_shape or size == 0:
        return jnp.full(out_shape, size, jnp.int32)
    config = [(lo, hi, b - 1) for (lo, hi), b in zip(padding, base_dilation)]
    identity = _identity(select, x)
    value = lax.pad(x, identity, config)
    index = lax.pad(lax.iota(jnp.int32, size).reshape(in_shape), np.int32(size), config)
    for axis, (w, s, r, n) in enumerate(zip(window_dimensions, window_strides,
                                            window_dilation, out_shape)):
        best = None
        for k in range(w):
            start = k * r
            pair = tuple(lax.slice_in_dim(a, start, start + (n - 1) * s + 1, s, axis=axis)
                         for a in (value, index))
            best = pair if best is None else _first_of(select, best, pair, last)
        value, index = best
    return index


def _identity(select: str, x):
    return np.asarray(-np.inf if select == "max" else np.inf, jnp.result_type(x))


def _pool_forward(select: str, x, **p):
    """``(z, win)``: each window's winner, and z its value, read from x at the winner (the
    identity, -inf for max, in a window with no element, as ``lax.reduce_window``). A read is
    what JAX differentiates too, at any dilation (JAX's own max-pool VJP refuses a window
    dilation), and what ``jaxprop.hessian`` traces as a gather gate."""
    win = _winners(select, x, **p)
    return jnp.where(win < x.size, _at_winners(win, x), _identity(select, x)), win


def _add_at_winners(win, z_bar, in_shape):
    """Each window's z_bar added at its winner (a scatter-add into zeros shaped like x)."""
    flat = jnp.zeros(math.prod(in_shape), z_bar.dtype)
    flat = flat.at[win.reshape(-1)].add(z_bar.reshape(-1), mode="drop")
    return flat.reshape(in_shape)


def _at_winners(win, x_dot):
    """x_dot at each window's winner (a gather; 0 for a window with no element)."""
    picked = x_dot.reshape(-1).at[win.reshape(-1)].get(mode="fill", fill_value=0)
    return picked.reshape(win.shape)


def _sum_back(z_bar, *, window_dimensions, window_strides, padding, base_dilation,
              window_dilation, in_shape):
    """Each input's gradient: the sum of z_bar over the windows it sits in.

    It is a window sum of z_bar, the same window flipped (a window of ones is its own flip),
    with z_bar spread out by the strides (base dilation), padded so that every window an
    input belongs to is reached, and stepping by the forward's base dilation."""
    pads = []
    for n, w, s, (lo, _), b, r, m in zip(in_shape, window_dimensions, window_strides, padding,
                                         base_dilation, window_dilation, z_bar.shape):
        span = (w - 1) * r + 1
        before = span - 1 - lo
        spread = (m - 1) * s + 1 if m else 0
        pads.append((before, (n - 1) * b + span - before - spread))
    return lax.reduce_window(z_bar, np.zeros((), z_bar.dtype), lax.add, window_dimensions,
                             base_dilation, pads, window_strides, window_dilation)


# ----------------------------------------------------------------------------- the gates


def _prepare_pool(name: str):
    """The prepare hook of a pool: ``pool(x, window, strides, padding, base_dilation,
    window_dilation)``, with ``lax.reduce_window``'s meanings."""
    def prepare(x, window, strides=None, padding="VALID", base_dilation=None,
                window_dilation=None):
        return inputs(x, **_window_params(name, x, window, strides, padding, base_dilation,
                                          window_dilation))

    return prepare


def _from_primitive(name: str):
    """The adapter from a ``reduce_window_*`` primitive's parameters to the pool gate."""
    def lift(x, **p):
        gate = {"max_pool": max_pool, "min_pool": min_pool, "sum_pool": sum_pool}[name]
        return gate(x, **{k: tuple(p[k]) for k in _WINDOW}, in_shape=tuple(jnp.shape(x)))

    return lift


def _pool(select: str) -> Gate:
    name, word = {"max": ("max_pool", "largest"), "min": ("min_pool", "smallest")}[select]
    return Gate(
        name,
        pattern=ROUTER,
        forward=lambda x, **p: _pool_forward(select, x, **p),
        vjp=(lambda win, z_bar, *, in_shape, **p: _add_at_winners(win, z_bar, in_shape),),
        jvp=(lambda win, x_dot, **p: _at_winners(win, x_dot),),
        local=(f"1 where x is its window's {word} (added over its windows), else 0",),
        tangent=f"x_dot of each window's {word}",
        params=_PARAMS,
        prepare=_prepare_pool(name),
        primitives={f"reduce_window_{select}": _from_primitive(name)},
        doc=f"""{select.title()} pooling gate: z = the {word} element of each window of x:
``{name}(x, window, strides=None, padding="VALID", base_dilation=None,
window_dilation=None)``, with ``lax.reduce_window``'s arguments (one entry per axis of x;
``padding`` "VALID", "SAME", "SAME_LOWER" or (low, high) pairs). It stands for
``lax.reduce_window(x, {'-' if select == 'max' else ''}jnp.inf, lax.{select}, ...)``
(flax's and stax's {select} pools).

The "gradient router", the {select} gate's: each window's {word} element takes the
window's whole upstream gradient, the others none; an element that wins overlapping windows
gets their gradients added. The forward pass keeps each window's winner (its index) and the
backward pass scatter-adds z_bar there. At a tie the first element of the window in C order
takes it all (NaN wins, as the {select} propagates it), in both modes. ``jax.grad``
picks the same element (JAX's ``select_and_scatter_add``: XLA's select visits a window in C
order); ``jax.jvp`` (``select_and_gather_add``, a reduce_window over (value, tangent) pairs)
leaves a tie to XLA's reduction order, which is not always the first, so JAX's two modes can
disagree at a tie. ``x.reshape(...).max(axis)`` is the max gate (the first too), where
``jax.grad`` splits a tie evenly.
""",
    )


max_pool = _pool("max")
min_pool = _pool("min")


def _prepare_select(name: str, first: str):
    """The prepare hook of select_and_scatter_add / select_and_gather_add."""
    def prepare(t, operand, window, strides=None, padding="VALID", base_dilation=None,
                window_dilation=None, select="max"):
        if select not in ("max", "min"):
            raise ValueError(f"{name}: select must be 'max' or 'min'; got {select!r}")
        p = _window_params(name, operand, window, strides, padding, base_dilation,
                           window_dilation)
        want = _out_shape(**p) if first == "source" else p["in_shape"]
        if tuple(jnp.shape(t)) != want:
            raise ValueError(f"{name}: {first} has shape {tuple(jnp.shape(t))}, but "
                             f"{'the pooled operand' if first == 'source' else 'operand'} "
                             f"has shape {want}")
        return inputs(t, operand, select=select, **p)

    return prepare


def _select(name: str, select_prim) -> str:
    """A ``select_prim`` (``lax.ge_p`` picks the largest, ``lax.le_p`` the smallest)."""
    which = {"ge": "max", "le": "min"}.get(getattr(select_prim, "name", None))
    if which is None:
        raise NoGateError(f"no gate for the JAX primitive {name!r} with select_prim "
                          f"{select_prim}: its gate picks the largest (ge) or smallest (le)")
    return which


def _scatter_forward(win, source, in_shape):
    return _add_at_winners(win, source, in_shape), win


def _gather_forward(win, tangents):
    return _at_winners(win, tangents), win


def _ones(p) -> tuple[int, ...]:
    return (1,) * len(p["window_dimensions"])


select_and_scatter_add = Gate(
    "select_and_scatter_add",
    pattern=ROUTER,
    forward=lambda source, operand, *, select, **p: _scatter_forward(
        _winners(select, operand, **p), source, p["in_shape"]),
    vjp=(lambda win, z_bar, **p: _at_winners(win, z_bar), None),
    jvp=(lambda win, source_dot, *, in_shape, **p: _add_at_winners(win, source_dot, in_shape),
         None),
    local=("1 at its window's winner, else 0",),
    tangent="source_dot added at each window's winner",
    params=("select", *_PARAMS),
    prepare=_prepare_select("select_and_scatter_add", "source"),
    primitives={"select_and_scatter_add": lambda source, operand, *, select_prim, **p:
                select_and_scatter_add(
                    source, operand, select=_select("select_and_scatter_add", select_prim),
                    **{k: tuple(p[k]) for k in _WINDOW[:3]}, base_dilation=_ones(p),
                    window_dilation=_ones(p), in_shape=tuple(jnp.shape(operand)))},
    doc="""Select-and-scatter-add gate: z = zeros shaped like ``operand``, with each
window's ``source`` value added at the window's winner (its largest element for
``select="max"``, the first at a tie): ``select_and_scatter_add(source, operand, window,
strides, padding, base_dilation, window_dilation, select="max")``. It is max pooling's
backward pass (JAX's ``jax.grad`` of a max pool runs it).

The "gradient router": linear in ``source``, whose gradient is z_bar read back at each
window's winner (select_and_gather_add's forward). The winners move only when the operand's
order changes, so the operand gets no gradient.
""",
)


select_and_gather_add = Gate(
    "select_and_gather_add",
    pattern=ROUTER,
    forward=lambda tangents, operand, *, select, **p: _gather_forward(
        _winners(select, operand, **p), tangents),
    vjp=(lambda win, z_bar, *, in_shape, **p: _add_at_winners(win, z_bar, in_shape), None),
    jvp=(lambda win, tangents_dot, **p: _at_winners(win, tangents_dot), None),
    local=("1 where it is its window's winner (added over its windows), else 0",),
    tangent="tangents_dot at each window's winner",
    params=("select", *_PARAMS),
    prepare=_prepare_select("select_and_gather_add", "tangents"),
    primitives={"select_and_gather_add": lambda tangents, operand, *, select_prim, **p:
                select_and_gather_add(
                    tangents, operand, select=_select("select_and_gather_add", select_prim),
                    **{k: tuple(p[k]) for k in _WINDOW}, in_shape=tuple(jnp.shape(operand)))},
    doc="""Select-and-gather-add gate: z = for each window of ``operand``, the element of
``tangents`` at the window's winner (its largest element for ``select="max"``, the first at a
tie): ``select_and_gather_add(tangents, operand, window, strides, padding, base_dilation,
window_dilation, select="max")``. It is max pooling's forward-mode rule (JAX's ``jax.jvp``
of a max pool runs it).

The "gradient router": linear in ``tangents``, whose gradient is z_bar added at each
window's winner (select_and_scatter_add's forward). The operand gets no gradient.
""",
)


_BODIES = ("add", "max", "min")


def _body(jaxpr, consts) -> str | None:
    """``"add"``, ``"max"`` or ``"min"`` when a reduce_window's computation is that one
    operation on its two arguments (``lax.add``, ``jnp.maximum``, ``lambda a, b: a + b``;
    a jnp function's own jit is looked into)."""
    if consts or len(jaxpr.eqns) != 1 or len(jaxpr.invars) != 2:
        return None
    eqn = jaxpr.eqns[0]
    if list(eqn.outvars) != list(jaxpr.outvars) or sorted(map(id, eqn.invars)) != sorted(
            map(id, jaxpr.invars)):
        return None
    if eqn.primitive.name in _BODIES:
        return eqn.primitive.name
    inner = eqn.params.get("jaxpr")
    return _body(inner.jaxpr, inner.consts) if hasattr(inner, "jaxpr") else None


def _computation(jaxpr) -> str:
    names = [e.primitive.name for e in jaxpr.eqns]
    return "', '".join(names) if names else "its arguments unchanged"


def _scalar(value) -> float | None:
    """A reduce_window's init value as a number, or None when it is computed at run time."""
    try:
        return float(np.asarray(value))
    except TypeError:  # a tracer: not known while tracing
        return None


def _reduce_window(*args, jaxpr, consts, **window):
    """``lax.reduce_window`` with a computation of its own: a sum, max or min is its pool
    gate (an init value other than the identity is added, or maxed, once per window, as XLA
    does); anything else is refused."""
    body = _body(jaxpr, consts)
    if len(args) != 2 or body is None:
        n = len(args) // 2
        raise NoGateError(
            f"no gate for the JAX primitive 'reduce_window' (lax.reduce_window) of {n} "
            f"operand{'s' if n != 1 else ''} with the computation '{_computation(jaxpr)}': "
            "the pool gates stand for a window sum, max or min of one array (lax.add, lax.max "
            "or lax.min); pass allow_jax_rules=True to let JAX differentiate it")
    x, init = args
    c = _scalar(init)
    if c is None:
        raise NoGateError(
            "no gate for the JAX primitive 'reduce_window' with an init value computed at run "
            "time: the pool gates take a constant init value")
    pool = {"add": sum_pool, "max": max_pool, "min": min_pool}[body]
    z = pool(x, **{k: tuple(window[k]) for k in _WINDOW}, in_shape=tuple(jnp.shape(x)))
    identity = {"add": 0.0, "max": -np.inf, "min": np.inf}[body]
    if c == identity:
        return z
    return {"add": add, "max": maximum, "min": minimum}[body](z, c)


sum_pool = Gate(
    "sum_pool",
    pattern=DISTRIBUTOR,
    forward=lambda x, **p: (_window_sum(x, **p), None),
    vjp=(lambda res, z_bar, **p: _sum_back(z_bar, **p),),
    jvp=(lambda res, x_dot, **p: _window_sum(x_dot, **p),),
    local=("1 for each window it is in",),
    tangent="x_dot summed over each window",
    params=_PARAMS,
    prepare=_prepare_pool("sum_pool"),
    primitives={"reduce_window_sum": _from_primitive("sum_pool"),
                "reduce_window": _reduce_window},
    doc="""Sum pooling gate: z = the sum of each window of x: ``sum_pool(x, window,
strides=None, padding="VALID", base_dilation=None, window_dilation=None)``, with
``lax.reduce_window``'s arguments. It stands for ``lax.reduce_window(x, 0.0, lax.add, ...)``;
average pooling is this sum divided by the window's size (``avg_pool``, flax's and stax's
``avg_pool``).

The "gradient distributor", the sum gate's over each window: every input gets the sum of
the upstream gradients of the windows it belongs to (none for one that no window reaches).
That is again a window sum, of z_bar spread out by the strides and padded
(``_sum_back``). It also stands for ``lax.reduce_window`` with a computation of its own that
is a sum, max or min (``lambda a, b: jnp.maximum(a, b)``, an init value of 0 for a max): the
max and min go to their pool gates; another computation is refused, naming it.
""",
)


def _window_size(window_dimensions) -> float:
    return float(math.prod(window_dimensions))


avg_pool = Gate(
    "avg_pool",
    pattern=DISTRIBUTOR,
    forward=lambda x, **p: (_window_sum(x, **p) / _window_size(p["window_dimensions"]), None),
    vjp=(lambda res, z_bar, **p: _sum_back(z_bar / _window_size(p["window_dimensions"]), **p),),
    jvp=(lambda res, x_dot, **p: _window_sum(x_dot, **p) / _window_size(p["window_dimensions"]),),
    local=("1/n for each window it is in (n: the window's size)",),
    tangent="x_dot averaged over each window",
    params=_PARAMS,
    prepare=_prepare_pool("avg_pool"),
    doc="""Average pooling gate: z = the mean of each window of x, the window's size n
counting its padding and holes (flax's ``avg_pool``, stax's ``AvgPool`` with VALID padding):
``avg_pool(x, window, strides=None, padding="VALID", base_dilation=None,
window_dilation=None)``. In traced code it is a sum pool and a div gate.

The "gradient distributor", scaled, the mean gate's over each window: every input gets the
sum of z_bar / n over the windows it belongs to.
""",
)
