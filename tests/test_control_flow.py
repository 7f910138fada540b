"""Loops and branches through the lecture's rules: lax.scan (backprop through time, step by
step, never unrolled), fori_loop, while_loop (forward mode), cond and switch (a router).

Every derivative is checked in float64 against JAX's autodiff of the same plain code, in both
modes (jaxprop.reverse, jaxprop.forward) and under jax.grad(jaxprop.gated(f)), with only our
rules observed, the gates inside the loop bodies included.
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ATOL, RTOL, Case, check_battery, check_drivers

import jaxprop
from jaxprop import Gate

H, D, T = 4, 3, 6


def _params(seed, *shapes):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return tuple(0.5 * jax.random.normal(k, s, jnp.float64) for k, s in zip(keys, shapes))


def rnn(params, xs):
    """The vanilla RNN: h_t = tanh(x_t W + h_{t-1} U + b), a loss on every h_t."""
    W, U, b = params

    def step(h, x):
        h = jnp.tanh(x @ W + h @ U + b)
        return h, jnp.sum(h ** 2)

    h, ys = jax.lax.scan(step, jnp.zeros(U.shape[0]), xs)
    return jnp.sum(ys) + jnp.sum(h)


def lstm(params, xs):
    """The LSTM cell: four gates from one product, c_t = f c + i g, h_t = o tanh(c_t)."""
    W, U, b = params

    def step(carry, x):
        h, c = carry
        a = x @ W + h @ U + b
        i, f, o, g = jnp.split(a, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    (h, c), hs = jax.lax.scan(step, (jnp.zeros(H), jnp.zeros(H)), xs)
    return jnp.sum(hs * jnp.arange(1.0, H + 1)[None, :]) + jnp.sum(c ** 2)


def gru(params, xs):
    """The GRU cell: update z and reset r gates, h_t = (1 - z) h + z tanh(x Wh + (r h) Uh)."""
    Wz, Uz, Wr, Ur, Wh, Uh = params

    def step(h, x):
        z = jax.nn.sigmoid(x @ Wz + h @ Uz)
        r = jax.nn.sigmoid(x @ Wr + h @ Ur)
        h = (1 - z) * h + z * jnp.tanh(x @ Wh + (r * h) @ Uh)
        return h, h

    h, hs = jax.lax.scan(step, jnp.ones(H) * 0.1, xs)
    return jnp.sum(jnp.tanh(hs)) + jnp.sum(h)


XS = _params(9, (T, D))[0]
CELLS = {
    "rnn": (rnn, _params(1, (D, H), (H, H), (H,))),
    "lstm": (lstm, _params(2, (D, 4 * H), (H, 4 * H), (4 * H,))),
    "gru": (gru, _params(3, *[(D, H), (H, H)] * 3)),
}


def fori_sum(w, x):
    """A fori_loop with static bounds: it lowers to a scan, and runs in both modes."""
    return jax.lax.fori_loop(0, 5, lambda i, c: c * w + jnp.tanh(c + x[i]), 1.0)


def while_power(w):
    """A while_loop: its number of steps is known only when it runs."""
    return jax.lax.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, jnp.tanh(c[1] * w)),
                              (0, 1.3))[1]


def cond(x, w):
    return jax.lax.cond(x > 0, lambda a: jnp.tanh(a * w), lambda a: jnp.exp(a) * w, x)


def switch(x, w):
    i = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, 2)
    return jax.lax.switch(i, [lambda a: a * w, lambda a: jnp.tanh(a) * w,
                              lambda a: a ** 3 + w], x)


def diag_trace(a):
    return jnp.sum(jnp.diag(a) ** 2) + jnp.trace(a @ a) ** 2


FUNCTIONS = {
    **{name: (f, (p, XS)) for name, (f, p) in CELLS.items()},
    "fori_sum": (fori_sum, (0.8, jnp.linspace(-1.0, 1.0, 5))),
    "cond_true": (cond, (0.5, 2.0)),
    "cond_false": (cond, (-0.5, 2.0)),
    **{f"switch_{i}": (switch, (x, 2.0)) for i, x in enumerate((0.5, 1.5, 2.5))},
    "diag_trace": (diag_trace, (jnp.arange(9.0).reshape(3, 3) / 9,)),
}
DRIVERS = {
    "reverse": (lambda f: jaxprop.reverse.grad(f, argnums=0), "vjp"),
    "forward": (lambda f: jaxprop.forward.grad(f, argnums=0), "jvp"),
    "jax.grad(gated)": (lambda f: jax.grad(jaxprop.gated(f), argnums=0), "jvp"),
}


def _rules_seen(run):
    """The events seen while ``run()`` is traced (its values are computed too)."""
    events = []
    with jaxprop.observe(events.append):
        out = run()
    return out, events


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_loops_and_branches_give_jax_derivatives_through_our_rules(name, driver):
    f, args = FUNCTIONS[name]
    grad, kind = DRIVERS[driver]
    want = jax.grad(f, argnums=0)(*args)
    got, events = _rules_seen(lambda: grad(f)(*args))
    chex.assert_trees_all_close(got, want, rtol=RTOL, atol=ATOL)
    assert events and all(isinstance(e.gate, Gate) for e in events), \
        {type(e.gate).__name__ for e in events}
    assert any(e.kind == kind for e in events), {e.kind for e in events}


@pytest.mark.parametrize("driver", ["reverse", "forward"])
def test_the_rules_of_the_gates_inside_the_body_run(driver):
    """The LSTM's body: its sigmoid, tanh, matmul and split gates run their own rules."""
    grad, kind = DRIVERS[driver]
    f, params = CELLS["lstm"]
    _, events = _rules_seen(lambda: grad(f)(params, XS))
    ran = {e.gate.name for e in events if e.kind == kind}
    assert {"sigmoid", "tanh", "matmul", "mul", "add"} <= ran, ran


