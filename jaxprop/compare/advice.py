"""Which mode to use for a Jacobian: ask XLA what each one would cost.

Reverse mode builds J one row at a time, one VJP per output element (m of them); forward
mode builds it one column at a time, one JVP per input element (n of them). The lecture's
rule of thumb follows: reverse for "grad of scalar output w.r.t. all vector inputs" (n >> m),
forward for "grads of scalar input w.r.t. vector outputs" (n << m). :func:`advise` replaces
the rule of thumb by a measurement: it compiles both Jacobian programs for the actual
arguments, without running them, and compares XLA's cost analysis of the two.

For example::

  advice = jaxprop.advise(f, x, w)   # Jacobian w.r.t. x
  print(advice)           # mode, predicted FLOPs and memory of both
  jac = (jaxprop.forward if advice.mode == "forward" else jaxprop.reverse).jacobian(f)(x, w)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxprop import core, forward, reverse
from jaxprop.compare.measure import Cost, cost_of

__all__ = ["Advice", "advise"]


@dataclasses.dataclass(frozen=True, repr=False)
class Advice:
    """The recommended mode for one Jacobian, with the costs XLA predicts for both modes.

    Attributes:
      mode: ``"forward"`` or ``"reverse"``, whichever needs fewer FLOPs.
      n: entries differentiated (the Jacobian's columns; forward mode does n JVPs).
      m: output entries (the Jacobian's rows; reverse mode does m VJPs).
      forward: predicted cost of the forward-mode Jacobian.
      reverse: predicted cost of the reverse-mode Jacobian.
      jacobian_bytes: the size of the full Jacobian.
      method: ``"compiled"`` when both Jacobian programs were compiled and analysed;
        ``"estimated"`` when the Jacobian is over the memory budget, so n times one
        compiled JVP is weighed against m times one compiled VJP.
    """

    mode: str
    n: int
    m: int
    forward: Cost
    reverse: Cost
    jacobian_bytes: int
    method: str

    @property
    def over_budget(self) -> bool:
        """True when the full Jacobian was too large to compile (``method == "estimated"``)."""
        return self.method == "estimated"

    def __repr__(self) -> str:
        return (f"<jaxprop.Advice: use {self.mode} mode for the [{self.m:,}, {self.n:,}] "
                f"Jacobian; print() it for the costs>")

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """Jupyter's view: the recommendation, then both modes' predicted costs."""
        import html

        rows = "".join(
            f"<tr><td>{name}</td><td>{count:,} {what}</td><td>{_flops(c.flops)}</td>"
            f"<td>{_bytes(c.total_bytes)}</td></tr>"
            for name, count, what, c in (("forward", self.n, "JVPs", self.forward),
                                          ("reverse", self.m, "VJPs", self.reverse)))
        note = ("the full Jacobian would take " + _bytes(self.jacobian_bytes) + ", over the "
                "budget: costs are estimated from one JVP and one VJP" if self.over_budget
                else "from XLA's cost analysis of both compiled Jacobian programs")
        return (f"<p><b>Use {self.mode} mode</b> for the Jacobian [m, n] = "
                f"[{self.m:,}, {self.n:,}].</p><table><thead><tr><th>mode</th><th>passes</th>"
                f"<th>FLOPs</th><th>memory</th></tr></thead><tbody>{rows}</tbody></table>"
                f"<p>{html.escape(note)}</p>")

    def __str__(self) -> str:
        shape = "tall (n < m)" if self.n < self.m else "wide (n > m)" if self.n > self.m \
            else "square (n = m)"
        lines = [
            f"Jacobian [m, n] = [{self.m:,}, {self.n:,}], {shape}: use {self.mode} mode.",
            f"  forward ({self.n:,} JVPs): {_flops(self.forward.flops)}, "
            f"memory {_bytes(self.forward.total_bytes)}",
            f"  reverse ({self.m:,} VJPs): {_flops(self.reverse.flops)}, "
            f"memory {_bytes(self.reverse.total_bytes)}",
        ]
        if self.over_budget:
            lines.append(
                f"  The full Jacobian would take {_bytes(self.jacobian_bytes)}, over the budget: "
                "costs are n x one JVP vs m x one VJP. Apply J with jaxprop.forward.jvp or "
                "jaxprop.reverse.vjp instead of forming it.")
        else:
            lines.append("  (from XLA's cost analysis of both compiled Jacobian programs)")
        return "\n".join(lines)


def _flops(value: float) -> str:
    return "FLOPs unknown" if math.isnan(value) else f"{value:.3g} FLOPs"


def _bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{int(value)} B"


def _abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jax.numpy.result_type(a)),
                        tree)


def _scaled(cost: Cost, count: int) -> Cost:
    """``count`` products, run one after another: the FLOPs add, the memory does not."""
    return Cost(cost.flops * count, cost.temp_bytes, cost.argument_bytes, cost.output_bytes)


def advise(f: Callable, *args, argnums: int | Sequence[int] = 0,
           max_bytes: int | None = core.DEFAULT_MAX_BYTES) -> Advice:
    """Recommends forward or reverse mode for the Jacobian of f at ``args``.

    Both ``jaxprop.forward.jacobian`` and ``jaxprop.reverse.jacobian`` are compiled for these
    arguments (they are not run), and the mode whose program XLA's cost analysis counts
    fewer FLOPs for wins. When the full Jacobian would exceed ``max_bytes``, neither is
    compiled: one JVP and one VJP are, and the costs are n JVPs against m VJPs.

    Args:
      f: the function, built from gates (or plain jnp).
      *args: its arguments: arrays, or ``jax.ShapeDtypeStruct`` (nothing is run).
      argnums: the argument(s) differentiated, as in ``jax.jacrev``.
      max_bytes: the Jacobian memory budget (``None``: no limit).

    Returns:
      An :class:`Advice`; ``str(advice)`` explains it.
    """
    who = "jaxprop.advise"
    nums = core.normalize_argnums(argnums, len(args), who)
    f_dyn, dyn = core.split_args(f, args, nums)
    core.check_differentiable(who, dyn, nums)
    out, m, n, dtype = core.jacobian_shape(f_dyn, dyn)
    jacobian_bytes = m * n * np.dtype(dtype).itemsize
    if max_bytes is None or jacobian_bytes <= max_bytes:
        fwd = cost_of(forward.jacobian(f, argnums, max_bytes=None).lower(*args).compile())
        rev = cost_of(reverse.jacobian(f, argnums, max_bytes=None).lower(*args).compile())
        method = "compiled"
    else:
        def one_jvp(all_args, tangents):
            g, primals = core.split_args(f, all_args, nums)
            return forward.jvp(g, primals, tangents)[1]  # J v only, like the VJP's J^T u

        def one_vjp(all_args, out_bar):
            g, primals = core.split_args(f, all_args, nums)
            _, pullback = reverse.vjp(g, *primals)
            return pullback(out_bar)

        abstract_args = _abstract(tuple(args))
        fwd = _scaled(cost_of(jax.jit(one_jvp).lower(abstract_args, _abstract(dyn)).compile()),
                      n)
        rev = _scaled(cost_of(jax.jit(one_vjp).lower(abstract_args, out).compile()), m)
        method = "estimated"
    if math.isnan(fwd.flops) or math.isnan(rev.flops):
        mode = "forward" if n < m else "reverse"
    else:
        mode = "forward" if fwd.flops < rev.flops else "reverse"
    return Advice(mode, n, m, fwd, rev, jacobian_bytes, method)
