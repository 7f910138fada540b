"""See the gradients flow: the lecture's slide view for any function built from gates.

``explain(f, *args)`` runs f in the jitted pipeline and returns a :class:`Trace` with one
row per gate application: its inputs and output, the upstream gradient, the local gradient
as the lecture states it, the downstream gradient, and the pattern's name (distributor,
switcher, router, adder, scaled local gradient). ``trace.to_table()`` prints it,
``trace.render("circuit.svg")`` draws it like the slides.

For example::

  from jaxprop import gates
  from jaxprop.explain import explain

  trace = explain(lambda x, y, z: gates.mul(gates.add(x, y), z), -2.0, 5.0, -4.0)
  print(trace)
  trace.render("simple.svg")

``jaxprop.explain(f, *args)`` is the same function, re-exported at the top level.
"""

from jaxprop.explain.patterns import PATTERNS
from jaxprop.explain.trace import Edge, Row, Trace, explain

__all__ = ["PATTERNS", "Edge", "Row", "Trace", "explain"]

