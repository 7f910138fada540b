"""explain shows the rule that ran: in every row, local x upstream = downstream.

The local gradient in each row is computed by the gate's own rule (its VJP rule in reverse
mode, its JVP rule in forward mode), never looked up by the gate's name. So the identity
holds for every gate of the registry, and for deliberately wrong gates too, including ones
named after the lecture's gates: the table can never contradict itself.
"""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from cases import GATE_CASES, split

import jaxprop
from jaxprop.gate import ROUTER, SCALED, SWITCHER, Gate, unbroadcast


def _flat(tree):
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


def assert_rows_consistent(trace) -> int:
    """Checks local x upstream = downstream row by row; returns how many inputs it checked."""
    checked = 0
    for row in trace.rows:
        if row.synthetic:  # a branch: its downstream is the sum of the branches' gradients
            if trace.mode == "reverse":
                np.testing.assert_allclose(row.downstream[0], sum(row.upstream), rtol=1e-12)
            continue
        if trace.mode == "forward":
            if row.downstream is None:
                continue
            # with the basis pushed, every tangent has a leading axis: one per direction
            n = len(jax.tree.leaves(row.downstream)[0]) if trace.basis else 1
            for b in range(n):
                out = jax.tree.map(lambda a, b=b: a[b], row.downstream) if trace.basis \
                    else row.downstream
                total = np.zeros_like(_flat(out))
                for local, t in zip(row.local_values, row.upstream):
                    if local is None or t is None:
                        continue
                    t = jax.tree.map(lambda a, b=b: a[b], t) if trace.basis else t
                    if row.elementwise:
                        total += _flat(np.broadcast_to(
                            np.asarray(local) * np.broadcast_to(t, np.shape(local)),
                            np.shape(out)))
                    else:
                        total += np.asarray(local) @ _flat(t)
                    checked += 1
                np.testing.assert_allclose(total, _flat(out), rtol=1e-10, atol=1e-12,
                                           err_msg=f"row {row.step} ({row.gate})")
            continue
        for x, local, down in zip(row.inputs, row.local_values, row.downstream or ()):
            if local is None or down is None:
                continue
            if row.elementwise:
                want = unbroadcast(jnp.asarray(local) * jnp.asarray(row.upstream), np.shape(x))
            else:
                want = (np.asarray(local).T @ _flat(row.upstream)).reshape(np.shape(x))
            np.testing.assert_allclose(np.asarray(want), np.asarray(down), rtol=1e-10,
                                       atol=1e-12, err_msg=f"row {row.step} ({row.gate})")
            checked += 1
    return checked


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("case", split(GATE_CASES))
def test_every_registry_gate_shows_the_rule_that_ran(case, mode):
    trace = jaxprop.explain(case.fn, *case.args(), mode=mode)
    assert any(row.gate == case.covers for row in trace.rows), [r.gate for r in trace.rows]
    assert assert_rows_consistent(trace) >= 1


def _sigmoid_forward(x):
    s = 1 / (1 + jnp.exp(-x))
    return s, s


BROKEN = {
    # named after the lecture's sigmoid, its VJP rule forgot (1 - s)
    "sigmoid without (1-s)": Gate("sigmoid", SCALED, _sigmoid_forward,
                                  vjp=(lambda s, s_bar: s_bar * s,),
                                  jvp=(lambda s, x_dot: s * x_dot,), elementwise=True),
    # named after mul, but one input
    "one-input mul": Gate("mul", SWITCHER, lambda x: (2 * x, None),
                          vjp=(lambda r, z_bar: 2 * z_bar,), jvp=(lambda r, x_dot: 2 * x_dot,)),
    # named after max, routes to the wrong input
    "max to the loser": Gate("maximum", ROUTER, lambda x, y: (jnp.maximum(x, y), (x, y)),
                             vjp=(lambda r, z_bar: jnp.where(r[0] < r[1], z_bar, 0.0),
                                  lambda r, z_bar: jnp.where(r[0] >= r[1], z_bar, 0.0)),
                             jvp=(lambda r, x_dot: jnp.where(r[0] < r[1], x_dot, 0.0),
                                  lambda r, y_dot: jnp.where(r[0] >= r[1], y_dot, 0.0)),
                             broadcast=True),
    # a new gate, no texts at all, a wrong factor
    "cube times 3": Gate("cube", SCALED, lambda x: (x**3, x),
                         vjp=(lambda x, z_bar: 9 * x * x * z_bar,),
                         jvp=(lambda x, x_dot: 9 * x * x * x_dot,)),
}


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", BROKEN)
def test_wrong_gates_are_shown_as_they_compute(name, mode):
    gate = BROKEN[name]
    args = [jnp.array([1.0, -0.5])] * gate.arity
    if gate.arity == 2:
        args = [jnp.array([1.0, -0.5]), jnp.array([0.2, 0.4])]
    trace = jaxprop.explain(lambda *a: gate(*a) * 2.0, *args, mode=mode)
    assert assert_rows_consistent(trace) >= gate.arity
    row = trace.rows[0]
    assert row.gate == gate.name
    # the text is the gate's own (none here) and the numbers are its rule's: never the
    # registry gate of the same name
    assert "(1-s)s" not in row.local and "y" not in row.local.split("=")[0][-3:]


def test_the_wrong_sigmoid_shows_its_own_local_gradient():
    trace = jaxprop.explain(BROKEN["sigmoid without (1-s)"], 1.0)
    (row,) = trace.rows
    s = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(row.local_values[0], s)  # what the rule computes: s, 0.73
    np.testing.assert_allclose(row.downstream[0], s)
    assert "0.73" in row.local and "0.2" not in row.local


def test_a_large_gate_summarises_its_local_gradient():
    x = jnp.linspace(-1.0, 1.0, 5000)
    trace = jaxprop.explain(lambda x: jnp.sum(jnp.tanh(x)), x)
    row = next(r for r in trace.rows if r.gate == "tanh")
    assert row.local_values[0].shape == (5000,)  # elementwise: the diagonal, always formed
    assert "..." in row.local or "mean" in row.local or "min" in row.local
    assert assert_rows_consistent(trace) >= 1
