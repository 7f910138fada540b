"""jaxprop: backpropagation the way the lecture teaches it, compiled by XLA.

Every operation is a gate (``jaxprop.gates``) with a hand-written VJP rule (the lecture's
backward pattern) and a hand-written JVP rule. ``jaxprop.reverse`` differentiates through
the VJP rules, ``jaxprop.forward`` through the JVP rules, and plain ``jax.grad``,
``jax.jvp``, ``jax.vmap`` and ``jax.hessian`` work on the same functions.
"""

from jaxprop import forward, gates, losses, models, reverse
from jaxprop.advise import Advice, advise  # binds the function; the module stays importable
from jaxprop.explain import explain  # binds the function; `from jaxprop.explain import Trace` works
from jaxprop.gate import Gate, current_pipeline, observe, pipeline
from jaxprop.losses import l2_penalty, softmax_loss, svm_loss
from jaxprop.objective import objective

__version__ = "0.1.0"

__all__ = [
    "Advice",
    "advise",
    "Gate",
    "current_pipeline",
    "explain",
    "forward",
    "gates",
    "l2_penalty",
    "losses",
    "models",
    "objective",
    "observe",
    "pipeline",
    "reverse",
    "softmax_loss",
    "svm_loss",
]
