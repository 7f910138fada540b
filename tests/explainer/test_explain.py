"""jaxprop.explain: the lecture's numbers, gate by gate, in both modes, and the pictures."""

import xml.etree.ElementTree as ET

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop import gates
from jaxprop.explainer import PATTERNS, examples, explain, lecture

SLIDE = 0.005  # the slides print two decimals: 0.73, -0.53, 0.37, -0.20


def _explain(name, mode):
    ex = examples.get(name)
    upstream = ex.upstream() if ex.upstream is not None else None
    return explain(ex.fn, *ex.args(), mode=mode, upstream=upstream)


@pytest.fixture(scope="module", params=["reverse", "forward"])
def mode(request):
    return request.param


_CACHE = {}


class _Traces:
    """Explains each example once per mode, when a test first asks for it."""

    def __init__(self, mode):
        self.mode = mode

    def __getitem__(self, name):
        if (name, self.mode) not in _CACHE:
            _CACHE[name, self.mode] = _explain(name, self.mode)
        return _CACHE[name, self.mode]


@pytest.fixture
def traces(mode):
    return _Traces(mode)


def _row(trace, gate, k=0):
    return [r for r in trace.rows if r.gate == gate][k]


# ---- simple: (x + y) z at (-2, 5, -4) -----------------------------------------------------------


def test_simple_gradients_and_the_distributor(traces, mode):
    trace = traces["simple"]
    chex.assert_trees_all_close(trace.output, np.asarray(-12.0))
    chex.assert_trees_all_close(trace.grads, tuple(np.asarray(g) for g in (-4.0, -4.0, 3.0)))
    add, mul = trace.rows
    assert (add.gate, add.pattern, mul.gate, mul.pattern) == (
        "add", "distributor", "mul", "switcher")
    assert add.input_names == ("x", "y") and mul.input_names == ("s1", "z")
    if mode == "reverse":
        # the add gate's upstream is -4, and it distributes -4 to both inputs
        chex.assert_trees_all_close(add.upstream, np.asarray(-4.0))
        chex.assert_trees_all_close(add.downstream, (np.asarray(-4.0), np.asarray(-4.0)))
        # the mul gate swaps: dq = upstream * z = -4, dz = upstream * q = 3
        chex.assert_trees_all_close(mul.upstream, np.asarray(1.0))
        chex.assert_trees_all_close(mul.downstream, (np.asarray(-4.0), np.asarray(3.0)))
        assert "= z = -4" in mul.local and "= s1 = 3" in mul.local
    else:
        # one tangent column per input direction (x, y, z): the Jacobian, column by column
        chex.assert_trees_all_close(add.tangent_out, np.asarray([1.0, 1.0, 0.0]))
        chex.assert_trees_all_close(mul.tangents_in[1], np.asarray([0.0, 0.0, 1.0]))
        chex.assert_trees_all_close(mul.tangent_out, np.asarray([-4.0, -4.0, 3.0]))
    if mode == "reverse":
        assert add.local == "ds1/dx = ds1/dy = 1"
    else:  # forward mode states the JVP rule, not the local gradient
        assert add.local == "s1_dot = x_dot + y_dot"
        assert mul.local == "s2_dot = s1_dot*z + s1*z_dot; z = -4; s1 = 3"


# ---- sigmoid neuron: the slide's circuit --------------------------------------------------------


