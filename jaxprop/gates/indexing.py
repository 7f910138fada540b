"""The indexing gates: slices, dynamic slices, gathers, concatenation and splits.

Each picks or places elements and changes no value, so its rule sends each element's
gradient back to where the element came from. A pick that reads the same element twice, such
as ``scores[jnp.arange(N), y]`` with a repeated row, is a copy: its gradient is scattered back
*and added* (the gather's rule is a scatter-add).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import DISTRIBUTOR, ROUTER, STRUCTURE, Gate

__all__ = ["slice", "dynamic_slice", "gather", "scatter", "scatter_add", "concatenate",
           "split"]


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


_slice = Gate(
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
    primitives={"slice": lambda x, *, start_indices, limit_indices, strides=None: slice(
        x, tuple(start_indices), tuple(limit_indices),
        None if strides is None else tuple(strides))},
    label=_slice_label,
    doc="""Slice gate: z = x[start:limit:strides] (``x[0]``, ``x[:, 1:3]``).

Backward ("gradient router"): each picked element gets its gradient back in place, the
others none: x_bar = z_bar padded with zeros to x's shape.
Forward: z_dot = x_dot sliced the same way.
""",
)


def slice(x, start, limit, strides=None):  # noqa: A001 - lax's name
    """The slice gate: ``lax.slice(x, start, limit, strides)``."""
    return _slice(x, start=tuple(start), limit=tuple(limit),
                  strides=None if strides is None else tuple(strides),
                  in_shape=tuple(jnp.shape(x)))


def _starts(index):
    return [index[k] for k in range(index.shape[0])]


_dynamic_slice = Gate(
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
    primitives={"dynamic_slice": lambda x, *index, slice_sizes: dynamic_slice(
        x, index, tuple(slice_sizes))},
    label=lambda names, *, sizes, in_shape: f"{names[0]}[{names[1]}:]",
    doc="""Dynamic slice gate: z = x[i:i + size] with the start i known only at run time.

Backward ("gradient router"): x_bar = zeros with z_bar written back at i (JAX clamps i so
the slice fits, and the rule writes it back where the slice was read).
Forward: z_dot = x_dot sliced at i.
""",
)


def dynamic_slice(x, start, sizes):
    """The dynamic slice gate: ``lax.dynamic_slice(x, start, sizes)``."""
    index = jnp.stack([jnp.asarray(i) for i in start]) if len(start) else jnp.zeros(0, int)
    return _dynamic_slice(x, index, sizes=tuple(sizes), in_shape=tuple(jnp.shape(x)))


def _scatter_numbers(dn):
    """The scatter that puts back what a gather with dimension numbers ``dn`` picked."""
    return lax.ScatterDimensionNumbers(
        update_window_dims=dn.offset_dims, inserted_window_dims=dn.collapsed_slice_dims,
        scatter_dims_to_operand_dims=dn.start_index_map,
        operand_batching_dims=dn.operand_batching_dims,
        scatter_indices_batching_dims=dn.start_indices_batching_dims)


def _gather(x, idx, *, dimension_numbers, slice_sizes, mode, fill_value, indices_are_sorted,
            unique_indices, in_shape):
    return lax.gather(x, idx, dimension_numbers=dimension_numbers, slice_sizes=slice_sizes,
                      indices_are_sorted=indices_are_sorted, unique_indices=unique_indices,
                      mode=mode, fill_value=fill_value)


def _scatter_back(idx, z_bar, *, dimension_numbers, slice_sizes, mode, fill_value,
                  indices_are_sorted, unique_indices, in_shape):
    return lax.scatter_add(jnp.zeros(in_shape, z_bar.dtype), idx, z_bar,
                           _scatter_numbers(dimension_numbers),
                           indices_are_sorted=indices_are_sorted,
                           unique_indices=unique_indices, mode=mode)


_gather_gate = Gate(
    "gather",
    pattern=ROUTER,
    forward=lambda x, idx, **p: (_gather(x, idx, **p), idx),
    vjp=(_scatter_back, None),
    jvp=(lambda idx, x_dot, **p: _gather(x_dot, idx, **p), None),
    local=("1 where picked (added where picked twice), else 0",),
    tangent="x_dot picked",
    params=("dimension_numbers", "slice_sizes", "mode", "fill_value", "indices_are_sorted",
            "unique_indices", "in_shape"),
    primitives={"gather": lambda x, idx, **p: gather(x, idx, **p)},
    label=lambda names, **p: f"{names[0]}[{names[1]}]",
    doc="""Gather gate: z = the elements (or slices) of x at ``indices`` (``x[idx]``,
``scores[jnp.arange(N), y]``, ``jnp.take_along_axis``).

