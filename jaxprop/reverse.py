"""Reverse mode: the backward pass through our VJP rules.

Under this pipeline every gate is a ``jax.custom_vjp`` whose backward is our hand-written
rule. JAX records the forward pass with each gate's residuals, then walks the gates in
reverse, handing each rule its upstream gradient; the rule returns upstream x local =
downstream, and where a value fanned out, the downstream gradients add (the copy gate's
rule). One backward pass gives the gradient with respect to every input, using only
vector-Jacobian products: "grad of scalar output w.r.t. all vector inputs".

For example::

  f = jaxprop.objective(two_layer_scores, softmax_loss, reg=1e-3)
  loss, grads = jaxprop.reverse.value_and_grad(f)(params, x, y)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from jaxprop import _drivers as lm
from jaxprop.gate import pipeline

__all__ = ["vjp", "grad", "value_and_grad", "jacobian"]


def vjp(f: Callable, *primals):
    """Runs f forward and returns ``(out, vjp_fn)``, with ``vjp_fn(out_bar) -> primals_bar``.

    Mirrors ``jax.vjp``; the pullback runs our VJP rules. ``primals_bar`` is a tuple with one
    entry per primal.
    """
    with pipeline("vjp"):
        out, pullback = jax.vjp(f, *primals)

    def vjp_fn(out_bar):
        with pipeline("vjp"):
            return pullback(out_bar)

    return out, vjp_fn


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """Returns a jitted ``(*args) -> (f(*args), df/d args[argnums])`` for scalar f.

    One forward pass, then one backward pass through our VJP rules. With a tuple
    ``argnums`` the gradient is a tuple, as in ``jax.value_and_grad``.
    """

    return lm.Jitted(_value_and_grad(f, argnums), argnums, "jaxprop.reverse.value_and_grad")


def _value_and_grad(f: Callable, argnums) -> Callable:
    who = "jaxprop.reverse.value_and_grad"

    def value_and_grad_f(*args):
        f_dyn, dyn = lm.prepare(who, f, args, argnums)
        out, pullback = vjp(f_dyn, *dyn)
        lm.check_scalar(who, out, "jaxprop.reverse.vjp or jaxprop.reverse.jacobian")
        grads = pullback(jax.numpy.ones_like(out))
        return out, grads[0] if isinstance(argnums, int) else grads

    return value_and_grad_f


def grad(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """Returns a jitted ``(*args) -> df/d args[argnums]`` for scalar f. See value_and_grad."""
    value_and_grad_f = _value_and_grad(f, argnums)
    return lm.Jitted(lambda *args: value_and_grad_f(*args)[1], argnums, "jaxprop.reverse.grad")


def jacobian(f: Callable, argnums: int | Sequence[int] = 0, *, chunk_size: int | None = None,
             max_bytes: int | None = lm.DEFAULT_MAX_BYTES) -> Callable:
    """Returns a jitted function computing the full Jacobian of f, one row per VJP.

    Each row is the pullback of one output basis vector, J^T e_i. The result has
    ``jax.jacrev``'s layout: blocks of shape ``out.shape + in.shape``.

    Args:
      f: the function.
      argnums: which positional arguments to differentiate.
      chunk_size: how many rows to pull back at once; ``None`` does all in one vmap.
      max_bytes: refuse, at trace time and before anything is allocated, a Jacobian
        larger than this (``None``: no limit).
    """
    return lm.jacobian_driver("jaxprop.reverse.jacobian", f, argnums, chunk_size, max_bytes,
                              lambda f_dyn, dyn: vjp(f_dyn, *dyn), True, "jaxprop.reverse.vjp")
