"""The registries: a test case for every gate, loss and model, GATES built from the gate modules
themselves, and README's gate table written from them."""

import importlib
import pkgutil
from pathlib import Path

from cases import GATE_CASES, LOSS_CASES, MODEL_CASES

import jaxprop
from jaxprop import gates, losses, models

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