def test_sigmoid_circuit_reproduces_the_slide(traces, mode):
    trace = traces["sigmoid"]
    chex.assert_trees_all_close(trace.output, np.asarray(0.73), atol=SLIDE)
    # dw0, dx0, dw1, dx1, dw2 as the slide rounds them
    chex.assert_trees_all_close(
        trace.grads, tuple(np.asarray(g) for g in (-0.20, 0.39, -0.39, -0.59, 0.20)),
        atol=SLIDE)
    assert [r.gate for r in trace.rows] == [
        "mul", "mul", "add", "add", "mul", "exp", "add", "reciprocal"]
    assert [r.pattern for r in trace.rows] == [
        "switcher", "switcher", "distributor", "distributor", "scaled local gradient",
        "scaled local gradient", "distributor", "scaled local gradient"]
    neg, exp, plus_one, recip = trace.rows[4:]
    assert (neg.symbol, plus_one.symbol, recip.symbol) == ("*-1", "+1", "1/x")
    chex.assert_trees_all_close(exp.outputs, np.asarray(0.37), atol=SLIDE)
    chex.assert_trees_all_close(recip.inputs[0], np.asarray(1.37), atol=SLIDE)
    if mode == "reverse":
        assert recip.local == "ds8/ds7 = -1/x^2 = -0.53"
        assert exp.local == "ds6/ds5 = e^x = 0.37"
        assert neg.local == "ds5/ds4 = -1"  # the constant by its value, never a letter
    else:
        assert recip.local == "s8_dot = -1/x^2 * s7_dot; -1/x^2 = -0.53"
        assert exp.local == "s6_dot = e^x * s5_dot; e^x = 0.37"
        assert neg.local == "s5_dot = -1 * s4_dot"
    if mode == "reverse":
        # 1/x gate: upstream 1.00, local -0.53, downstream -0.53
        chex.assert_trees_all_close(recip.upstream, np.asarray(1.0))
        chex.assert_trees_all_close(recip.downstream[0], np.asarray(-0.53), atol=SLIDE)
        # +1 gate passes -0.53; exp gate: upstream -0.53, downstream -0.20; *-1 gives 0.20
        chex.assert_trees_all_close(plus_one.downstream[0], np.asarray(-0.53), atol=SLIDE)
        assert plus_one.downstream[1] is None  # the constant 1 gets no gradient
        chex.assert_trees_all_close(exp.upstream, np.asarray(-0.53), atol=SLIDE)
        chex.assert_trees_all_close(exp.downstream[0], np.asarray(-0.20), atol=SLIDE)
        chex.assert_trees_all_close(neg.downstream[0], np.asarray(0.20), atol=SLIDE)
        # the mul gates: x0: [0.2] x [2] = 0.39, w0: [0.2] x [-1] = -0.20
        chex.assert_trees_all_close(trace.rows[0].upstream, np.asarray(0.20), atol=SLIDE)
    else:
        # output tangent, one entry per input direction: the gradient built by forward mode
        chex.assert_trees_all_close(recip.tangent_out, np.asarray([-0.20, 0.39, -0.39, -0.59,
                                                                    0.20]), atol=SLIDE)


def test_sigmoid_gate_local_gradient(traces):
    trace = traces["sigmoid-gate"]
    row = trace.rows[-1]
    assert (row.gate, row.pattern) == ("sigmoid", "scaled local gradient")
    assert row.local.endswith("(1-s)s = 0.20")
    chex.assert_trees_all_close(trace.output, np.asarray(0.73), atol=SLIDE)
    chex.assert_trees_all_close(trace.grads, traces["sigmoid"].grads, rtol=1e-12)


# ---- vectors and matrices -----------------------------------------------------------------------


def test_relu_vector_routes(traces, mode):
    trace = traces["relu-vector"]
    (row,) = trace.rows
    assert (row.gate, row.pattern) == ("relu", "router")
    assert "passes 2 of 4" in row.detail if mode == "reverse" else \
        "passes the tangent at 2 of 4 (where x > 0)" in row.detail
    if mode == "forward":
        assert row.local == "s1_dot = x_dot where x > 0; [x > 0] = [1, 0, 1, 0]"
    chex.assert_trees_all_close(trace.grads, (np.asarray([4.0, 0.0, 5.0, 0.0]),))
    if mode == "reverse":
        chex.assert_trees_all_close(row.upstream, np.asarray([4.0, -1.0, 5.0, 9.0]))
        chex.assert_trees_all_close(row.downstream, (np.asarray([4.0, 0.0, 5.0, 0.0]),))


def test_relu_with_all_inputs_positive_is_still_a_router():
    trace = explain(gates.relu, jnp.asarray([1.0, 2.0, 3.0]))
    assert trace.rows[0].pattern == "router"
    assert "passes 3 of 3" in trace.rows[0].detail


def test_matmul_by_dimension_analysis(traces, mode):
    trace = traces["matmul"]
    (row,) = trace.rows
    assert (row.gate, row.pattern) == ("matmul", "switcher")
    if mode == "reverse":
        assert row.local.startswith("dx = dy w^T  [2, 3] = [2, 4][4, 3]; dw = x^T dy  [3, 4]")
    else:
        assert row.local == "s1_dot = x_dot w + x w_dot  [2, 4]"
    chex.assert_trees_all_close(trace.output, np.asarray([[-1.0, -1, 2, 6], [5, 2, 11, 7]]))
    dx, dw = trace.grads
    chex.assert_trees_all_close(dx, np.asarray([[0.0, 16, -9], [-24, 9, -30]]))
    x, w = examples.get("matmul").args()
    up = examples.get("matmul").upstream()
    chex.assert_trees_all_close(dw, np.asarray(x.T @ up))
    if mode == "forward":
        chex.assert_shape(trace.output_tangent, (18, 2, 4))  # one column per x and w entry


