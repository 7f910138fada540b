"""The pipelines themselves: Jacobians on pytrees, chunking, argnums, and tracing/caching."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ATOL, RTOL

import jaxprop
from jaxprop import gates, losses, models

MODES = {"reverse": jaxprop.reverse, "forward": jaxprop.forward}


def tree_fn(params, x):
    """A pytree in, a pytree out: {"W": [3, 2], "b": [2]}, x [4, 3] -> (scores, {"h": ...})."""
    s = gates.add(gates.matmul(x, params["W"]), params["b"])
    return s, {"h": gates.sigmoid(s), "e": gates.sum(gates.exp(x), 1)}


def tree_ref(params, x):
    s = x @ params["W"] + params["b"][None, :]
    return s, {"h": 1 / (1 + jnp.exp(-s)), "e": jnp.sum(jnp.exp(x), axis=1)}


@pytest.fixture(scope="module")
def tree_args():
    rng = np.random.default_rng(0)
    params = {"W": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=2))}
    return params, jnp.asarray(rng.normal(size=(4, 3)))


@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (1, 0)], ids=str)
def test_jacobian_on_pytrees_matches_jax(tree_args, argnums):
    """jax.jacrev's layout (out-tree of in-trees); chunked == unchunked == JAX."""

    @jax.jit
    def jacobians(params, x):
        return {
            "rev": jaxprop.reverse.jacobian(tree_fn, argnums)(params, x),
            "rev_chunked": jaxprop.reverse.jacobian(tree_fn, argnums, chunk_size=5)(params, x),
            "fwd": jaxprop.forward.jacobian(tree_fn, argnums)(params, x),
            "fwd_chunked": jaxprop.forward.jacobian(tree_fn, argnums, chunk_size=3)(params, x),
            "jacrev": jax.jacrev(tree_ref, argnums)(params, x),
            "jacfwd": jax.jacfwd(tree_ref, argnums)(params, x),
        }

    r = jacobians(*tree_args)
    chex.assert_trees_all_equal_structs(*r.values())
    chex.assert_trees_all_close(*r.values(), rtol=RTOL, atol=ATOL)


def test_chunked_jacobian_equals_the_unchunked_one(tree_args):
    """Chunking only changes how many basis vectors run together, not the result."""

    @jax.jit
    def jacobians(params, x):
        return [mode.jacobian(tree_fn, (0, 1), chunk_size=chunk)(params, x)
                for mode in MODES.values() for chunk in (None, 1, 7, 1000)]

    chex.assert_trees_all_close(*jacobians(*tree_args), rtol=RTOL, atol=ATOL)


def _objective_problem():
    f = jaxprop.objective(models.two_layer_scores, losses.softmax_loss, reg=0.1)
    params = models.two_layer_init(jax.random.PRNGKey(0), 3, 4, 2, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(5, 3)))
    return f, params, x, jnp.asarray(rng.integers(0, 2, 5), jnp.int32)