Backward ("gradient router"): each picked element's gradient goes back where it was read,
and an element picked twice gets both gradients added: x_bar = a scatter-add of z_bar into
zeros shaped like x. The indices get no gradient.
Forward: z_dot = x_dot picked at the same indices.
""",
)


def gather(x, indices, *, dimension_numbers, slice_sizes, mode=None, fill_value=None,
           indices_are_sorted=False, unique_indices=False):
    """The gather gate, with ``lax.gather``'s arguments."""
    mode = lax.GatherScatterMode.from_any(mode)
    return _gather_gate(x, indices, dimension_numbers=dimension_numbers,
                        slice_sizes=tuple(slice_sizes), mode=mode, fill_value=fill_value,
                        indices_are_sorted=bool(indices_are_sorted),
                        unique_indices=bool(unique_indices), in_shape=tuple(jnp.shape(x)))


def _gather_numbers(sdn):
    """The gather that reads back what a scatter with dimension numbers ``sdn`` wrote."""
    return lax.GatherDimensionNumbers(
        offset_dims=sdn.update_window_dims, collapsed_slice_dims=sdn.inserted_window_dims,
        start_index_map=sdn.scatter_dims_to_operand_dims,
        operand_batching_dims=sdn.operand_batching_dims,
        start_indices_batching_dims=sdn.scatter_indices_batching_dims)


def _read_back(z_bar, idx, *, dimension_numbers, mode, updates_shape, in_shape, **_):
    """z_bar at the places a scatter wrote: each update's gradient."""
    sizes, pos = [], 0
    for d in range(len(in_shape)):
        if d in dimension_numbers.inserted_window_dims or \
                d in dimension_numbers.operand_batching_dims:
            sizes.append(1)
        else:
            sizes.append(updates_shape[dimension_numbers.update_window_dims[pos]])
            pos += 1
    return lax.gather(z_bar, idx, _gather_numbers(dimension_numbers), tuple(sizes), mode=mode)


def _write(x, idx, u, *, dimension_numbers, indices_are_sorted, unique_indices, mode, add,
           **_):
    write = lax.scatter_add if add else lax.scatter
    return write(x, idx, u, dimension_numbers, indices_are_sorted=indices_are_sorted,
                 unique_indices=unique_indices, mode=mode)


def _scatter_forward(x, idx, u, **p):
    kept = _write(jnp.ones_like(x), idx, jnp.zeros_like(jnp.asarray(u, x.dtype)), **p,
                  add=False)  # 1 where x survives, 0 where an update overwrote it
    return _write(x, idx, u, **p, add=False), (idx, kept)


_scatter = Gate(
    "scatter",
    pattern=ROUTER,
    forward=_scatter_forward,
    vjp=(lambda res, z_bar, **p: z_bar * res[1], None,
         lambda res, z_bar, **p: _read_back(z_bar, res[0], **p)),
    jvp=(lambda res, x_dot, **p: x_dot * res[1], None,  # placed by adding into zeros: a
         lambda res, u_dot, **p: _write(jnp.zeros(p["in_shape"], u_dot.dtype), res[0], u_dot,
                                        **p, add=True)),  # linear map JAX can transpose
    local=("[not overwritten]", None, "1 at the written places"),
    tangent="x_dot where kept, u_dot where written",
    params=("dimension_numbers", "indices_are_sorted", "unique_indices", "mode",
            "updates_shape", "in_shape"),
    primitives={"scatter": lambda x, idx, u, **p: scatter(x, idx, u, **p)},
    doc="""Scatter gate: z = x with ``updates`` written at ``indices`` (``x.at[i].set(u)``,
the JAX spelling of CS231n's ``margins[np.arange(N), y] = 0``).

Backward ("gradient router"): the elements of x that survive get their gradient, the
overwritten ones none: x_bar = z_bar where kept; each update gets z_bar where it was written
(u_bar = z_bar read back at ``indices``). An index written twice keeps one of the updates,
and then each of them is given that gradient: write each place once (``jnp.arange(N)`` rows).
Forward: z_dot = x_dot where kept, u_dot where written.
""",
)


_scatter_add = Gate(
    "scatter_add",
    pattern=DISTRIBUTOR,
    forward=lambda x, idx, u, **p: (_write(x, idx, u, **p, add=True), idx),
    vjp=(lambda idx, z_bar, **p: z_bar, None, lambda idx, z_bar, **p: _read_back(z_bar, idx,
                                                                                  **p)),
    jvp=(lambda idx, x_dot, **p: x_dot, None,
         lambda idx, u_dot, **p: _write(jnp.zeros(p["in_shape"], u_dot.dtype), idx, u_dot,
                                        **p, add=True)),
    local=("1", None, "1, read back at the indices"),
    tangent="x_dot + u_dot added at the indices",
    params=("dimension_numbers", "indices_are_sorted", "unique_indices", "mode",
            "updates_shape", "in_shape"),
    primitives={"scatter-add": lambda x, idx, u, **p: scatter_add(x, idx, u, **p),
                "scatter_add": lambda x, idx, u, **p: scatter_add(x, idx, u, **p)},
    doc="""Scatter-add gate: z = x with ``updates`` added at ``indices`` (``x.at[i].add(u)``).

Backward ("gradient distributor"): x_bar = z_bar; each update gets z_bar read back where it
was added. Forward: z_dot = x_dot + u_dot added at the indices.
""",
)


