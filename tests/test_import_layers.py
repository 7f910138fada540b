"""The layers: every module's imports run one way through them, and the public names of the
package and its subpackages never shadow modules."""

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import jaxprop

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxprop"


def _modules() -> list[str]:
    names = ["jaxprop"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="jaxprop."):
        names.append(info.name)
    return names


# ---------------------------------------------------------------------------------- layers

LAYERS = [
    ("jaxprop._version", "jaxprop._lazy", "jaxprop._settings", "jaxprop._signals", "jaxprop.data",
     "jaxprop.events", "jaxprop.gate", "jaxprop.wiring", "jaxprop._linearity", "jaxprop._jaxprs"),
    ("jaxprop.gates",),
    ("jaxprop.reference", "jaxprop.losses", "jaxprop.models"),
    ("jaxprop.coverage", "jaxprop.tracer", "jaxprop.core", "jaxprop.reverse", "jaxprop.forward"),
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
