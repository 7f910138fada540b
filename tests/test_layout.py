"""The house: registries with a test case for every entry, layers whose imports run one way,
public names that never shadow modules, a CLI that answers --help without JAX, and docs whose
every name is real (their examples run in tests/test_docs.py)."""

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from cases import GATE_CASES, LOSS_CASES, MODEL_CASES

import jaxprop
from jaxprop import gates, losses, models

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxprop"


def _modules() -> list[str]:
    names = ["jaxprop"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="jaxprop."):
        names.append(info.name)
    return names


# ----------------------------------------------------------------------------- registries


def test_every_loss_and_model_has_a_test_case():
    assert {c.covers for c in LOSS_CASES} == set(losses.LOSSES) | {"l2_penalty"}
    assert {c.covers for c in MODEL_CASES} == set(models.MODELS)
    # and each carries check_grads to order 2 somewhere
    assert {c.covers for c in LOSS_CASES + MODEL_CASES if c.order2} == \
        set(losses.LOSSES) | {"l2_penalty"} | set(models.MODELS)


def test_every_gate_has_a_test_case():
    assert {c.covers for c in GATE_CASES} == set(gates.GATES)


def test_gate_registry_is_the_modules_themselves():
    in_modules = {v.name for m in _modules() if m.startswith("jaxprop.gates.")
                  for v in vars(importlib.import_module(m)).values()
                  if isinstance(v, jaxprop.Gate)}
    assert set(gates.GATES) == in_modules
    for name, gate in gates.GATES.items():
        assert gate.name == name and gate.pattern in jaxprop.PATTERNS, name
        assert gate.doc.strip(), f"gate {name!r} has no docstring in the lecture's words"


def test_readme_pattern_table_is_written_from_the_gates():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- gates: start -->\n", "<!-- gates: end -->"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == gates.pattern_table(), (
        "README's gate table is stale: replace it with the output of "
        "python -c 'import jaxprop.gates as g; print(g.pattern_table(), end=\"\")'")


# ---------------------------------------------------------------------------------- layers

LAYERS = [
    ("jaxprop._version", "jaxprop._lazy", "jaxprop._settings", "jaxprop._signals", "jaxprop.data",
     "jaxprop.gate", "jaxprop._linearity", "jaxprop._jaxprs"),
    ("jaxprop.gates",),
    ("jaxprop.reference", "jaxprop.losses", "jaxprop.models"),
    ("jaxprop.tracer", "jaxprop._drivers", "jaxprop.reverse", "jaxprop.forward"),
    ("jaxprop.train", "jaxprop.compare", "jaxprop.explainer", "jaxprop.verify"),
    ("jaxprop.cli", "jaxprop.__main__"),
]
"""The arrows run one way: each layer imports only from the layers above it in this list
(and from itself); the packages of the fifth layer do not import each other."""


