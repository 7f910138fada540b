"""The verification battery, for any gate or function: ``jaxprop.check``.

* ``battery``: :func:`check` and :data:`CHECKS`, the checks it runs;
* ``oracles``: central and one-sided finite differences, JAX's autodiff of the forward
  code, and the comparison that finds the worst element;
* ``report``: :class:`CheckReport` and :class:`CheckRow`, a table in the terminal and in
  Jupyter.

jaxprop's own tests run every gate, loss and model through this same ``check``.
"""

from typing import TYPE_CHECKING

from jaxprop._lazy import exports

_NAMES = {
    "check": "jaxprop.verify.battery",
    "CHECKS": "jaxprop.verify.battery",
    "CheckReport": "jaxprop.verify.report",
    "CheckRow": "jaxprop.verify.report",
}

if TYPE_CHECKING:  # the real types, for mypy, pyright and editors; ``X as X`` re-exports
    from jaxprop.verify.battery import CHECKS as CHECKS
    from jaxprop.verify.battery import check as check
    from jaxprop.verify.report import CheckReport as CheckReport
    from jaxprop.verify.report import CheckRow as CheckRow

__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
