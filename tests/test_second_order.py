"""Rules closed under differentiation: second and third derivatives through our rules only.

Every gate's VJP and JVP rules are built from operations that have gates, so a derivative of
a derivative traces the first derivative's rules into gates in their turn. Here every case of
the registry (``tests/cases.py``: every gate, loss and model, whichever gates exist) runs
through ``jaxprop.hessian`` (forward over reverse) and reverse over reverse, against
``jax.hessian`` of the case's plain-jnp reference in float64, with ``jaxprop.observe`` showing
our rules and nothing else; the elementwise gates go one order further.

Each case is made a scalar function that reaches its gate's rules with values that depend on
the input on both sides: a tangent or cotangent that is only a constant basis vector would
leave a rule's operations on it unchecked (a derivative never flows through them). So the
inputs pass through ``x + c (x - x0)^2`` on the way in (the same point x0, slope 1, but a
tangent that depends on x) and the outputs are cubed on the way out (a cotangent that
depends on x).

The whole registry is the slow part (``-m slow``); the normal suite runs one case per gate
and per rule kind (:data:`FAST`).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ATOL, CASES, GATE_CASES, RTOL, Case, random_like
from jax.extend import core as jex
from jax.interpreters import mlir

import jaxprop
from jaxprop.gate import SCALED, Gate
from jaxprop.tracer import NoGateError

OUR_RULES = {"forward", "vjp", "jvp"}
"""The kinds of ``observe`` events of our own gates and rules (not ``"jax"``, not a custom
rule kept whole)."""


def scalar_of(case: Case, fn):
    """``(s, dyn)``: ``fn`` as a scalar function of the case's differentiable inputs, whose
    inputs bend on the way in and whose outputs are cubed, weighted, on the way out."""
    args = case.args()
    g, dyn = case.split(fn, args)
    weights = jax.tree.leaves(random_like(jax.eval_shape(g, *dyn), 3))

    def s(*xs):
        xs = jax.tree.map(lambda x, x0: x + 0.3 * (x - x0) ** 2, xs, dyn)
        outs = jax.tree.leaves(g(*xs))
        return sum(jnp.sum(w * out * out * out) for w, out in zip(weights, outs, strict=True))

    return s, dyn


def observed(run):
    """``(run(), the kinds of the observe events it traced, the gates applied)``."""
    events = []
    with jaxprop.observe(events.append):
        out = run()
    return out, {e.kind for e in events}, {e.gate.name for e in events if e.kind == "forward"}


def check_hessians(case: Case) -> None:
    """jaxprop.hessian and reverse over reverse, against jax.hessian of the reference, with
    only our rules observed (the case's own gate among them)."""
    s, dyn = scalar_of(case, case.fn)
    ref, _ = scalar_of(case, case.ref)
    nums = tuple(range(len(dyn)))
    want = jax.jit(jax.hessian(ref, nums))(*dyn)
    drivers = {  # the rules each one runs: our VJP rules, then our JVP or VJP rules over them
        "forward over reverse": (lambda: jaxprop.hessian(s, nums)(*dyn), OUR_RULES),
        "reverse over reverse": (lambda: jaxprop.reverse.jacobian(
            jaxprop.reverse.grad(s, nums), nums)(*dyn), {"forward", "vjp"})}
    for name, (run, rules) in drivers.items():
        got, kinds, applied = observed(run)
        assert kinds == rules, (case.name, name, kinds)
        if case.gate is not None:
            assert case.gate.name in applied, (case.name, name, applied)
        chex.assert_trees_all_close(got, want, rtol=RTOL, atol=ATOL)


def check_third_order(case: Case) -> None:
    """The derivative of jaxprop.hessian along a direction (our JVP rules over the Hessian's
    rules), against jax's, with only our rules observed."""
    s, dyn = scalar_of(case, case.fn)
    ref, _ = scalar_of(case, case.ref)
    nums = tuple(range(len(dyn)))
    v = random_like(dyn, 4)
    want = jax.jit(lambda dyn, v: jax.jvp(jax.hessian(ref, nums), dyn, v))(dyn, v)
    hessian = jaxprop.hessian(s, nums)
    (value, third), kinds, _ = observed(
        lambda: jax.jit(lambda dyn, v: jaxprop.forward.jvp(hessian, dyn, v))(dyn, v))
    assert kinds == OUR_RULES, (case.name, kinds)
    chex.assert_trees_all_close((value, third), want, rtol=RTOL, atol=ATOL)
    # Not vacuous: with the bend in and the cube out, even a linear gate's composite has a
    # third derivative (6 w u'^3 + 18 w u u' u'', u the gate's output along the bent input).
    assert max(float(jnp.max(jnp.abs(t))) for t in jax.tree.leaves(third)) > 1e-3, case.name

ELEMENTWISE = [c for c in GATE_CASES if c.gate is not None and c.gate.elementwise]


def _first_per_gate(cases):
    """The first case of each gate and of each loss (a fused gate), and the first model."""
    seen, out = set(), []
    for c in cases:
        key = c.kind if c.kind == "model" else c.covers
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


FAST = _first_per_gate(CASES)
"""The normal suite's share: the first case of each gate and loss, and one model."""
SLOW = [c for c in CASES if c not in FAST]


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_hessian_through_our_rules(case):
    check_hessians(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=[c.name for c in SLOW])
def test_hessian_through_our_rules_every_case(case):
    check_hessians(case)


FAST_THIRD = _first_per_gate(ELEMENTWISE)
SLOW_THIRD = [c for c in ELEMENTWISE if c not in FAST_THIRD]


@pytest.mark.parametrize("case", FAST_THIRD, ids=[c.name for c in FAST_THIRD])
def test_third_order_of_elementwise_gates(case):
    check_third_order(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_THIRD, ids=[c.name for c in SLOW_THIRD])
def test_third_order_of_elementwise_gates_every_case(case):
    check_third_order(case)


def test_the_fast_share_covers_every_gate():
    assert {c.covers for c in FAST if c.kind == "gate"} == set(jaxprop.gates.GATES)
    elementwise = {g.name for g in jaxprop.gates.GATES.values() if g.elementwise}
    assert {c.gate.name for c in FAST_THIRD} == elementwise


# ---------------------------------------------------- an operation without a gate in a rule

_doubled_p = jex.Primitive("doubled_for_this_test")
"""A primitive made for this test (2 x), so that no gate, now or later, stands for it."""
_doubled_p.def_impl(lambda x: 2 * x)
_doubled_p.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
mlir.register_lowering(_doubled_p, mlir.lower_fun(lambda x: 2 * x, multiple_results=False))


def _broken(where: str) -> Gate:
    """A square gate, z = x^2, whose ``where`` ("forward", "vjp" or "jvp") computes 2 x or
    x^2 with the ungated primitive (never on a tangent: a JVP rule must stay linear)."""
    def twice(x):
        return _doubled_p.bind(x) if where != "forward" else 2 * x

    return Gate(
        f"square_with_ungated_{where}", pattern=SCALED,
        forward=lambda x: (_doubled_p.bind(x * x) / 2 if where == "forward" else x * x, x),
        vjp=(lambda x, z_bar: z_bar * (twice(x) if where == "vjp" else 2 * x),),
        jvp=(lambda x, x_dot: x_dot * (twice(x) if where == "jvp" else 2 * x),),
        elementwise=True)


@pytest.mark.parametrize("where, driver, says", [
    ("vjp", jaxprop.hessian, "in the VJP rule of the gate 'square_with_ungated_vjp' (for x)"),
    ("vjp", lambda f: jaxprop.reverse.jacobian(jaxprop.reverse.grad(f)),
     "in the VJP rule of the gate 'square_with_ungated_vjp' (for x)"),
    ("jvp", lambda f: jaxprop.forward.jacobian(jaxprop.forward.grad(f)),
     "in the JVP rule of the gate 'square_with_ungated_jvp' (for x)"),
    ("forward", jaxprop.hessian,
     "in the forward computation of the gate 'square_with_ungated_forward'"),
])
def test_an_ungated_operation_in_a_rule_names_the_gate_and_the_rule(where, driver, says):
    gate = _broken(where)

    def f(x):
        return jnp.sum(gate(jnp.tanh(x)) ** 3)

    x = jnp.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(jaxprop.reverse.grad(f)(x), jax.grad(
        lambda x: jnp.sum(jnp.tanh(x) ** 6))(x), rtol=RTOL)  # first order is fine
    with pytest.raises(NoGateError) as err:
        driver(f)(x)
    message = str(err.value)
    assert "no gate for the JAX primitive 'doubled_for_this_test' (" + says in message, message
    assert "unknown line" not in message
    assert "rules must use only operations that have gates" in message or where == "forward"


def test_the_lecture_example_of_the_issue():
    """jaxprop.hessian(lambda x: jnp.sum(x**3) + x[0]*x[1]) once stopped at the slice gate's
    VJP rule (a pad); it runs through our rules now."""
    def f(x):
        return jnp.sum(x**3) + x[0] * x[1]

    x = jnp.array([0.5, -1.0, 2.0])
    got, kinds, applied = observed(lambda: jaxprop.hessian(f)(x))
    np.testing.assert_allclose(got, jax.jit(jax.hessian(f))(x), rtol=RTOL)
    assert kinds == OUR_RULES and {"slice", "pad"} <= applied, (kinds, applied)