def _layer(module: str) -> tuple[int, str]:
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return level, prefix
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(path: Path) -> set[str]:
    """The jaxprop modules that the file at ``path`` imports, at the top or in a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jaxprop")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and \
                (node.module or "").startswith("jaxprop"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if _is_module(sub) else node.module)
    return found - {"jaxprop"}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def test_imports_run_one_way_through_the_layers():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if module == "jaxprop":
            continue  # the facade re-exports lazily
        level, package = _layer(module)
        for imported in _imports(path):
            their_level, their_package = _layer(imported)
            if their_level > level or (their_level == level == 4 and their_package != package):
                bad.append(f"{module} imports {imported}")
    assert not bad, bad


# --------------------------------------------------------------------------- public names


def test_public_names_never_shadow_modules():
    for name in _modules():
        importlib.import_module(name)  # every submodule loaded: none may hide a public name
    for package in ("jaxprop", "jaxprop.train", "jaxprop.compare", "jaxprop.explainer",
                    "jaxprop.data", "jaxprop.verify"):
        p = importlib.import_module(package)
        submodules = set(getattr(p, "_SUBMODULES", ()))
        for name in p.__all__:
            value = getattr(p, name)
            if name not in submodules:
                assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module"
    assert callable(jaxprop.explain) and callable(jaxprop.advise) and callable(jaxprop.check)
    assert jaxprop.Trace.__name__ == "Trace" and jaxprop.Advice.__name__ == "Advice"
    import jaxprop.compare.advice as advice_module

    assert advice_module.advise is jaxprop.advise


def _doc_names() -> set[str]:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    names = set()
    for path in texts:
        names |= set(re.findall(r"(?<![\w/.-])jaxprop(?:\.\w+)+", path.read_text()))
    return names


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if _is_module(module):
            value = importlib.import_module(module)
            for attr in parts[cut:]:
                value = getattr(value, attr)
            return value
    raise ImportError(dotted)


def test_every_name_the_docs_show_exists():
    names = _doc_names()
    assert len(names) > 30, names
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name}: {err}")
    assert not missing, missing


# -------------------------------------------------------------------------------- the CLI

NO_JAX = """
import sys
from jaxprop.cli import main
for argv in ARGV:
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
loaded = sorted(m for m in sys.modules if m == "jax" or m.startswith(("jax.", "jaxlib")))
assert not loaded, loaded[:5]
print("no jax")
"""


def test_help_and_version_answer_without_importing_jax():
    argv = [["--help"], ["--version"], ["train", "--help"], ["sweep", "--help"],
            ["compare", "--help"], ["explain", "--help"], ["check", "--help"]]
    result = subprocess.run([sys.executable, "-c", NO_JAX.replace("ARGV", repr(argv))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("no jax")
    assert f"jaxprop {jaxprop.__version__}" in result.stdout
    for command in ("train", "sweep", "compare", "explain", "check"):
        assert f"usage: jaxprop {command}" in result.stdout
    assert "sigmoid-gate" in result.stdout  # explain --help lists the built-in examples


@pytest.mark.parametrize("command", ["train", "compare"])
def test_keys_lists_every_setting_with_its_choices(command, capsys):
    from jaxprop.cli import main

    assert main([command, "--keys"]) == 0
    out = capsys.readouterr().out
    if command == "train":
        assert "model.kind = two_layer" in out and "one of linear, two_layer" in out
        assert "optimizer.name = adam" in out and "one of sgd, momentum, adam" in out
    else:
        assert "width.activation = sigmoid" in out and "one of sigmoid, relu" in out


def test_the_tests_that_the_nothing_lost_claims_name_exist():
    """README's and docs/training.md's "Nothing lost" claims name the tests that prove them:
    each named test must exist (in the file named with it, where one is)."""
    defined = {path.name: set(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.M))
               for path in (ROOT / "tests").glob("test_*.py")}
    everywhere = set().union(*defined.values())
    named = 0
    for doc in (ROOT / "README.md", ROOT / "docs" / "training.md"):
        text = doc.read_text()
        section = re.split(r"^#+ Nothing lost$", text, flags=re.M)[1].split("\n## ", 1)[0]
        file = None
        pattern = r"(?:(test_\w+)\.py)?::(test_\w+)|(?<![\w.])(test_\w+)(?!\w|\.py)"
        for match in re.finditer(pattern, section):
            in_file, test, bare = match.groups()
            if in_file:
                file = f"{in_file}.py"
            if test:
                assert test in defined.get(file, ()), f"{doc.name}: {file}::{test} is not a test"
            else:
                assert bare in everywhere, f"{doc.name}: {bare} is not a test"
            named += 1
    assert named > 50


def test_gpu_check_refuses_an_output_folder_that_exists(tmp_path):
    """benchmarks/gpu_check.sh never overwrites: an existing OUT_DIR is named, exit 2."""
    (tmp_path / "out").mkdir()
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{tmp_path / 'out'} already exists" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []
