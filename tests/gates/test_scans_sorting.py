"""The scans, sorts, products, dynamic updates, tiles and n-way selects (issue 19): second
order through our rules, the ties and zeros written out by hand, and plain JAX code of the
kind people write (running sums, sorting, ``jnp.median``, ``jnp.select``) differentiated by
our rules alone, in every mode.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import GATE_CASES
from jax import lax

import jaxprop
from jaxprop import gates
from jaxprop.gates import arithmetic

pytestmark = pytest.mark.slow  # these gates' own tests run in the slow job (.ci/run)

NEW = ("cumsum", "cumprod", "cumlogsumexp", "cummax", "cummin", "sort", "top_k", "prod",
       "dynamic_update_slice", "tile")
CASES = [c for c in GATE_CASES if c.covers in NEW or c.name == "select_n_three"]
W5 = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])  # weights that tell the outputs apart


def _close(got, want, what):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-9, atol=1e-10,
                                   err_msg=what)


def _scalar(fn, n_out_seed=7):
    """fn's outputs weighted and squared into one number: a Hessian with entries even where
    fn is linear."""
    def f(*args):
        out = fn(*args)
        rng = np.random.default_rng(n_out_seed)
        return sum(jnp.sum(jnp.asarray(rng.normal(size=jnp.shape(o))) * o ** 2)
                   for o in jax.tree.leaves(out))
    return f


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_second_order_runs_through_our_rules(case):
    """jaxprop.hessian (forward over reverse), reverse over reverse and forward over forward,
    every rule ours (a rule built of an ungated operation would raise NoGateError), against
    jax.hessian of the plain reference."""
    args = case.args()
    f, dyn = case.split(_scalar(case.fn), args)
    ref, _ = case.split(_scalar(case.ref), args)
    argnums = tuple(range(len(dyn)))
    want = jax.hessian(ref, argnums)(*dyn)
    _close(jaxprop.hessian(f, argnums)(*dyn), want, "jaxprop.hessian")
    _close(jaxprop.reverse.jacobian(jaxprop.reverse.grad(f, argnums), argnums)(*dyn), want,
           "reverse over reverse")
    _close(jaxprop.forward.jacobian(jaxprop.forward.grad(f, argnums), argnums)(*dyn), want,
           "forward over forward")


def every_mode(f, args, argnums=0):
    """The gradient by jaxprop.reverse, jaxprop.forward, and jax.grad of gated(f) under each
    rule set."""
    got = {"reverse": jaxprop.reverse.grad(f, argnums)(*args),
           "forward": jaxprop.forward.grad(f, argnums)(*args)}
    for rules in ("jvp", "vjp"):
        with jaxprop.rule_set(rules):
            got[f"jax.grad(gated) {rules}"] = jax.grad(jaxprop.gated(f), argnums)(*args)
    return got


def assert_every_mode_gives(f, args, expected, argnums=0):
    for mode, g in every_mode(f, args, argnums).items():
        _close(g, expected, mode)


# ------------------------------------------------------------------------ ties and zeros


@pytest.mark.parametrize("scan, reverse, x, x_bar", [
    # z = [1, 3, 3, 3, 3]: the 3 at index 1 wins, the tie at index 3 comes later
    (lax.cummax, False, [1.0, 3.0, 2.0, 3.0, 0.0], [1.0, 14.0, 0.0, 0.0, 0.0]),
    # from the end, z = [3, 3, 3, 3, 0]: the 3 at index 3 comes first in the scan
    (lax.cummax, True, [1.0, 3.0, 2.0, 3.0, 0.0], [0.0, 0.0, 0.0, 10.0, 5.0]),
    (lax.cummin, False, [2.0, 0.0, 1.0, 0.0, 3.0], [1.0, 14.0, 0.0, 0.0, 0.0]),
    (lax.cummin, True, [2.0, 0.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 10.0, 5.0]),
], ids=["cummax", "cummax_reverse", "cummin", "cummin_reverse"])
def test_a_running_tie_stays_with_the_first_in_the_scan(scan, reverse, x, x_bar):
    def f(x):
        return jnp.sum(W5 * scan(x, 0, reverse=reverse))
    x = jnp.array(x)
    assert_every_mode_gives(f, (x,), jnp.array(x_bar))
    # jax.grad splits the tie instead: by design, as jnp.maximum does
    assert not np.allclose(jax.grad(f)(x), jnp.array(x_bar))


def test_a_running_max_after_a_nan_stays_with_the_nan():
    x = jnp.array([1.0, jnp.nan, 5.0, 2.0])
    g = jaxprop.reverse.grad(lambda x: jnp.sum(W5[:4] * lax.cummax(x)))(x)
    np.testing.assert_array_equal(g, [1.0, 9.0, 0.0, 0.0])


@pytest.mark.parametrize("reverse", [False, True])
def test_cumlogsumexp_from_minus_infinity(reverse):
    """z_0 = x_0, so one -inf first gets its z's gradient, as in jax.grad. A run of -inf is a
    tie, as in a running max: the first takes the gradient of the run, the others none, and
    the finite inputs get that of the same scan without the run (jax.grad gives NaN)."""
    x = jnp.array([-jnp.inf, -jnp.inf, 0.0, 1.0])
    x = jnp.flip(x) if reverse else x
    def f(x):
        return jnp.sum(W5[:4] * lax.cumlogsumexp(x, reverse=reverse))
    one = x.at[2 if reverse else 1].set(-0.5)
    assert np.all(np.isfinite(jax.grad(f)(one)))
    assert_every_mode_gives(f, (one,), jax.grad(f)(one))
    kept = slice(0, 2) if reverse else slice(2, 4)
    def g(y):
        return jnp.sum(W5[kept] * lax.cumlogsumexp(y, reverse=reverse))
    run = jnp.array([0.0, 7.0]) if reverse else jnp.array([3.0, 0.0])  # W4 + W3, W1 + W2
    want = jnp.concatenate([jax.grad(g)(x[kept]), run] if reverse else
                           [run, jax.grad(g)(x[kept])])
    assert_every_mode_gives(f, (x,), want)


def test_a_stable_sort_keeps_the_order_of_a_tie_as_jax_does():
    x = jnp.array([2.0, 1.0, 2.0])  # sorted [1, 2, 2] from places [1, 0, 2]
    def f(x):
        return jnp.sum(W5[:3] * jnp.sort(x))
    assert_every_mode_gives(f, (x,), jnp.array([2.0, 1.0, 3.0]))
    _close(jax.grad(f)(x), jnp.array([2.0, 1.0, 3.0]), "jax.grad")


ZEROS = jnp.array([[2.0, 0.0, 3.0, 4.0],    # one zero: only it gets a gradient
                   [0.0, 5.0, 0.0, 1.0],    # two zeros: none does
                   [1.0, 2.0, 3.0, 4.0]])


def test_prod_at_one_zero_and_two_zeros_is_exact():
    w = jnp.array([1.0, 10.0, 100.0])
    def f(x):
        return jnp.sum(w * jnp.prod(x, axis=1))
    expected = jnp.array([[0.0, 24.0, 0.0, 0.0], [0.0] * 4,
                          [2400.0, 1200.0, 800.0, 600.0]])
    assert_every_mode_gives(f, (ZEROS,), expected)
    _close(jax.grad(f)(ZEROS), expected, "jax.grad")
    # second order: with two zeros, d2/dx0 dx2 is the product of the rest (5), not 0
    h = jaxprop.hessian(f)(ZEROS)
    assert h[1, 0, 1, 2] == 50.0
    _close(h, jax.hessian(f)(ZEROS), "hessian")


@pytest.mark.parametrize("reverse", [False, True])
def test_cumprod_at_zeros_is_exact(reverse):
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
    def f(x):
        return jnp.sum(w * lax.cumprod(x, 1, reverse=reverse))
    for mode, g in every_mode(f, (ZEROS,)).items():
        _close(g, jax.grad(f)(ZEROS), mode)
    _close(jaxprop.hessian(f)(ZEROS), jax.hessian(f)(ZEROS), "hessian")


def test_select_n_routes_each_case_where_it_is_picked():
    c = jnp.array([0, 1, 2, 1, 0], jnp.int32)
    a, b, d = jnp.ones(5), 2 * jnp.ones(5), 3 * jnp.ones(5)
    def f(a, b, d):
        return jnp.sum(W5 * lax.select_n(c, a, b, d))
    expected = (W5 * (c == 0), W5 * (c == 1), W5 * (c == 2))
    assert_every_mode_gives(f, (a, b, d), expected, argnums=(0, 1, 2))


def test_a_dynamic_update_slice_splits_the_gradient_at_its_window():
    x, u = jnp.zeros(5), jnp.zeros(2)
    def f(x, u):
        return jnp.sum(W5 * lax.dynamic_update_slice(x, u, (4,)))  # clamped to start 3
    assert_every_mode_gives(f, (x, u), (jnp.array([1.0, 2.0, 3.0, 0.0, 0.0]),
                                        jnp.array([4.0, 5.0])), argnums=(0, 1))


def test_a_tile_adds_the_gradients_of_its_copies():
    def f(x):
        return jnp.sum(W5[:4] * jnp.tile(x, 2))
    assert_every_mode_gives(f, (jnp.zeros(2),), jnp.array([1.0 + 3.0, 2.0 + 4.0]))


@pytest.mark.parametrize("call, message", [
    (lambda: gates.tile(jnp.ones(2), (2, 3)), "tile: reps"),
    (lambda: gates.tile(jnp.ones(2), (0,)), "tile: reps"),
    (lambda: gates.top_k(jnp.ones(3), 4), "top_k: k=4"),
    (lambda: gates.cumsum(jnp.ones(3), 1), "scan: axis 1"),
    (lambda: gates.sort(jnp.ones((2, 3)), 2), "sort: axis 2"),
    (lambda: arithmetic.select_n(jnp.zeros(3, jnp.int32)), "select_n: give at least one"),
])
def test_a_bad_argument_is_a_one_line_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------- real-world style functions

RNG = np.random.default_rng(19)
X8 = jnp.asarray(RNG.normal(size=8))
X34 = jnp.asarray(RNG.normal(size=(3, 4)))
V8 = jnp.asarray(RNG.normal(size=8))


def discounted_returns(r):
    """Reinforcement learning's returns G_t = sum_k gamma^k r_(t+k), a reverse running sum."""
    discount = 0.9 ** jnp.arange(8.0)
    g = jnp.flip(jnp.cumsum(jnp.flip(r * discount))) / discount
    return jnp.mean((g - V8) ** 2)


