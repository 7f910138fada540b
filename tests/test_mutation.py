"""The mutation script (tests/mutation.py) on a few mutants: the known ones die, by the check
that should catch them, and every gate is itself again afterwards."""

import contextlib
import io

import jax.numpy as jnp
import mutation

import jaxprop
from jaxprop import gates


def _mutant(gate, mutant_id):
    return next(m for m in mutation.mutants_of(gates.GATES[gate]) if m.id == mutant_id)


def test_known_mutants_die_by_the_check_that_catches_them():
    expected = {"sqrt:vjp[0]:sign": "fd_vjp", "sqrt:vjp[0]:drop": "fd_vjp",
                "sqrt:jvp[0]:double": "fd_jvp", "transpose:vjp[0]:perm": "shapes"}
    for mutant_id, row in expected.items():
        result = mutation.run_mutant(_mutant(mutant_id.split(":")[0], mutant_id), tests=False)
        assert result["status"] == "killed", result
        assert row in result["killed_by"], result


def test_a_mutant_is_undone_after_its_run():
    sqrt = gates.GATES["sqrt"]
    rules = (sqrt.forward, sqrt.vjp, sqrt.jvp)
    x = jnp.array([0.5, 1.5, 2.0])
    with mutation.applied(_mutant("sqrt", "sqrt:vjp[0]:sign")):
        assert sqrt.vjp != rules[1]
        assert not jaxprop.check(sqrt, x, checks=["fd_vjp"]).ok
    assert (sqrt.forward, sqrt.vjp, sqrt.jvp) == rules
    assert jaxprop.check(sqrt, x, checks=["fd_vjp"]).ok  # no stale wiring of the mutant


def test_an_equivalent_mutant_is_listed_with_its_reason(monkeypatch):
    every_case = mutation._cases
    monkeypatch.setattr(mutation, "_cases", lambda gate: every_case(gate)[:1])  # one is enough
    result = mutation.run_mutant(_mutant("add", "add:swap"), tests=False)
    assert result["status"] == "equivalent", result
    assert "same function" in result["reason"]


def test_the_last_line_is_the_kill_rate():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert mutation.main(["--gate", "relu", "--op", "sign", "--op", "not",
                              "--no-tests"]) == 0
    lines = out.getvalue().strip().splitlines()
    assert lines[-1] == "killed 3 of 3 mutants (100.0%); 0 equivalent, listed above", lines
    assert any("relu:vjp[0]:not" in line and "killed" in line for line in lines), lines


def test_every_mutant_listed_as_equivalent_is_one_the_run_makes():
    names = {mutant_id.split(":")[0] for mutant_id in mutation.EQUIVALENT}
    made = {m.id for name in names for m in mutation.mutants_of(gates.GATES[name])}
    assert set(mutation.EQUIVALENT) <= made, set(mutation.EQUIVALENT) - made


def test_every_test_file_a_survivor_meets_exists():
    """A moved or renamed test file must not silently drop out of the mutation run."""
    missing = [f for f in mutation.TEST_FILES if not (mutation.HERE / f).is_file()]
    assert not missing, f"mutation.TEST_FILES names files that do not exist: {missing}"
