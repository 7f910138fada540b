"""The six ways to get a full Jacobian, two modes by three sources of rules.

|         | ours, direct     | ours, the other rule transposed | plain JAX                 |
|---------|------------------|---------------------------------|---------------------------|
| reverse | ``reverse-ours`` | ``reverse-transposed-jvp``      | ``reverse-jax``           |
| forward | ``forward-ours`` | ``forward-jvp_from_vjp``        | ``forward-jax``           |

* ``reverse-ours``: ``jaxprop.reverse.jacobian``, one VJP through our VJP rules per output
  element (a row of J).
* ``reverse-transposed-jvp``: ``jax.jacrev`` under the default ``"jvp"`` pipeline: JAX
  transposes our (linear) JVP rules into VJPs.
* ``reverse-jax``: ``jax.jacrev`` of the plain-jnp twin: JAX's own rules.
* ``forward-ours``: ``jaxprop.forward.jacobian``, one JVP through our JVP rules per input
  element (a column of J).
* ``forward-jvp_from_vjp``: the JVP built from "two calls to reverse-mode AD"
  (``jaxprop.forward.jvp_from_vjp``), vmapped over the input basis.
* ``forward-jax``: ``jax.jacfwd`` of the plain-jnp twin.

All six return the Jacobian in ``jax.jacrev``'s layout: blocks of shape
``out.shape + in.shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from jaxprop import _linear_maps as lm
from jaxprop import forward, reverse
from jaxprop.gate import pipeline

__all__ = ["PIPELINES", "MODE", "jacobian_pipelines", "jvp_from_vjp_jacobian"]

PIPELINES = (
    "reverse-ours",
    "reverse-transposed-jvp",
    "reverse-jax",
    "forward-ours",
    "forward-jvp_from_vjp",
    "forward-jax",
)
"""The pipelines' names, in the order tables list them."""

MODE = {name: name.split("-", 1)[0] for name in PIPELINES}
"""Pipeline name -> ``"reverse"`` or ``"forward"``."""


def jvp_from_vjp_jacobian(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """Returns a jitted full Jacobian of f, one column per JVP built from two VJPs.

    Each column J e_j is ``jaxprop.forward.jvp_from_vjp`` along the basis vector e_j: the
    pullback u -> J^T u is linear, and pulling back through it gives v -> J v.
    """
    who = "jvp_from_vjp_jacobian"

    def jacobian_f(*args):
        nums = lm.normalize_argnums(argnums, len(args), who)
        f_dyn, dyn = lm.split_args(f, args, nums)
        lm.check_differentiable(who, dyn, nums)
        out = jax.eval_shape(f_dyn, *dyn)
        flat, unravel = lm.ravel(dyn)

        def column(e):
            _, out_dot = forward.jvp_from_vjp(f_dyn, dyn, unravel(e))
            return lm.ravel(out_dot)[0]

        cols = lm.map_basis(column, flat.size, flat.dtype, None)
        return lm.unflatten_jacobian(cols.T, out, dyn, isinstance(argnums, int))

    return jax.jit(jacobian_f)


def _transposed_jvp_jacobian(f: Callable, argnums) -> Callable:
    def jacobian_f(*args):
        with pipeline("jvp"):
            return jax.jacrev(f, argnums)(*args)

    return jax.jit(jacobian_f)


def jacobian_pipelines(f: Callable, twin: Callable,
                       argnums: int | Sequence[int] = 0) -> dict[str, Callable]:
    """The six jitted Jacobian functions of one computation, by pipeline name.

    Args:
      f: the function built from gates, ``f(*args)``.
      twin: the same function written with plain ``jnp`` (no gates), for JAX's own rules.
      argnums: the arguments to differentiate, as in ``jax.jacrev``.

    Returns:
      ``{name: jacobian_fn}`` in the order of :data:`PIPELINES`; each ``jacobian_fn(*args)``
      returns blocks of shape ``out.shape + in.shape``.
    """
    nums = argnums if isinstance(argnums, int) else tuple(argnums)
    return {
        "reverse-ours": reverse.jacobian(f, nums),
        "reverse-transposed-jvp": _transposed_jvp_jacobian(f, nums),
        "reverse-jax": jax.jit(jax.jacrev(twin, nums)),
        "forward-ours": forward.jacobian(f, nums),
        "forward-jvp_from_vjp": jvp_from_vjp_jacobian(f, nums),
        "forward-jax": jax.jit(jax.jacfwd(twin, nums)),
    }
