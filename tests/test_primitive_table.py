"""JAX's own table of differentiable primitives, in the installed jax: every one is classified.

Each primitive with a JVP or transpose rule in JAX (``ad.primitive_jvps``,
``ad.primitive_transposes``) is exactly one of:

* gated: a gate stands for it (``tracer.LIFTS``);
* no derivative: its floating-point output has none, or its values pass through, or it is a
  call the tracer opens (``tracer.NO_DERIVATIVE``, ``PASS_THROUGH``, ``CALLS``);
* not floating point: no floating-point operation at all (:data:`NOT_FLOATING_POINT`, one
  group per reason);
* not gated: deliberately out, with the reason (``jaxprop.coverage.NOT_GATED``).

A primitive in none of them fails the test, so a new JAX version is noticed. The table is
JAX's after ``import jax``, ``jaxprop`` and the modules the suite loads
(``jax.experimental.multihost_utils``, imported here so the counts do not depend on the
order the tests run in). The floating-point primitives are the table less the ones that are
not floating point; the handled ones are those gated or without a derivative. The README
states the counts.
"""

import jax
import jax.experimental.multihost_utils  # noqa: F401 - registers its primitives: a fixed table
import jax.numpy as jnp
import pytest
from jax._src.interpreters import ad

import jaxprop
from jaxprop import coverage, tracer

NOT_FLOATING_POINT: dict[str, tuple[str, frozenset[str]]] = {
    "integer and boolean operations": (
        "their values are integers or booleans (bits, argmax's index), which have no gradient",
        frozenset({"and", "or", "not", "xor", "mulhi", "shift_left", "shift_right_arithmetic",
                   "shift_right_logical", "argmax", "argmin", "bitcast_convert_type"})),
    "comparisons": ("their outputs are booleans", frozenset(
        {"eq", "ne", "lt", "le", "gt", "ge", "eq_to", "le_to", "lt_to"})),
    "random bits and keys": ("PRNG keys and raw random bits, not floating-point values", frozenset(
        {"random_bits", "random_seed", "random_split", "random_fold_in", "random_wrap",
         "random_unwrap"})),
    "collectives": ("communication between devices (psum, all_gather, ...) inside pmap or "
                    "shard_map; jaxprop's rules run on one device", frozenset(
        {"all_gather", "all_gather_invariant", "all_gather_reduced", "all_to_all",
         "ppermute", "psum", "psum_invariant", "reduce_scatter", "ragged_all_to_all",
         "pbroadcast", "pvary", "preduced", "unreduced_psum", "unreduced_reduce_scatter",
         "reduced_vary_cast_p", "vary_unreduced_cast_p", "shard_map"})),
    "sharding and placement annotations": (
        "they say where a value lives, not what it is", frozenset(
            {"sharding_constraint", "reshard", "layout_constraint", "inspect_sharding",
             "global_array_to_host_local_array", "host_local_array_to_global_array"})),
    "state references": ("mutable references and boxes (jax.ref, run_state), not values",
                         frozenset({"get", "swap", "addupdate", "new_ref", "empty_ref",
                                    "free_ref", "freeze", "accum_grad_in_ref", "run_state",
                                    "box_get", "box_set", "new_box", "new_log", "log_read",
                                    "log_extend"})),
    "callbacks and effects": ("host callbacks, foreign calls, prints and checkify's checks: "
                              "code outside JAX", frozenset(
        {"pure_callback", "io_callback", "debug_callback", "debug_print", "ffi_call",
         "check"})),
    "JAX's own machinery": (
        "markers and steps of JAX's transformations, never written in user code: the "
        "linearization's custom_lin, dead-code sinks, staging, extended dtypes, the "
        "remat and hijax internals", frozenset(
            {"custom_lin", "dce_sink", "tie", "stage", "from_edtype", "to_edtype",
             "remat_opt", "eval_jaxpr", "call_hi_primitive"})),
}
"""The primitives that are no floating-point operation, by group, with the reason."""

NO_DERIVATIVE = set(tracer.NO_DERIVATIVE) | set(tracer.PASS_THROUGH)
OPENED = (set(tracer.CALLS) - set(tracer.CUSTOM_CALLS)) | set(tracer.CONTROL_FLOW)
"""Calls, loops and branches: their bodies are traced into gates."""
GOAL = 110  # issue 19: at least 110 of the floating-point primitives handled


def jax_table() -> set[str]:
    """The names of the primitives JAX can differentiate (a JVP rule or a transpose rule)."""
    return {p.name for p in (*ad.primitive_jvps, *ad.primitive_transposes)}


