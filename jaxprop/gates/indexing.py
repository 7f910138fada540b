"""The indexing gates: slices, dynamic slices and updates, gathers, scatters, concatenation and
splits.

Each picks or places elements, so its rule sends each element's gradient back to where the
element came from. A pick that reads the same element twice, such as
``scores[jnp.arange(N), y]`` with a repeated row, is a copy: its gradient is scattered back
*and added* (the gather's rule is a scatter-add). A scatter combines x with the updates at
each index as a binary gate would: ``set`` and ``max``/``min`` route (the one value that
stayed takes the gradient), ``add`` distributes, ``multiply`` switches.

Out of bounds, the rules follow what XLA runs: a gather clamps a promised index
(``promise_in_bounds``, the default of ``x[i]``) as ``mode="clip"`` does, and a scatter drops
the update, as ``mode="drop"`` does; a dropped update and a filled element (``mode="fill"``)
get no gradient.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprop.gate import DISTRIBUTOR, ROUTER, STRUCTURE, SWITCHER, Gate, inputs
from jaxprop.gates.arithmetic import neg

__all__ = ["slice", "pad", "dynamic_slice", "dynamic_update_slice", "gather", "scatter",
           "scatter_add", "scatter_mul", "scatter_max", "scatter_min", "concatenate", "split",
           "take_along", "add_back"]


def _pad_back(z_bar, *, start, limit, strides, in_shape):
    """z_bar put back where the slice took it from, zeros elsewhere."""
    strides = strides or (1,) * len(in_shape)
    config = []
    for d, n in enumerate(in_shape):
        out = z_bar.shape[d]
        last = start[d] + (out - 1) * strides[d] if out else start[d] - 1
        config.append((start[d], n - last - 1, strides[d] - 1 if out else 0))
    return lax.pad(z_bar, jnp.zeros((), z_bar.dtype), config)


def _slice_label(names, *, start, limit, strides, in_shape):
    parts = []
    for d, n in enumerate(in_shape):
        s = 1 if strides is None else strides[d]
        if start[d] == 0 and limit[d] == n and s == 1:
            parts.append(":")
        else:
            parts.append(f"{start[d]}:{limit[d]}" + (f":{s}" if s != 1 else ""))
    while len(parts) > 1 and parts[-1] == ":":
        parts.pop()
    return f"{names[0]}[{', '.join(parts)}]"


def _prepare_slice(x, start, limit, strides=None):  # noqa: A001 - lax's name
    """The slice gate: ``lax.slice(x, start, limit, strides)``."""
    return inputs(x, start=tuple(start), limit=tuple(limit),
                  strides=None if strides is None else tuple(strides),
                  in_shape=tuple(jnp.shape(x)))


slice = Gate(
    "slice",
    pattern=ROUTER,
    forward=lambda x, *, start, limit, strides, in_shape: (
        lax.slice(x, start, limit, strides), None),
    vjp=(lambda res, z_bar, **p: _pad_back(z_bar, **p),),
    jvp=(lambda res, x_dot, *, start, limit, strides, in_shape: lax.slice(
        x_dot, start, limit, strides),),
    local=("1 where picked, else 0",),
    tangent="x_dot sliced",
    params=("start", "limit", "strides", "in_shape"),
    prepare=_prepare_slice,
    primitives={"slice": lambda x, *, start_indices, limit_indices, strides=None: slice(
        x, tuple(start_indices), tuple(limit_indices),
        None if strides is None else tuple(strides))},
    label=_slice_label,
    doc="""Slice gate: z = x[start:limit:strides] (``x[0]``, ``x[:, 1:3]``).

