"""Normalisation and dropout: fused gates, in the spirit of the fused losses.

Batch norm, spatial batch norm and layer norm are one computation with three settings: the
axes whose mean and variance normalise ``x`` and the axes that ``gamma`` and ``beta`` span.

=================== ============== ============== ==========================
gate                x              normalised over gamma, beta
=================== ============== ============== ==========================
batch_norm          [N, D]         N (the batch)  [D]
spatial_batch_norm  [N, C, H, W]   N, H, W        [C]
layer_norm          [..., D]       D (features)   [D]
=================== ============== ============== ==========================

Each is one gate with one hand-written local gradient, as CS231n's assignment writes the
"simplified" batch-norm backward, instead of the circuit of a dozen small gates (mean, sub,
square, mean, add eps, rsqrt, mul, mul, add) that the same layer in ``jnp`` is. The batch
norms are in training mode: the statistics are the batch's own (there are no running
averages; a model scores a test set with the test batch's statistics).

Inverted dropout keeps each unit with probability ``p`` and scales the kept ones by ``1/p``,
so nothing changes at test time; its mask (or the ``jax.random`` key it is drawn from) is an
argument, so the same key gives the same mask in every mode and pipeline.

Every rule is built from operations that have gates (sums, products, broadcasts, reshapes),
so ``jaxprop.hessian`` runs through our rules twice.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxprop.gate import ROUTER, SCALED, Gate, inputs

__all__ = ["batch_norm", "spatial_batch_norm", "layer_norm", "dropout"]

EPS = 1e-5
"""CS231n's default epsilon, added to the variance before the square root."""


class Normalized(NamedTuple):
    """Residuals of a norm: the normalised input, 1/sqrt(var + eps), gamma in x's rank."""

    xhat: Any
    rstd: Any
    g: Any


def _spread(v, scale_axes, ndim):
    """gamma (or beta, or a tangent of either), shaped [x.shape[a] for a in scale_axes], with
    size-1 axes put in everywhere else: it broadcasts against x."""
    it = iter(jnp.shape(v))
    return jnp.reshape(v, tuple(next(it) if a in scale_axes else 1 for a in range(ndim)))


def _collapse(a, scale_axes):
    """``a`` (x's shape) summed over every axis that gamma does not span: gamma's shape."""
    return jnp.sum(a, axis=tuple(i for i in range(jnp.ndim(a)) if i not in scale_axes))


def _centred(d, xhat, axes):
    """``(1/N) (N d - sum(d) - xhat sum(d xhat))``, the sums over the normalised ``axes``
    (N elements). This is ``rstd`` times less than the Jacobian of xhat = (x - mu) rstd
    applied to ``d``; the matrix I - 1 1^T / N - xhat xhat^T / N is symmetric, so the
    backward and the forward rule share it (see ``batch_norm``)."""
    n = math.prod(jnp.shape(d)[a] for a in axes)
    return (n * d - jnp.sum(d, axis=axes, keepdims=True)
            - xhat * jnp.sum(d * xhat, axis=axes, keepdims=True)) * (1.0 / n)


def _forward(x, gamma, beta, *, axes, scale_axes, eps):
    n = math.prod(jnp.shape(x)[a] for a in axes)
    mu = jnp.sum(x, axis=axes, keepdims=True) * (1.0 / n)
    xc = x - mu
    var = jnp.sum(xc * xc, axis=axes, keepdims=True) * (1.0 / n)
    rstd = lax.rsqrt(var + eps)
    xhat = xc * rstd
    g = _spread(gamma, scale_axes, jnp.ndim(x))
    return g * xhat + _spread(beta, scale_axes, jnp.ndim(x)), Normalized(xhat, rstd, g)


def _norm_gate(name: str, prepare, doc: str) -> Gate:
    """A norm gate ``z = gamma xhat + beta`` over the params ``axes`` (normalised) and
    ``scale_axes`` (spanned by gamma and beta)."""
    return Gate(
        name,
        pattern=SCALED,
        symbol=name.replace("_", " "),
        forward=_forward,
        vjp=(lambda res, z_bar, *, axes, scale_axes, eps:
             res.rstd * _centred(res.g * z_bar, res.xhat, axes),
             lambda res, z_bar, *, axes, scale_axes, eps:
             _collapse(z_bar * res.xhat, scale_axes),
             lambda res, z_bar, *, axes, scale_axes, eps: _collapse(z_bar, scale_axes)),
        jvp=(lambda res, x_dot, *, axes, scale_axes, eps:
             res.g * res.rstd * _centred(x_dot, res.xhat, axes),
             lambda res, gamma_dot, *, axes, scale_axes, eps:
             _spread(gamma_dot, scale_axes, res.xhat.ndim) * res.xhat,
             lambda res, beta_dot, *, axes, scale_axes, eps: jnp.broadcast_to(
                 _spread(beta_dot, scale_axes, res.xhat.ndim), res.xhat.shape)),
        local=("(gamma rstd / N) (N I - 1 1^T - xhat xhat^T)", "xhat", "1"),
        tangent="gamma rstd (x_dot - mean(x_dot) - xhat mean(x_dot xhat)) + gamma_dot xhat "
                "+ beta_dot",
        params=("axes", "scale_axes", "eps"),
        prepare=prepare,
        doc=doc,
    )


def _check_eps(name: str, eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{name}: eps must be a non-negative number (added to the variance); "
                         f"got {eps!r}")
    return float(eps)


def _check_floating(name: str, **arrays) -> None:
    for key, a in arrays.items():
        if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
            raise TypeError(f"{name}: {key} must be real floating-point; got dtype "
                            f"{jnp.result_type(a)}")