def cox_partial_likelihood(eta):
    """Survival analysis (times sorted): each risk set's log-sum-exp, a reverse cumlogsumexp."""
    return -jnp.sum(eta - lax.cumlogsumexp(eta, reverse=True))


def survival_curve(logits):
    """A discrete hazard model: S_t = prod_(k <= t) (1 - h_k), a running product."""
    return jnp.sum(jnp.cumprod(1.0 - jax.nn.sigmoid(logits)))


def drawdown(prices):
    """Finance: the squared distance below the running peak, a running max."""
    return jnp.sum((lax.cummax(prices) - prices) ** 2)


def trimmed_mean(x):
    """The mean without the smallest and the largest, by sorting."""
    return jnp.mean(jnp.sort(x)[1:-1])


def median_loss(x):
    return jnp.median(x ** 3) + jnp.quantile(jnp.tanh(x.reshape(2, 4) * X34[:2]), 0.3)


def top_k_softmax(x):
    """The log-sum-exp of the 3 largest scores of each row."""
    top = lax.top_k(x.reshape(2, 4) * X34[:2], 3)[0]
    return jnp.sum(jnp.log(jnp.sum(jnp.exp(top), axis=1)))


def huber_select(x):
    """A Huber-style loss by jnp.select with 3 choices (the default is one)."""
    return jnp.sum(jnp.select([x < -0.5, x > 0.5], [-x - 0.25, x - 0.25], x ** 2))


