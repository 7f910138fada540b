"""The verification battery, for any gate or function: ``jaxprop.check``.

* ``battery``: :func:`check` and :data:`CHECKS`, the checks it runs;
* ``oracles``: central and one-sided finite differences, JAX's autodiff of the forward
  code, and the comparison that finds the worst element;
* ``report``: :class:`CheckReport` and :class:`CheckRow`, a table in the terminal and in
  Jupyter.

jaxprop's own tests run every gate, loss and model through this same ``check``.
"""

from jaxprop._lazy import exports

_NAMES = {
    "check": "jaxprop.verify.battery",
    "CHECKS": "jaxprop.verify.battery",
    "CheckReport": "jaxprop.verify.report",
    "CheckRow": "jaxprop.verify.report",
}

__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
