"""Forward mode: tangents pushed left to right through our JVP rules.

Under the ``"jvp"`` rule set every gate is a ``jax.custom_jvp`` running our hand-written JVP
rule, and f itself is traced into gates (``jaxprop.gated``). One JVP gives J v, the derivative of
every output along one input direction v: "grads of scalar input w.r.t. vector outputs". A
gradient of a scalar function therefore costs one JVP per input element, and ``grad`` works
through the standard basis in chunks.

The drivers take ``jax.grad``'s arguments (``argnums``, ``has_aux``, ``allow_int``;
``holomorphic`` and ``reduce_axes`` refused, naming why; keyword arguments passed to f) and
are cached per f, like ``jaxprop.reverse``'s.

For example::

  out, out_dot = jaxprop.forward.jvp(f, (params, x, y), (params_dot, x_dot, y_dot))
  grads = jaxprop.forward.grad(f, chunk_size=256)(params, x, y)
  hess = jaxprop.hessian(f)(params, x, y)      # forward over reverse, our rules twice
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxprop import core, reverse, wiring
from jaxprop.tracer import gated

__all__ = ["jvp", "linearize", "grad", "value_and_grad", "jacobian", "jvp_from_vjp",
           "hessian"]

DEFAULT_CHUNK_SIZE = 64
"""Basis vectors pushed forward at once by ``grad`` when no chunk size is given."""


def jvp(f: Callable, primals: tuple, tangents: tuple, has_aux: bool = False, *,
        allow_jax_rules: bool = False):
    """Returns ``(f(*primals), J tangents)`` (and ``aux`` with ``has_aux``), through our JVP
    rules. Mirrors ``jax.jvp``."""
    traced = gated(f, allow_jax_rules=allow_jax_rules)
    traced.refuse_forward("jaxprop.forward.jvp", *primals)
    core.check_tangents("jaxprop.forward.jvp", tuple(primals), tuple(tangents))
    out, push, aux = wiring.push_forward(traced, *primals, has_aux=has_aux)
    return (out, push(*tangents), aux) if has_aux else (out, push(*tangents))


def linearize(f: Callable, *primals, has_aux: bool = False, allow_jax_rules: bool = False):
    """Returns ``(f(*primals), f_jvp)`` with ``f_jvp(*tangents)`` the linear map J (our rules);
    with ``has_aux``, ``aux`` last.

    The forward pass runs once; each later ``f_jvp`` call only pushes tangents
    (``jaxprop.wiring.push_forward``).
    """
    traced = gated(f, allow_jax_rules=allow_jax_rules)
    traced.refuse_forward("jaxprop.forward.linearize", *primals)
    out, f_jvp, aux = wiring.push_forward(traced, *primals, has_aux=has_aux)
    return (out, f_jvp, aux) if has_aux else (out, f_jvp)


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                   holomorphic: bool = False, allow_int: bool = False,
                   reduce_axes: Sequence = (), *, chunk_size: int | None = DEFAULT_CHUNK_SIZE,
                   allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted ``(*args, **kwargs) -> (f(*args), df/d args[argnums])``, by forward
    mode (``((out, aux), grads)`` with ``has_aux``, as ``jax.value_and_grad``).

    A scalar f has a one-row Jacobian, and forward mode builds it one column at a time: one
    JVP per element of the differentiated arguments. f runs forward once
    (``jax.linearize``); then ``chunk_size`` basis vectors at a time are pushed through the
    linear map, so memory stays bounded however many parameters there are.

    Args:
      f: scalar function.
      argnums: which positional arguments to differentiate.
      has_aux: f returns ``(out, aux)``.
      holomorphic, allow_int, reduce_axes: as in ``jax.grad``: an integer input's gradient
        is a float0 zero with ``allow_int``; ``holomorphic=True`` (complex inputs, which
        jaxprop refuses) and ``reduce_axes`` (removed from JAX) are refused, naming why.
      chunk_size: basis vectors per chunk; ``None`` pushes all of them in one vmap.
      allow_jax_rules: see ``jaxprop.gated``.
    """
    who = "jaxprop.forward.value_and_grad"
    core.check_grad_options(who, holomorphic, reduce_axes)
    key = ("forward.value_and_grad", argnums, has_aux, allow_int, chunk_size, allow_jax_rules)
    return core.cached_driver(f, key, lambda: core.Jitted(
        _value_and_grad(f, argnums, has_aux, allow_int, chunk_size, allow_jax_rules, who),
        argnums, who))