def classify(name: str) -> str:
    """``gated``, ``opened``, ``no derivative``, ``not floating point``, ``not gated``, or
    ``unknown``."""
    if name in tracer.LIFTS:
        return "gated"
    if name in OPENED:
        return "opened"
    if name in NO_DERIVATIVE:
        return "no derivative"
    if any(name in names for _, names in NOT_FLOATING_POINT.values()):
        return "not floating point"
    if name in coverage.NOT_GATED:
        return "not gated"
    return "unknown"


def counts() -> dict[str, int]:
    table = jax_table()
    out = {k: 0 for k in ("gated", "opened", "no derivative", "not floating point",
                          "not gated", "unknown")}
    for name in table:
        out[classify(name)] += 1
    out["floating point"] = len(table) - out["not floating point"]
    out["handled"] = out["gated"] + out["opened"] + out["no derivative"]
    out["table"] = len(table)
    return out


def test_every_primitive_of_jax_table_is_classified():
    unknown = sorted(n for n in jax_table() if classify(n) == "unknown")
    assert not unknown, (
        f"primitives of JAX's table that jaxprop does not classify: {unknown}. Give each a "
        "gate, or list it in jaxprop.coverage.NOT_GATED with the reason, or (no "
        "floating-point operation) in this test's NOT_FLOATING_POINT")
    c = counts()
    print("\nJAX's table of differentiable primitives, as jaxprop handles them:")
    for key, value in c.items():
        print(f"  {key}: {value}")
    assert c["handled"] >= GOAL, c


def test_each_primitive_sits_in_one_class_only():
    groups = [set(tracer.LIFTS), OPENED, NO_DERIVATIVE,
              set(coverage.NOT_GATED), *(set(n) for _, n in NOT_FLOATING_POINT.values())]
    seen: dict[str, int] = {}
    for k, group in enumerate(groups):
        for name in group:
            assert name not in seen, f"{name!r} is in two classes ({seen[name]} and {k})"
            seen[name] = k
    assert all(reason.strip() for reason in coverage.NOT_GATED.values())


def test_the_readme_states_the_counts():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    c = counts()
    sentence = (f"Of the {c['floating point']} floating-point primitives of JAX's table "
                f"({c['table']} primitives in jax {jax.__version__}, less the "
                f"{c['not floating point']} that are no floating-point operation), "
                f"{c['handled']} are handled: {c['gated']} by a gate, {c['opened']} opened "
                f"into gates (calls, loops and branches) and {c['no derivative']} with no "
                "derivative")
    assert sentence in " ".join(readme.split()), sentence


def test_a_primitive_left_out_says_it_is_deliberately_out():
    key = jax.random.key(0)
    f = lambda a: jnp.sum(jax.random.gamma(key, a))  # noqa: E731
    with pytest.raises(tracer.NoGateError, match=r"'random_gamma'.*deliberately out of "
                                                 r"jaxprop's gates: a gamma sample's"):
        jaxprop.reverse.grad(f)(jnp.array([1.5, 2.0]))
    assert jaxprop.reverse.grad(f, allow_jax_rules=True)(jnp.array([1.5, 2.0])).shape == (2,)


def test_a_checkpoint_name_passes_its_value_through():
    from jax.ad_checkpoint import checkpoint_name

    f = lambda x: jnp.sum(jnp.sin(checkpoint_name(x * 2.0, "hidden")))  # noqa: E731
    x = jnp.array([0.3, -1.2])
    want = jax.grad(f)(x)
    for grad in (jaxprop.reverse.grad(f), jaxprop.forward.grad(f)):
        assert jnp.allclose(grad(x), want, rtol=1e-12)


def test_a_composite_and_a_custom_vmap_function_are_opened_into_gates():
    from jax import custom_batching

    @custom_batching.custom_vmap
    def sin_batched(x):
        return jnp.sin(x)

    @sin_batched.def_vmap
    def _rule(axis_size, in_batched, x):
        return jnp.sin(x), True

    double_sin = jax.lax.composite(lambda x: jnp.sin(x) * 2.0, name="my.double_sin")
    x = jnp.array([0.3, -1.2])
    for f, want in ((lambda x: jnp.sum(double_sin(x) * x), 2 * jnp.sin(x) + 2 * jnp.cos(x) * x),
                    (lambda x: jnp.sum(sin_batched(x) * x), jnp.sin(x) + jnp.cos(x) * x)):
        seen = set()
        with jaxprop.observe(lambda e, seen=seen: seen.add(e.gate.name)):
            for grad in (jaxprop.reverse.grad(f), jaxprop.forward.grad(f)):
                assert jnp.allclose(grad(x), want, rtol=1e-12)
        assert "sin" in seen
