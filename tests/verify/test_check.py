"""``jaxprop.check``: a correct gate passes, each broken one fails the check that catches it.

The broken gates are the mistakes a student makes writing tanh by hand: a VJP rule 2x too
large (which ``jax.test_util.check_grads`` alone does not see), a JVP rule missing its local
gradient, a JVP rule that is not linear in its tangent, a VJP rule that returns the wrong
shape. The report's numbers are re-derived by hand from the directions it reports.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxprop
from jaxprop import gates
from jaxprop.cli import main
from jaxprop.gate import SCALED, Gate
from jaxprop.verify import CHECKS

X = jnp.array([0.3, -1.2, 2.0, 0.05])
NO_CHECK_GRADS = [k for k in CHECKS if not k.startswith("check_grads")]
"""Tests about one check run the fast ones; check_grads (many small compiles) runs where
a test is about it or about the whole battery."""


def _tanh_forward(x):
    t = jnp.tanh(x)
    return t, t


def tanh_gate(vjp=None, jvp=None, name="tanh"):
    """Tanh written from its definition: dt/dx = 1 - t^2; the rules can be swapped out."""
    return Gate(name, SCALED, _tanh_forward,
                vjp=(vjp or (lambda t, t_bar: t_bar * (1 - t * t)),),
                jvp=(jvp or (lambda t, x_dot: (1 - t * t) * x_dot),),
                local=("1-t^2",), output="t")


BROKEN = {
    "vjp_twice": (dict(vjp=lambda t, t_bar: 2 * t_bar * (1 - t * t)),
                  {"fd_vjp", "adjoint", "autodiff_vjp", "check_grads_vjp"}),
    "jvp_missing_term": (dict(jvp=lambda t, x_dot: x_dot),
                         {"fd_jvp", "adjoint", "autodiff_jvp", "check_grads_jvp"}),
    "jvp_nonlinear": (dict(jvp=lambda t, x_dot: (1 - t * t) * x_dot * x_dot), {"linear"}),
    "vjp_wrong_shape": (dict(vjp=lambda t, t_bar: jnp.sum(t_bar * (1 - t * t))), {"shapes"}),
}


def test_a_correct_tanh_gate_passes():
    report = jaxprop.check(tanh_gate(), X)
    assert report.ok, str(report)
    ran = {r.key: r.status for r in report.rows}
    assert [r.key for r in report.rows] == list(CHECKS)
    for key in ("shapes", "fd_vjp", "fd_jvp", "adjoint", "autodiff_vjp", "autodiff_jvp",
                "check_grads_jvp", "check_grads_vjp", "rule_ran", "linear", "kinks", "scales"):
        assert ran[key] == "pass", (key, str(report))
    assert {ran["broadcast"], ran["reference"]} == {"n/a"}
    assert report["kinks"].note.startswith("at all 0, all 0.75 (a tie):")


@pytest.mark.parametrize("name", BROKEN)
def test_each_broken_tanh_fails_the_check_that_catches_it(name):
    rules, catchers = BROKEN[name]
    report = jaxprop.check(tanh_gate(**rules), X)
    assert not report.ok
    failed = {r.key for r in report.rows if r.status == "FAIL"}
    assert catchers <= failed, (name, str(report))
    assert report.summary().startswith("gate 'tanh':")
    for key in catchers:
        assert f"FAIL: {key}" in report.summary()


def test_the_wrong_shape_and_the_nonlinear_rule_are_named():
    shape = jaxprop.check(tanh_gate(**BROKEN["vjp_wrong_shape"][0]), X,
                          checks=["shapes"])["shapes"]
    assert shape.where == "x" and "returns float64[], expected float64[4]" in shape.note
    linear = jaxprop.check(tanh_gate(**BROKEN["jvp_nonlinear"][0]), X,
                           checks=["linear"])["linear"]
    assert "not linear in its tangent" in linear.note and "'mul'" in linear.note


def test_check_grads_alone_misses_the_doubled_vjp_rule():
    # Outside jaxprop.rule_set("vjp"), jax.grad transposes the JVP rule: the broken VJP
    # rule never runs. This is why the battery runs check_grads under each rule set.
    gate = tanh_gate(**BROKEN["vjp_twice"][0])
    check_grads(gate, (X,), order=2, modes=("fwd", "rev"), atol=1e-7, rtol=1e-6, eps=1e-5)
    with jaxprop.rule_set("vjp"), pytest.raises(AssertionError):
        check_grads(gate, (X,), order=1, modes=("rev",), atol=1e-7, rtol=1e-6, eps=1e-5)
    report = jaxprop.check(gate, X)
    assert report["check_grads_jvp"].status == "pass"
    assert report["check_grads_vjp"].status == "FAIL"


def test_the_report_numbers_can_be_rederived_by_hand():
    report = jaxprop.check(tanh_gate(**BROKEN["vjp_twice"][0]), X)
    x, t = np.asarray(X), np.tanh(np.asarray(X))
    local = 1 - t**2  # the true dt/dx
    # fd_vjp: our rule gives 2 local u, the finite differences local u; the worst element
    # (furthest over atol + rtol |expected|) is the one with the largest |local u|.
    row = report["fd_vjp"]
    u = np.asarray(row.directions["u"])
    k = int(np.argmax(np.abs(local * u)))
    assert row.where == f"x[{k}]"
    np.testing.assert_allclose(row.got, 2 * local[k] * u[k], rtol=1e-12)
    np.testing.assert_allclose(row.expected, local[k] * u[k], rtol=1e-8)
    np.testing.assert_allclose(row.abs_error, abs(local[k] * u[k]), rtol=1e-8)
    np.testing.assert_allclose(row.rel_error, 1.0, rtol=1e-8)
    # adjoint: <u, J v> by the JVP rule = sum(u local v); <J^T u, v> by the VJP rule twice it.
    row = report["adjoint"]
    v = np.asarray(row.directions["v[x]"])
    lhs = float(np.sum(u * local * v))
    np.testing.assert_allclose(row.got, lhs, rtol=1e-12)
    np.testing.assert_allclose(row.expected, 2 * lhs, rtol=1e-12)
    np.testing.assert_allclose(row.abs_error, abs(lhs), rtol=1e-12)
    np.testing.assert_allclose(row.rel_error, 0.5, rtol=1e-12)
    assert x.shape == (4,)


def test_kinks_pass_for_the_lectures_conventions_and_fail_a_split_tie():
    assert jaxprop.check(gates.relu, jnp.array([-1.0, 2.0, 0.5]),
                         kinks=[jnp.array([0.0, 1.0, -1.0])], checks=NO_CHECK_GRADS).ok
    a, b = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
    tie = (jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]))
    report = jaxprop.check(gates.maximum, a, b, kinks=[tie], checks=NO_CHECK_GRADS)
    assert report.ok and report["kinks"].status == "pass", str(report)

    def split_forward(x, y):
        return jnp.maximum(x, y), (x, y)

    def half(x, y, mine):  # jnp.maximum's convention: a tie splits the gradient in half
        return jnp.where(x == y, 0.5, jnp.where(mine, 1.0, 0.0))

    split = Gate("max", "router", split_forward,
                 vjp=(lambda r, z_bar: z_bar * half(*r, r[0] > r[1]),
                      lambda r, z_bar: z_bar * half(*r, r[1] > r[0])),
                 jvp=(lambda r, x_dot: x_dot * half(*r, r[0] > r[1]),
                      lambda r, y_dot: y_dot * half(*r, r[1] > r[0])), broadcast=True)
    report = jaxprop.check(split, a, b, kinks=[tie], checks=["fd_vjp", "kinks"])
    assert report["fd_vjp"].status == "pass"  # right away from the tie
    assert report["kinks"].status == "FAIL" and report["kinks"].where == "point 0: J[0, 0]"
    np.testing.assert_allclose(report["kinks"].got, 0.5)


def test_rules_that_disagree_at_the_kink_fail_it():
    def relu_forward(x):
        return jnp.maximum(x, 0.0), x

    uneven = Gate("relu", "router", relu_forward,
                  vjp=(lambda x, z_bar: jnp.where(x >= 0, z_bar, 0.0),),  # passes at 0
                  jvp=(lambda x, x_dot: jnp.where(x > 0, x_dot, 0.0),), elementwise=True)
    report = jaxprop.check(uneven, jnp.array([-1.0, 2.0]), kinks=[jnp.array([0.0, 1.0])],
                           checks=["fd_vjp", "kinks"])
    assert report["fd_vjp"].status == "pass"
    assert report["kinks"].status == "FAIL"
    assert "disagree" in report["kinks"].note


def test_broadcasting_gates_are_checked_with_broadcast_inputs():
    report = jaxprop.check(gates.GATES["mul"], jnp.ones((2, 3)), jnp.arange(6.0).reshape(2, 3),
                           checks=["broadcast"])
    row = report["broadcast"]
    assert row.status == "pass" and "4 broadcast variants" in row.note
    assert report["broadcast"].abs_error < 1e-6
    exp = jaxprop.check(gates.GATES["exp"], X, checks=["broadcast"])
    assert exp["broadcast"].status == "n/a"


def test_functions_natural_code_and_their_errors():
    def f(x, y, z):
        return (x + y) * z

    assert jaxprop.check(f, -2.0, 5.0, -4.0).ok  # the whole battery, check_grads included

    def incomplete_beta(x):  # a special function of three arguments: deliberately no gate
        return jnp.sum(jax.scipy.special.betainc(2.0, 3.0, x) * jnp.arange(3.0))

    report = jaxprop.check(incomplete_beta, jnp.array([0.3, 0.1, 0.2]), checks=NO_CHECK_GRADS)
    assert not report.ok
    assert "'regularized_incomplete_beta'" in report["fd_vjp"].note
    allowed = jaxprop.check(incomplete_beta, jnp.array([0.3, 0.1, 0.2]), allow_jax_rules=True,
                            checks=NO_CHECK_GRADS)
    assert allowed.ok, str(allowed)
    assert "JAX's rule for 1 operation" in allowed["rule_ran"].note
    assert "not probed" in allowed["kinks"].note


def test_a_reference_is_compared_too():
    def svm(s, y):
        return gates.sum(gates.relu(s - s[jnp.arange(2), y][:, None] + 1.0)) / 2

    def wrong(s, y):
        return jnp.sum(jnp.maximum(s - s[jnp.arange(2), y][:, None] + 1.0, 0)) / 3

    s, y = jnp.array([[0.2, 1.7, -0.4], [2.1, -0.3, 0.9]]), jnp.array([1, 0])
    assert jaxprop.check(svm, s, y, reference=svm,
                         checks=["reference"])["reference"].status == "pass"
    assert jaxprop.check(svm, s, y, reference=wrong,
                         checks=["reference"])["reference"].status == "FAIL"


def test_bad_input_is_named():
    with pytest.raises(TypeError, match=r"gate 'tanh' takes 1 inputs \(x\); got 2"):
        jaxprop.check(tanh_gate(), X, X)
    with pytest.raises(ValueError, match=r"unknown check\(s\) \['fd'\]; the checks are"):
        jaxprop.check(tanh_gate(), X, checks=["fd"])
    with pytest.raises(ValueError, match="no floating-point input"):
        jaxprop.check(lambda y: jnp.sum(y * 1.0), jnp.array([1, 2]))
    with pytest.raises(TypeError, match="give example inputs"):
        jaxprop.check(tanh_gate())
    with pytest.raises(TypeError, match="takes the parameters"):
        jaxprop.check(gates.GATES["sum"], jnp.ones((2, 3)))


def test_the_report_is_a_table_in_the_terminal_and_in_jupyter():
    report = jaxprop.check(tanh_gate(**BROKEN["vjp_twice"][0]), X)
    text = str(report)
    for key in CHECKS:
        assert key in text
    assert text.splitlines()[-1] == report.summary()
    assert "<table>" in report._repr_html_() and "FAIL" in report._repr_html_()
    assert repr(report).startswith("<CheckReport gate 'tanh': 6 of 12 checks pass")


@pytest.fixture
def gate_module(tmp_path, monkeypatch):
    (tmp_path / "studentgates.py").write_text(
        "import jax.numpy as jnp\n"
        "from jaxprop import Gate\n"
        "def _tanh(x):\n"
        "    t = jnp.tanh(x)\n"
        "    return t, t\n"
        "good = Gate('tanh', 'scaled local gradient', _tanh,\n"
        "            vjp=(lambda t, t_bar: t_bar * (1 - t * t),),\n"
        "            jvp=(lambda t, x_dot: (1 - t * t) * x_dot,))\n"
        "bad = Gate('tanh', 'scaled local gradient', _tanh,\n"
        "           vjp=(lambda t, t_bar: 2 * t_bar * (1 - t * t),),\n"
        "           jvp=(lambda t, x_dot: (1 - t * t) * x_dot,))\n"
        "def f(x, y):\n"
        "    return jnp.sum(jnp.tanh(x) * y)\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_exit_codes(gate_module, capsys):
    assert main(["check", "studentgates:good"]) == 0
    assert "12 of 12 checks pass" in capsys.readouterr().out
    assert main(["check", "studentgates:bad", "--args", "[[0.3, -1.2, 2.0]]"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: fd_vjp" in out and "off by" in out and "(relative 1) at x[" in out
    assert main(["check", "studentgates:f", "--args", "[[1.0, 2.0], [0.5, 3.0]]",
                 "--checks", "fd_vjp,fd_jvp,rule_ran"]) == 0
    capsys.readouterr()
    for argv, message in [
        (["check", "studentgates:missing"], "has no function 'missing'"),
        (["check", "nosuchmodule:f", "--args", "[1.0]"], "cannot import module"),
        (["check", "studentgates:f"], "give the function's example inputs with --args"),
        (["check", "studentgates:good", "--args", "[[1.0], [2.0]]"], "takes 1 inputs"),
        (["check", "studentgates:good", "--args", "not a list"], "--args: cannot parse"),
        (["check", "studentgates:good", "--diff", "x"], "--diff: expected input positions"),
        (["check", "studentgates:good", "--checks", "fd,adjoint"], "unknown check(s) ['fd']"),
        (["check", "studentgates:good", "--args", "[[1e999, 1.0]]"],
         "input 0 holds inf at [0]; finite differences need finite inputs"),
        (["check", "studentgates:bad", "--args", "[[1e999]]"], "input 0 holds inf"),
        (["check", "studentgates:good", "--kink", "[[-1e999]]"], "kink point 0, input 0 holds"),
        (["check", "studentgates:good", "--rtol", "-1"], "--rtol: expected a positive"),
        (["check", "studentgates:good", "--rtol", "nan"], "--rtol: expected a positive"),
        (["check", "studentgates:good", "--fd-atol", "0"], "--fd-atol: expected a positive"),
        (["check", "studentgates:f", "--args", "[[1.0, 2.0]]"],
         "check: f(x, y) cannot take 1 input(s): missing a required argument: 'y'"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, (argv, err)


def test_jax_grad_of_a_checked_gate_still_works():
    g = tanh_gate()
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(g(x)))(X), 1 - np.tanh(X) ** 2,
                               rtol=1e-12)


def test_an_adjoint_test_with_both_sides_zero_is_not_called_a_pass():
    """relu at negative inputs: J = 0, so <u, J v> = <J^T u, v> = 0 whatever the rules say."""
    report = jaxprop.check(gates.relu, -jnp.abs(X) - 0.1, checks=["adjoint"])
    assert report["adjoint"].status == "n/a" and "both sides are 0" in report["adjoint"].note
    assert jaxprop.check(gates.relu, X, checks=["adjoint"])["adjoint"].status == "pass"


@pytest.mark.parametrize("fn, args, kink", [
    (gates.minimum, (jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])),
     (jnp.array([1.0, 2.0]), jnp.array([1.0, 5.0]))),
    (gates.abs, (jnp.array([1.0, -2.0]),), jnp.array([0.0, 1.0])),
    (lambda x: jnp.max(x), (jnp.array([1.0, -2.0, 3.0]),), jnp.array([3.0, -2.0, 3.0])),
    (lambda x: jnp.min(x, axis=1), (jnp.array([[1.0, -2.0], [0.0, 4.0]]),),
     jnp.array([[1.0, 1.0], [2.0, 4.0]])),
    (lambda x, y: jnp.where(x > y, x, y), (jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])),
     (jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]))),
], ids=["minimum_tie", "abs_at_0", "reduce_max_tie", "reduce_min_tie", "select_tie"])
def test_the_other_routers_take_one_side_at_their_kinks(fn, args, kink):
    """Ties and the kink of |x|: both rule sets give the same Jacobian, a one-sided one."""
    report = jaxprop.check(fn, *args, kinks=[kink], checks=["fd_vjp", "kinks", "rule_ran"])
    assert report.ok and report["kinks"].status == "pass", str(report)
    assert jaxprop.reverse.grad(lambda x: jnp.sum(gates.abs(x)))(jnp.zeros(2)).tolist() == \
        [1.0, 1.0]


# ------------------------------------------------------------------ what the probes catch


def _leaky_forward(x):
    return jnp.where(x > 0, x, 0.01 * x), x


def leaky_relu(at_zero=0.01):
    """Leaky ReLU whose two rules take ``at_zero`` as the slope at 0: 1 or 0.01 (one side)
    is right; anything else is wrong only at 0."""
    def slope(x):
        return jnp.where(x > 0, 1.0, jnp.where(x < 0, 0.01, at_zero))

    return Gate("leaky_relu", "router", _leaky_forward,
                vjp=(lambda x, z_bar: z_bar * slope(x),),
                jvp=(lambda x, x_dot: x_dot * slope(x),), elementwise=True)


def test_a_rule_wrong_only_at_zero_fails_by_default():
    x = jnp.array([-1.0, 2.0, 0.5])
    assert jaxprop.check(leaky_relu(), x, checks=NO_CHECK_GRADS).ok
    report = jaxprop.check(leaky_relu(at_zero=0.5), x, checks=NO_CHECK_GRADS)
    assert report["fd_vjp"].status == "pass"  # right away from 0
    assert report["kinks"].status == "FAIL", str(report)
    assert report["kinks"].where == "all 0: J[0, 0]" and report["kinks"].got == 0.5
    off = jaxprop.check(leaky_relu(at_zero=0.5), x, probes=False, checks=NO_CHECK_GRADS)
    assert off.ok and off["kinks"].status == "n/a", str(off)


def _both_forward(x, y):
    return jnp.minimum(x, y), (x, y)


MIN_TO_BOTH = Gate("minimum", "router", _both_forward,  # a tie passes the gradient to both
                   vjp=(lambda r, z_bar: z_bar * (r[0] <= r[1]),
                        lambda r, z_bar: z_bar * (r[1] <= r[0])),
                   jvp=(lambda r, x_dot: x_dot * (r[0] <= r[1]),
                        lambda r, y_dot: y_dot * (r[1] <= r[0])), broadcast=True)


def test_a_tie_passed_to_both_inputs_fails_along_the_joint_direction():
    """Each Jacobian entry alone is a one-sided derivative of min at a tie; only the
    derivative along (1, 1) is wrong: grad(sum(min(x, x))) = 2 instead of 1."""
    a, b = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
    report = jaxprop.check(MIN_TO_BOTH, a, b, checks=["fd_vjp", "kinks"])
    assert report["fd_vjp"].status == "pass"
    assert report["kinks"].status == "FAIL", str(report)
    assert report["kinks"].where == "all 0 (a tie): J 1 (joint direction), z[0]" or \
        report["kinks"].where.endswith("J 1 (joint direction), z[0]"), report["kinks"].where
    np.testing.assert_allclose([report["kinks"].got, report["kinks"].expected], [2.0, 1.0],
                               rtol=1e-6)
    same = jaxprop.check(lambda x: MIN_TO_BOTH(x, x), a, checks=["fd_vjp"])
    assert same["fd_vjp"].status == "FAIL"  # min(x, x) = x: smooth, and the rule gives 2
    assert jaxprop.check(gates.minimum, a, b, checks=NO_CHECK_GRADS).ok
    assert jaxprop.check(gates.maximum, a, b, checks=NO_CHECK_GRADS).ok
    assert jaxprop.check(lambda x: jnp.minimum(x, x), a, checks=NO_CHECK_GRADS).ok


def _sqrt_forward(x):
    s = jnp.sqrt(x)
    return s, s


def sqrt_gate(eps=0.0):
    """sqrt; ``eps`` in the VJP rule's denominator makes it wrong only for small inputs."""
    return Gate("sqrt", "scaled local gradient", _sqrt_forward,
                vjp=(lambda s, s_bar: s_bar / (2 * s + eps),),
                jvp=(lambda s, x_dot: x_dot / (2 * s),))