The "gradient router": each picked element gets its gradient back in place, the others
none.
""",
)


def _prepare_pad(x, padding_value, padding_config):
    """The pad gate: ``lax.pad(x, padding_value, padding_config)``, one ``(low, high,
    interior)`` per axis of x."""
    config = tuple((int(lo), int(hi), int(i)) for lo, hi, i in padding_config)
    if len(config) != jnp.ndim(x) or any(i < 0 for _, _, i in config):
        raise ValueError(f"pad: padding_config must hold one (low, high, interior) per axis of "
                         f"x (shape {jnp.shape(x)}), interior >= 0; got {padding_config}")
    return inputs(x, padding_value, config=config)


def _pad_forward(x, v, *, config):
    padded = lax.pad(jnp.zeros(jnp.shape(x), bool), True, config)  # the padding's cells of z
    return lax.pad(x, jnp.asarray(v, jnp.result_type(x)), config), padded


def _take_back(z_bar, *, config):
    """z_bar at the places x's elements went: the low and high padding cut away (and zeros
    padded back where a negative padding cut x), then every (interior + 1)-th element (a
    strided slice)."""
    edges = lax.pad(z_bar, jnp.zeros((), z_bar.dtype), [(-lo, -hi, 0) for lo, hi, _ in config])
    return lax.slice(edges, (0,) * edges.ndim, edges.shape, [i + 1 for _, _, i in config])


pad = Gate(
    "pad",
    pattern=ROUTER,
    forward=_pad_forward,
    vjp=(lambda padded, z_bar, *, config: _take_back(z_bar, config=config),
         lambda padded, z_bar, *, config: jnp.sum(jnp.where(padded, z_bar, 0))),
    jvp=(lambda padded, x_dot, *, config: lax.pad(x_dot, jnp.zeros((), x_dot.dtype), config),
         lambda padded, v_dot, *, config: jnp.where(padded, v_dot, 0)),
    local=("1 where its element went, else 0", "1 per padded cell"),
    tangent="x_dot padded with v_dot",
    params=("config",),
    prepare=_prepare_pad,
    primitives={"pad": lambda x, v, *, padding_config: pad(
        x, v, config=tuple(tuple(c) for c in padding_config))},
    doc="""Pad gate: z = x with the padding value v around and between its elements
