"""Property tests: random shapes and values; reverse == forward == JAX autodiff of the
plain-jnp reference (or, for the losses, the lecture's NumPy loops)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import strategies as S
from cases import (
    ATOL,
    GATE_CASES,
    RTOL,
    softmax_loss_naive,
    svm_loss_naive,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jaxprop
from jaxprop import gates, losses

# Small and reproducible: CI must not flake, and the suite must stay fast.
PROPERTY = settings(max_examples=15, deadline=None, derandomize=True, database=None)

DOMAINS = {"normal": S.normal_values, "positive": S.positive_values,
           "grid": lambda shape: S.grid_values(shape, 0.25),
           "unit": S.unit_values, "above_one": S.above_one_values}


def _plain_case(gate):
    """The registry's first case of ``gate`` on arrays alone (every input differentiated)."""
    for case in GATE_CASES:
        if case.covers == gate.name and len(case.diff) == gate.arity:
            return case
    raise LookupError(f"no case applies gate {gate.name!r} to arrays alone")


# Every elementwise gate of the registry, with its function, reference and input domain from
# its case: any shape, drawn by hypothesis.
UNARY = {name: (_plain_case(g).fn, _plain_case(g).ref, DOMAINS[_plain_case(g).domain])
         for name, g in gates.GATES.items() if g.elementwise and g.arity == 1}
ONE_SIDED = {"polygamma", "igammac"}  # polygamma's order n has no derivative, igammac's cases
# take one input at a time (tests/cases.py says why): tests/gates/test_elementwise.py
BINARY = {name: (_plain_case(g).fn, _plain_case(g).ref, _plain_case(g).domain)
          for name, g in gates.GATES.items()
          if g.broadcast and g.arity == 2 and name not in ONE_SIDED}
ROUTERS = {"select", "where", "clamp"}  # their conditions and clamp's bounds: drawn below


def test_property_tests_cover_every_elementwise_gate():
    elementwise = {name for name, g in gates.GATES.items() if g.elementwise}
    assert set(UNARY) | set(BINARY) | ROUTERS | ONE_SIDED == elementwise


@functools.partial(jax.jit, static_argnums=(0, 1))
def _everything(f, ref, primals, tangents, cotangent):
    """Values, JVPs (forward, jvp_from_vjp, reference) and VJPs (reverse, reference), in one
    jit: one compilation per gate and shape, reused when hypothesis repeats a shape."""
    return (
        (f(*primals), ref(*primals)),
        (jaxprop.forward.jvp(f, primals, tangents)[1],
         jaxprop.forward.jvp_from_vjp(f, primals, tangents)[1],
         jax.jvp(ref, primals, tangents)[1]),
        (jaxprop.reverse.vjp(f, *primals)[1](cotangent),
         jax.vjp(ref, *primals)[1](cotangent)),
    )


