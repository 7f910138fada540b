"""The elementwise gates of trig.py, special.py and piecewise.py: second and third derivatives
through our own rules, the real-world functions built on them (the exact GELU of BERT,
trigonometry), and their conventions (clamp's ties, polygamma's order, igamma's shape).

The battery (tests/gates/test_gates.py) runs their cases in tests/cases.py like every gate's.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ATOL, ELEMENTWISE_CASES, RTOL, vdot

import jaxprop
from jaxprop import gates
from jaxprop.tracer import NoGateError

pytestmark = pytest.mark.slow  # these gates' own tests run in the slow job (.ci/run)

SECOND_ORDER_DIFF = {"igamma": (1,)}
"""The inputs differentiated twice and thrice: igamma's derivative in a is JAX's
igamma_grad_a, which has no derivative (test_igamma_second_derivative_in_a_is_refused);
igammac's case in a (igammac_a) is left out for the same reason."""

HIGHER_ORDER = [c for c in ELEMENTWISE_CASES if c.name != "igammac_a"]
THIRD_ORDER = [c for c in HIGHER_ORDER if c.name != "clamp_const"]  # one per gate


PIECEWISE_LINEAR = {"rem", "clamp", "clamp_const", "reduce_precision"}
"""Gates whose own second and third derivatives are 0: a sine after them makes derivatives
of their rules that are there to get wrong."""


def _scalar(case, fn):
    """``(s, dyn)``: a random weighting of fn's outputs (their sines for PIECEWISE_LINEAR),
    as a scalar function of the inputs differentiated (SECOND_ORDER_DIFF's, else the
    case's)."""
    args = case.args()
    diff = SECOND_ORDER_DIFF.get(case.name, case.diff)
    weights = jnp.asarray(np.random.default_rng(7).normal(
        size=jax.eval_shape(case.fn, *args).shape))

    def s(*dyn):
        full = list(args)
        for i, a in zip(diff, dyn, strict=True):
            full[i] = a
        out = fn(*full)
        return jnp.sum((jnp.sin(out) if case.name in PIECEWISE_LINEAR else out) * weights)

    return s, tuple(args[i] for i in diff)


@pytest.mark.parametrize("case", HIGHER_ORDER, ids=[c.name for c in HIGHER_ORDER])
def test_hessian_runs_through_our_rules(case):
    s, dyn = _scalar(case, case.fn)
    s_ref, _ = _scalar(case, case.ref)
    argnums = tuple(range(len(dyn)))
    chex.assert_trees_all_close(jaxprop.hessian(s, argnums)(*dyn),
                                jax.hessian(s_ref, argnums)(*dyn), rtol=RTOL, atol=ATOL)


def _third(grads, s, dyn, v):
    """The gradient of D^2 s [v, v], each derivative taken by the next of ``grads``."""
    argnums = tuple(range(len(dyn)))
    grad1, grad2, grad3 = grads
    d1 = lambda *d: vdot(grad1(s, argnums)(*d), v)  # noqa: E731
    d2 = lambda *d: vdot(grad2(d1, argnums)(*d), v)  # noqa: E731
    return grad3(d2, argnums)(*dyn)


@pytest.mark.parametrize("case", THIRD_ORDER, ids=[c.name for c in THIRD_ORDER])
def test_third_derivative_runs_through_our_rules(case):
    # jaxprop of jaxprop of jaxprop: reverse, then forward over it, then reverse over that;
    # each driver traces the one inside it into gates, so a rule built from an operation
    # without a gate stops here with NoGateError.
    s, dyn = _scalar(case, case.fn)
    s_ref, _ = _scalar(case, case.ref)
    v = tuple(jnp.asarray(np.random.default_rng(3).normal(size=np.shape(d))) for d in dyn)
    ours = _third((jaxprop.reverse.grad, jaxprop.forward.grad, jaxprop.reverse.grad), s, dyn, v)
    want = _third((jax.grad, jax.grad, jax.grad), s_ref, dyn, v)
    assert vdot(want, want) > 1e-6, case.name  # a third derivative that is there to get wrong
    chex.assert_trees_all_close(ours, want, rtol=RTOL, atol=1e-10)


def test_every_elementwise_gate_has_a_third_derivative_test():
    names = {g.name for m in (gates.trig, gates.special, gates.piecewise)
             for g in vars(m).values() if isinstance(g, jaxprop.Gate)}
    assert {c.covers for c in THIRD_ORDER} == names


