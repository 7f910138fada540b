"""explain shows a lax.scan the lecture's way: the body's gates for the first steps, the
carry's gradient passing from step to step, then one summary row for the remaining steps;
every gradient shown is jax.grad's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop

STEPS = 5


def _params():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(3, 3)) * 0.5), jnp.asarray(rng.normal(size=(3, 2))),
            jnp.asarray(rng.normal(size=3)), jnp.asarray(rng.normal(size=(STEPS, 2))))


def _steps(w, u, h, xs):
    def step(h, x):
        h = jnp.tanh(w @ h + u @ x)
        return h, h

    return jax.lax.scan(step, h, xs)[0]


def rnn(w, u, h0, xs):
    return jnp.sum(_steps(w, u, h0, xs))


def _after(t, w, u, h0, xs):
    """h_t: the carry after steps 0..t-1."""
    return _steps(w, u, h0, xs[:t])


def _grad_of_carry(t, w, u, h0, xs):
    """dL/dh_t, the gradient of the carry entering step t, by jax.grad."""
    return jax.grad(lambda h: jnp.sum(_steps(w, u, h, xs[t:])))(_after(t, w, u, h0, xs))


def _rows(trace, step):
    return [r for r in trace.rows if r.gate.endswith(f"[{step}]")]


def test_first_steps_unrolled_then_one_summary_row():
    w, u, h0, xs = _params()
    trace = jaxprop.explain(rnn, w, u, h0, xs, scan_steps=2)
    gates = [r.gate for r in trace.rows]
    for t in (0, 1):
        assert "tanh" in [r.gate.split(" [")[0] for r in _rows(trace, f"t={t}")], gates
    assert not any("[t=2]" in g for g in gates), gates
    summary = [r for r in trace.rows if r.gate.startswith("scan [")]
    assert len(summary) == 1 and summary[0].gate == "scan [t=2..4]", gates
    assert "steps 2..4: the same gates, 3 more times" in summary[0].detail
    assert "scan [t=2..4]" in str(trace)


def test_the_carry_gradient_passes_from_step_to_step_as_jax_grad():
    w, u, h0, xs = _params()
    trace = jaxprop.explain(rnn, w, u, h0, xs, scan_steps=2)
    expected = jax.grad(rnn, argnums=(0, 1, 2, 3))(w, u, h0, xs)
    for got, want in zip(trace.grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    (tanh0,) = [r for r in _rows(trace, "t=0") if r.gate.startswith("tanh")]
    (tanh1,) = [r for r in _rows(trace, "t=1") if r.gate.startswith("tanh")]
    # h_1 (tanh at t=0) gets its gradient from step 1, whose gates use it
    np.testing.assert_allclose(tanh0.upstream, _grad_of_carry(1, w, u, h0, xs), rtol=1e-10)
    step1_uses = [r for r in _rows(trace, "t=1") if tanh0.output_names[0] in r.input_names]
    assert step1_uses, [r.input_names for r in _rows(trace, "t=1")]
    from_step1 = sum(np.asarray(r.downstream[r.input_names.index(tanh0.output_names[0])])
                     for r in step1_uses)
    np.testing.assert_allclose(tanh0.upstream, from_step1, rtol=1e-10)
    np.testing.assert_allclose(tanh1.upstream, _grad_of_carry(2, w, u, h0, xs), rtol=1e-10)
    # the summary row: the final carry's gradient in, h_2's gradient out
    (summary,) = [r for r in trace.rows if r.gate.startswith("scan [")]
    np.testing.assert_allclose(summary.upstream, np.ones(3))
    h_slot = summary.input_names.index(tanh1.output_names[0])
    np.testing.assert_allclose(summary.downstream[h_slot], _grad_of_carry(2, w, u, h0, xs),
                               rtol=1e-10)
    np.testing.assert_allclose(summary.inputs[h_slot], _after(2, w, u, h0, xs), rtol=1e-12)


def test_forward_mode_shows_the_summary_row_with_tangents():
    w, u, h0, xs = _params()
    tangents = (jnp.zeros_like(w), jnp.zeros_like(u), jnp.ones_like(h0), jnp.zeros_like(xs))
    trace = jaxprop.explain(rnn, w, u, h0, xs, mode="forward", tangents=tangents,
                            scan_steps=1)
    (summary,) = [r for r in trace.rows if r.gate.startswith("scan [")]
    assert summary.gate == "scan [t=1..4]"
    _, want = jax.jvp(lambda h: _steps(w, u, h, xs), (h0,), (jnp.ones_like(h0),))
    np.testing.assert_allclose(summary.downstream, want, rtol=1e-10)
    np.testing.assert_allclose(trace.output_tangent, jnp.sum(want), rtol=1e-10)


def test_all_steps_unrolled_and_a_reversed_scan():
    w, u, h0, xs = _params()
    trace = jaxprop.explain(rnn, w, u, h0, xs, scan_steps=10)
    assert not any(r.gate.startswith("scan [") for r in trace.rows)
    assert _rows(trace, "t=4")

    def backwards(w, u, h0, xs):
        def step(h, x):
            h = jnp.tanh(w @ h + u @ x)
            return h, h
        h, ys = jax.lax.scan(step, h0, xs, reverse=True)
        return jnp.sum(h) + jnp.sum(ys * ys)

    trace = jaxprop.explain(backwards, w, u, h0, xs, scan_steps=2)
    assert _rows(trace, "t=4") and _rows(trace, "t=3")
    assert [r.gate for r in trace.rows if r.gate.startswith("scan [")] == ["scan [t=2..0]"]
    expected = jax.grad(backwards, argnums=(0, 1, 2, 3))(w, u, h0, xs)
    for got, want in zip(trace.grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_scan_steps_must_be_a_positive_int(bad):
    w, u, h0, xs = _params()
    with pytest.raises(ValueError, match="scan_steps must be a positive int"):
        jaxprop.explain(rnn, w, u, h0, xs, scan_steps=bad)


def branchy(x, y):
    z = jax.lax.cond(jnp.sum(x) > 0, lambda a: jnp.tanh(a) * y, lambda a: jnp.exp(a) + y, x)
    return jnp.sum(z * z)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("sign, taken, gate", [(1.0, 1, "tanh"), (-1.0, 0, "exp")])
def test_a_cond_shows_the_branch_that_ran(mode, sign, taken, gate):
    x = sign * jnp.array([0.5, -0.2])
    trace = jaxprop.explain(branchy, x, 2.0, mode=mode)
    labels = [r.gate for r in trace.rows if "[branch" in r.gate]
    assert labels and all(g.endswith(f"[branch {taken}]") for g in labels), labels
    assert f"{gate} [branch {taken}]" in labels
    # the cond's output is the branch's own wire: the square reads it
    (last,) = [r for r in trace.rows if r.gate.endswith(f"[branch {taken}]")
               and r.gate.split(" [")[0] in ("mul", "add")]
    (square,) = [r for r in trace.rows if r.gate == "mul"]
    assert square.input_names == (last.output_names[0],) * 2
    expected = jax.grad(branchy, argnums=(0, 1))(x, 2.0)
    for got, want in zip(trace.grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_a_switch_in_a_scan_shows_each_step_s_branch():
    def f(w, xs):
        def step(h, x):
            i = jnp.where(x > 0, 1, 0)
            h = jax.lax.switch(i, [lambda h: jnp.sin(w * h), lambda h: jnp.tanh(w * h)], h)
            return h + x, None
        return jax.lax.scan(step, 1.0, xs)[0]

    xs = jnp.array([1.0, -1.0, 1.0])
    trace = jaxprop.explain(f, 0.7, xs, scan_steps=2)
    gates = [r.gate for r in trace.rows]
    assert "tanh [t=0,branch 1]" in gates and "sin [t=1,branch 0]" in gates, gates
    assert "sin [t=0,branch 0]" not in gates and "tanh [t=1,branch 1]" not in gates, gates
    expected = jax.grad(f, argnums=(0, 1))(0.7, xs)
    for got, want in zip(trace.grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_a_while_loop_is_a_clear_error():
    def f(x):
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (jnp.sin(c[0]), c[1] + 1),
                                  (x, 0))[0]

    with pytest.raises(ValueError, match=r"explain: cannot show the while loop at .*"
                                         r"test_explain_scan.py"):
        jaxprop.explain(f, 0.5, mode="forward")


def test_a_branch_that_did_not_run_adds_no_nan_and_reads_the_operand_by_name():
    def f(x):
        return jax.lax.cond(x > 0, lambda a: jnp.log(a), lambda a: a * 2.0, x)

    trace = jaxprop.explain(f, 0.0)  # the log branch, not taken, would give 0 * (1/0)
    assert [(r.gate, r.input_names) for r in trace.rows] == [("mul [branch 0]", ("x", "2"))]
    np.testing.assert_allclose(trace.grads[0], jax.grad(f)(0.0))
    trace = jaxprop.explain(f, 0.0, mode="forward")
    np.testing.assert_allclose(trace.output_tangent, [2.0])


def test_a_scan_in_a_scan():
    def f(w, xs):
        def outer(h, row):
            def inner(g, x):
                return jnp.sin(w * g + x), None
            return jax.lax.scan(inner, h, row)[0], None
        return jax.lax.scan(outer, 0.3, xs)[0]

    xs = jnp.arange(12.0).reshape(4, 3) / 10
    trace = jaxprop.explain(f, 0.7, xs, scan_steps=2)
    gates = [r.gate for r in trace.rows]
    assert "sin [t=0,t=0]" in gates and "sin [t=1,t=1]" in gates, gates
    assert [g for g in gates if g.startswith("scan")] == [
        "scan [t=0,t=2]", "scan [t=1,t=2]", "scan [t=2..3]"], gates
    expected = jax.grad(f, argnums=(0, 1))(0.7, xs)
    for got, want in zip(trace.grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_a_scan_without_carry_or_without_xs(mode):
    def mapped(w, xs):  # lax.map: a scan with no carry, its ys the summary row's outputs
        return jnp.sum(jax.lax.map(lambda x: jnp.sin(w * x), xs))

    def powers(w):  # no xs: the length alone
        return jax.lax.scan(lambda h, _: (jnp.tanh(w * h + 1.0), None), 0.2, length=4)[0]

    for f, args in ((mapped, (0.7, jnp.arange(5.0))), (powers, (0.7,))):
        trace = jaxprop.explain(f, *args, mode=mode, scan_steps=2)
        gates = [r.gate for r in trace.rows]
        assert "scan [t=2.." in " ".join(gates) and any("[t=1]" in g for g in gates), gates
        expected = jax.grad(f, argnums=tuple(range(len(args))))(*args)
        for got, want in zip(trace.grads, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10)


def test_every_gate_of_a_shown_step_gets_its_gradient():
    def scalar_rnn(w, h0, xs):  # h0 a Python float: step 0 casts it, later steps cast a no-op
        def step(h, x):
            return jnp.tanh(w * h + x), None
        return jax.lax.scan(step, h0, xs)[0]

    trace = jaxprop.explain(scalar_rnn, 0.5, 0.1, jnp.linspace(0.0, 0.8, 5), scan_steps=3)
    for t in range(3):
        rows = _rows(trace, f"t={t}")
        assert "cast" in [r.gate.split(" [")[0] for r in rows]
        assert all(r.upstream is not None for r in rows), [(r.gate, r.detail) for r in rows]
