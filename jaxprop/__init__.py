"""jaxprop: backpropagation the way the lecture teaches it, compiled by XLA.

Every operation is a gate (``jaxprop.gates``) with a hand-written VJP rule (the lecture's
backward pattern) and a hand-written JVP rule. ``jaxprop.reverse`` differentiates through
the VJP rules, ``jaxprop.forward`` through the JVP rules, and plain ``jax.grad``,
``jax.jvp``, ``jax.vmap`` and ``jax.hessian`` work on the same functions.

The public names are loaded lazily (PEP 562), so ``import jaxprop`` and the ``jaxprop``
command's ``--help`` do not import JAX; the first use of a name does.
"""

from typing import TYPE_CHECKING

from jaxprop._lazy import exports, typed_exports
from jaxprop._version import __version__ as __version__

if TYPE_CHECKING:  # the public names, once: typed_exports reads them, mypy the types
    from jaxprop import compare as compare
    from jaxprop import data as data
    from jaxprop import explainer as explainer
    from jaxprop import forward as forward
    from jaxprop import gates as gates
    from jaxprop import losses as losses
    from jaxprop import models as models
    from jaxprop import reference as reference
    from jaxprop import reverse as reverse
    from jaxprop import train as train
    from jaxprop import verify as verify
    from jaxprop.compare.advice import Advice as Advice
    from jaxprop.compare.advice import advise as advise
    from jaxprop.events import RuleEvent as RuleEvent
    from jaxprop.events import observe as observe
    from jaxprop.explainer.flat import FlatCode as FlatCode
    from jaxprop.explainer.flat import flat as flat
    from jaxprop.explainer.rows import Trace as Trace
    from jaxprop.explainer.rows import explain as explain
    from jaxprop.forward import hessian as hessian
    from jaxprop.gate import PATTERNS as PATTERNS
    from jaxprop.gate import Gate as Gate
    from jaxprop.losses import l2_penalty as l2_penalty
    from jaxprop.losses import objective as objective
    from jaxprop.losses import softmax_loss as softmax_loss
    from jaxprop.losses import svm_loss as svm_loss
    from jaxprop.tracer import gated as gated
    from jaxprop.verify.battery import check as check
    from jaxprop.verify.report import CheckReport as CheckReport
    from jaxprop.wiring import current_rule_set as current_rule_set
    from jaxprop.wiring import rule_set as rule_set

_EXPORTS = typed_exports(__file__)
_SUBMODULES = tuple(name for name, module in _EXPORTS.items() if module == __name__)
__all__ = sorted([*_EXPORTS, "__version__"])
__getattr__, __dir__ = exports(__name__, _EXPORTS)
