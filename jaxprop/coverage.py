"""The differentiable JAX primitives that jaxprop deliberately leaves without a gate.

Every primitive of JAX's own table of derivatives (``jax._src.interpreters.ad``'s
``primitive_jvps`` and ``primitive_transposes``) is one of: a gate's (``tracer.LIFTS``), one
with no derivative or whose values pass through (``tracer.NO_DERIVATIVE``,
``tracer.PASS_THROUGH``), a call the tracer opens (``tracer.CALLS``), no floating-point
operation at all (integer and boolean operations, comparisons, random bits, collectives,
state; ``tests/test_primitive_table.py`` lists them), or an entry of :data:`NOT_GATED` below,
with the reason it stays out. The test fails on a primitive that is none of these, so a new
JAX version is noticed. A differentiated value that reaches one of :data:`NOT_GATED` stops
with a ``NoGateError`` that says it is deliberately out, and why.
"""

from __future__ import annotations

__all__ = ["NOT_GATED", "not_gated_reason"]

_COMPLEX = ("complex numbers: the lecture's rules are written for real numbers, and gates "
            "refuse complex inputs (work with the real and imaginary parts as real arrays)")
_CONTROL_FLOW = ("control flow: the tracer does not open a loop's or a branch's body into "
                 "gates yet (issue 20); write the loop in Python")

NOT_GATED: dict[str, str] = {
    "fft": "the FFT: its values are complex, " + _COMPLEX,
    "complex": _COMPLEX,
    "real": _COMPLEX,
    "imag": _COMPLEX,
    "conj": _COMPLEX,
    "scan": _CONTROL_FLOW,
    "cond": _CONTROL_FLOW,
    "while": _CONTROL_FLOW,
    "igamma_grad_a": ("the derivative of igamma in its shape a, which has no derivative in "
                      "JAX either: a second derivative of gammainc in a has no rule"),
    "regularized_incomplete_beta": (
        "betainc, a special function of three arguments that JAX differentiates in x only "
        "(its rule raises for a and b); a gate would give a and b a silent zero instead"),
    "random_gamma": ("a gamma sample's derivative in its shape: JAX's is the implicit "
                     "reparameterization (the sample's CDF held fixed), not the derivative of "
                     "the sampler's own code that a gate's finite differences would check; "
                     "and random_gamma_grad, which it runs, has no derivative"),
    "reduce": ("lax.reduce with the user's own combining function (a jaxpr): no fixed local "
               "gradient to write a rule for"),
    "ragged_dot_general": ("the grouped matmul of ragged groups (mixture-of-experts kernels): "
                           "beyond the course"),
    "eig": ("the non-symmetric eigendecomposition: complex eigenvalues and eigenvectors, "
            + _COMPLEX),
    "random_gamma_grad": ("random_gamma's derivative in its shape, which has no derivative "
                          "in JAX either"),
    "linear_call": ("a function given with its own transpose (jax.experimental "
                    "linear_call): its body is not opened into gates"),
}
"""Primitive name -> why it has no gate. The README states the counts."""


def not_gated_reason(name: str) -> str | None:
    """Why the primitive ``name`` is deliberately left without a gate, or None."""
    return NOT_GATED.get(name)