def _assert_agree(f, ref, primals, seed=0):
    rng = np.random.default_rng(seed)
    tangents = tuple(jnp.asarray(rng.normal(size=np.shape(p))) for p in primals)
    cotangent = jnp.asarray(rng.normal(size=jax.eval_shape(ref, *primals).shape))
    values, jvps, vjps = _everything(f, ref, primals, tangents, cotangent)
    chex.assert_trees_all_close(*values, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(*jvps, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(*vjps, rtol=RTOL, atol=ATOL)
    chex.assert_shape(vjps[0], [np.shape(p) for p in primals])


@PROPERTY
@given(st.data())
def test_unary_gates_any_rank(data):
    name = data.draw(st.sampled_from(sorted(UNARY)), label="gate")
    gate, ref, values = UNARY[name]
    shape = data.draw(S.shapes(0, 3), label="shape")
    x = jnp.asarray(data.draw(values(shape), label="x"))
    _assert_agree(gate, ref, (x,))


@PROPERTY
@given(st.data())
def test_broadcasting_binary_gates(data):
    name = data.draw(st.sampled_from(sorted(BINARY)), label="gate")
    gate, ref, domain = BINARY[name]
    x_shape, y_shape = data.draw(S.broadcast_pairs(), label="shapes")
    if domain == "positive":  # the divisor and the base of a power
        x = jnp.asarray(data.draw(S.positive_values(x_shape), label="x"))
        y = jnp.asarray(data.draw(S.positive_values(y_shape), label="y"))
    else:  # x on the 0.25-offset grid, y on the plain one: never equal, so no max tie
        x = jnp.asarray(data.draw(S.grid_values(x_shape, 0.25), label="x"))
        y = jnp.asarray(data.draw(S.grid_values(y_shape), label="y"))
    _assert_agree(gate, ref, (x, y))


@PROPERTY
@given(st.data())
def test_where_routes_to_the_picked_case(data):
    shape = data.draw(S.shapes(0, 3), label="shape")
    c = jnp.asarray(data.draw(hnp.arrays(np.bool_, shape), label="c"))
    x = jnp.asarray(data.draw(S.normal_values(shape), label="x"))
    y = jnp.asarray(data.draw(S.normal_values(shape), label="y"))
    _assert_agree(lambda x, y: gates.where(c, x, y), lambda x, y: jnp.where(c, x, y), (x, y))
    _assert_agree(lambda x, y: gates.select(c, y, x), lambda x, y: jnp.where(c, x, y), (x, y))


@PROPERTY
@given(st.data())
def test_clamp_routes_to_the_winner(data):
    # x on the 0.25-offset grid, the bounds on the plain one: never tied
    shape = data.draw(S.shapes(0, 3), label="shape")
    x = jnp.asarray(data.draw(S.grid_values(shape, 0.25), label="x"))
    lo = jnp.asarray(data.draw(S.grid_values(shape), label="lo"))
    hi = lo + jnp.asarray(data.draw(S.grid_values(shape, 0.0, 1, 4), label="hi - lo"))
    _assert_agree(gates.clamp, jax.lax.clamp, (lo, x, hi))


@PROPERTY
@given(st.data())
def test_python_scalar_constants(data):
    name = data.draw(st.sampled_from(["add", "mul"]), label="gate")
    gate, ref, _ = BINARY[name]
    c = data.draw(st.sampled_from([-2.0, 0.5, 3.0]), label="c")
    first = data.draw(st.booleans(), label="const_first")
    x = jnp.asarray(data.draw(S.normal_values(data.draw(S.shapes(0, 3))), label="x"))

    def f(x):
        return gate(c, x) if first else gate(x, c)

    def r(x):
        return ref(c, x) if first else ref(x, c)

    _assert_agree(f, r, (x,))


@PROPERTY
@given(st.data())
def test_sum_over_any_axes(data):
    shape = data.draw(S.shapes(1, 3), label="shape")
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), unique_by=lambda a:
                              a % len(shape), max_size=len(shape)), label="axes")
    axis = None if not axes else tuple(axes)
    x = jnp.asarray(data.draw(S.normal_values(shape), label="x"))
    _assert_agree(lambda x: gates.sum(x, axis), lambda x: jnp.sum(x, axis=axis), (x,))


@PROPERTY
@given(st.data())
def test_matmul_any_sizes(data):
    lead = data.draw(S.shapes(0, 2), label="lead")
    d, m = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    x = jnp.asarray(data.draw(S.normal_values(lead + (d,)), label="x"))
    w = jnp.asarray(data.draw(S.normal_values((d, m)), label="w"))
    _assert_agree(gates.matmul, lambda x, w: jnp.tensordot(x, w, axes=1), (x, w))


@functools.partial(jax.jit, static_argnums=0)
def _loss_modes(loss, s, y):
    return (jaxprop.reverse.value_and_grad(loss)(s, y), jaxprop.forward.grad(loss)(s, y),
            jax.grad(loss)(s, y))


@PROPERTY
@given(S.scores_and_labels(), st.sampled_from(["svm", "softmax"]))
def test_losses_match_the_lectures_loops_even_at_kinks(scores_labels, name):
    """Margins of exactly 0 occur often here; every mode agrees with the loops' `> 0`."""
    scores, labels = scores_labels
    loss = {"svm": losses.svm_loss, "softmax": losses.softmax_loss}[name]
    naive = {"svm": svm_loss_naive, "softmax": softmax_loss_naive}[name]
    want_value, want_grad = naive(scores, labels)
    (value, grad), grad_fwd, grad_jax = _loss_modes(loss, jnp.asarray(scores),
                                                   jnp.asarray(labels))
    chex.assert_trees_all_close(value, want_value, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(grad, grad_fwd, grad_jax, want_grad, rtol=RTOL, atol=ATOL)
