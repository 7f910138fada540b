"""The pooling gates (jaxprop/gates/windows.py) beyond the battery of tests/cases.py: ties,
pools written the ways flax, stax, equinox and CS231n write them, second order through our
rules, JAX's own max-pool gradient differentiated again, the generic reduce_window, explain,
and the errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import POOL_CASES, distinct, ref_pool

import jaxprop
from jaxprop import gates
from jaxprop.gate import Gate
from jaxprop.tracer import NoGateError

pytestmark = pytest.mark.slow  # these gates' own tests run in the slow job (.ci/run)

f64 = jnp.float64


def grads_in_every_mode(f, *args):
    """d f / d args[0]: jaxprop.reverse (our VJP rules), jaxprop.forward (our JVP rules) and
    jax.grad of gated(f) (JAX transposing our JVP rules), jitted: one compilation each."""
    return {"reverse": jaxprop.reverse.grad(f)(*args), "forward": jaxprop.forward.grad(f)(*args),
            "jax.grad(gated)": jax.jit(jax.grad(jaxprop.gated(f)))(*args)}


def assert_all_close(got: dict, want, rtol=1e-12, atol=1e-12):
    for name, g in got.items():
        np.testing.assert_allclose(g, want, rtol=rtol, atol=atol, err_msg=name)


def _max_pool_lax(x, window=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding="VALID"):
    """flax.linen.max_pool and stax.MaxPool: lax.reduce_window with -inf and lax.max."""
    return lax_reduce(x, -jnp.inf, jax.lax.max, window, strides, padding)


def lax_reduce(x, init, op, window, strides, padding, **kw):
    return jax.lax.reduce_window(x, init, op, window, strides, padding, **kw)


# ---------------------------------------------------------------------------------- ties


TIED = jnp.array([[1.0, 1.0, 0.0],
                  [1.0, 1.0, 1.0],
                  [0.0, 1.0, 1.0]], f64)
"""Every 2x2 window (stride 1) of TIED holds several equal largest elements."""


@pytest.mark.parametrize("select", ["max", "min"])
def test_a_tie_goes_to_the_first_element_of_the_window_in_both_modes(select):
    x = TIED if select == "max" else -TIED
    op = jax.lax.max if select == "max" else jax.lax.min
    init = -jnp.inf if select == "max" else jnp.inf
    w = jnp.array([[1.0, 10.0], [100.0, 1000.0]], f64)  # tells the windows apart

    def f(x):
        return jnp.sum(lax_reduce(x, init, op, (2, 2), (1, 1), "VALID") * w)

    # Window (i, j)'s first element in C order is x[i, j]: each takes its own window's weight.
    want = np.array([[1.0, 10.0, 0.0], [100.0, 1000.0, 0.0], [0.0, 0.0, 0.0]])
    assert_all_close(grads_in_every_mode(f, x), want)
    # JAX's own max-pool gradient (select_and_scatter_add: XLA's select visits a window in
    # C order, on every backend) picks the same element.
    np.testing.assert_allclose(jax.grad(f)(x), want)
    # The gate called by itself, and its JVP rule (forward mode pushes the same winners).
    pool = getattr(gates, f"{select}_pool")
    t = jnp.arange(9.0).reshape(3, 3)
    _, z_dot = jaxprop.forward.jvp(lambda x: pool(x, (2, 2)), (x,), (t,))
    np.testing.assert_allclose(z_dot, [[0.0, 1.0], [3.0, 4.0]])


def test_the_reshape_max_pool_also_gives_a_tie_to_the_first_where_jax_splits_it():
    """CS231n's reshape trick is a max over axes (the max gate, first winner); jax.grad of
    it splits a tie evenly, jax.grad of the reduce_window form does not."""
    x = jnp.ones((1, 1, 2, 2), f64)

    def cs231n(x):
        n, c, h, w = x.shape
        return jnp.sum(x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)))

    first = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert_all_close(grads_in_every_mode(cs231n, x), first)
    np.testing.assert_allclose(jax.grad(cs231n)(x), np.full((1, 1, 2, 2), 0.25))

    def flax_form(x):
        return jnp.sum(lax_reduce(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"))

    assert_all_close(grads_in_every_mode(flax_form, x), first)
    np.testing.assert_allclose(jax.grad(flax_form)(x), first)


def test_a_window_of_padding_only_is_the_identity_and_passes_no_gradient():
    x = jnp.array([3.0, -1.0], f64)

    def f(x):  # padding (0, 3), window 2, stride 2: the last window holds padding only
        return lax_reduce(x, -jnp.inf, jax.lax.max, (2,), (2,), ((0, 3),))

    np.testing.assert_array_equal(gates.max_pool(x, (2,), (2,), ((0, 3),)), f(x))
    np.testing.assert_array_equal(f(x), [3.0, -jnp.inf])

    def g(x):
        return jnp.sum(jnp.tanh(jnp.maximum(f(x), -5.0)))

    assert_all_close(grads_in_every_mode(g, x), jax.grad(g)(x))


def test_nan_wins_its_window_as_the_max_propagates_it():
    x = jnp.array([1.0, jnp.nan, 2.0, 0.5], f64)
    z = gates.max_pool(x, (2,), (1,))
    np.testing.assert_array_equal(np.isnan(z), [True, True, False])
    x_bar = jaxprop.reverse.vjp(lambda x: gates.max_pool(x, (2,), (1,)), x)[1](
        jnp.array([1.0, 10.0, 100.0]))[0]
    np.testing.assert_allclose(x_bar, [0.0, 11.0, 100.0, 0.0])


# ----------------------------------------------------------------- pools as people write them


def _stax_avg_pool(x):
    """stax.AvgPool with SAME padding: a window sum, divided by each window's count."""
    ones = jnp.ones(x.shape[1:3], x.dtype)
    counts = lax_reduce(ones, 0.0, jax.lax.add, (3, 3), (2, 2), "SAME")
    return lax_reduce(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "SAME") / \
        counts[None, :, :, None]