def test_forward_grad_chunk_sizes_agree():
    """One JVP per parameter element (3*4+4+4*2+2 = 26), in chunks of 1, 7 or all at once."""
    f, params, x, y = _objective_problem()

    @jax.jit
    def grads(params, x, y):
        return [jaxprop.forward.grad(f, chunk_size=c)(params, x, y) for c in (1, 7, None)] + [
            jaxprop.reverse.grad(f)(params, x, y)]

    ones, sevens, whole, rev = grads(params, x, y)
    chex.assert_trees_all_close(ones, sevens, whole, rev, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_value_and_grad_argnums_tuple_and_negative(mode):
    f, params, x, y = _objective_problem()
    m = MODES[mode]
    both = jax.jit(lambda *a: (m.value_and_grad(f, (0, -2))(*a),
                               jax.value_and_grad(f, (0, 1))(*a)))
    (value, (g_p, g_x)), (ref_value, (r_p, r_x)) = both(params, x, y)
    chex.assert_trees_all_close((value, g_p, g_x), (ref_value, r_p, r_x), rtol=RTOL, atol=ATOL)


def test_forward_linearize_reuses_one_forward_pass():
    x = jnp.array([0.5, -1.0])
    out, f_jvp = jaxprop.forward.linearize(gates.sigmoid, x)
    s = jax.nn.sigmoid(x)
    chex.assert_trees_all_close(out, s, rtol=RTOL)
    chex.assert_trees_all_close(f_jvp(jnp.ones(2)), s * (1 - s), rtol=RTOL)


def test_reverse_vjp_of_pytree_output():
    x = jnp.array([1.0, 2.0])
    out, pullback = jaxprop.reverse.vjp(gates.copy, x)
    chex.assert_trees_all_close(out, (x, x), atol=0)
    chex.assert_trees_all_close(pullback((jnp.array([1.0, 2.0]), jnp.array([10.0, 20.0]))),
                                (jnp.array([11.0, 22.0]),), atol=0)


def test_forward_jvp_names_a_tangent_that_does_not_match_its_primal():
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=r"jaxprop.forward.jvp: a tangent of shape \(4,\) for "
                                         r"primal 0 of shape \(3,\)"):
        jaxprop.forward.jvp(gates.sigmoid, (x,), (jnp.ones(4),))
    with pytest.raises(TypeError, match="jaxprop.forward.jvp_from_vjp: a tangent of dtype int32"):
        jaxprop.forward.jvp_from_vjp(gates.sigmoid, (x,), (jnp.ones(3, jnp.int32),))
    with pytest.raises(ValueError, match="jaxprop.forward.jvp: got 1 primals but 2 tangents"):
        jaxprop.forward.jvp(gates.sigmoid, (x,), (x, x))


def test_every_driver_differentiates_through_the_core(monkeypatch):
    """reverse, forward, the explainer's capture and compare's pipelines all call
    ``wiring.pullback`` or ``wiring.push_forward``: nothing re-implements them."""
    from jaxprop import wiring
    from jaxprop.compare import jacobian_pipelines

    calls = []

    def counting(name, real):
        def counted(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return counted

    for name in ("pullback", "push_forward"):
        monkeypatch.setattr(wiring, name, counting(name, getattr(wiring, name)))

    def used(run) -> set:
        calls.clear()
        run(lambda x: gates.sum(gates.sigmoid(x)))  # a new f each time: no cached driver
        return set(calls)

    x = jnp.array([0.5, -1.0])
    pull, push = {"pullback"}, {"push_forward"}
    assert used(lambda f: jaxprop.reverse.grad(f)(x)) == pull
    assert used(lambda f: jaxprop.reverse.vjp(f, x)[1](1.0)) == pull
    assert used(lambda f: jaxprop.reverse.jacobian(f)(x)) == pull
    assert used(lambda f: jaxprop.forward.grad(f)(x)) == push
    assert used(lambda f: jaxprop.forward.jvp(f, (x,), (x,))) == push
    assert used(lambda f: jaxprop.forward.linearize(f, x)[1](x)) == push
    assert used(lambda f: jaxprop.forward.jacobian(f)(x)) == push
    assert used(lambda f: jaxprop.forward.jvp_from_vjp(f, (x,), (x,))) == pull
    assert used(lambda f: jaxprop.explain(f, x)) == pull
    assert used(lambda f: jaxprop.explain(f, x, mode="forward")) == push
    for name, jacobian in jacobian_pipelines(gates.sigmoid, jax.nn.sigmoid).items():
        calls.clear()
        jacobian(x)
        want = set() if name.endswith("-jax") else push if name == "forward-ours" else pull
        assert set(calls) == want, name


# ---------------------------------------------------------------------- tracing and caching


def _counted(fn):
    """fn, with a count of how many times it is traced (called with tracers)."""
    calls = {"traces": 0}

    def wrapped(*args):
        calls["traces"] += any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(args))
        return fn(*args)

    return wrapped, calls