def test_a_rule_wrong_only_for_small_inputs_fails_the_scales_check():
    x = jnp.array([0.6, 1.2, 1.9])
    assert jaxprop.check(sqrt_gate(), x, checks=NO_CHECK_GRADS).ok
    report = jaxprop.check(sqrt_gate(1e-7), x, checks=NO_CHECK_GRADS)
    assert {r.key for r in report.failed} == {"scales"}, str(report)
    # found at the smallest inputs, in J^T u (the VJP rule is the wrong one)
    where = report["scales"].where
    assert where.startswith("x 1e-08: ") and "J^T u" in where, where
    assert "left out" in report["kinks"].note and "all 0" in report["kinks"].note  # sqrt(-h)


def test_a_function_that_changes_dtype_is_checked():
    x64 = jnp.array([0.3, -1.2, 2.0])
    report = jaxprop.check(lambda x: x.astype(jnp.float32) * 2.0, x64)
    assert report.ok, str(report)
    assert report["fd_vjp"].status == "pass" and "h = 0.011" in report["fd_vjp"].note
    wrong = jaxprop.check(lambda x: gates.mul(x.astype(jnp.float32), tanh_gate(
        **BROKEN["vjp_twice"][0])(x).astype(jnp.float32)), x64, checks=NO_CHECK_GRADS)
    assert wrong["fd_vjp"].status == "FAIL", str(wrong)