def test_examples_state_the_lecture_numbers(traces):
    for name, ex in examples.EXAMPLES.items():
        if "grads" not in ex.expected:  # two-layer: checked against the pipeline below
            continue
        trace = traces[name]
        chex.assert_trees_all_close(trace.output, np.asarray(ex.expected["output"]),
                                    atol=SLIDE)
        want = tuple(np.asarray(g) for g in ex.expected["grads"])
        chex.assert_trees_all_close(trace.grads, want, atol=SLIDE)


# ---- tracing changes no number ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["simple", "two-layer"])
def test_explained_run_equals_the_jitted_pipeline_bitwise(traces, mode, name):
    ex = examples.get(name)
    args = ex.args()
    diff = tuple(i for i, a in enumerate(args)
                 if all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in jax.tree.leaves(a)))
    pipeline = jaxprop.reverse if mode == "reverse" else jaxprop.forward
    want = pipeline.value_and_grad(ex.fn, argnums=diff)(*args)
    trace = traces[name]
    chex.assert_trees_all_equal(trace.output, np.asarray(want[0]))
    chex.assert_trees_all_equal(tuple(trace.grads[i] for i in diff),
                                jax.tree.map(np.asarray, want[1]))
    if name == "two-layer":
        assert trace.grads[2] is None  # integer labels get no gradient


def test_explicit_tangents_give_the_jvp():
    f = lecture.simple
    args = examples.get("simple").args()
    tangents = tuple(jnp.asarray(t, dtype=args[0].dtype) for t in (1.0, 2.0, 0.5))
    trace = explain(f, *args, mode="forward", tangents=tangents)
    out, out_dot = jaxprop.forward.jvp(f, args, tangents)
    chex.assert_trees_all_equal(trace.output_tangent, np.asarray(out_dot))
    assert trace.grads is None and not trace.basis
    chex.assert_trees_all_close(trace.rows[0].tangents_in,
                                tuple(np.asarray(t) for t in tangents[:2]))


# ---- fan-out: gradients add at branches ---------------------------------------------------------


def test_implicit_fan_out_gets_an_adder_row(mode):
    def f(x, y):
        q = gates.add(x, y)
        return gates.mul(q, q)

    trace = explain(f, jnp.asarray(-2.0), jnp.asarray(5.0), mode=mode)
    branch = trace.rows[1]
    assert (branch.gate, branch.pattern, branch.synthetic) == ("branch", "adder", True)
    assert branch.input_names == ("s1",) and trace.rows[2].input_names == ("s1", "s1")
    if mode == "reverse":
        # each branch of q * q sends q = 3; they add to 6, the add gate's upstream
        chex.assert_trees_all_close(branch.upstream, (np.asarray(3.0), np.asarray(3.0)))
        chex.assert_trees_all_close(branch.downstream, (np.asarray(6.0),))
        chex.assert_trees_all_close(trace.rows[0].upstream, np.asarray(6.0))
    else:
        chex.assert_trees_all_close(trace.rows[2].tangent_out, np.asarray([6.0, 6.0]))
    chex.assert_trees_all_close(trace.grads, (np.asarray(6.0), np.asarray(6.0)))


def test_input_used_twice_adds_its_gradients():
    trace = explain(lambda x, y: gates.mul(gates.add(x, y), y), jnp.asarray(1.0),
                    jnp.asarray(2.0))
    branch = trace.rows[0]
    assert (branch.gate, branch.input_names) == ("branch", ("y",))
    chex.assert_trees_all_close(branch.upstream, (np.asarray(2.0), np.asarray(3.0)))
    chex.assert_trees_all_close(branch.downstream, (np.asarray(5.0),))
    chex.assert_trees_all_close(trace.grads[1], np.asarray(5.0))


def test_explicit_copy_gate_is_an_adder(traces, mode):
    copies = [r for r in traces["two-layer"].rows if r.gate == "copy"]
    assert len(copies) == 2 and all(r.pattern == "adder" for r in copies)
    if mode == "reverse":
        for row in copies:
            a_bar, b_bar = row.upstream
            chex.assert_trees_all_close(row.downstream[0], a_bar + b_bar, rtol=1e-12)
    # W1 also feeds the first matmul: an implicit branch before both uses
    assert [r.input_names for r in traces["two-layer"].rows if r.gate == "branch"] == [
        ("W1",), ("W2",)]


# ---- pattern labels -----------------------------------------------------------------------------


