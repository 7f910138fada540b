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
tangent that depends on x) and each output u becomes u^3 + u^2 on the way out (a cotangent
that depends on x).

The whole registry is the slow part (``-m slow``); the normal suite runs a representative
share (:data:`FAST`).
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
    inputs bend on the way in and whose outputs u go out as u^3 + u^2, weighted."""
    args = case.args()
    g, dyn = case.split(fn, args)
    weights = jax.tree.leaves(random_like(jax.eval_shape(g, *dyn), 3))

    def s(*xs):
        xs = jax.tree.map(lambda x, x0: x + 0.3 * (x - x0) ** 2, xs, dyn)
        outs = jax.tree.leaves(g(*xs))
        return sum(jnp.sum(w * out * out * (out + 1)) for w, out in zip(weights, outs, strict=True))

    return s, dyn


def observed(run):
    """``(run(), the kinds of the observe events it traced, the gates applied)``."""
    events = []
    with jaxprop.observe(events.append):
        out = run()
    return out, {e.kind for e in events}, {e.gate.name for e in events if e.kind == "forward"}


FIRST_ORDER_ONLY = {
    "igamma": ("igamma_grad_a", "igamma's derivative in its shape a has no derivative, in JAX "
                                "either; the case igamma_x takes its second order in x"),
    "igammac_a": ("igamma_grad_a", "igammac in a is -igamma's: the same derivative without "
                                   "a derivative"),
}
"""Cases with an input whose derivative has no derivative at all: the primitive their rules
reach, and why. jaxprop.hessian must stop there, saying it is deliberately out."""


def check_hessians(case: Case) -> None:
    """jaxprop.hessian and reverse over reverse, against jax.hessian of the reference, with
    only our rules observed (the case's own gate among them)."""
    s, dyn = scalar_of(case, case.fn)
    if case.name in FIRST_ORDER_ONLY:
        with pytest.raises(NoGateError, match=f"'{FIRST_ORDER_ONLY[case.name][0]}'.*"
                                              "deliberately out"):
            jaxprop.hessian(s, tuple(range(len(dyn))))(*dyn)
        return
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
    if case.name in FIRST_ORDER_ONLY:
        return check_hessians(case)  # no second derivative, so no third
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
    # Not vacuous: with the bend in and u^3 + u^2 out (u the gate's output along the bent
    # input), even a linear gate's composite has a third derivative, and no gate's power
    # undoes both (sqrt's square, cbrt's cube).
    assert max(float(jnp.max(jnp.abs(t))) for t in jax.tree.leaves(third)) > 1e-3, case.name

ELEMENTWISE = [c for c in GATE_CASES if c.gate is not None and c.gate.elementwise]


ONCE_BROKEN = ("slice", "pad", "concatenate", "dynamic_slice")
"""The gates whose rules were not closed before (slice's VJP and concatenate's JVP used an
ungated pad, dynamic_slice's VJP an ungated dynamic_update_slice): always in the normal
suite."""


def _module_of(case: Case) -> str:
    """The gates module a gate case's gate is written in, or the case's kind."""
    if case.kind != "gate" or case.gate is None:
        return case.kind
    return case.gate.forward.__module__


def _representatives(cases):
    """The first case of each gates module (and the first loss and model), and the first
    case of each gate in :data:`ONCE_BROKEN`."""
    seen, out = set(), []
    for c in cases:
        keys = {_module_of(c)} | ({c.covers} if c.covers in ONCE_BROKEN else set())
        if keys - seen:
            seen |= keys
            out.append(c)
    return out


FAST = _representatives(CASES)
"""The normal suite's share (every case is about a second of compiling, the whole registry
minutes): one case per gates module, loss and model, and the gates once broken."""
SLOW = [c for c in CASES if c not in FAST]


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_hessian_through_our_rules(case):
    check_hessians(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=[c.name for c in SLOW])
def test_hessian_through_our_rules_every_case(case):
    check_hessians(case)


FAST_THIRD = _representatives(ELEMENTWISE)
SLOW_THIRD = [c for c in ELEMENTWISE if c not in FAST_THIRD]


@pytest.mark.parametrize("case", FAST_THIRD, ids=[c.name for c in FAST_THIRD])
def test_third_order_of_elementwise_gates(case):
    check_third_order(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_THIRD, ids=[c.name for c in SLOW_THIRD])
def test_third_order_of_elementwise_gates_every_case(case):
    check_third_order(case)


def test_the_registry_reaches_every_gate_and_the_fast_share_every_module():
    assert {c.covers for c in CASES if c.kind == "gate"} >= set(jaxprop.gates.GATES)
    elementwise = {g.name for g in jaxprop.gates.GATES.values() if g.elementwise}
    assert {c.gate.name for c in ELEMENTWISE} == elementwise  # each gets a third derivative
    modules = {g.forward.__module__ for g in jaxprop.gates.GATES.values()}
    assert {_module_of(c) for c in FAST} >= modules
    assert {c.covers for c in FAST} >= set(ONCE_BROKEN)


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
