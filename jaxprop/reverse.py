"""Reverse mode: the backward pass through our VJP rules.

Under the ``"vjp"`` rule set every gate is a ``jax.custom_vjp`` whose backward is our hand-written
rule, and f itself is traced into gates (``jaxprop.gated``), so plain JAX code meets the same
rules as explicit gate calls. JAX records the forward pass with each gate's residuals, then
walks the gates in reverse, handing each rule its upstream gradient; the rule returns
upstream x local = downstream, and where a value fanned out, the downstream gradients add
(the copy gate's rule). One backward pass gives the gradient with respect to every input,
using only vector-Jacobian products: "grad of scalar output w.r.t. all vector inputs".

The drivers take ``jax.grad``'s arguments (``argnums``, ``has_aux``, ``allow_int``;
``holomorphic`` and ``reduce_axes`` are refused, naming why), and keyword arguments
passed through to f. Making one again for the same f returns the same compiled driver.

For example::

  f = jaxprop.objective(two_layer_scores, softmax_loss, reg=1e-3)
  loss, grads = jaxprop.reverse.value_and_grad(f)(params, x, y)
  jaxprop.reverse.grad(lambda x, y, z: (x + y) * z, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from jaxprop import core, wiring
from jaxprop.tracer import gated

__all__ = ["vjp", "grad", "value_and_grad", "jacobian"]


def vjp(f: Callable, *primals, has_aux: bool = False, allow_jax_rules: bool = False):
    """Runs f forward and returns ``(out, vjp_fn)``, with ``vjp_fn(out_bar) -> primals_bar``
    (and ``aux`` last with ``has_aux``).

    Mirrors ``jax.vjp``; the pullback (``jaxprop.wiring.pullback``) runs our VJP rules.
    ``primals_bar`` is a tuple with one entry per primal.
    """
    out, vjp_fn, aux = wiring.pullback(gated(f, allow_jax_rules=allow_jax_rules), *primals,
                                     has_aux=has_aux)
    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _gradient(f_dyn: Callable, dyn: tuple, has_aux: bool):
    """One forward pass, then one pullback of 1 through our VJP rules."""
    out, pull, aux = wiring.pullback(f_dyn, *dyn, has_aux=has_aux)
    return out, pull(jax.numpy.ones_like(out)), aux


def _value_and_grad(f: Callable, argnums, has_aux: bool, allow_int: bool, allow: bool,
                    who: str) -> Callable:
    return core.value_and_grad_fn(who, f, argnums, has_aux, allow, _gradient,
                                  "jaxprop.reverse.vjp or jaxprop.reverse.jacobian",
                                  allow_int=allow_int)


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                   holomorphic: bool = False, allow_int: bool = False,
                   reduce_axes: Sequence = (), *, allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted ``(*args, **kwargs) -> (f(*args), df/d args[argnums])`` for scalar f.

    One forward pass, then one backward pass through our VJP rules. With a tuple
    ``argnums`` the gradient is a tuple; with ``has_aux`` f returns ``(out, aux)`` and the
    result is ``((out, aux), grads)``; with ``allow_int`` an integer input's gradient is a
    float0 zero: all as in ``jax.value_and_grad``. ``holomorphic=True`` (complex inputs,
    which jaxprop refuses) and ``reduce_axes`` (removed from JAX) are refused, naming why.
    """
    who = "jaxprop.reverse.value_and_grad"
    core.check_grad_options(who, holomorphic, reduce_axes)
    key = ("reverse.value_and_grad", argnums, has_aux, allow_int, allow_jax_rules)
    return core.cached_driver(f, key, lambda: core.Jitted(
        _value_and_grad(f, argnums, has_aux, allow_int, allow_jax_rules, who), argnums, who))


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
         holomorphic: bool = False, allow_int: bool = False, reduce_axes: Sequence = (), *,
         allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted ``(*args, **kwargs) -> df/d args[argnums]`` (``(grads, aux)`` with
    ``has_aux``) for scalar f. Takes ``jax.grad``'s arguments; see value_and_grad."""
    who = "jaxprop.reverse.grad"
    core.check_grad_options(who, holomorphic, reduce_axes)
    key = ("reverse.grad", argnums, has_aux, allow_int, allow_jax_rules)
    return core.cached_driver(f, key, lambda: core.grad_driver(
        _value_and_grad(f, argnums, has_aux, allow_int, allow_jax_rules, who), argnums,
        has_aux, who))


def jacobian(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
             holomorphic: bool = False, allow_int: bool = False, *,
             chunk_size: int | None = None, max_bytes: int | None = core.DEFAULT_MAX_BYTES,
             allow_jax_rules: bool = False) -> Callable:
    """Returns a jitted function computing the full Jacobian of f, one row per VJP.

    Each row is the pullback of one output basis vector, J^T e_i. The result has
    ``jax.jacrev``'s layout: blocks of shape ``out.shape + in.shape``.

    Args:
      f: the function.
      argnums: which positional arguments to differentiate.
      has_aux: f returns ``(out, aux)``; the result is ``(jacobian, aux)``.
      holomorphic: refused (jaxprop refuses complex inputs), naming why.
      allow_int: integer inputs get zero blocks of their dtype, as in ``jax.jacrev``.
      chunk_size: how many rows to pull back at once; ``None`` does all in one vmap.
      max_bytes: refuse, at trace time and before anything is allocated, a Jacobian
        larger than this (``None``: no limit).
      allow_jax_rules: see ``jaxprop.gated``.
    """
    core.check_grad_options("jaxprop.reverse.jacobian", holomorphic)
    key = ("reverse.jacobian", argnums, has_aux, allow_int, chunk_size, max_bytes,
           allow_jax_rules)
    return core.cached_driver(f, key, lambda: core.jacobian_driver(
        "jaxprop.reverse.jacobian", f, argnums, chunk_size, max_bytes, wiring.pullback, True,
        "jaxprop.reverse.vjp", has_aux, allow_jax_rules, allow_int))