def test_pattern_labels_from_rule_and_values():
    def f(x, y):
        a = gates.maximum(x, y)  # router
        b = gates.mul(a, 2.0)  # scaled local gradient: a mul by a constant
        c = gates.add(1.0, b)  # distributor, constant first
        return gates.log(gates.mul(c, x))  # switcher, then scaled local gradient

    trace = explain(f, jnp.asarray(3.0), jnp.asarray(-1.0))
    labels = [(r.gate, r.pattern) for r in trace.rows if r.gate != "branch"]
    assert labels == [("maximum", "router"), ("mul", "scaled local gradient"),
                      ("add", "distributor"), ("mul", "switcher"),
                      ("log", "scaled local gradient")]
    assert all(r.pattern in PATTERNS for r in trace.rows)
    assert "routes all of upstream to x" in trace.rows[1].detail
    add = [r for r in trace.rows if r.gate == "add"][0]
    assert add.downstream[0] is None and add.input_names[0] == "1"


def test_a_constant_factor_is_shown_by_its_value_never_by_a_name_of_the_users(mode):
    """The slide calls the factor of a mul by a constant ``a``; so may the user's own
    argument. The row states the value, so no label can be read as the other."""
    trace = explain(lambda a, b: a * 3.0 + b * a, jnp.asarray(2.0), jnp.asarray(5.0), mode=mode)
    scaled = [r for r in trace.rows if r.gate == "mul" and r.pattern == "scaled local gradient"]
    (row,) = scaled
    assert row.input_names == ("a", "3")
    if mode == "reverse":
        assert row.local == "ds1/da = 3"
    else:
        assert row.local == "s1_dot = 3 * a_dot"
    # the switcher mul of b and a still names the user's a, and means it
    switch = [r for r in trace.rows if r.gate == "mul" and r.pattern == "switcher"][0]
    assert "a" in switch.input_names and "b" in switch.input_names
    chex.assert_trees_all_close(trace.grads, (np.asarray(8.0), np.asarray(2.0)))


def test_a_function_already_under_jax_jit_is_explained_as_the_plain_one(mode):
    def f(x, y):
        return gates.mul(gates.add(x, y), 2.0)

    args = (jnp.asarray(-2.0), jnp.asarray(5.0))
    plain, jitted = explain(f, *args, mode=mode), explain(jax.jit(f), *args, mode=mode)
    assert [r.local for r in jitted.rows] == [r.local for r in plain.rows]
    chex.assert_trees_all_equal(jitted.grads, plain.grads)


def test_gate_no_differentiated_input_reaches():
    def f(x):
        c = gates.exp(jnp.asarray(0.0))  # a constant array: no gradient flows here
        return gates.mul(x, c)

    trace = explain(f, jnp.asarray(2.0))
    assert trace.rows[0].upstream is None and "no gradient" in trace.rows[0].detail
    assert trace.rows[1].input_names == ("x", "s1")
    chex.assert_trees_all_close(trace.grads, (np.asarray(1.0),))


# ---- table and pictures -------------------------------------------------------------------------


def test_table_lists_every_row(traces, mode):
    text = str(traces["sigmoid"])
    local = "ds1/dw0 = x0 = -1" if mode == "reverse" else "s1_dot = w0_dot*x0 +"
    for word in ("reciprocal", "scaled local gradient", "-1/x^2 = -0.53", local):
        assert word in text
    assert type(traces["sigmoid"].to_table()).__name__ == "Table"
    if mode == "forward":
        assert "basis tangent per input element, in the order w0, x0, w1, x1, w2" in text


