"""The registries: a test case for every gate, loss and model, GATES built from the gate modules
themselves, and README's gate table written from them."""

import importlib
import pkgutil
from pathlib import Path

import pytest
from cases import GATE_CASES, LOSS_CASES, MODEL_CASES, missing_cases

import jaxprop
from jaxprop import gates, losses, models
from jaxprop.gate import GateContractError

ROOT = Path(__file__).resolve().parents[1]


def _gate_modules() -> list[str]:
    return [info.name for info in pkgutil.iter_modules(gates.__path__, prefix="jaxprop.gates.")]


def test_every_loss_and_model_has_a_test_case():
    assert {c.covers for c in LOSS_CASES} == set(losses.LOSSES) | {"l2_penalty"}
    assert {c.covers for c in MODEL_CASES} == set(models.MODELS)
    # and each carries check_grads to order 2 somewhere
    assert {c.covers for c in LOSS_CASES + MODEL_CASES if c.order2} == \
        set(losses.LOSSES) | {"l2_penalty"} | set(models.MODELS)


def test_every_gate_has_a_test_case():
    assert {c.covers for c in GATE_CASES} == set(gates.GATES)
    assert missing_cases(gates.GATES) == {}


CUBE = '''
from jaxprop.gate import SCALED, Gate

cube = Gate("cube", pattern=SCALED, forward=lambda x: (x ** 3, x),
            vjp=(lambda x, z_bar: z_bar * 3 * x * x,), jvp=(lambda x, x_dot: x_dot * 3 * x * x,),
            doc="Cube gate: z = x^3.")
'''


def test_a_new_gates_module_is_found_and_its_gate_fails_without_a_case(tmp_path, monkeypatch):
    # a gates package with one module more: found by being there (no list to edit), and a
    # gate in it with no case in tests/cases.py fails the registry's test
    (tmp_path / "more_gates").mkdir()
    (tmp_path / "more_gates" / "__init__.py").write_text("")
    (tmp_path / "more_gates" / "powers.py").write_text(CUBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = gates.find_gates(importlib.import_module("more_gates"))
    assert list(found) == ["cube"]
    registry = {**gates.GATES, **found}
    assert missing_cases(registry) == {
        "cube": ["a case", "an order2 case", "a case with its rules swapped in"]}
    with pytest.raises(AssertionError):
        assert {c.covers for c in GATE_CASES} == set(registry)


def test_two_gates_of_one_name_are_refused(tmp_path, monkeypatch):
    (tmp_path / "twice").mkdir()
    (tmp_path / "twice" / "__init__.py").write_text("")
    for module in ("a", "b"):
        (tmp_path / "twice" / f"{module}.py").write_text(CUBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(GateContractError, match=r"two gates are named 'cube' \(one in "
                                                          r"twice\.b\)"):
        gates.find_gates(importlib.import_module("twice"))


def test_gate_registry_is_the_modules_themselves():
    in_modules = {v.name for m in _gate_modules()
                  for v in vars(importlib.import_module(m)).values()
                  if isinstance(v, jaxprop.Gate)}
    assert set(gates.GATES) == in_modules
    for name, gate in gates.GATES.items():
        assert gate.name == name and gate.pattern in jaxprop.PATTERNS, name
        assert gate.doc.strip(), f"gate {name!r} has no docstring in the lecture's words"


def test_readme_pattern_table_is_written_from_the_gates():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- gates: start -->\n", "<!-- gates: end -->"
    head, rest = readme.split(start, 1)
    table, tail = rest.split(end, 1)
    if table != gates.pattern_table():  # written from the gates: a new gate needs no hand edit
        (ROOT / "README.md").write_text(head + start + gates.pattern_table() + end + tail)
    assert table == gates.pattern_table(), (
        "README's gate table was stale; this test has rewritten it from the gates: commit it")
