"""See the gradients flow: the lecture's slide view for any function built from gates.

``jaxprop.explain(f, *args)`` runs f in the jitted pipeline and returns a
:class:`jaxprop.Trace` with one row per gate application: its inputs and output, the upstream
gradient, the local gradient as the lecture states it (with the values the gate's own rule
computes), the downstream gradient, and the pattern's name (distributor, switcher, router,
adder, scaled local gradient). ``trace.to_table()`` prints it, ``trace.render("circuit.svg")``
draws it like the slides.

Modules: ``capture`` (one jitted run that also returns every rule's values), ``rows``
(``explain``: the rows, the edges, the ``Trace``), ``describe`` (the lecture's words for a
row), ``table``, ``render`` and ``layout`` (the picture), ``fmt`` (numbers), ``examples`` and
``lecture`` (the built-in examples).

For example::

  import jaxprop
  from jaxprop import gates

  trace = jaxprop.explain(lambda x, y, z: gates.mul(gates.add(x, y), z), -2.0, 5.0, -4.0)
  print(trace)
  trace.render("simple.svg")
"""

from typing import TYPE_CHECKING

from jaxprop._lazy import exports, typed_exports

if TYPE_CHECKING:  # the public names, once: typed_exports reads them, mypy the types
    from jaxprop.explainer.rows import Edge as Edge
    from jaxprop.explainer.rows import Row as Row
    from jaxprop.explainer.rows import Trace as Trace
    from jaxprop.explainer.rows import explain as explain
    from jaxprop.gate import PATTERNS as PATTERNS

_EXPORTS = typed_exports(__file__)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
