"""The six pipelines to a full Jacobian, two modes by three sources of rules.

A pipeline, here as in training (``train.pipeline``), is where the derivatives come from: a
mode and the rules it runs. (The rules themselves come in two rule sets, ``"vjp"`` and
``"jvp"``; see ``jaxprop.core``.)

|         | ours, direct     | ours, the other rule transposed | plain JAX                 |
|---------|------------------|---------------------------------|---------------------------|
| reverse | ``reverse-ours`` | ``reverse-transposed-jvp``      | ``reverse-jax``           |
| forward | ``forward-ours`` | ``forward-jvp_from_vjp``        | ``forward-jax``           |

* ``reverse-ours``: ``jaxprop.reverse.jacobian``, one VJP through our VJP rules per output
  element (a row of J): ``jaxprop.wiring.pullback``.
* ``reverse-transposed-jvp``: the same rows, pulled back under the ``"jvp"`` rule set: JAX
  transposes our (linear) JVP rules into VJPs.
* ``reverse-jax``: ``jax.jacrev`` of the plain-jnp twin: JAX's own rules.
* ``forward-ours``: ``jaxprop.forward.jacobian``, one JVP through our JVP rules per input
  element (a column of J): ``jaxprop.wiring.push_forward``.
* ``forward-jvp_from_vjp``: the columns pushed by the JVP built from "two calls to
  reverse-mode AD" (``jaxprop.core.push_forward_by_pullbacks``, as
  ``jaxprop.forward.jvp_from_vjp``).
* ``forward-jax``: ``jax.jacfwd`` of the plain-jnp twin.

Each is one entry of ``PIPELINES``: its mode, the rule set it runs, how to build it and how
the figures draw it. All six return the Jacobian in ``jax.jacrev``'s layout: blocks of shape
``out.shape + in.shape``; the four of our rules are built by ``jaxprop.core.jacobian_driver``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax

from jaxprop import core, forward, reverse, wiring

__all__ = ["JacobianPipeline", "PIPELINES", "jacobian_pipelines", "jvp_from_vjp_jacobian"]


def jvp_from_vjp_jacobian(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """Returns a jitted full Jacobian of f, one column per JVP built from two VJPs.

    Each column J e_j is ``jaxprop.forward.jvp_from_vjp`` along the basis vector e_j: the
    pullback u -> J^T u is linear, and pulling back through it gives v -> J v.
    """
    return core.jacobian_driver("jvp_from_vjp_jacobian", f, argnums, None, None,
                                core.push_forward_by_pullbacks, False,
                                "jaxprop.forward.jvp_from_vjp")


def _transposed_jvp_jacobian(f: Callable, argnums) -> Callable:
    """Reverse mode's rows pulled back under the ``"jvp"`` rule set: our JVP rules,
    transposed by JAX."""
    return core.jacobian_driver("reverse-transposed-jvp", f, argnums, None, None,
                                functools.partial(wiring.pullback, rules="jvp"), True,
                                "jaxprop.forward.jvp")


@dataclasses.dataclass(frozen=True)
class JacobianPipeline:
    """One pipeline to a full Jacobian: a mode and the rules it runs.

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


_LINES = {"ours": dict(linestyle="-", marker="o"), "transposed": dict(linestyle="--", marker="s"),
          "jax": dict(linestyle=":", marker="^")}
"""The line of each source of rules: solid for ours, dashed for the other rule transposed,
dotted for JAX's own."""


def _style(color: str, source: str) -> dict:
    return dict(color=color, **_LINES[source])


def _of_gates(jacobian: Callable) -> Callable:
    """A builder that differentiates the function built from gates with ``jacobian``."""
    return lambda f, twin, nums: jacobian(f, nums)


def _of_twin(jacobian: Callable) -> Callable:
    """A builder that differentiates the plain-jnp twin with JAX's ``jacobian``, jitted."""
    return lambda f, twin, nums: jax.jit(jacobian(twin, nums))


PIPELINES: dict[str, JacobianPipeline] = {p.name: p for p in (
    JacobianPipeline("reverse-ours", "reverse", "vjp", _of_gates(reverse.jacobian),
                     _style("tab:blue", "ours")),
    JacobianPipeline("reverse-transposed-jvp", "reverse", "jvp",
                     _of_gates(_transposed_jvp_jacobian), _style("tab:cyan", "transposed")),
    JacobianPipeline("reverse-jax", "reverse", None, _of_twin(jax.jacrev), _style("navy", "jax")),
    JacobianPipeline("forward-ours", "forward", "jvp", _of_gates(forward.jacobian),
                     _style("tab:red", "ours")),
    JacobianPipeline("forward-jvp_from_vjp", "forward", "vjp", _of_gates(jvp_from_vjp_jacobian),
                     _style("tab:orange", "transposed")),
    JacobianPipeline("forward-jax", "forward", None, _of_twin(jax.jacfwd),
                     _style("darkred", "jax")),
)}
"""The Jacobian pipelines by name, in the order tables list them."""


def jacobian_pipelines(f: Callable, twin: Callable,
                       argnums: int | Sequence[int] = 0) -> dict[str, Callable]:
    """The jitted Jacobian function of every pipeline for one computation, by name.

    Args:
      f: the function built from gates, ``f(*args)``.
      twin: the same function written with plain ``jnp`` (no gates), for JAX's own rules.
      argnums: the arguments to differentiate, as in ``jax.jacrev``.

    Returns:
      ``{name: jacobian_fn}`` in the order of :data:`PIPELINES`; each ``jacobian_fn(*args)``
      returns blocks of shape ``out.shape + in.shape``.
    """
    nums = argnums if isinstance(argnums, int) else tuple(argnums)
    return {name: p.build(f, twin, nums) for name, p in PIPELINES.items()}