def _prepare(name: str, rank: str, axes_of, scale_of):
    """The prepare hook of a norm: ``f(x, gamma, beta, eps=1e-5)``, shapes checked."""

    def prepare(x, gamma, beta, eps: float = EPS):
        shape = tuple(jnp.shape(x))
        axes = axes_of(shape)
        if axes is None:
            raise ValueError(f"{name}: x must be {rank}; got shape {shape}")
        scale_axes = scale_of(shape)
        expect = tuple(shape[a] for a in scale_axes)
        for key, v in (("gamma", gamma), ("beta", beta)):
            if tuple(jnp.shape(v)) != expect:
                raise ValueError(f"{name}: {key} must have shape {expect} for x of shape "
                                 f"{shape} (x {rank}); got {tuple(jnp.shape(v))}")
        _check_floating(name, x=x, gamma=gamma, beta=beta)
        return inputs(x, gamma, beta, axes=axes, scale_axes=scale_axes,
                      eps=_check_eps(name, eps))

    return prepare


batch_norm = _norm_gate(
    "batch_norm",
    _prepare("batch_norm", "[N, D]", lambda s: (0,) if len(s) == 2 else None, lambda s: (1,)),
    doc="""Batch norm (training mode): z = gamma xhat + beta, xhat = (x - mu) / sqrt(var + eps),
mu and var the mean and (biased) variance of each feature over the batch; x [N, D],
gamma and beta [D].

The circuit, per feature: mu = (1/N) sum x; xc = x - mu; var = (1/N) sum xc^2;
rstd = (var + eps)^-1/2; xhat = xc rstd; z = gamma xhat + beta. Backward through it,
with dy the upstream gradient:

  dxhat = gamma dy
  drstd = sum(dxhat xc);  dvar = -1/2 rstd^3 drstd
  dxc = dxhat rstd + (2/N) xc dvar = rstd (dxhat - xhat (1/N) sum(dxhat xhat))
  dx = dxc - (1/N) sum(dxc)          (the mean's branch; sum(xhat) = 0)

which collapses to CS231n's simplified backward:

  dx = (1/N) gamma rstd (N dy - sum(dy) - xhat sum(dy xhat))
  dgamma = sum(dy xhat),  dbeta = sum(dy)

Forward mode is the same matrix, which is symmetric: x_dot ->
gamma rstd (x_dot - mean(x_dot) - xhat mean(x_dot xhat)). Where gamma varies along the
normalised axis (layer norm) the rule reads gamma dy in place of gamma times dy.
""",
)


spatial_batch_norm = _norm_gate(
    "spatial_batch_norm",
    _prepare("spatial_batch_norm", "[N, C, H, W]",
             lambda s: (0, 2, 3) if len(s) == 4 else None, lambda s: (1,)),
    doc="""Spatial batch norm (training mode): batch norm of each channel over N, H and W;
x [N, C, H, W] (NCHW), gamma and beta [C].

It is batch norm of x moved to [N*H*W, C]: one mean and variance per channel, the same
backward with N*H*W in place of N and the sums over N, H and W:
dx = (1/M) gamma rstd (M dy - sum(dy) - xhat sum(dy xhat)), M = N*H*W.
""",
)


layer_norm = _norm_gate(
    "layer_norm",
    _prepare("layer_norm", "[..., D] (rank 1 or more)",
             lambda s: (len(s) - 1,) if len(s) >= 1 else None, lambda s: (len(s) - 1,)),
    doc="""Layer norm: each example's features normalised over the feature (last) axis,
z = gamma xhat + beta; x [..., D], gamma and beta [D].

The batch-norm circuit turned around: the statistics are over the D features of one
example, and gamma varies along them, so dxhat = gamma dy enters the sums:
dx = (1/D) rstd (D dxhat - sum(dxhat) - xhat sum(dxhat xhat)); dgamma and dbeta sum
dy xhat and dy over every example.
""",
)


def _dropout_prepare(x, p, key=None, *, mask=None):
    """``dropout(x, p, key)`` or ``dropout(x, p, mask=m)``: the keep-mask drawn or checked."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"dropout: p is the probability of keeping a unit, a number in "
                         f"(0, 1]; got {p!r}")
    if (key is None) == (mask is None):
        raise TypeError("dropout: give exactly one of key (a jax.random key the mask is drawn "
                        "from) and mask= (a boolean array of the kept units)")
    _check_floating("dropout", x=x)
    if mask is None:
        mask = jax.random.bernoulli(key, p, jnp.shape(x))
    elif tuple(jnp.shape(mask)) != tuple(jnp.shape(x)):
        raise ValueError(f"dropout: mask must have x's shape {tuple(jnp.shape(x))}; got "
                         f"{tuple(jnp.shape(mask))}")
    return inputs(x, mask, p=float(p))


dropout = Gate(
    "dropout",
    pattern=ROUTER,
    forward=lambda x, mask, *, p: (x * (mask.astype(x.dtype) * (1.0 / p)),
                                   mask.astype(x.dtype) * (1.0 / p)),
    vjp=(lambda keep, z_bar, *, p: z_bar * keep, None),
    jvp=(lambda keep, x_dot, *, p: x_dot * keep, None),
    local=("mask / p",),
    params=("p",),
    prepare=_dropout_prepare,
    doc="""Inverted dropout: z = x * mask / p, each unit kept (mask 1) with probability p.

A router, like ReLU: the gradient passes through the kept units, scaled by 1/p, and the
dropped ones get none. Scaling at training time keeps E[z] = x, so test time uses x as
it is. The mask is drawn from a ``jax.random`` key (``dropout(x, p, key)``) or given
(``dropout(x, p, mask=m)``); it gets no gradient.
""",
)
