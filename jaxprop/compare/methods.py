"""The six ways to get a full Jacobian, two modes by three sources of rules.

|         | ours, direct     | ours, the other rule transposed | plain JAX                 |
|---------|------------------|---------------------------------|---------------------------|
| reverse | ``reverse-ours`` | ``reverse-transposed-jvp``      | ``reverse-jax``           |
| forward | ``forward-ours`` | ``forward-jvp_from_vjp``        | ``forward-jax``           |

* ``reverse-ours``: ``jaxprop.reverse.jacobian``, one VJP through our VJP rules per output
  element (a row of J).
* ``reverse-transposed-jvp``: ``jax.jacrev`` under the default ``"jvp"`` rule set: JAX
  transposes our (linear) JVP rules into VJPs.
* ``reverse-jax``: ``jax.jacrev`` of the plain-jnp twin: JAX's own rules.
* ``forward-ours``: ``jaxprop.forward.jacobian``, one JVP through our JVP rules per input
  element (a column of J).
* ``forward-jvp_from_vjp``: the JVP built from "two calls to reverse-mode AD"
  (``jaxprop.forward.jvp_from_vjp``), vmapped over the input basis.
* ``forward-jax``: ``jax.jacfwd`` of the plain-jnp twin.

Each is one entry of ``METHODS``: its mode, the rule set it runs, how to build it and how the
figures draw it. All six return the Jacobian in ``jax.jacrev``'s layout: blocks of shape
``out.shape + in.shape``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax

from jaxprop import _drivers as lm
from jaxprop import forward, reverse
from jaxprop.wiring import rule_set

__all__ = ["Method", "METHODS", "jacobian_methods", "jvp_from_vjp_jacobian"]


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
        with rule_set("jvp"):
            return jax.jacrev(f, argnums)(*args)

    return jax.jit(jacobian_f)


@dataclasses.dataclass(frozen=True)
class Method:
    """One way to compute a full Jacobian.

    Attributes:
      name: what tables and figures call it.
      mode: ``"reverse"`` (one VJP per output element) or ``"forward"`` (one JVP per input).
      rules: the rule set that runs: ``"vjp"``, ``"jvp"``, or None for JAX's own rules.
      build: ``(f, twin, argnums) -> jacobian_fn``; ``f`` is built from gates, ``twin`` is
        the same function in plain jnp.
      style: matplotlib line style: blue for reverse mode, red for forward; solid for our
        rules, dashed for the other rule transposed, dotted for plain JAX.
    """

    name: str
    mode: str
    rules: str | None
    build: Callable[[Callable, Callable, int | tuple[int, ...]], Callable]
    style: dict


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("reverse-ours", "reverse", "vjp", lambda f, twin, nums: reverse.jacobian(f, nums),
           dict(color="tab:blue", linestyle="-", marker="o")),
    Method("reverse-transposed-jvp", "reverse", "jvp",
           lambda f, twin, nums: _transposed_jvp_jacobian(f, nums),
           dict(color="tab:cyan", linestyle="--", marker="s")),
    Method("reverse-jax", "reverse", None, lambda f, twin, nums: jax.jit(jax.jacrev(twin, nums)),
           dict(color="navy", linestyle=":", marker="^")),
    Method("forward-ours", "forward", "jvp", lambda f, twin, nums: forward.jacobian(f, nums),
           dict(color="tab:red", linestyle="-", marker="o")),
    Method("forward-jvp_from_vjp", "forward", "vjp",
           lambda f, twin, nums: jvp_from_vjp_jacobian(f, nums),
           dict(color="tab:orange", linestyle="--", marker="s")),
    Method("forward-jax", "forward", None, lambda f, twin, nums: jax.jit(jax.jacfwd(twin, nums)),
           dict(color="darkred", linestyle=":", marker="^")),
)}
"""The Jacobian methods by name, in the order tables list them."""


def jacobian_methods(f: Callable, twin: Callable,
                     argnums: int | Sequence[int] = 0) -> dict[str, Callable]:
    """The jitted Jacobian function of every method for one computation, by name.

    Args:
      f: the function built from gates, ``f(*args)``.
      twin: the same function written with plain ``jnp`` (no gates), for JAX's own rules.
      argnums: the arguments to differentiate, as in ``jax.jacrev``.

    Returns:
      ``{name: jacobian_fn}`` in the order of :data:`METHODS`; each ``jacobian_fn(*args)``
      returns blocks of shape ``out.shape + in.shape``.
    """
    nums = argnums if isinstance(argnums, int) else tuple(argnums)
    return {name: m.build(f, twin, nums) for name, m in METHODS.items()}