def gelu_bert(x):
    """The exact GELU of BERT's feed-forward block, as BERT's code writes it."""
    return 0.5 * x * (1.0 + jax.scipy.special.erf(x / jnp.sqrt(2.0)))


REAL_WORLD = {
    "gelu_bert": lambda x: jnp.sum(gelu_bert(x) ** 2),
    "gelu_jax_nn_exact": lambda x: jnp.sum(jax.nn.gelu(x, approximate=False) * x),  # erfc
    "rotation": lambda x: jnp.sum(jnp.cos(x) * x[::-1] - jnp.sin(x) ** 2),
    "polar": lambda x: jnp.sum(jnp.arctan2(x, x[::-1] + 2.0) * jnp.hypot(x, 1.0)),
    "positional_encoding": lambda x: jnp.sum(
        jnp.sin(x[:, None] / (10000.0 ** (jnp.arange(4.0) / 4))[None, :])
        * jnp.tanh(x)[:, None]),
    "tan_asin_atanh": lambda x: jnp.sum(jnp.tan(x / 2) + jnp.arcsin(x / 2) * jnp.arctanh(x / 2)),
    "hyperbolic": lambda x: jnp.sum(jnp.sinh(x) / jnp.cosh(x) + jnp.arcsinh(x)),
    "log_normal_cdf": lambda x: jnp.sum(jnp.log(jax.scipy.special.ndtr(x))),
}


@pytest.mark.parametrize("name", REAL_WORLD)
def test_real_world_functions_get_jax_grads_gradients(name):
    f = REAL_WORLD[name]
    x = jnp.array([-1.3, -0.4, 0.2, 0.9, 1.7])
    want = jax.grad(f)(x)
    for grad in (jaxprop.reverse.grad(f), jaxprop.forward.grad(f), jax.grad(jaxprop.gated(f))):
        chex.assert_trees_all_close(grad(x), want, rtol=RTOL, atol=ATOL)
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(jaxprop.reverse.grad(f))(x)
    assert {e.kind for e in events} == {"forward", "vjp"}  # our gates, our rules, nothing else


def test_gelu_runs_the_erf_and_erfc_gates():
    x = jnp.array([-1.0, 0.5])
    seen = set()
    with jaxprop.observe(lambda e: seen.add(e.gate.name)):
        jaxprop.reverse.grad(REAL_WORLD["gelu_bert"])(x)
        jaxprop.reverse.grad(REAL_WORLD["gelu_jax_nn_exact"])(x)
    assert {"erf", "erfc"} <= seen


def _clamp_grads(lo, x, hi):
    f = lambda lo, x, hi: jnp.sum(lax_clamp(lo, x, hi) * jnp.array([1.0, 2.0, 3.0, 4.0]))  # noqa: E731
    return {name: grad(f, (0, 1, 2))(lo, x, hi) for name, grad in
            (("reverse", jaxprop.reverse.grad), ("forward", jaxprop.forward.grad),
             ("gated", lambda f, a: jax.grad(jaxprop.gated(f), a)))}


def lax_clamp(lo, x, hi):
    return jax.lax.clamp(lo, x, hi)


def test_clamp_routes_a_tie_to_x_where_jax_routes_it_nowhere():
    lo, hi = jnp.array([0.0, 0.0, 0.0, 0.0]), jnp.array([1.0, 1.0, 1.0, 1.0])
    x = jnp.array([-0.5, 0.0, 1.0, 1.5])  # below lo, tied with lo, tied with hi, above hi
    for mode, (lo_bar, x_bar, hi_bar) in _clamp_grads(lo, x, hi).items():
        np.testing.assert_array_equal(lo_bar, [1.0, 0, 0, 0], err_msg=mode)
        np.testing.assert_array_equal(x_bar, [0, 2.0, 3.0, 0], err_msg=mode)
        np.testing.assert_array_equal(hi_bar, [0, 0, 0, 4.0], err_msg=mode)
    # JAX's own rule loses the gradient at the ties (nobody gets it); ours keeps it, as the
    # max and min gates do.
    f = lambda lo, x, hi: jnp.sum(lax_clamp(lo, x, hi) * jnp.array([1.0, 2.0, 3.0, 4.0]))  # noqa: E731
    _, x_bar, _ = jax.grad(f, (0, 1, 2))(lo, x, hi)
    np.testing.assert_array_equal(x_bar, [0, 0, 0, 0])