def test_a_while_loop_in_forward_mode_gives_jacfwd():
    got, events = _rules_seen(lambda: jaxprop.forward.grad(while_power)(0.9))
    np.testing.assert_allclose(got, jax.jacfwd(while_power)(0.9), rtol=RTOL, atol=ATOL)
    assert {e.gate.name for e in events if e.kind == "jvp"} >= {"tanh", "mul"}
    assert all(isinstance(e.gate, Gate) for e in events)
    np.testing.assert_allclose(jax.jacfwd(jaxprop.gated(while_power))(0.9),
                               jax.jacfwd(while_power)(0.9), rtol=RTOL, atol=ATOL)


def test_reverse_mode_through_a_while_loop_names_the_line_and_the_way_out():
    with pytest.raises(ValueError) as err:
        jaxprop.reverse.grad(while_power)(0.9)
    message = str(err.value)
    assert re.search(r"test_control_flow\.py:\d+ \(while_power\)", message), message
    assert "lax.scan" in message and "fori_loop with static bounds" in message


def test_fori_loop_with_bounds_known_at_run_time_is_a_while_loop():
    def f(w, n):
        return jax.lax.fori_loop(0, n, lambda i, c: jnp.tanh(c * w), 1.0)

    np.testing.assert_allclose(jaxprop.forward.grad(f)(0.7, 3), jax.jacfwd(f)(0.7, 3),
                               rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="fori_loop with static bounds"):
        jax.jit(jaxprop.reverse.grad(f))(0.7, 3)


def nested(w, xs):
    """A scan inside a scan (reversed, unrolled by 2), a jit inside the inner body."""
    def outer(c, x):
        @jax.jit
        def inner(d, y):
            return jnp.tanh(d * w + y), d

        d, ys = jax.lax.scan(inner, c, x, reverse=True, unroll=2)
        return d + jnp.sum(ys), jnp.exp(-d)

    c, ys = jax.lax.scan(outer, 0.3, xs)
    return c + jnp.sum(ys)


def no_inputs(w):
    """``length`` with no inputs (xs=None), two carries and two outputs per step."""
    def step(carry, _):
        a, b = carry
        return (a * w + jnp.tanh(b), b * w), (a, b * 2)

    (a, b), (ys, zs) = jax.lax.scan(step, (1.0, 0.5), None, length=6)
    return a + b + jnp.sum(ys) + jnp.sum(zs)


def carry_from_a_constant(w, xs):
    """The carry starts as a constant and becomes differentiated inside the body."""
    return jax.lax.scan(lambda c, x: (c + jnp.tanh(x * w), None), 0.0, xs)[0]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("f, args", [
    (nested, (0.7, jnp.linspace(0.0, 1.0, 12).reshape(3, 4))),
    (no_inputs, (0.9,)),
    (carry_from_a_constant, (0.9, jnp.linspace(-1.0, 1.0, 4))),
], ids=["nested_reverse_unroll_jit", "length_no_xs", "carry_from_a_constant"])
def test_scan_options(f, args, driver):
    grad, _ = DRIVERS[driver]
    got, events = _rules_seen(lambda: grad(f)(*args))
    chex.assert_trees_all_close(got, jax.grad(f)(*args), rtol=RTOL, atol=ATOL)
    assert events and all(isinstance(e.gate, Gate) for e in events)


def _long_scan(w, xs):
    c, ys = jax.lax.scan(lambda c, x: (jnp.tanh(c * w + x), c), 0.0, xs)
    return c + jnp.sum(ys)


