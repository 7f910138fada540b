"""Writing a gate is safe: each mistake is an error naming the gate, the rule and the fix.

One test per mistake a gate's author makes: the contract is checked when the Gate is defined
(the shape of ``vjp``/``jvp``, the signatures, the pattern) and at its first use (what
``forward`` and each rule return, and the JVP rule's linearity), before JAX sees the rule.
"""

import jax
import jax.numpy as jnp
import pytest

import jaxprop
from jaxprop.gate import SCALED, Gate, GateContractError

X = jnp.array([0.3, -1.2, 2.0])


def _forward(x):
    t = jnp.tanh(x)
    return t, t


def _vjp(t, t_bar):
    return t_bar * (1 - t * t)


def _jvp(t, x_dot):
    return (1 - t * t) * x_dot


def tanh(**changes):
    fields = dict(name="tanh", pattern=SCALED, forward=_forward, vjp=(_vjp,), jvp=(_jvp,))
    fields.update(changes)
    return Gate(**fields)


def reverse_grad(gate):
    return jaxprop.reverse.grad(lambda x: jnp.sum(gate(x)))(X)


def plain_grad(gate):
    return jax.grad(lambda x: jnp.sum(gate(x)))(X)


def forward_grad(gate):
    return jaxprop.forward.grad(lambda x: jnp.sum(gate(x)))(X)


# ------------------------------------------------------- the mistakes of the table


def test_vjp_given_a_bare_function_instead_of_a_tuple():
    with pytest.raises(GateContractError, match=r"gate 'tanh': vjp= must be a tuple with one "
                       r"rule per input.*got a function\. For a one-input gate write "
                       r"vjp=\(rule,\)"):
        tanh(vjp=_vjp)
    with pytest.raises(GateContractError, match=r"gate 'tanh': jvp= must be a tuple"):
        tanh(jvp=_jvp)


def test_forward_returning_only_z_like_micrograd():
    gate = tanh(forward=lambda x: jnp.tanh(x))
    for run in (reverse_grad, plain_grad, forward_grad):
        with pytest.raises(GateContractError, match=r"gate 'tanh': forward must return "
                           r"\(z, res\).*got float64\[3\].*can return \(z, x\)"):
            run(gate)


def test_vjp_rule_returning_a_one_tuple():
    gate = tanh(vjp=(lambda t, t_bar: (t_bar * (1 - t * t),),))
    with pytest.raises(GateContractError, match=r"gate 'tanh': the VJP rule for input 0 \(x\) "
                       r"returned a tuple of 1; expected one array x_bar shaped like the "
                       r"input, float64\[3\]"):
        reverse_grad(gate)


def test_jvp_rule_nonlinear_in_its_tangent_under_jax_grad():
    gate = tanh(jvp=(lambda t, x_dot: (1 - t * t) * x_dot * x_dot,))
    for run in (plain_grad, forward_grad):
        with pytest.raises(GateContractError, match=r"gate 'tanh': the JVP rule for input 0 "
                           r"\(x\) is not linear in its tangent x_dot: 'mul' multiplies the "
                           r"tangent by itself \(.*test_gate_contract.py:\d+\)"):
            run(gate)


@pytest.mark.parametrize("rule", [lambda t, x_dot: jnp.exp(x_dot),
                                  lambda t, x_dot: jnp.maximum(x_dot, 0.0),
                                  lambda t, x_dot: t / x_dot])
def test_other_nonlinear_jvp_rules_are_caught_too(rule):
    with pytest.raises(GateContractError, match="is not linear in its tangent x_dot"):
        plain_grad(tanh(jvp=(rule,)))


@pytest.mark.parametrize("rule", [lambda t, x_dot: jnp.where(t > 0, x_dot, 0.0) * (1 - t * t),
                                  lambda t, x_dot: (x_dot / (1 + t)) @ jnp.eye(3) * (1 - t),
                                  lambda t, x_dot: jnp.sum(x_dot) * 0 + (1 - t * t) * x_dot])
def test_linear_jvp_rules_are_accepted(rule):
    plain_grad(tanh(jvp=(rule,)))


def test_vjp_rule_returning_the_wrong_shape():
    gate = tanh(vjp=(lambda t, t_bar: jnp.sum(t_bar * (1 - t * t)),))
    with pytest.raises(GateContractError, match=r"gate 'tanh': the VJP rule for input 0 \(x\) "
                       r"returned float64\[\]; expected x_bar shaped like the input, "
                       r"float64\[3\]"):
        reverse_grad(gate)


def test_jvp_rule_returning_the_wrong_shape():
    gate = tanh(jvp=(lambda t, x_dot: jnp.sum(x_dot),))
    with pytest.raises(GateContractError, match=r"gate 'tanh': the JVP rule for input 0 \(x\) "
                       r"returned float64\[\]; expected z_dot shaped like the output, "
                       r"float64\[3\]"):
        forward_grad(gate)


# ------------------------------------------------------------- checks at the definition