@pytest.mark.parametrize("mode", MODES)
def test_grad_does_not_retrace_on_second_call(mode):
    """A second call with the same shapes reuses the compiled pipeline: no new trace of f."""
    f, params, x, y = _objective_problem()
    counted, calls = _counted(f)
    grad_f = MODES[mode].grad(counted)
    grad_f(params, x, y)
    after_first = calls["traces"]
    assert after_first >= 1
    jax.block_until_ready(grad_f(params, x, y))
    jax.block_until_ready(grad_f(jax.tree.map(lambda p: p + 1, params), 2 * x, y))
    assert calls["traces"] == after_first, calls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["grad", "value_and_grad", "jacobian"])
def test_pipeline_traces_f_once(mode, kind):
    """Calling a pipeline twice with the same shapes traces f exactly once, checked by hand
    and with chex.assert_max_traces(n=1). A second trace of f inside one compilation (a
    jax.eval_shape shape check before the vjp/linearize) doubles trace time for a big model.
    """
    f, params, x, y = _objective_problem()
    counted, calls = _counted(f)
    pipeline_f = getattr(MODES[mode], kind)(counted)
    jax.block_until_ready(pipeline_f(params, x, y))
    jax.block_until_ready(pipeline_f(params, x, y))
    assert calls["traces"] == 1, (
        f"jaxprop.{mode}.{kind} traced f {calls['traces']} times for two calls with the same "
        "shapes; expected 1 (the shape/budget check traces f with jax.eval_shape, then "
        "vjp/linearize traces it again)"
    )
    chex.clear_trace_counter()
    pipeline_f = getattr(MODES[mode], kind)(chex.assert_max_traces(f, n=1))
    jax.block_until_ready(pipeline_f(params, x, y))
    jax.block_until_ready(pipeline_f(params, x, y))


def test_pipeline_context_is_in_the_jit_cache_key():
    """A function jitted by the user is traced once per wiring, never reused across them."""
    counted, calls = _counted(lambda x: gates.sum(gates.exp(x)))
    jitted = jax.jit(counted)
    x = jnp.arange(3.0)
    traces = []
    for pipeline in ("jvp", "vjp", "jvp", "vjp"):
        with jaxprop.rule_set(pipeline):
            jax.block_until_ready(jitted(x))
        traces.append(calls["traces"])
    assert traces == [1, 2, 2, 2], traces
    # And the cached programs really differ: under "vjp" the gates are custom_vjp, which
    # refuses forward mode; under "jvp" forward mode works.
    with jaxprop.rule_set("vjp"):
        with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
            jax.jvp(jitted, (x,), (x,))
    chex.assert_trees_all_close(jax.jvp(jitted, (x,), (x,))[1], jnp.sum(jnp.exp(x) * x),
                                rtol=RTOL)


def test_observing_is_in_the_jit_cache_key_too():
    """Each observe block sees the gates of a function compiled before: the observers are
    part of jit's cache key, so the observed call is traced again."""
    counted, calls = _counted(lambda x: gates.sum(gates.exp(x)))
    jitted = jax.jit(counted)
    x = jnp.arange(3.0)
    jax.block_until_ready(jitted(x))
    gates_seen = []
    for pipeline in ("jvp", "vjp", "jvp", "vjp"):
        events = []
        with jaxprop.rule_set(pipeline), jaxprop.observe(events.append):
            jax.block_until_ready(jitted(x))
        gates_seen.append(len(events))
    assert gates_seen == [2, 2, 2, 2], gates_seen
    jax.block_until_ready(jitted(x))  # unobserved again: the first program, not retraced
    assert calls["traces"] == 5, calls


def test_current_rule_set_and_unknown_rule_set():
    assert jaxprop.current_rule_set() == "jvp"
    with jaxprop.rule_set("vjp"):
        assert jaxprop.current_rule_set() == "vjp"
    assert jaxprop.current_rule_set() == "jvp"
    with pytest.raises(ValueError,
                       match=r"unknown rule set 'rev'; expected one of \('jvp', 'vjp'\)"):
        with jaxprop.rule_set("rev"):
            pass


def test_pipelines_return_jitted_functions():
    f = jaxprop.objective(models.linear_scores, losses.svm_loss, reg=0.1)
    for mode in MODES.values():
        for build in (mode.grad, mode.value_and_grad, mode.jacobian):
            assert hasattr(build(f), "lower"), build  # a jax.jit-wrapped function