def piecewise(x):
    return jnp.sum(jnp.piecewise(x, [x < -0.5, x > 0.5],
                                 [lambda x: x ** 2, lambda x: 3 * x, lambda x: -x]))


def sorted_by_keys(x):
    """lax.sort of two operands by the first: the values move in the keys' order."""
    keys, vals = lax.sort((V8, x ** 2), num_keys=1)
    return jnp.sum(W5[:3] * vals[:3]) + jnp.sum(keys)


def integer_outputs(x):
    """argmax, argsort, all and a top-k's indices: integer and boolean, no gate needed."""
    order = jnp.argsort(x)
    return (jnp.sum(x[order[:3]] ** 2) * (jnp.argmax(x) + 1) + jnp.all(x > -10)
            + lax.top_k(x, 2)[1][0])


def written_in_place(x):
    """A window written with lax.dynamic_update_slice, a tile and a prod."""
    y = lax.dynamic_update_slice(x, jnp.tanh(lax.dynamic_slice(x, (1,), (3,))), (4,))
    return jnp.sum(jnp.tile(y, 2) ** 2) + jnp.prod(y[:4])


REAL_WORLD = [discounted_returns, cox_partial_likelihood, survival_curve, drawdown,
              trimmed_mean, median_loss, top_k_softmax, huber_select, piecewise,
              sorted_by_keys, integer_outputs, written_in_place]
