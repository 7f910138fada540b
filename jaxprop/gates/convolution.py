"""Convolution, the lecture's way (CS231n's conv layer) and in full (``conv_general_dilated``).

The forward pass slides each filter over the (padded) input and takes a dot product at every
position: y[n, o, p] = sum over c, k of x[n, c, p*stride + k] w[o, c, k]. Each output element
is a dot product of one input window with one filter, so the backward pass is again "the
swap multiplier", one window at a time, and the windows' contributions add:

    dx = the "full" convolution of dy with the flipped filters (a transposed convolution):
         every input pixel collects dy times each filter weight it was multiplied by;
    dw = the correlation of x with dy: every weight collects x times dy over every position
         (and every image) it was used at.

Strides, dilations and padding move where the windows sit, not the picture: a stride of the
forward pass becomes a dilation of dy in dx (the output skipped positions, which get no
gradient), the padding becomes the "full" padding less what the forward pass added, and a
dilation of the filter stays one. With feature groups (a depthwise convolution is one group
per channel), each group is its own convolution, and so is each group's gradient.

Every rule is a convolution itself, with a reverse, reshape and transpose around it: all of
them are gates, so the rules can be differentiated again through our own rules
(``jaxprop.hessian``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxprop.gate import SWITCHER, Gate, NoGateError, inputs

__all__ = ["conv"]


class Operands(NamedTuple):
    """The residuals of a convolution: both operands (each one's gradient uses the other)."""

    x: Any
    w: Any


def _conv(x, w, *, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count, precision, preferred_element_type=None):
    return lax.conv_general_dilated(
        x, w, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, precision=precision, preferred_element_type=preferred_element_type)


def _groups_onto(a, src: int, dst: int, groups: int):
    """a with axis ``src`` split into ``groups`` blocks and the blocks moved onto axis ``dst``
    (group-major): [.., G*m, .., n, ..] -> [.., m, .., G*n, ..]. A grouped convolution's
    gradient is one convolution per group; this lays the groups out where that convolution
    looks for them."""
    if groups == 1:
        return a
    shape = list(a.shape)
    split = shape[:src] + [groups, shape[src] // groups] + shape[src + 1:]
    a = jnp.reshape(a, split)
    at = dst + (dst > src)  # dst's position once src is split in two
    order = [i for i in range(a.ndim) if i != src]
    order.insert(order.index(at), src)  # the groups axis just before dst, then merged
    a = jnp.transpose(a, order)
    merged = list(a.shape)
    k = order.index(src)
    return jnp.reshape(a, merged[:k] + [merged[k] * merged[k + 1]] + merged[k + 2:])


def _sizes(x_shape, w_shape, y_shape, *, padding, lhs_dilation, rhs_dilation,
           window_strides, dimension_numbers):
    """Per spatial axis: (X', K', leftover), the dilated input and filter sizes and how much
    of the padded input the last window left unread (the stride did not fit it)."""
    lhs, rhs, out = dimension_numbers
    sizes = []
    for i, (lo, hi) in enumerate(padding):
        x_n, k_n, y_n = x_shape[lhs[2 + i]], w_shape[rhs[2 + i]], y_shape[out[2 + i]]
        x_eff = (x_n - 1) * lhs_dilation[i] + 1
        k_eff = (k_n - 1) * rhs_dilation[i] + 1
        leftover = x_eff + lo + hi - k_eff - (y_n - 1) * window_strides[i]
        sizes.append((x_eff, k_eff, leftover))
    return sizes


def _full_convolution(y_bar, w_flipped, x_shape, *, window_strides, padding, lhs_dilation,
                      rhs_dilation, dimension_numbers, feature_group_count, precision, **_):
    """dx: dy convolved "full" with the flipped filters, their in and out channels swapped.

    dy is dilated by the forward stride (lhs_dilation), padded by K'-1 less the forward
    padding on each side (a negative padding crops), and read with the forward input
    dilation as its stride; the filters keep their dilation.
    """
    lhs, rhs, out = dimension_numbers
    sizes = _sizes(x_shape, w_flipped.shape, y_bar.shape, padding=padding,
                   lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                   window_strides=window_strides, dimension_numbers=dimension_numbers)
    full = tuple((k_eff - 1 - lo, k_eff - 1 - hi + leftover)
                 for (lo, hi), (_, k_eff, leftover) in zip(padding, sizes))
    w_t = _groups_onto(w_flipped, rhs[0], rhs[1], feature_group_count)
    swapped = lax.ConvDimensionNumbers(out, (rhs[1], rhs[0], *rhs[2:]), lhs)
    return lax.conv_general_dilated(
        y_bar, w_t, lhs_dilation, full, window_strides, rhs_dilation, swapped,
        feature_group_count, precision=precision)


def _correlation(x, y_bar, w_shape, *, window_strides, padding, lhs_dilation, rhs_dilation,
                 dimension_numbers, feature_group_count, precision, **_):
    """dw: x correlated with dy, the images as the channels summed over.

    A convolution whose "batch" is x's channels, whose summed "features" are the images, and
    whose filters are dy: the forward stride becomes dy's dilation, the forward filter
    dilation the stride, and the padding is the forward one less the unread leftover.
    """
    lhs, rhs, out = dimension_numbers
    sizes = _sizes(x.shape, w_shape, y_bar.shape, padding=padding, lhs_dilation=lhs_dilation,
                   rhs_dilation=rhs_dilation, window_strides=window_strides,
                   dimension_numbers=dimension_numbers)
    pads = tuple((lo, hi - leftover) for (lo, hi), (_, _, leftover) in zip(padding, sizes))
    x_t = _groups_onto(x, lhs[1], lhs[0], feature_group_count)
    roles = lax.ConvDimensionNumbers((lhs[1], lhs[0], *lhs[2:]), (out[1], out[0], *out[2:]),
                                     (rhs[1], rhs[0], *rhs[2:]))
    return lax.conv_general_dilated(
        x_t, y_bar, rhs_dilation, pads, lhs_dilation, window_strides, roles,
        feature_group_count, precision=precision)


def _flipped(w, *, dimension_numbers, **_):
    """The filters reversed along their spatial axes."""
    return lax.rev(w, tuple(dimension_numbers.rhs_spec[2:]))


def _check_conv(x, w, *, dimension_numbers, feature_group_count, **_):
    lhs, rhs, _ = dimension_numbers
    x_shape, w_shape = jnp.shape(x), jnp.shape(w)
    c, c_per_group, o = x_shape[lhs[1]], w_shape[rhs[1]], w_shape[rhs[0]]
    if c != c_per_group * feature_group_count or o % feature_group_count:
        raise ValueError(
            f"conv: x {x_shape} has {c} input channels and w {w_shape} takes {c_per_group} "
            f"per group with {o} filters, which do not fit feature_group_count="
            f"{feature_group_count}")


PARAMS = ("window_strides", "padding", "lhs_dilation", "rhs_dilation", "dimension_numbers",
          "feature_group_count", "precision", "preferred_element_type")


def _prepare_conv(x, w, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                  dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                  precision=None, preferred_element_type=None):
    """The conv gate, with ``lax.conv_general_dilated``'s arguments: ``padding`` as pairs or
    ``"SAME"``/``"VALID"``, ``dimension_numbers`` as strings (``("NHWC", "HWIO", "NHWC")``),
    a ``ConvDimensionNumbers`` or None (NCHW, OIHW)."""
    n = jnp.ndim(x) - 2
    if batch_group_count != 1:
        raise ValueError(_not_covered("batch_group_count", batch_group_count))
    dims = lax.conv_dimension_numbers(jnp.shape(x), jnp.shape(w), dimension_numbers)
    lhs_dilation = tuple(int(d) for d in (lhs_dilation or (1,) * n))
    rhs_dilation = tuple(int(d) for d in (rhs_dilation or (1,) * n))
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        if any(d != 1 for d in lhs_dilation):
            raise ValueError(f"conv: padding={padding!r} with lhs_dilation={lhs_dilation}: "
                             "give the padding as (low, high) pairs, one per spatial axis "
                             "(lax.conv_general_dilated refuses it too)")
        x_sp = [jnp.shape(x)[d] for d in dims.lhs_spec[2:]]
        w_sp = [(jnp.shape(w)[d] - 1) * s + 1 for d, s in zip(dims.rhs_spec[2:], rhs_dilation)]
        padding = lax.padtype_to_pads(x_sp, w_sp, strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return inputs(x, w, window_strides=strides, padding=padding, lhs_dilation=lhs_dilation,
                  rhs_dilation=rhs_dilation, dimension_numbers=dims,
                  feature_group_count=int(feature_group_count), precision=precision,
                  preferred_element_type=preferred_element_type)


def _not_covered(name, value) -> str:
    return (f"conv: {name}={value} is not covered by the conv gate (feature groups are; "
            "compute each batch group as its own conv)" if name == "batch_group_count" else
            f"conv: {name}={value} is not covered by the conv gate")


def _from_primitive(x, w, *, batch_group_count=1, out_sharding=None, **params):
    """lax.conv_general_dilated as the conv gate; what the gate does not cover is refused
    (the tracer names the user's line, or lets JAX's rule take it under allow_jax_rules)."""
    for name, value, plain in (("batch_group_count", batch_group_count, 1),
                               ("out_sharding", out_sharding, None)):
        if value != plain:
            raise NoGateError(f"lax.conv_general_dilated: {_not_covered(name, value)}")
    return conv(x, w, **params)


conv = Gate(
    "conv",
    pattern=SWITCHER,
    forward=lambda x, w, **p: (_conv(x, w, **p), Operands(x, w)),
    vjp=(lambda res, y_bar, **p: _full_convolution(y_bar, _flipped(res.w, **p), res.x.shape, **p),
         lambda res, y_bar, **p: _correlation(res.x, y_bar, res.w.shape, **p)),
    jvp=(lambda res, x_dot, **p: _conv(x_dot, res.w, **p),
         lambda res, w_dot, **p: _conv(res.x, w_dot, **p)),
    symbol="conv",
    local=("dy convolved full with flipped w  {x}", "x correlated with dy  {w}"),
    tangent="conv(x_dot, w) + conv(x, w_dot)  {y}",
    output="y",
    params=PARAMS,
    check=_check_conv,
    prepare=_prepare_conv,
    primitives={"conv_general_dilated": _from_primitive},
    doc="""Convolution gate: y = conv(x, w), CS231n's conv layer and lax.conv_general_dilated.

x [N, C, H, W] (images), w [F, C/groups, HH, WW] (filters), y [N, F, H', W'] in the default
order; any order lax.conv_general_dilated takes (``dimension_numbers``), 1, 2 or 3 spatial
axes, strides, padding, input and filter dilation and feature groups.

Each output element is one filter's dot product with one window of x, so each input's
gradient uses the other input ("swap multiplier"), window by window, and the windows add:
    dx = dy convolved "full" with the flipped filters  (a transposed convolution)  [N, C, H, W]
    dw = x correlated with dy, summed over the images                           [F, C, HH, WW]
Forward: y_dot = conv(x_dot, w) + conv(x, w_dot).
""",
)
