"""Forward mode: tangents pushed left to right through our JVP rules.

Under this pipeline every gate is a ``jax.custom_jvp`` running our hand-written JVP rule. One
JVP gives J v, the derivative of every output along one input direction v: "grads of scalar
input w.r.t. vector outputs". A gradient of a scalar function therefore costs one JVP per
input element, and ``grad`` works through the standard basis in chunks.

For example::

  out, out_dot = jaxprop.forward.jvp(f, (params, x, y), (params_dot, x_dot, y_dot))
  grads = jaxprop.forward.grad(f, chunk_size=256)(params, x, y)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxprop import _drivers as lm
from jaxprop import reverse
from jaxprop.gate import pipeline

__all__ = ["jvp", "linearize", "grad", "value_and_grad", "jacobian", "jvp_from_vjp"]

DEFAULT_CHUNK_SIZE = 64
"""Basis vectors pushed forward at once by ``grad`` when no chunk size is given."""


def jvp(f: Callable, primals: tuple, tangents: tuple):
    """Returns ``(f(*primals), J tangents)``, through our JVP rules. Mirrors ``jax.jvp``."""
    with pipeline("jvp"):
        return jax.jvp(f, tuple(primals), tuple(tangents))


def linearize(f: Callable, *primals):
    """Returns ``(f(*primals), f_jvp)`` with ``f_jvp(*tangents)`` the linear map J (our rules).

    The forward pass runs once; each later ``f_jvp`` call only pushes tangents.
    """
    with pipeline("jvp"):
        out, f_jvp = jax.linearize(f, *primals)

    def f_jvp_in_pipeline(*tangents):
        with pipeline("jvp"):
            return f_jvp(*tangents)

    return out, f_jvp_in_pipeline


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, *,
                   chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> Callable:
    """Returns a jitted ``(*args) -> (f(*args), df/d args[argnums])``, by forward mode.

    A scalar f has a one-row Jacobian, and forward mode builds it one column at a time: one
    JVP per element of the differentiated arguments. f runs forward once
    (``jax.linearize``); then ``chunk_size`` basis vectors at a time are pushed through the
    linear map, so memory stays bounded however many parameters there are.

    Args:
      f: scalar function.
      argnums: which positional arguments to differentiate.
      chunk_size: basis vectors per chunk; ``None`` pushes all of them in one vmap.
    """
    value_and_grad_f = _value_and_grad(f, argnums, chunk_size)
    return lm.Jitted(value_and_grad_f, argnums, "jaxprop.forward.value_and_grad")


def _value_and_grad(f: Callable, argnums, chunk_size: int | None) -> Callable:
    who = "jaxprop.forward.value_and_grad"

    def value_and_grad_f(*args):
        f_dyn, dyn = lm.prepare(who, f, args, argnums)
        out, f_jvp = linearize(f_dyn, *dyn)
        lm.check_scalar(who, out, "jaxprop.forward.jvp or jacobian")
        flat, unravel = lm.ravel(dyn)
        column = lm.map_basis(lambda e: f_jvp(*unravel(e)), flat.size, flat.dtype, chunk_size)
        grads = unravel(column.astype(flat.dtype))
        return out, grads[0] if isinstance(argnums, int) else grads

    return value_and_grad_f


def grad(f: Callable, argnums: int | Sequence[int] = 0, *,
         chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> Callable:
    """Returns a jitted ``(*args) -> df/d args[argnums]``. See value_and_grad."""
    value_and_grad_f = _value_and_grad(f, argnums, chunk_size)
    return lm.Jitted(lambda *args: value_and_grad_f(*args)[1], argnums, "jaxprop.forward.grad")


def jacobian(f: Callable, argnums: int | Sequence[int] = 0, *, chunk_size: int | None = None,
             max_bytes: int | None = lm.DEFAULT_MAX_BYTES) -> Callable:
    """Returns a jitted function computing the full Jacobian of f, one column per JVP.

    Each column is the push-forward of one input basis vector, J e_j. The result has
    ``jax.jacfwd``'s layout: blocks of shape ``out.shape + in.shape``.

    Args:
      f: the function.
      argnums: which positional arguments to differentiate.
      chunk_size: columns pushed at once; ``None`` does all in one vmap.
      max_bytes: refuse, at trace time and before anything is allocated, a Jacobian larger
        than this (``None``: no limit).
    """
    return lm.jacobian_driver("jaxprop.forward.jacobian", f, argnums, chunk_size, max_bytes,
                              lambda f_dyn, dyn: linearize(f_dyn, *dyn), False,
                              "jaxprop.forward.jvp")


def jvp_from_vjp(f: Callable, primals: tuple, tangents: tuple):
    """Forward mode from two calls to reverse mode ("inefficient but elegant").

    The first reverse pass, through our VJP rules, gives the pullback u -> J^T u. It is linear
    in u, so a second reverse pass through it, at any u, gives its transpose v -> J v: the
    JVP. Returns ``(f(*primals), J tangents)``, like :func:`jvp`.
    """
    primals, tangents = tuple(primals), tuple(tangents)
    out, pullback = reverse.vjp(f, *primals)
    with pipeline("vjp"):
        _, pullback_of_pullback = jax.vjp(pullback, jax.tree.map(jnp.zeros_like, out))
        (out_dot,) = pullback_of_pullback(tangents)
    return out, out_dot
