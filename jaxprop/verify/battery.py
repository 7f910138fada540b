"""``jaxprop.check``: the battery every rule of jaxprop passes, for any gate or function.

A hand-written derivative rule is easy to get wrong, and the obvious test can miss it:
``jax.test_util.check_grads`` on a gate, outside ``jaxprop.rule_set("vjp")``, never calls
its VJP rule (JAX transposes the JVP rule instead). ``check`` runs both of the gate's rules
itself, in float64, against independent oracles, and reports each check with its worst
error: absolute, relative, and at which element.

For example::

  report = jaxprop.check(my_tanh, jnp.array([0.3, -1.2, 2.0]))
  print(report)          # one row per check
  assert report.ok

  jaxprop.check(jaxprop.gates.maximum, x, y, kinks=[(x, x)])   # a tie, where max routes
  jaxprop.check(svm_loss, W, X, y)     # a function: plain JAX, gates, or both
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop.gate import Gate
from jaxprop.verify.checks import CHECKS, SCALES, Options, error_row, first_line, measure
from jaxprop.verify.report import CheckReport
from jaxprop.verify.subject import (
    check_arity,
    check_finite,
    check_tolerances,
    function_subject,
    gate_subject,
)

__all__ = ["check", "CHECKS", "SCALES"]


# ---------------------------------------------------------------------------------- check


def check(target: Gate | Callable, *inputs, params: dict | None = None,
          diff: int | Sequence[int] | None = None, reference: Callable | None = None,
          kinks: Sequence[Any] = (), probes: bool = True,
          checks: Sequence[str] | None = None,
          rtol: float = 1e-6, atol: float = 1e-12, fd_atol: float = 1e-7,
          fd_step: float = 1e-5, order: int = 2, seed: int = 0,
          max_fd_elements: int = 256, allow_jax_rules: bool = False) -> CheckReport:
    """Runs jaxprop's verification battery on a gate or a function, in float64.

    Args:
      target: a :class:`jaxprop.Gate`, or a function of arrays (pytrees of them) built from
        gates, written in plain JAX (the gate tracer applies its operations as gates), or
        both.
      *inputs: example inputs, away from kinks (finite differences must be valid there).
        For a gate, a Python number is a constant input (no gradient), as in a gate call.
      params: a gate's static parameters (``{"axes": (0,), "shape": (2, 3)}`` for sum).
      diff: positions of the inputs to differentiate (default: every floating-point input
        with a rule).
      reference: optional plain-jnp function of the same inputs: values and derivatives are
        also checked against JAX's autodiff of it.
      kinks: points (tuples of inputs) where the function is not differentiable: there the
        VJP and JVP rules must agree, each Jacobian entry must be a one-sided derivative, and
        so must the derivative along the joint direction (every input moved together).
      probes: also check, as kinks, the points where a rule may switch: every input 0, every
        input equal (a tie between inputs and between elements), and for a gate every input
        equal to a number it is given (a tie with a constant). A point outside the
        function's domain (a value or a one-sided difference that is not finite) is left
        out. ``probes=False``: only the kinks given.
      checks: the keys of :data:`CHECKS` to run (default: all).
      rtol, atol: tolerance of the exact comparisons (autodiff, adjoint, linearity): an
        element passes when ``|got - expected| <= atol * scale + rtol |expected|``, scale
        being ``max(1, max |expected|)``.
      fd_atol: ``atol`` of the comparisons with finite differences (their error in float64
        at ``fd_step`` = 1e-5 is about 1e-10 times the third derivative).
      fd_step: the finite-difference step relative to each input's size: h = fd_step *
        max(1, rms(x)) per input, times (eps / eps64)^(1/3) where the function computes in a
        lower precision than float64; also check_grads' ``eps``. The "scales" check runs
        the inputs times each factor of :data:`SCALES` (1e-8 .. 1e4), the step scaled
        alike.
      order: check_grads' order.
      seed: seeds the random directions u, v, w (reported with each row).
      max_fd_elements: at most this many elements per input get their own finite
        difference for the VJP check (a random choice of them for larger inputs).
      allow_jax_rules: for plain JAX code, let JAX differentiate operations no gate stands
        for (reported by "rule_ran").

    Returns:
      A :class:`jaxprop.verify.CheckReport`: ``.ok``, ``.rows`` (one per check with its worst
      error), ``report["fd_vjp"]`` for one row, and a table as ``str(report)``.

    Raises:
      TypeError, ValueError: the target or the inputs cannot be checked (wrong number of
        inputs, an input that is not finite, a tolerance that is not positive, nothing
        differentiable, an unknown check); the message says which.
    """
    selected = tuple(CHECKS) if checks is None else tuple(checks)
    unknown = [k for k in selected if k not in CHECKS]
    if unknown:
        raise ValueError(f"check: unknown check(s) {unknown}; the checks are {list(CHECKS)}")
    if not isinstance(target, Gate) and not callable(target):
        raise TypeError(f"check: expected a jaxprop Gate or a function; got "
                        f"{type(target).__name__}")
    if not inputs:
        raise TypeError("check: give example inputs, e.g. jaxprop.check(gate, jnp.ones(3))")
    if isinstance(target, Gate) and params is None:
        params = {}
    elif not isinstance(target, Gate) and params:
        raise TypeError("check: params= is for a gate's static parameters; a function takes "
                        "its inputs as they are")
    check_tolerances(rtol=rtol, atol=atol, fd_atol=fd_atol, fd_step=fd_step)
    if not isinstance(target, Gate):
        check_arity(target, len(inputs))
    o = Options(rtol, atol, fd_atol, fd_step, order, allow_jax_rules, max_fd_elements,
                 bool(probes))
    with jax.enable_x64(True):
        def make_subject(xs, what="input"):
            check_finite(xs, what)
            if isinstance(target, Gate):
                return gate_subject(target, tuple(xs), dict(params), diff)
            return function_subject(target, tuple(xs), diff)

        s = make_subject(inputs)
        kinks = [point if isinstance(point, tuple) else (point,) for point in kinks]
        for p, point in enumerate(kinks):
            check_finite(point, f"kink point {p}, input")
        try:
            out_struct = jax.eval_shape(s.fn, *s.leaves)
        except Exception as err:  # noqa: BLE001 - every check reports it
            rows = [error_row(k, f"the forward computation raised: {first_line(err)}")
                    for k in selected]
        else:
            bad = [a for a in jax.tree.leaves(out_struct)
                   if not jnp.issubdtype(a.dtype, jnp.floating)]
            if bad:
                raise TypeError(f"check: {s.label} returns dtype {bad[0].dtype}; a derivative "
                                "is checked on a floating-point output")
            evidence = measure(s, o, out_struct, selected, seed, reference, kinks, make_subject)
            rows = [CHECKS[key].run(evidence) for key in selected]
    return CheckReport(s.label, tuple(s.names), tuple(rows))