def _full_updates(indices, updates, dimension_numbers):
    """A scalar ``updates`` broadcast to one update per index, as ``x.at[i].set(0.0)`` does."""
    if jnp.ndim(updates) or jnp.ndim(indices) == 0:
        return updates
    if dimension_numbers.update_window_dims:
        raise ValueError("scatter: a scalar 'updates' needs update_window_dims=(); got "
                         f"{dimension_numbers.update_window_dims}: pass the full updates array")
    return jnp.broadcast_to(updates, jnp.shape(indices)[:-1])


def _scatter_params(x, u, dimension_numbers, indices_are_sorted, unique_indices, mode):
    return dict(dimension_numbers=dimension_numbers, indices_are_sorted=bool(indices_are_sorted),
                unique_indices=bool(unique_indices),
                mode=lax.GatherScatterMode.from_any(mode),
                updates_shape=tuple(jnp.shape(u)), in_shape=tuple(jnp.shape(x)))


def scatter(x, indices, updates, *, dimension_numbers, indices_are_sorted=False,
            unique_indices=False, mode=None, **_):
    """The scatter gate, with ``lax.scatter``'s arguments.

    A scalar ``updates`` is broadcast to one update per index, as ``x.at[i].set(0.0)`` does.
    """
    updates = _full_updates(indices, updates, dimension_numbers)
    return _scatter(x, indices, updates, **_scatter_params(
        x, updates, dimension_numbers, indices_are_sorted, unique_indices, mode))


def scatter_add(x, indices, updates, *, dimension_numbers, indices_are_sorted=False,
                unique_indices=False, mode=None, **_):
    """The scatter-add gate, with ``lax.scatter_add``'s arguments.

    A scalar ``updates`` is broadcast to one update per index, as ``x.at[i].set(0.0)`` does.
    """
    updates = _full_updates(indices, updates, dimension_numbers)
    return _scatter_add(x, indices, updates, **_scatter_params(
        x, updates, dimension_numbers, indices_are_sorted, unique_indices, mode))


def _place(x_dot, *, dimension, sizes, which):
    """A part's tangent placed in its slot of the concatenation, zeros in the other's."""
    config = [(0, 0, 0)] * x_dot.ndim
    config[dimension] = (0, sizes[1], 0) if which == 0 else (sizes[0], 0, 0)
    return lax.pad(x_dot, jnp.zeros((), x_dot.dtype), config)


def _part(z_bar, *, dimension, sizes, which):
    lo = 0 if which == 0 else sizes[0]
    return lax.slice_in_dim(z_bar, lo, lo + sizes[which], axis=dimension)


_concatenate = Gate(
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
    primitives={"concatenate": lambda *xs, dimension: concatenate(xs, dimension)},
    doc="""Concatenate gate: z = [x, y] joined along ``dimension``.

Backward: each part takes its own piece of z_bar back (x_bar = the first x.shape[d] entries
along d, y_bar the rest). Forward: z_dot = [x_dot, y_dot]. Longer lists are joined two at a
time.
""",
)


def concatenate(xs, axis: int = 0):
    """``jnp.concatenate(xs, axis)`` as concatenate gates, joined two at a time."""
    xs = list(xs)
    if not xs:
        raise ValueError("concatenate: give at least one array")
    axis = axis % jnp.ndim(xs[0])
    out = xs[0]
    for x in xs[1:]:
        out = _concatenate(out, x, dimension=axis,
                           sizes=(jnp.shape(out)[axis], jnp.shape(x)[axis]))
    return out


_split = Gate(
    "split",
    pattern=STRUCTURE,
    forward=lambda x, *, sizes, axis: (tuple(lax.split(x, sizes, axis)), None),
    vjp=(lambda res, z_bar, *, sizes, axis: jnp.concatenate(list(z_bar), axis=axis),),
    jvp=(lambda res, x_dot, *, sizes, axis: tuple(lax.split(x_dot, sizes, axis)),),
    local=("1, moved: x_bar = the parts' z_bar joined",),
    tangent="x_dot split",
    params=("sizes", "axis"),
    primitives={"split": lambda x, *, sizes, axis: split(x, tuple(sizes), axis)},
    doc="""Split gate: (z_0, z_1, ...) = x cut along ``axis`` into parts of ``sizes``.

Backward: x_bar = the parts' gradients joined back. Forward: each part's tangent is x_dot cut
the same way.
""",
)


def split(x, sizes, axis: int = 0):
    """x cut along ``axis`` into parts of ``sizes``: the split gate (a tuple of parts)."""
    return _split(x, sizes=tuple(int(s) for s in sizes), axis=axis % jnp.ndim(x))