def test_inputs_that_are_not_finite_and_bad_tolerances_are_refused():
    with pytest.raises(ValueError, match=r"check: input 0 holds inf at \[0\]; finite "):
        jaxprop.check(tanh_gate(), jnp.array([1e999, 1.0]))
    with pytest.raises(ValueError, match=r"check: kink point 0, input 0 holds nan"):
        jaxprop.check(gates.relu, X, kinks=[jnp.array([jnp.nan, 0.0, 1.0, 2.0])])
    for bad in (dict(rtol=-1.0), dict(rtol=float("nan")), dict(fd_atol=0.0),
                dict(fd_step=float("inf"))):
        with pytest.raises(ValueError, match=f"check: {next(iter(bad))} must be a positive"):
            jaxprop.check(tanh_gate(), X, **bad)

    def f(x, n):
        return jnp.sum(x) * n

    with pytest.raises(TypeError, match=r"check: f\(x, n\) cannot take 1 input\(s\): missing"):
        jaxprop.check(f, X)


def test_finite_differences_that_cannot_judge_say_not_applicable():
    over = jaxprop.check(gates.exp, jnp.array([800.0, 1.0]), checks=NO_CHECK_GRADS)
    for key in ("fd_vjp", "fd_jvp"):
        assert over[key].status == "n/a" and "not finite" in over[key].note, str(over)
    edge = jaxprop.check(gates.exp, jnp.array([709.78, 1.0]), checks=["fd_vjp", "fd_jvp"])
    assert {r.status for r in edge.rows} == {"n/a"} and "overflows" in edge["fd_vjp"].note
    offset = jaxprop.check(lambda x: tanh_gate(**BROKEN["vjp_twice"][0])(x) + 1e20, X,
                           checks=["fd_vjp", "fd_jvp", "check_grads_vjp", "scales"])
    assert offset["fd_vjp"].status == "n/a" and "cannot resolve" in offset["fd_vjp"].note
    assert offset["scales"].status == "n/a", str(offset)
    assert offset["check_grads_vjp"].status == "n/a"  # never a pass