@pytest.mark.parametrize("driver", ["reverse", "forward"])
def test_a_scan_is_never_unrolled(driver):
    """Backprop through time of 200 steps is a scan, not 200 copies of the body."""
    grad, _ = DRIVERS[driver]
    for steps in (10, 200):
        text = str(jax.make_jaxpr(grad(_long_scan))(0.5, jnp.ones(steps)))
        assert text.count("scan[") >= 1 and text.count(" tanh ") <= 4, (steps, text)
        if steps == 10:
            size = len(text)
    assert len(text) <= size + 20  # only the lengths' digits differ


def _saved(f, *args):
    """The residuals reverse mode saves for f (under our VJP rules)."""
    from jax._src.ad_checkpoint import saved_residuals  # print_saved_residuals' list

    with jaxprop.rule_set("vjp"):
        return saved_residuals(jaxprop.gated(f), *args)


def test_checkpoint_inside_the_body_is_respected():
    """Under jax.checkpoint with nothing saveable, the tanh's output is recomputed on the
    way back, not saved at each step; the gradient is unchanged."""
    def step(h, x, w):
        return jnp.tanh(jnp.tanh(h * w + x) * w), None

    def plain(w, xs):
        return jnp.sum(jax.lax.scan(lambda h, x: step(h, x, w), 0.1, xs)[0])

    def remat(w, xs):
        body = jax.checkpoint(lambda h, x: step(h, x, w),
                              policy=jax.checkpoint_policies.nothing_saveable)
        return jnp.sum(jax.lax.scan(body, 0.1, xs)[0])

    xs = jnp.linspace(-1.0, 1.0, 7)
    per_step = [len([r for r in _saved(f, 0.8, xs) if r[0].shape == (7,)]) for f in
                (plain, remat)]
    assert per_step[0] >= 2 and per_step[1] < per_step[0], per_step
    for driver in DRIVERS.values():
        chex.assert_trees_all_close(driver[0](remat)(0.8, xs), jax.grad(plain)(0.8, xs),
                                    rtol=RTOL, atol=ATOL)


def rnn_from(W, U, b, h0, xs):
    """The RNN with its first state h0 an input too."""
    def step(h, x):
        h = jnp.tanh(x @ W + h @ U + b)
        return h, jnp.sum(h ** 2)

    h, ys = jax.lax.scan(step, h0, xs)
    return jnp.sum(ys) + jnp.sum(h)


def test_the_battery_checks_a_function_with_a_scan():
    """Finite differences, JAX's autodiff, the adjoint test and proof that the body's rules
    ran (each once: the carry that starts as zeros is differentiated from the first step, so
    JAX's scan traces each rule for one tangent pattern only)."""
    params = CELLS["rnn"][1]
    report = jaxprop.check(lambda W, U, b, xs: rnn((W, U, b), xs), *params, XS,
                           reference=lambda W, U, b, xs: rnn((W, U, b), xs), diff=(0, 1, 2))
    assert report.ok, report
    assert report["rule_ran"].status == "pass" and report["adjoint"].status == "pass"


RNN_CASE = Case("rnn_scan", rnn_from, rnn_from,
                lambda rng: (*[0.5 * rng.normal(size=s) for s in ((D, H), (H, H), (H,), (H,))],
                             rng.normal(size=(T, D))), diff=(0, 1, 2, 3), kind="model")
"""A scan in the form of the case registry's entries (tests/cases.py): its harness runs it.
It is not in ``CASES``, whose entries each cover a gate, a loss or a model of a registry."""


def test_the_case_harness_runs_a_scan():
    check_battery(RNN_CASE)
    check_drivers(RNN_CASE)


def test_hessian_through_a_scan_is_forward_over_reverse_through_our_rules():
    f, (W, U, b) = CELLS["rnn"]

    def g(W):
        return f((W, U, b), XS)

    np.testing.assert_allclose(jaxprop.hessian(g)(W), jax.hessian(g)(W), rtol=RTOL, atol=ATOL)


def test_a_while_loop_inside_a_scan_is_refused_in_reverse_mode_too():
    def f(w, xs):
        return jax.lax.scan(lambda c, x: (c + while_power(w * x), None), 0.0, xs)[0]

    with pytest.raises(ValueError, match=r"test_control_flow\.py:\d+ \(while_power\)"):
        jaxprop.reverse.grad(f)(0.9, jnp.ones(3))
    np.testing.assert_allclose(jaxprop.forward.grad(f)(0.9, jnp.ones(3)),
                               jax.jacfwd(f)(0.9, jnp.ones(3)), rtol=RTOL, atol=ATOL)


def test_the_compiled_program_stays_flat_from_32_to_256_steps():
    sizes = [len(jax.jit(jaxprop.reverse.grad(_long_scan)).lower(0.5, jnp.ones(n)).as_text())
             for n in (32, 256)]
    assert sizes[1] <= sizes[0] * 1.05, sizes