(``lax.pad``; ``jnp.pad`` in its constant mode, CS231n's zero padding before a convolution).
``config`` holds one (low, high, interior) per axis: ``low`` and ``high`` cells at the two
ends (a negative one cuts cells off x instead) and ``interior`` cells between neighbours.

The "gradient router": each cell of z holds one element of x or the padding value, and
passes its gradient back to it. x_bar is z_bar at the places x's elements went: the edges
cut away, then every (interior + 1)-th cell, a strided slice (an element cut off by a
negative padding gets 0). The padding value was copied into every padded cell, so its
gradient is the sum of z_bar over them. The slice gate's rule is a pad and this gate's
is a slice: each is the other's transpose.
""",
)


def _starts(index):
    return [index[k] for k in range(index.shape[0])]


def _prepare_dynamic_slice(x, start, sizes):
    """The dynamic slice gate: ``lax.dynamic_slice(x, start, sizes)``."""
    index = jnp.stack([jnp.asarray(i) for i in start]) if len(start) else jnp.zeros(0, int)
    return inputs(x, index, sizes=tuple(sizes), in_shape=tuple(jnp.shape(x)))


dynamic_slice = Gate(
    "dynamic_slice",
    pattern=ROUTER,
    forward=lambda x, index, *, sizes, in_shape: (
        lax.dynamic_slice(x, _starts(index), sizes), index),
    vjp=(lambda index, z_bar, *, sizes, in_shape: lax.dynamic_update_slice(
        jnp.zeros(in_shape, z_bar.dtype), z_bar, _starts(index)), None),
    jvp=(lambda index, x_dot, *, sizes, in_shape: lax.dynamic_slice(
        x_dot, _starts(index), sizes), None),
    local=("1 where picked, else 0",),
    tangent="x_dot sliced",
    params=("sizes", "in_shape"),
    prepare=_prepare_dynamic_slice,
    primitives={"dynamic_slice": lambda x, *index, slice_sizes: dynamic_slice(
        x, index, tuple(slice_sizes))},
    label=lambda names, *, sizes, in_shape: f"{names[0]}[{names[1]}:]",
    doc="""Dynamic slice gate: z = x[i:i + size] with the start i known only at run time.

The "gradient router": z_bar is written back at i into zeros (JAX clamps i so the slice
fits, and the rule writes it back where the slice was read).
""",
)


def _prepare_dynamic_update_slice(x, update, start):
    """The dynamic update slice gate: ``lax.dynamic_update_slice(x, update, start)``."""
    index = jnp.stack([jnp.asarray(i) for i in start]) if len(start) else jnp.zeros(0, int)
    return inputs(x, update, index, sizes=tuple(jnp.shape(update)),
                  in_shape=tuple(jnp.shape(x)))


dynamic_update_slice = Gate(
    "dynamic_update_slice",
    pattern=ROUTER,
    forward=lambda x, u, index, *, sizes, in_shape: (
        lax.dynamic_update_slice(x, u, _starts(index)), index),
    vjp=(lambda index, z_bar, *, sizes, in_shape: lax.dynamic_update_slice(
             z_bar, jnp.zeros(sizes, z_bar.dtype), _starts(index)),
         lambda index, z_bar, *, sizes, in_shape: lax.dynamic_slice(
             z_bar, _starts(index), sizes),
         None),
    jvp=(lambda index, x_dot, *, sizes, in_shape: lax.dynamic_update_slice(
             x_dot, jnp.zeros(sizes, x_dot.dtype), _starts(index)),
         lambda index, u_dot, *, sizes, in_shape: lax.dynamic_update_slice(
             jnp.zeros(in_shape, u_dot.dtype), u_dot, _starts(index)),
         None),
    local=("1 outside the window, 0 inside", "1, read back from the window"),
    tangent="x_dot with u_dot written in the window",
    params=("sizes", "in_shape"),
    prepare=_prepare_dynamic_update_slice,
    primitives={"dynamic_update_slice": lambda x, u, *index: dynamic_update_slice(
        x, u, index)},
    doc="""Dynamic update slice gate: z = x with ``update`` written at i (``x.at[i:i + n].set(u)``
with the start i known only at run time, ``lax.dynamic_update_slice``).

The "gradient router": each place of z holds one input's value, and only that input gets its
gradient: the update gets z_bar's window at i (a dynamic slice), x gets z_bar with that
window zeroed. JAX clamps i so the update fits, and both rules use the same clamped window.
""",
)


_PROMISE = lax.GatherScatterMode.PROMISE_IN_BOUNDS


def _gather_mode(mode):
    """The mode a gather runs in: XLA clamps a promised index that is out of bounds."""
    return lax.GatherScatterMode.CLIP if mode == _PROMISE else mode


def _scatter_mode(mode):
    """The mode a scatter runs in: XLA drops the update of a promised index out of bounds."""
    return lax.GatherScatterMode.FILL_OR_DROP if mode == _PROMISE else mode


_GATHER_SCATTER = (("offset_dims", "update_window_dims"),
                   ("collapsed_slice_dims", "inserted_window_dims"),
                   ("start_index_map", "scatter_dims_to_operand_dims"),
                   ("operand_batching_dims", "operand_batching_dims"),
                   ("start_indices_batching_dims", "scatter_indices_batching_dims"))
"""A gather's dimension numbers and the scatter's that undoes it, field by field."""


def _scatter_numbers(dn):
    """The scatter that puts back what a gather with dimension numbers ``dn`` picked."""
    return lax.ScatterDimensionNumbers(**{s: getattr(dn, g) for g, s in _GATHER_SCATTER})


def _gather(x, idx, *, dimension_numbers, slice_sizes, mode, fill_value, indices_are_sorted,
            unique_indices, in_shape):
    return lax.gather(x, idx, dimension_numbers=dimension_numbers, slice_sizes=slice_sizes,
                      indices_are_sorted=indices_are_sorted, unique_indices=unique_indices,
                      mode=mode, fill_value=fill_value)


def _pick(x_dot, idx, *, mode, fill_value, **p):
    """x_dot picked where x was read: at the clamped place for a clamped index, 0 for a
    filled one (the fill value is a constant)."""
    return _gather(x_dot, idx, mode=_gather_mode(mode), fill_value=0, **p)


def _scatter_back(idx, z_bar, *, dimension_numbers, slice_sizes, mode, fill_value,
                  indices_are_sorted, unique_indices, in_shape):
    """z_bar added back where each element was read (clamped, or dropped where filled)."""
    return lax.scatter_add(jnp.zeros(in_shape, z_bar.dtype), idx, z_bar,
                           _scatter_numbers(dimension_numbers),
                           indices_are_sorted=indices_are_sorted,
                           unique_indices=unique_indices, mode=_gather_mode(mode))


def _prepare_gather(x, indices, *, dimension_numbers, slice_sizes, mode=None, fill_value=None,
           indices_are_sorted=False, unique_indices=False):
    """The gather gate, with ``lax.gather``'s arguments."""
    mode = lax.GatherScatterMode.from_any(mode)
    return inputs(x, indices, dimension_numbers=dimension_numbers,
                        slice_sizes=tuple(slice_sizes), mode=mode, fill_value=fill_value,
                        indices_are_sorted=bool(indices_are_sorted),
                        unique_indices=bool(unique_indices), in_shape=tuple(jnp.shape(x)))


gather = Gate(
    "gather",
    pattern=ROUTER,
    forward=lambda x, idx, **p: (_gather(x, idx, **p), idx),
    vjp=(_scatter_back, None),
    jvp=(lambda idx, x_dot, **p: _pick(x_dot, idx, **p), None),
    local=("1 where picked (added where picked twice), else 0",),
    tangent="x_dot picked",
    params=("dimension_numbers", "slice_sizes", "mode", "fill_value", "indices_are_sorted",
            "unique_indices", "in_shape"),
    prepare=_prepare_gather,
    primitives={"gather": lambda x, idx, **p: gather(x, idx, **p)},
    label=lambda names, **p: f"{names[0]}[{names[1]}]",
    doc="""Gather gate: z = the elements (or slices) of x at ``indices`` (``x[idx]``,
``scores[jnp.arange(N), y]``, ``jnp.take_along_axis``).

The "gradient router": each picked element's gradient goes back where it was read,
and an element picked twice gets both gradients added: x_bar = a scatter-add of z_bar into
zeros shaped like x. The indices get no gradient. An index out of bounds is read where the
gather clamps it (``mode="clip"``, and the default ``promise_in_bounds``, which XLA runs as a
clamp), and its gradient goes there; a filled element (``mode="fill"``) is a constant and
sends none back.
""",
)


def _full_updates(name, indices, updates, dimension_numbers):
    """A scalar ``updates`` broadcast to one update per index, as ``x.at[i].set(0.0)`` does."""
    if jnp.ndim(updates) or jnp.ndim(indices) == 0:
        return updates
    if dimension_numbers.update_window_dims:
        raise ValueError(f"{name}: a scalar 'updates' needs update_window_dims=(); got "
                         f"{dimension_numbers.update_window_dims}: pass the full updates array")
    return jnp.broadcast_to(updates, jnp.shape(indices)[:-1])


def _scatter_args(name):
    """The prepare hook of a scatter: ``lax.<name>``'s arguments -> inputs and static params.
    A scalar ``updates`` is broadcast to one update per index, as ``x.at[i].set(0.0)`` does."""
    def prepare(x, indices, updates, *, dimension_numbers, indices_are_sorted=False,
                unique_indices=False, mode=None, **_):
        updates = _full_updates(name, indices, updates, dimension_numbers)
        return inputs(x, indices, updates, dimension_numbers=dimension_numbers,
                      indices_are_sorted=bool(indices_are_sorted),
                      unique_indices=bool(unique_indices),
                      mode=lax.GatherScatterMode.from_any(mode),
                      updates_shape=tuple(jnp.shape(updates)), in_shape=tuple(jnp.shape(x)))

    return prepare


def _gather_numbers(sdn):
    """The gather that reads back what a scatter with dimension numbers ``sdn`` wrote."""
    return lax.GatherDimensionNumbers(**{g: getattr(sdn, s) for g, s in _GATHER_SCATTER})


def _read_back(z_bar, idx, *, dimension_numbers, mode, updates_shape, in_shape, **_):
    """z_bar at the places a scatter wrote: each update's gradient, 0 for a dropped one."""
    sizes, pos = [], 0
    for d in range(len(in_shape)):
        if d in dimension_numbers.inserted_window_dims or \
                d in dimension_numbers.operand_batching_dims:
            sizes.append(1)
        else:
            sizes.append(updates_shape[dimension_numbers.update_window_dims[pos]])
            pos += 1
    return lax.gather(z_bar, idx, _gather_numbers(dimension_numbers), tuple(sizes),
                      mode=_scatter_mode(mode), fill_value=0)


def _write(op, x, idx, u, *, dimension_numbers, indices_are_sorted, unique_indices, mode,
           **_):
    """``op`` (``lax.scatter``, ``lax.scatter_add``, ...) of the updates u into x at idx."""
    return op(x, idx, u, dimension_numbers, indices_are_sorted=indices_are_sorted,
              unique_indices=unique_indices, mode=_scatter_mode(mode))


def _ids(u, *, dimension_numbers, **_):
    """1, 2, ..., K: one id per update, shaped like u (a window's elements share one).
    0 stands for x."""
    shape = tuple(1 if d in dimension_numbers.update_window_dims else n
                  for d, n in enumerate(jnp.shape(u)))
    ids = lax.iota(jnp.int32, math.prod(shape)) + 1
    return jnp.broadcast_to(ids.reshape(shape), jnp.shape(u))


def _routes(winner, idx, ids, **p):
    """From ``winner`` (the id that took each place of z, 0 for x): ``kept``, where x's
    element took it, and ``won``, for each update, whether it took its place."""
    return winner == 0, _read_back(winner, idx, **p) == ids


def _x_routed(res, t, **p):
    """x's part of z_bar (or of x_dot): its elements that took their place of z."""
    idx, kept, won = res
    return jnp.where(kept, t, 0)


def _u_bar_routed(res, z_bar, **p):
    """Each update's gradient: z_bar read back at its index, if it took its place."""
    idx, kept, won = res
    return jnp.where(won, _read_back(z_bar, idx, **p), 0)


def _u_dot_routed(res, u_dot, **p):
    """The tangents of the updates that took their place, added into zeros (linear)."""
    idx, kept, won = res
    zeros = jnp.zeros(p["in_shape"], u_dot.dtype)
    return _write(lax.scatter_add, zeros, idx, jnp.where(won, u_dot, 0), **p)


def _scatter_forward(x, idx, u, **p):
    ids = _ids(u, **p)
    winner = _write(lax.scatter, jnp.zeros(jnp.shape(x), jnp.int32), idx, ids, **p)
    kept, won = _routes(winner, idx, ids, **p)  # z is written from the same choice of winner
    return _write(lax.scatter_add, jnp.where(kept, x, 0), idx, jnp.where(won, u, 0),
                  **p), (idx, kept, won)


_SCATTER_PARAMS = ("dimension_numbers", "indices_are_sorted", "unique_indices", "mode",
                   "updates_shape", "in_shape")

scatter = Gate(
    "scatter",
    pattern=ROUTER,
    forward=_scatter_forward,
    vjp=(_x_routed, None, _u_bar_routed),
    jvp=(_x_routed, None, _u_dot_routed),
    local=("[not overwritten]", None, "1 at the places it took, else 0"),
    tangent="x_dot where kept, u_dot where its write stayed",
    params=_SCATTER_PARAMS,
    prepare=_scatter_args("scatter"),
    primitives={"scatter": lambda x, idx, u, **p: scatter(x, idx, u, **p)},
    doc="""Scatter gate: z = x with ``updates`` written at ``indices`` (``x.at[i].set(u)``,
the JAX spelling of CS231n's ``margins[np.arange(N), y] = 0``).

The "gradient router": each place of z holds one input's value, and only that input
gets its gradient: x_bar = z_bar where x was kept; an update gets z_bar read back at its
index (u_bar) if its write stayed, else 0. An index written twice keeps one write (the last,
as XLA runs it on CPU), and the other updates get 0, as in ``jax.grad``; an update dropped
(an index out of bounds) gets 0.
""",
)


scatter_add = Gate(
    "scatter_add",
    pattern=DISTRIBUTOR,
    forward=lambda x, idx, u, **p: (_write(lax.scatter_add, x, idx, u, **p), idx),
    vjp=(lambda idx, z_bar, **p: z_bar, None,
         lambda idx, z_bar, **p: _read_back(z_bar, idx, **p)),
    jvp=(lambda idx, x_dot, **p: x_dot, None,
         lambda idx, u_dot, **p: _write(lax.scatter_add, jnp.zeros(p["in_shape"], u_dot.dtype),
                                        idx, u_dot, **p)),
    local=("1", None, "1, read back at the indices"),
    tangent="x_dot + u_dot added at the indices",
    params=_SCATTER_PARAMS,
    prepare=_scatter_args("scatter_add"),
    primitives={"scatter-add": lambda x, idx, u, **p: scatter_add(x, idx, u, **p),
                "scatter_add": lambda x, idx, u, **p: scatter_add(x, idx, u, **p),
                "scatter-sub": lambda x, idx, u, **p: scatter_add(x, idx, neg(u), **p),
                "scatter_sub": lambda x, idx, u, **p: scatter_add(x, idx, neg(u), **p)},
    doc="""Scatter-add gate: z = x with ``updates`` added at ``indices`` (``x.at[i].add(u)``,
``jax.ops.segment_sum``; ``x.at[i].subtract(u)`` adds ``-u``).

The "gradient distributor": x gets z_bar; each update gets z_bar read back where it
was added, and an update dropped (an index out of bounds, a segment id past
``num_segments``) gets 0.
""",
)


def _others(idx, u, **p):
    """For each update, the product of the other updates at its place (0 if one of them is
    0), with no division by a zero update."""
    zero = u == 0
    prod = _write(lax.scatter_mul, jnp.ones(p["in_shape"], u.dtype), idx,
                  jnp.where(zero, 1, u), **p)  # the product of the nonzero updates
    zeros = _write(lax.scatter_add, jnp.zeros(p["in_shape"], u.dtype), idx,
                   zero.astype(u.dtype), **p)  # how many updates are 0
    other_zeros = _read_back(zeros, idx, **p) - zero
    return jnp.where(other_zeros > 0, 0, _read_back(prod, idx, **p) / jnp.where(zero, 1, u))


def _mul_x_bar(res, t, **p):
    """z_bar (or x_dot) times the updates multiplied in at each place: x's multiplier."""
    idx, x, u, others = res
    return _write(lax.scatter_mul, t, idx, u, **p)


def _mul_u_bar(res, z_bar, **p):
    """z_bar x read back at the update's index, times the other updates at its place."""
    idx, x, u, others = res
    return _read_back(z_bar * x, idx, **p) * others


def _mul_u_dot(res, u_dot, **p):
    """x times the updates' tangents (each times the other updates) added at the indices."""
    idx, x, u, others = res
    zeros = jnp.zeros(p["in_shape"], u_dot.dtype)
    return x * _write(lax.scatter_add, zeros, idx, u_dot * others, **p)


scatter_mul = Gate(
    "scatter_mul",
    pattern=SWITCHER,
    forward=lambda x, idx, u, **p: (_write(lax.scatter_mul, x, idx, u, **p),
                                    (idx, x, u, _others(idx, u, **p))),
    vjp=(_mul_x_bar, None, _mul_u_bar),
    jvp=(_mul_x_bar, None, _mul_u_dot),
    local=("the updates multiplied in at its place", None,
           "x times the other updates at its place"),
    tangent="x_dot times the updates + x times u_dot (times the others) at the indices",
    params=_SCATTER_PARAMS,
    prepare=_scatter_args("scatter_mul"),
    primitives={"scatter-mul": lambda x, idx, u, **p: scatter_mul(x, idx, u, **p),
                "scatter_mul": lambda x, idx, u, **p: scatter_mul(x, idx, u, **p)},
    doc="""Scatter-multiply gate: z = x with ``updates`` multiplied in at ``indices``
(``x.at[i].multiply(u)``, ``jax.ops.segment_prod``).

The "gradient switcher", the mul gate's swap: each factor's gradient is z_bar times
the other factors. x_bar = z_bar times the product of the updates at each place; an update
gets z_bar x read back at its index, times the other updates written at the same place (an
index written twice multiplies twice). A dropped update gets 0. ``jax.grad`` refuses the
updates' gradient unless ``unique_indices=True``; this rule needs no promise.
""",
)


def _extremal_forward(op, x, idx, u, **p):
    z = _write(op, x, idx, u, **p)
    ids, nobody = _ids(u, **p), np.int32(np.iinfo(np.int32).max)
    tied = u == _read_back(z, idx, **p)  # the updates that reach the extreme
    first = jnp.where((x == z) | jnp.isnan(x), np.int32(0), nobody)  # x first, then the ids
    winner = _write(lax.scatter_min, first, idx, jnp.where(tied, ids, nobody), **p)
    return z, (idx, *_routes(winner, idx, ids, **p))


def _scatter_extremum(name: str, op) -> Gate:
    word = {"max": "largest", "min": "smallest"}[name]

    def apply(x, idx, u, **p):
        return gate(x, idx, u, **p)

    gate = Gate(
        f"scatter_{name}",
        pattern=ROUTER,
        forward=lambda x, idx, u, **p: _extremal_forward(op, x, idx, u, **p),
        vjp=(_x_routed, None, _u_bar_routed),
        jvp=(_x_routed, None, _u_dot_routed),
        local=(f"[x is the {word}]", None,
               f"1 where it is the {word} (the first at a tie), else 0"),
        tangent=f"the {word} input's tangent at each place",
        params=_SCATTER_PARAMS,
        prepare=_scatter_args(f"scatter_{name}"),
        primitives={f"scatter-{name}": apply, f"scatter_{name}": apply},
        doc=f"""Scatter-{name} gate: z = the {word} of x and the ``updates`` at each index
(``x.at[i].{name}(u)``, ``jax.ops.segment_{name}``).

The "gradient router", the {name} gate's: the {word} value at each place takes the
whole gradient, the others none: x_bar = z_bar where x is the {word}; an update gets z_bar
read back at its index where it is. At a tie the first takes it all, as the {name} gate gives a
tie to its first input: x first, then the updates in their order (``jax.grad`` splits a tie
evenly instead). A dropped update gets 0.
""",
    )
    return gate


scatter_max = _scatter_extremum("max", lax.scatter_max)
scatter_min = _scatter_extremum("min", lax.scatter_min)


def _place(x_dot, *, dimension, sizes, which):
    """A part's tangent placed in its slot of the concatenation, zeros in the other's."""
    config = [(0, 0, 0)] * x_dot.ndim
    config[dimension] = (0, sizes[1], 0) if which == 0 else (sizes[0], 0, 0)
    return lax.pad(x_dot, jnp.zeros((), x_dot.dtype), config)


def _part(z_bar, *, dimension, sizes, which):
    lo = 0 if which == 0 else sizes[0]
    return lax.slice_in_dim(z_bar, lo, lo + sizes[which], axis=dimension)


def _prepare_concatenate(xs, axis: int = 0):
    """``concatenate([x, y, ...], axis)``: a longer list joins all but its last part first,
    so n parts take n - 1 concatenate gates."""
    xs = list(xs)
    if len(xs) < 2:
        raise ValueError(f"concatenate: give two or more arrays to join; got {len(xs)}")
    axis = axis % jnp.ndim(xs[0])
    x, y = (xs[0] if len(xs) == 2 else concatenate(xs[:-1], axis)), xs[-1]
    return inputs(x, y, dimension=axis, sizes=(jnp.shape(x)[axis], jnp.shape(y)[axis]))


concatenate = Gate(
    "concatenate",
    pattern=STRUCTURE,
    forward=lambda x, y, *, dimension, sizes: (jnp.concatenate([x, y], axis=dimension), None),
    vjp=(lambda res, z_bar, **p: _part(z_bar, which=0, **p),
         lambda res, z_bar, **p: _part(z_bar, which=1, **p)),
    jvp=(lambda res, x_dot, **p: _place(x_dot, which=0, **p),
         lambda res, y_dot, **p: _place(y_dot, which=1, **p)),
    local=("1, moved: x_bar = z_bar's first part", "1, moved: y_bar = z_bar's second part"),
    tangent="[x_dot, y_dot]",
    params=("dimension", "sizes"),
    prepare=_prepare_concatenate,
    primitives={"concatenate": lambda *xs, dimension: xs[0] if len(xs) == 1
                else concatenate(xs, dimension)},
    doc="""Concatenate gate: z = [x, y] joined along ``dimension``:
``concatenate([x, y, ...], axis=0)``.

Each part takes its own piece of z_bar back (x_bar = the first x.shape[d] entries
along d, y_bar the rest). Longer lists are joined two at a time.
""",
)


def _prepare_split(x, sizes, axis: int = 0):
    """x cut along ``axis`` into parts of ``sizes``: the split gate (a tuple of parts)."""
    return inputs(x, sizes=tuple(int(s) for s in sizes), axis=axis % jnp.ndim(x))


split = Gate(
    "split",
    pattern=STRUCTURE,
    forward=lambda x, *, sizes, axis: (tuple(lax.split(x, sizes, axis)), None),
    vjp=(lambda res, z_bar, *, sizes, axis: jnp.concatenate(list(z_bar), axis=axis),),
    jvp=(lambda res, x_dot, *, sizes, axis: tuple(lax.split(x_dot, sizes, axis)),),
    local=("1, moved: x_bar = the parts' z_bar joined",),
    tangent="x_dot split",
    params=("sizes", "axis"),
    prepare=_prepare_split,
    primitives={"split": lambda x, *, sizes, axis: split(x, tuple(sizes), axis)},
    doc="""Split gate: (z_0, z_1, ...) = x cut along ``axis`` into parts of ``sizes``.

The parts' gradients are joined back.
""",
)




def _along(axis: int, ndim: int):
    """Every axis but ``axis``: the batch axes of a pick along ``axis``."""
    return tuple(d for d in range(ndim) if d != axis)


def take_along(x, idx, axis: int):
    """``jnp.take_along_axis(x, idx, axis)`` as one gather (the gather gate in traced code):
    z[..., i, ...] = x[..., idx[..., i, ...], ...]. ``idx`` is in bounds."""
    batch = _along(axis, x.ndim)
    dn = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(axis,),
                                    start_index_map=(axis,), operand_batching_dims=batch,
                                    start_indices_batching_dims=batch)
    return lax.gather(x, idx[..., None], dn, (1,) * x.ndim, mode=_PROMISE)


def add_back(t, idx, axis: int, shape):
    """The transpose of :func:`take_along`: each element of t added back into zeros shaped
    ``shape`` at the place along ``axis`` it was read from (one scatter-add)."""
    batch = _along(axis, len(shape))
    dn = lax.ScatterDimensionNumbers(update_window_dims=(), inserted_window_dims=(axis,),
                                     scatter_dims_to_operand_dims=(axis,),
                                     operand_batching_dims=batch,
                                     scatter_indices_batching_dims=batch)
    return lax.scatter_add(jnp.zeros(shape, t.dtype), idx[..., None], t, dn, mode=_PROMISE)