@pytest.mark.parametrize("changes, message", [
    (dict(vjp=(_vjp, _vjp), jvp=(_jvp,)), r"2 VJP rules but 1 JVP rules"),
    (dict(vjp=(), jvp=()), r"needs at least one input"),
    (dict(vjp=(None,), jvp=(_jvp,)), r"input 0 has a JVP rule but no VJP rule"),
    (dict(vjp=("t_bar * (1 - t^2)",)), r"the VJP rule for input 0 must be a function or "
                                       r"None; got str"),
    (dict(vjp=(lambda t_bar: t_bar,)), r"the VJP rule for input 0 cannot be called as "
                                       r"rule\(res, z_bar, \*\*params\) -> x_bar"),
    (dict(forward=lambda x, y: (x * y, None)), r"forward cannot take the gate's 1 inputs"),
    (dict(pattern="squash"), r"pattern 'squash' is not one of the lecture's patterns: "
                             r"'distributor', 'switcher'"),
    (dict(name=""), r"a Gate needs a name, a non-empty string"),
    (dict(forward="tanh"), r"forward must be a function"),
    (dict(local=("1-t^2", "extra")), r"local= must hold at most one text \(or None\) per "
                                     r"input, 1 here"),
    (dict(params="axis"), r"params must be a tuple of parameter names"),
])
def test_definition_mistakes(changes, message):
    with pytest.raises(GateContractError, match=message):
        tanh(**changes)


def test_params_must_reach_forward_and_the_rules():
    def forward(x, *, scale):
        return scale * x, scale

    with pytest.raises(GateContractError, match=r"the VJP rule for input 0 cannot be called"):
        Gate("scale", SCALED, forward, vjp=(lambda s, z_bar: s * z_bar,),
             jvp=(lambda s, x_dot, **p: s * x_dot,), params=("scale",))
    gate = Gate("scale", SCALED, forward, vjp=(lambda s, z_bar, **p: s * z_bar,),
                jvp=(lambda s, x_dot, **p: s * x_dot,), params=("scale",))
    assert float(jax.grad(lambda x: gate(x, scale=3.0))(1.0)) == 3.0


def test_contract_errors_are_type_errors_and_name_the_gate():
    assert issubclass(GateContractError, TypeError)
    with pytest.raises(TypeError, match="gate 'my_gate'"):
        tanh(name="my_gate", vjp=_vjp)


def test_the_registry_gates_keep_the_contract():
    # Every shipped gate passes the definition checks (they ran at import) and the first-use
    # checks (the battery runs each of them); here: each gate's JVP rules are linear.
    from jaxprop import gates

    assert len(gates.GATES) >= 37
    assert jaxprop.check(gates.GATES["tanh"], X, checks=["linear", "shapes"]).ok


def test_every_public_gate_is_a_gate_registered_under_its_name():
    from jaxprop import gates

    public = [n for n in gates.__all__ if n not in {"GATES", "find_gates", "pattern_table"}]
    for name in public:
        gate = getattr(gates, name)
        assert isinstance(gate, Gate), name
        assert gates.GATES[name] is gate, name
    assert set(gates.GATES) == set(public)
    # the former compositions are gates of their own now, static parameters through prepare
    assert gates.mean(jnp.arange(6.0).reshape(2, 3), axis=1).tolist() == [1.0, 4.0]
    assert gates.expand_dims(jnp.ones((2, 3)), (0, -1)).shape == (1, 2, 3, 1)
    assert gates.concatenate([jnp.ones(1), jnp.zeros(2), jnp.ones(1)]).tolist() == [1, 0, 0, 1]
    assert gates.where(jnp.array([True, False]), 1.0, jnp.array([2.0, 3.0])).tolist() == [1, 3]
    assert gates.neg(jnp.array([2.0])).tolist() == [-2.0]


def test_a_gate_with_static_params_takes_them_through_prepare():
    from jaxprop import gates

    x = jnp.arange(6.0).reshape(2, 3)
    assert gates.sum(x, axis=1).tolist() == [3.0, 12.0]
    assert gates.sum(x, axes=(1,), shape=(2, 3)).tolist() == [3.0, 12.0]  # as the tracer calls
    report = jaxprop.check(gates.sum, x, params={"axes": (1,), "shape": (2, 3)},
                           checks=["shapes"])
    assert report.ok


def test_the_docstring_rule_lines_are_the_rules_code():
    # a rule is stated once, as code: the docstring and the README table read that code, so
    # a wrong rule reads wrong
    wrong = Gate("triple", SCALED, forward=lambda x: (3 * x, None),
                 vjp=(lambda res, z_bar: z_bar * 2.0,), jvp=(lambda res, x_dot: x_dot * 3.0,),
                 doc="Triple gate: z = 3 x.")
    assert wrong.__doc__.endswith("Backward: x_bar = z_bar * 2.0\nForward: z_dot += x_dot * 3.0\n")
    from jaxprop import gates

    assert "Backward: x_bar = dy @ res.w.T; w_bar = _rows(res.x).T @ _rows(dy)" in (
        gates.matmul.__doc__)
    assert "`x_bar = z_bar * res.y; y_bar = z_bar * res.x`" in gates.pattern_table()
