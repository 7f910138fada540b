"""jaxprop: backpropagation the way the lecture teaches it, compiled by XLA.

Every operation is a gate (``jaxprop.gates``) with a hand-written VJP rule (the lecture's
backward pattern) and a hand-written JVP rule. ``jaxprop.reverse`` differentiates through
the VJP rules, ``jaxprop.forward`` through the JVP rules, and plain ``jax.grad``,
``jax.jvp``, ``jax.vmap`` and ``jax.hessian`` work on the same functions.

The public names are loaded lazily (PEP 562), so ``import jaxprop`` and the ``jaxprop``
command's ``--help`` do not import JAX; the first use of a name does.
"""

from jaxprop._lazy import exports
from jaxprop._version import __version__ as __version__

_SUBMODULES = ("forward", "gates", "losses", "models", "reference", "reverse", "compare",
               "data", "explainer", "train", "verify")
_NAMES = {
    "Gate": "jaxprop.gate",
    "RuleEvent": "jaxprop.gate",
    "PATTERNS": "jaxprop.gate",
    "current_pipeline": "jaxprop.gate",
    "observe": "jaxprop.gate",
    "pipeline": "jaxprop.gate",
    "l2_penalty": "jaxprop.losses",
    "softmax_loss": "jaxprop.losses",
    "svm_loss": "jaxprop.losses",
    "objective": "jaxprop.losses",
    "gated": "jaxprop.tracer",
    "hessian": "jaxprop.forward",
    "check": "jaxprop.verify.battery",
    "CheckReport": "jaxprop.verify.report",
    "explain": "jaxprop.explainer.rows",
    "Trace": "jaxprop.explainer.rows",
    "advise": "jaxprop.compare.advice",
    "Advice": "jaxprop.compare.advice",
}

__all__ = sorted([*_SUBMODULES, *_NAMES, "__version__"])
__getattr__, __dir__ = exports(__name__, _NAMES, _SUBMODULES)