def test_render_svg_and_png(traces, mode, tmp_path):
    svg = traces["sigmoid"].render(tmp_path / "sigmoid.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    texts = "".join(root.itertext())
    # forward values above the wires, gradients (or tangent columns) below, pattern names
    below = "-0.53" if mode == "reverse" else "[1, 0, 0, 0, 0]"  # w0's tangent: e_0
    for label in ("0.73", "1.37", below, "1/x", "*-1", "scaled local gradient", "switcher"):
        assert label in texts
    png = traces["simple"].render(tmp_path / "deep" / "simple.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_render_refuses_other_formats(traces, tmp_path):
    with pytest.raises(ValueError, match=r"expected a path ending in one of \('.svg', '.png'\)"):
        traces["simple"].render(tmp_path / "simple.pdf")


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_named():
    f, args = lecture.simple, examples.get("simple").args()
    with pytest.raises(ValueError, match="unknown mode 'sideways'"):
        explain(f, *args, mode="sideways")
    with pytest.raises(ValueError, match="give f's example arguments"):
        explain(f)
    with pytest.raises(TypeError, match="f must be callable"):
        explain(3.0, *args)
    with pytest.raises(TypeError, match="cannot take the 2 arguments given"):
        explain(f, *args[:2])
    with pytest.raises(ValueError, match=r"upstream must have the shape of f's output, \(\)"):
        explain(f, *args, upstream=jnp.ones((2,)))
    with pytest.raises(ValueError, match="one entry per floating-point argument"):
        explain(f, *args, mode="forward", tangents=(1.0,))
    with pytest.raises(ValueError, match="inputs have 4 > max_basis=3"):
        explain(gates.relu, jnp.ones((4,)), mode="forward", max_basis=3)
    with pytest.raises(ValueError, match="f applied no jaxprop gate"):
        explain(lambda x: x, jnp.asarray(1.0))  # nothing to differentiate on the way
    with pytest.raises(TypeError, match="no argument is floating-point"):
        explain(lambda y: gates.exp(jnp.asarray(1.0)), jnp.asarray([1, 2]))


def test_top_level_explain_as_the_issue_spells_it():
    import jaxprop

    trace = jaxprop.explain(lecture.simple, *examples.get("simple").args())
    chex.assert_trees_all_close(trace.grads[2], np.asarray(3.0))


# ---- robustness: chunked forward mode, dead gates, stop_gradient, constant gates -----------------


def test_forward_mode_is_bitwise_the_chunked_pipeline():
    # 113 inputs: more than one chunk of jaxprop.forward.DEFAULT_CHUNK_SIZE (64)
    from jaxprop import losses, models

    f = jaxprop.objective(models.two_layer_scores, losses.softmax_loss, reg=0.1)
    params = models.two_layer_init(jax.random.PRNGKey(0), 5, 10, 3, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5), jnp.float64)
    y = jnp.asarray([0, 2, 1, 2], jnp.int32)
    n = sum(p.size for p in jax.tree.leaves(params)) + x.size
    assert jaxprop.forward.DEFAULT_CHUNK_SIZE < n <= 256
    want_v, want_g = jaxprop.forward.value_and_grad(f, (0, 1))(params, x, y)
    trace = explain(f, params, x, y, mode="forward")
    chex.assert_trees_all_equal(trace.output, np.asarray(want_v))
    chex.assert_trees_all_equal(trace.grads[:2], jax.tree.map(np.asarray, want_g))
    assert trace.grads[2] is None


def _dead(x, y):
    gates.mul(x, y)  # its output is never used
    return gates.mul(x, 3.0)


def test_a_dead_gate_is_a_row_without_gradient(mode):
    trace = explain(_dead, jnp.asarray(2.0), jnp.asarray(5.0), mode=mode)
    dead, live = [r for r in trace.rows if r.gate == "mul"]
    assert dead.input_names == ("x", "y") and live.input_names == ("x", "3")
    chex.assert_trees_all_close(dead.outputs, np.asarray(10.0))
    chex.assert_trees_all_close(trace.grads, (np.asarray(3.0), np.asarray(0.0)))
    if mode == "reverse":
        assert dead.upstream is None and dead.downstream is None
        assert "no gradient" in dead.detail and "unused" in dead.detail
        chex.assert_trees_all_close(live.downstream[0], np.asarray(3.0))
    else:  # forward mode pushes tangents through it all the same
        chex.assert_trees_all_close(dead.tangent_out, np.asarray([5.0, 2.0]))


def test_a_gate_under_stop_gradient_is_a_row_without_gradient():
    def f(x):
        a = jax.lax.stop_gradient(gates.exp(x))
        return gates.sum(gates.mul(a, x))

    x = jnp.asarray([1.0, 2.0])
    trace = explain(f, x)
    exp = _row(trace, "exp")
    assert exp.upstream is None and "no gradient" in exp.detail
    chex.assert_trees_all_close(exp.outputs, np.exp(np.asarray([1.0, 2.0])))
    want = jax.grad(lambda x: jnp.sum(jax.lax.stop_gradient(jnp.exp(x)) * x))(x)
    chex.assert_trees_all_close(trace.grads, (np.asarray(want),))


def test_a_gate_of_constants_only(mode):
    trace = explain(lambda x: gates.mul(x, gates.add(1.0, 2.0)), jnp.asarray(2.0), mode=mode)
    const = _row(trace, "add")
    assert const.input_names == ("1", "2") and "all inputs are constants" in const.detail
    assert const.upstream is None and const.downstream is None
    chex.assert_trees_all_close(const.outputs, np.asarray(3.0))
    chex.assert_trees_all_close(trace.grads, (np.asarray(3.0),))
