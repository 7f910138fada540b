"""The verification battery, for any gate or function: ``jaxprop.check``.

* ``battery``: :func:`check`, which runs each check of :data:`CHECKS` on the subject;
* ``subject``: the gate or function under test, a function of its differentiated leaves;
* ``checks``: :data:`CHECKS`, one :class:`~jaxprop.verify.checks.Check` entry per check,
  and the numbers they compare, measured once;
* ``oracles``: central and one-sided finite differences, JAX's autodiff of the forward
  code, and the comparison that finds the worst element;
* ``report``: :class:`CheckReport` and :class:`CheckRow`, a table in the terminal (rich, as
  explain's) and in Jupyter.

jaxprop's own tests run every gate, loss and model through this same ``check``.
"""

from typing import TYPE_CHECKING

from jaxprop._lazy import exports, typed_exports

if TYPE_CHECKING:  # the public names, once: typed_exports reads them, mypy the types
    from jaxprop.verify.battery import check as check
    from jaxprop.verify.checks import CHECKS as CHECKS
    from jaxprop.verify.report import CheckReport as CheckReport
    from jaxprop.verify.report import CheckRow as CheckRow

_EXPORTS = typed_exports(__file__)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