def test_clamp_with_lo_above_hi_gives_everything_to_hi():
    lo, x, hi = jnp.array([2.0, 2.0]), jnp.array([0.0, 3.0]), jnp.array([1.0, 1.0])
    for mode, (lo_bar, x_bar, hi_bar) in _clamp_grads(
            jnp.concatenate([lo, lo]), jnp.concatenate([x, x]),
            jnp.concatenate([hi, hi])).items():
        np.testing.assert_array_equal(hi_bar, [1.0, 2.0, 3.0, 4.0], err_msg=mode)
        np.testing.assert_array_equal(lo_bar + x_bar, jnp.zeros(4), err_msg=mode)


def test_clip_and_relu6_style_clamp_in_plain_code():
    f = lambda x: jnp.sum(jax.lax.clamp(0.0, x, 6.0) ** 2 + jnp.clip(x, -1.0, 1.0))  # noqa: E731
    x = jnp.array([-2.0, 0.5, 3.0, 7.0])
    want = jax.grad(f)(x)
    for grad in (jaxprop.reverse.grad(f), jaxprop.forward.grad(f)):
        chex.assert_trees_all_close(grad(x), want, rtol=RTOL)


def test_polygamma_order_has_no_derivative():
    n, x = jnp.array([1.0, 2.0]), jnp.array([0.7, 1.4])
    grad_x = jaxprop.reverse.grad(lambda x: jnp.sum(gates.polygamma(n, x)))(x)
    chex.assert_trees_all_close(grad_x, jax.scipy.special.polygamma(
        n.astype(jnp.int32) + 1, x), rtol=RTOL)
    assert gates.polygamma.vjp[0] is None and gates.polygamma.local[0] is None


def test_igamma_second_derivative_in_a_is_refused():
    a, x = jnp.array([0.8, 1.5]), jnp.array([1.2, 0.6])
    f = lambda a: jnp.sum(jax.scipy.special.gammainc(a, x))  # noqa: E731
    want = jax.grad(f)(a)  # the first derivative in a is JAX's igamma_grad_a, gated in igamma
    chex.assert_trees_all_close(jaxprop.reverse.grad(f)(a), want, rtol=RTOL)
    chex.assert_trees_all_close(jaxprop.forward.grad(f)(a), want, rtol=RTOL)
    with pytest.raises(NoGateError, match="igamma_grad_a.*deliberately"):
        jaxprop.hessian(f)(a)
    with pytest.raises(NotImplementedError, match="igamma_grad_a"):
        jax.hessian(f)(a)  # JAX has no rule for it either


def test_bessel_i1e_slope_at_zero_is_one_half():
    x = jnp.array([0.0, 1.0])
    f = lambda x: jnp.sum(jax.scipy.special.i1e(x))  # noqa: E731
    for grad in (jaxprop.reverse.grad(f), jaxprop.forward.grad(f)):
        chex.assert_trees_all_close(grad(x), jax.grad(f)(x), rtol=RTOL)
        assert float(grad(x)[0]) == 0.5
    assert np.all(np.isfinite(jaxprop.hessian(f)(x)))


def test_reduce_precision_passes_the_gradient_straight_through():
    f = lambda x: jnp.sum(jax.lax.reduce_precision(x, 8, 7) * x)  # noqa: E731, bfloat16's bits
    x = jnp.array([0.1, 1.0 / 3.0, 2.7])
    rounded = jax.lax.reduce_precision(x, 8, 7)
    assert not np.array_equal(rounded, x)  # the value is rounded ...
    for grad in (jaxprop.reverse.grad(f), jaxprop.forward.grad(f)):
        chex.assert_trees_all_close(grad(x), rounded + x, rtol=RTOL)  # ... its slope is 1


def test_rem_quotient_gets_no_gradient():
    x, y = jnp.array([5.3, -5.3]), jnp.array([2.0, 2.0])
    f = lambda x, y: jnp.sum(jnp.fmod(x, y))  # noqa: E731
    for grad in (jaxprop.reverse.grad(f, (0, 1)), jaxprop.forward.grad(f, (0, 1))):
        x_bar, y_bar = grad(x, y)
        np.testing.assert_allclose(x_bar, [1.0, 1.0])
        np.testing.assert_allclose(y_bar, [-2.0, 2.0])  # -trunc(x/y): -2 and +2