UNGATED_SECOND_ORDER = {"trimmed_mean": "a slice's VJP rule pads, and pad has no gate yet",
                        "written_in_place": "y[:4] is a slice: its VJP rule pads"}


def _only_our_rules(run, kind):
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(run)()
    kinds = {e.kind for e in events}
    assert kinds == {"forward", kind}, kinds
    assert all(e.gate in gates.GATES.values() for e in events), {e.gate for e in events}
    return {e.gate.name for e in events}


@pytest.mark.parametrize("f", REAL_WORLD, ids=[f.__name__ for f in REAL_WORLD])
def test_real_world_code_gets_jax_grads_gradient_from_our_rules(f):
    x = X8
    want = jax.grad(f)(x)
    assert float(jnp.sum(want ** 2)) > 0
    for mode, g in every_mode(f, (x,)).items():
        _close(g, want, f"{f.__name__}: {mode}")
    _only_our_rules(lambda: jaxprop.reverse.grad(f)(x), "vjp")
    _only_our_rules(lambda: jaxprop.forward.grad(f)(x), "jvp")
    if f.__name__ not in UNGATED_SECOND_ORDER:
        _close(jaxprop.hessian(f)(x), jax.hessian(f)(x), f"{f.__name__}: hessian")


def test_the_real_world_functions_meet_the_new_gates():
    met = set()
    for f in REAL_WORLD:
        met |= _only_our_rules(lambda f=f: jaxprop.reverse.grad(f)(X8), "vjp")
    assert set(NEW) - {"cummin"} <= met, set(NEW) - met


def test_check_leaves_out_the_tie_probes_of_a_sort_and_says_so():
    """At a tie, a sort's middle entry moves with no input moved alone (up or down), so no
    rule could pass the kink probes there: check says it did not probe, and passes."""
    report = jaxprop.check(lambda x: jnp.sort(x ** 2), X8[:3], reference=lambda x: jnp.sort(x ** 2))
    assert report.ok, str(report)
    assert report["kinks"].status == "n/a", str(report)
    assert "sort at a tie" in report["kinks"].note, str(report)
    assert jaxprop.check(lambda x: lax.cummax(x), X8[:3]).__getitem__("kinks").status == "pass"