def _value_and_grad(f: Callable, argnums, has_aux: bool, allow_int: bool,
                    chunk_size: int | None, allow: bool, who: str) -> Callable:
    def gradient(f_dyn, dyn, has_aux):  # one forward pass, then the input basis pushed
        out, push, aux = wiring.push_forward(f_dyn, *dyn, has_aux=has_aux)
        return out, core.unravel_like(core.push_basis(push, dyn, chunk_size), dyn), aux

    return core.value_and_grad_fn(who, f, argnums, has_aux, allow, gradient,
                                  "jaxprop.forward.jvp or jacobian", forward=True,
                                  allow_int=allow_int)


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
         holomorphic: bool = False, allow_int: bool = False, reduce_axes: Sequence = (), *,
         chunk_size: int | None = DEFAULT_CHUNK_SIZE, allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted ``(*args, **kwargs) -> df/d args[argnums]`` (``(grads, aux)`` with
    ``has_aux``). Takes ``jax.grad``'s arguments; see value_and_grad."""
    who = "jaxprop.forward.grad"
    core.check_grad_options(who, holomorphic, reduce_axes)
    key = ("forward.grad", argnums, has_aux, allow_int, chunk_size, allow_jax_rules)
    return core.cached_driver(f, key, lambda: core.grad_driver(
        _value_and_grad(f, argnums, has_aux, allow_int, chunk_size, allow_jax_rules, who),
        argnums, has_aux, who))


def jacobian(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
             holomorphic: bool = False, *, chunk_size: int | None = None,
             max_bytes: int | None = core.DEFAULT_MAX_BYTES,
             allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted function computing the full Jacobian of f, one column per JVP.

    Each column is the push-forward of one input basis vector, J e_j. The result has
    ``jax.jacfwd``'s layout: blocks of shape ``out.shape + in.shape``.

    Args:
      f: the function.
      argnums: which positional arguments to differentiate.
      has_aux: f returns ``(out, aux)``; the result is ``(jacobian, aux)``.
      holomorphic: refused (jaxprop refuses complex inputs), naming why.
      chunk_size: columns pushed at once; ``None`` does all in one vmap.
      max_bytes: refuse, at trace time and before anything is allocated, a Jacobian larger
        than this (``None``: no limit).
      allow_jax_rules: see ``jaxprop.gated``.
    """
    core.check_grad_options("jaxprop.forward.jacobian", holomorphic)
    key = ("forward.jacobian", argnums, has_aux, chunk_size, max_bytes, allow_jax_rules)
    return core.cached_driver(f, key, lambda: core.jacobian_driver(
        "jaxprop.forward.jacobian", f, argnums, chunk_size, max_bytes, wiring.push_forward, False,
        "jaxprop.forward.jvp", has_aux, allow_jax_rules))


def hessian(f: Callable, argnums: int | Sequence[int] = 0, holomorphic: bool = False, *,
            chunk_size: int | None = None,
            max_bytes: int | None = core.DEFAULT_MAX_BYTES,
            allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted function computing the Hessian of scalar f, through our rules twice.

    Forward over reverse, as ``jax.hessian`` does it: the gradient comes from our VJP rules
    (``jaxprop.reverse.grad``); that whole backward computation is then traced into gates in
    its turn, and its Jacobian pushed through their JVP rules, one column per input element.
    The result has ``jax.hessian``'s layout. ``holomorphic=True`` is refused (jaxprop refuses
    complex inputs), naming why.
    """
    core.check_grad_options("jaxprop.hessian", holomorphic)
    key = ("forward.hessian", argnums, chunk_size, max_bytes, allow_jax_rules)
    return core.cached_driver(f, key, lambda: jacobian(
        reverse.grad(f, argnums, allow_jax_rules=allow_jax_rules), argnums,
        chunk_size=chunk_size, max_bytes=max_bytes, allow_jax_rules=allow_jax_rules))


def jvp_from_vjp(f: Callable, primals: tuple, tangents: tuple, *,
                 allow_jax_rules: bool = False):
    """Forward mode from two calls to reverse mode ("inefficient but elegant").

    The first reverse pass, through our VJP rules, gives the pullback u -> J^T u. It is linear
    in u, so a second reverse pass through it, at any u, gives its transpose v -> J v: the
    JVP (``jaxprop.core.push_forward_by_pullbacks``). Returns ``(f(*primals), J tangents)``,
    like :func:`jvp`.
    """
    core.check_tangents("jaxprop.forward.jvp_from_vjp", tuple(primals), tuple(tangents))
    out, push, _ = core.push_forward_by_pullbacks(gated(f, allow_jax_rules=allow_jax_rules),
                                                  *primals)
    return out, push(*tangents)