POOLS = {
    "flax_max_pool_same_3x3": lambda x: _max_pool_lax(x, (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
    "flax_min_pool": lambda x: lax_reduce(x, jnp.inf, jax.lax.min, (1, 2, 2, 1), (1, 1, 1, 1),
                                          "VALID"),
    "flax_avg_pool": lambda x: lax_reduce(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1),
                                          "VALID") / 4.0,
    "stax_avg_pool_same": _stax_avg_pool,
    "cs231n_max_pool_reshape": lambda x: x.reshape(2, 2, 2, 3, 2, 2).max(axis=(2, 4)),
    "cs231n_avg_pool_reshape": lambda x: x.reshape(2, 2, 2, 3, 2, 2).mean(axis=(2, 4)),
    "gates_avg_pool": lambda x: gates.avg_pool(x, (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
}


def _net(pool):
    """A small net around a pool: tanh, the pool, a weighted sum, tanh again."""
    def f(x):
        z = pool(jnp.tanh(x))
        w = jnp.arange(1.0, 1.0 + z.size, dtype=z.dtype).reshape(z.shape) / z.size
        return jnp.tanh(jnp.sum(z * w))

    return f


@pytest.mark.parametrize("name", list(POOLS))
def test_pools_as_written_elsewhere_give_jax_grads_through_our_rules(name):
    x = jnp.asarray(distinct(np.random.default_rng(0), (2, 4, 6, 2)) / 5)
    f = _net(POOLS[name])
    events = []
    with jaxprop.observe(events.append):
        got = grads_in_every_mode(f, x)
    assert_all_close(got, jax.grad(f)(x), rtol=1e-10)
    names = {e.gate.name for e in events}
    assert names & {"max_pool", "min_pool", "sum_pool", "max", "sum"}, names
    assert all(isinstance(e.gate, Gate) for e in events)


@pytest.mark.parametrize("name", ["flax_max_pool_same_3x3", "flax_min_pool", "stax_avg_pool_same"])
def test_hessian_of_a_pool_net_runs_through_our_rules(name):
    x = jnp.asarray(distinct(np.random.default_rng(1), (1, 4, 4, 2)) / 5)
    f = _net(POOLS[name])
    events = []
    with jaxprop.observe(events.append):
        h = jaxprop.hessian(f)(x)
    np.testing.assert_allclose(h, jax.hessian(f)(x), rtol=1e-9, atol=1e-12)
    # The gradient comes from the pool's VJP rule; the outer pass pushes tangents through
    # the gates of that gradient's program (the rule's gathers, scatter-adds, window sums).
    assert all(isinstance(e.gate, Gate) for e in events)
    pool = "sum_pool" if "avg" in name else name.split("_")[1] + "_pool"
    assert (pool, "vjp") in {(e.gate.name, e.kind) for e in events}
    assert any(e.kind == "jvp" for e in events)


@pytest.mark.parametrize("case", POOL_CASES, ids=[c.name for c in POOL_CASES])
def test_hessian_of_every_pool_case_against_jax_hessian_of_its_reference(case):
    """jaxprop.hessian (our VJP rules, then the JVP rules of the gates of that gradient) of
    sum(tanh(pool)) on each case of tests/cases.py, against jax.hessian of its reference."""
    args = case.args()

    def scalar(fn):
        def f(d):
            full = list(args)
            full[case.diff[0]] = d
            return jnp.sum(jnp.tanh(fn(*full)))
        return f

    d = args[case.diff[0]]
    np.testing.assert_allclose(jaxprop.hessian(scalar(case.fn))(d),
                               jax.jit(jax.hessian(scalar(case.ref)))(d), rtol=1e-9, atol=1e-12)


def test_every_window_parameter_at_second_order():
    """Padding, base and window dilation: jaxprop.hessian against JAX's forward over forward
    (JAX has no reverse rule for a max pool with a window dilation)."""
    kw = dict(padding=((1, 1), (0, 3)), base_dilation=(2, 1), window_dilation=(1, 2))
    x = jnp.asarray(distinct(np.random.default_rng(2), (3, 4)) / 4)
    for op, init in ((jax.lax.max, -jnp.inf), (jax.lax.min, jnp.inf), (jax.lax.add, 0.0)):
        f = _net(lambda x, op=op, init=init: lax_reduce(x, init, op, (2, 3), (2, 1), **kw))
        want = jax.jit(jax.jacfwd(jax.jacfwd(f)))(x)
        np.testing.assert_allclose(jaxprop.hessian(f)(x), want, rtol=1e-9, atol=1e-12)


def test_jax_own_max_pool_gradient_differentiated_again_runs_through_our_gates():
    """jax.grad inside the function: its select_and_scatter_add (and, for jax.jvp inside,
    select_and_gather_add) become our gates, and their rules are each other."""
    x = jnp.asarray(distinct(np.random.default_rng(3), (1, 5, 5, 2)) / 5)

    def pool(x):
        return _max_pool_lax(x, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")

    def grad_norm(x):  # a gradient penalty: the square of a max-pool net's gradient
        g = jax.grad(lambda x: jnp.sum(jnp.tanh(pool(x)) ** 2))(x)
        return jnp.sum(g * g)

    def tangent_norm(x):
        t = jax.jvp(pool, (x,), (jnp.tanh(x),))[1]
        return jnp.sum(t * t)

    for f, prim in ((grad_norm, "select_and_scatter_add"),
                    (tangent_norm, "select_and_gather_add")):
        events = []
        with jaxprop.observe(events.append):
            got = grads_in_every_mode(f, x)
        assert_all_close(got, jax.grad(f)(x), rtol=1e-10)
        assert prim in {e.gate.name for e in events}


@pytest.mark.parametrize("select", ["max", "min"])
def test_select_and_scatter_add_is_jax_max_pool_gradient_at_ties(select):
    """On ties and across overlapping windows: select_and_scatter_add gives JAX's max-pool
    VJP, and select_and_gather_add is its adjoint, so both modes pick the same winners.
    (JAX's own forward mode, a reduce_window over (value, tangent) pairs, leaves a tie to
    XLA's reduction order: on these inputs it picks another tied element in some windows.)"""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.integers(0, 3, size=(2, 5, 6)).astype(np.float64))  # many ties
    op, init = (jax.lax.max, -jnp.inf) if select == "max" else (jax.lax.min, jnp.inf)
    args = ((1, 3, 2), (1, 2, 1), "SAME")

    def pool(x):
        return lax_reduce(x, init, op, *args)

    source = jnp.asarray(rng.normal(size=pool(x).shape))
    tangents = jnp.asarray(rng.normal(size=x.shape))
    scattered = gates.select_and_scatter_add(source, x, *args, select=select)
    np.testing.assert_allclose(scattered, jax.vjp(pool, x)[1](source)[0], rtol=1e-12)
    gathered = gates.select_and_gather_add(tangents, x, *args, select=select)
    np.testing.assert_allclose(jnp.vdot(gathered, source), jnp.vdot(tangents, scattered),
                               rtol=1e-12)
    away = x + jnp.asarray(distinct(rng, x.shape, gap=1e-3))  # no ties: JAX's jvp agrees
    np.testing.assert_allclose(gates.select_and_gather_add(tangents, away, *args, select=select),
                               jax.jvp(pool, (away,), (tangents,))[1], rtol=1e-12)


# ----------------------------------------------------------------- the generic reduce_window


@pytest.mark.parametrize("name, fn, ref", [
    ("max_lambda", lambda x: lax_reduce(x, -jnp.inf, lambda a, b: jnp.maximum(a, b), (2, 2),
                                        (1, 1), "SAME"),
     lambda x: lax_reduce(x, -jnp.inf, jax.lax.max, (2, 2), (1, 1), "SAME")),
    ("max_init_0", lambda x: lax_reduce(x, 0.0, jax.lax.max, (2, 2), (1, 2), "SAME"),
     lambda x: jnp.maximum(lax_reduce(x, -jnp.inf, jax.lax.max, (2, 2), (1, 2), "SAME"), 0.0)),
    ("min_lambda", lambda x: lax_reduce(x, jnp.inf, lambda a, b: jax.lax.min(b, a), (3, 1),
                                        (1, 1), "VALID"),
     lambda x: lax_reduce(x, jnp.inf, jax.lax.min, (3, 1), (1, 1), "VALID")),
    ("sum_init_1", lambda x: lax_reduce(x, 1.5, lambda a, b: a + b, (2, 2), (1, 1), "SAME"),
     lambda x: lax_reduce(x, 0.0, jax.lax.add, (2, 2), (1, 1), "SAME") + 1.5),
])
def test_a_generic_reduce_window_that_is_a_sum_max_or_min_is_its_pool_gate(name, fn, ref):
    """The generic primitive (a computation of its own, or an init value that is not the
    identity, which XLA applies once per window): JAX has no reverse rule for it, so the
    reference is the same pool written with the monoid."""
    x = jnp.asarray(distinct(np.random.default_rng(5), (4, 5)) / 3)
    assert "reduce_window[" in str(jax.make_jaxpr(fn)(x))  # the generic primitive
    np.testing.assert_allclose(fn(x), ref(x))
    f, g = _net(fn), _net(ref)
    assert_all_close(grads_in_every_mode(f, x), jax.grad(g)(x), rtol=1e-10)
    np.testing.assert_allclose(jaxprop.hessian(f)(x), jax.hessian(g)(x), rtol=1e-9, atol=1e-12)


def test_another_reduce_window_is_refused_naming_it_and_the_line():
    x = jnp.ones((3, 4), f64)

    def prod(x):
        return jnp.sum(lax_reduce(x, 1.0, jax.lax.mul, (2, 2), (1, 1), "VALID"))

    with pytest.raises(NoGateError, match=r"'reduce_window' .*computation 'mul'.*"
                                          r"test_windows.py:\d+"):
        jaxprop.reverse.grad(prod)(x)

    def pair(x):
        return jnp.sum(lax_reduce((x, x), (-jnp.inf, 0.0), lambda a, b: (
            jnp.maximum(a[0], b[0]), a[1] + b[1]), (2, 2), (1, 1), "VALID")[1])

    with pytest.raises(NoGateError, match="2 operands"):
        jaxprop.forward.grad(pair)(x)
    # allow_jax_rules lets JAX differentiate it with its own rule (JAX has only a JVP for it)
    t = jnp.arange(12.0).reshape(3, 4)
    events = []
    with jaxprop.observe(events.append):
        got = jax.jvp(jaxprop.gated(prod, allow_jax_rules=True), (x,), (t,))[1]
    np.testing.assert_allclose(got, jax.jvp(prod, (x,), (t,))[1])
    assert [e.gate.name for e in events if e.kind == "jax"] == ["reduce_window"]


# ------------------------------------------------------------------------ explain, errors


def test_explain_shows_a_pool_as_one_gate_with_its_pattern_and_rule():
    x = jnp.asarray(distinct(np.random.default_rng(6), (1, 4, 4, 1)))

    def f(x):
        return jnp.sum(_max_pool_lax(x) * 2.0)

    for mode in ("reverse", "forward"):
        trace = jaxprop.explain(f, x, mode=mode)
        rows = [r for r in trace.rows if r.gate == "max_pool"]
        assert len(rows) == 1, [r.gate for r in trace.rows]
        assert rows[0].pattern == "router"
        assert "largest" in rows[0].local
    assert "x_bar = _add_at_winners(win, z_bar, in_shape)" in gates.max_pool.__doc__
    assert "x_bar = _sum_back(z_bar, **p)" in gates.sum_pool.__doc__


@pytest.mark.parametrize("call, message", [
    (lambda x: gates.max_pool(x, (2,)), r"max_pool: window must be 2 positive ints"),
    (lambda x: gates.max_pool(x, (2, 0)), r"window must be 2 positive ints.*\(2, 0\)"),
    (lambda x: gates.sum_pool(x, (2, 2), (1,)), r"sum_pool: strides must be 2"),
    (lambda x: gates.min_pool(x, (2, 2), padding="FULL"), r"min_pool: padding 'FULL'"),
    (lambda x: gates.max_pool(x, (2, 2), padding=((1, 1),)), r"padding must be one of"),
    (lambda x: gates.max_pool(x, (2, 2), window_dilation=(1, -1)), r"window_dilation"),
    (lambda x: gates.avg_pool(x, (2, 2, 2)), r"window must be 2 positive ints"),
    (lambda x: gates.select_and_scatter_add(x, x, (2, 2)),
     r"select_and_scatter_add: source has shape \(3, 4\), but the pooled operand has shape"),
    (lambda x: gates.select_and_gather_add(x[:2], x, (2, 2)),
     r"select_and_gather_add: tangents has shape \(2, 4\), but operand has shape \(3, 4\)"),
    (lambda x: gates.select_and_gather_add(x, x, (2, 2), select="mean"),
     r"select must be 'max' or 'min'"),
])
def test_a_bad_pool_call_is_a_one_line_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call(jnp.ones((3, 4), f64))


def test_the_pools_agree_with_lax_on_values():
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 7, 6)))
    kw = dict(padding=((0, 0), (2, 1), (1, 2)), base_dilation=(1, 1, 2),
              window_dilation=(1, 2, 1))

    @jax.jit
    def values(x):
        out = []
        for pool, op, init, ref in ((gates.max_pool, jax.lax.max, -jnp.inf, jnp.max),
                                    (gates.min_pool, jax.lax.min, jnp.inf, jnp.min),
                                    (gates.sum_pool, jax.lax.add, 0.0, jnp.sum)):
            out.append((pool(x, (1, 3, 2), (1, 2, 3), **kw),
                        ref_pool(ref, x, (1, 3, 2), (1, 2, 3), **kw),
                        lax_reduce(x, init, op, (1, 3, 2), (1, 2, 3), **kw)))
        return out

    for ours, ref, want in values(x):
        np.testing.assert_allclose(ours, want, rtol=1e-14)
        np.testing.assert_allclose(ref, want, rtol=1e-14)
