"""jaxprop is typed (PEP 561): the lazily exported public names resolve, for mypy, pyright and
editors, to the real functions and classes, never ``Any``; and py.typed ships in the wheel."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_SCRIPT = '''
import jaxprop
from jaxprop import gates


def f(x):
    return gates.sum(gates.mul(x, x))


reveal_type(jaxprop.reverse.grad)
reveal_type(jaxprop.forward.grad)
reveal_type(jaxprop.check)
reveal_type(jaxprop.explain)
reveal_type(jaxprop.gated)
reveal_type(jaxprop.observe)
reveal_type(jaxprop.reverse.grad(f))
reveal_type(jaxprop.explain(f, 1.0).rows)
'''

# Third-party packages are skipped (their names are Any here): only jaxprop's own annotations
# are under test, and mypy takes seconds instead of analysing all of JAX.
CONFIG = """
[mypy]
follow_imports = silent
ignore_missing_imports = True
[mypy-jax.*,jaxlib.*,numpy.*,optax.*,matplotlib.*,rich.*,sklearn.*,chex.*,ml_dtypes.*,scipy.*]
follow_imports = skip
"""

EXPECTED = [  # a fragment of each revealed type, in the script's order
    "allow_int: bool",                      # jaxprop.reverse.grad's own signature
    "chunk_size: int | None",               # jaxprop.forward.grad's
    "-> jaxprop.verify.report.CheckReport",
    "-> jaxprop.explainer.rows.Trace",
    "-> jaxprop.tracer.Gated",
    "contextlib._GeneratorContextManager",  # observe is a context manager
    "def (*Any, **Any) -> Any",             # the driver: a callable
    "list[jaxprop.explainer.rows.Row]",
]


def test_public_names_resolve_to_real_types_for_mypy(tmp_path):
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    (tmp_path / "mypy.ini").write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
         "user.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT)})
    revealed = re.findall(r'Revealed type is "(.*)"', result.stdout)
    assert len(revealed) == len(EXPECTED), result.stdout + result.stderr
    for fragment, found in zip(EXPECTED, revealed):
        assert found != "Any" and fragment in found, (fragment, found)
    assert result.returncode == 0, result.stdout  # and no error in the user's script


def test_py_typed_ships_with_the_package():
    assert (ROOT / "jaxprop" / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["jaxprop"]


def test_every_lazy_name_is_imported_for_type_checkers():
    """Each package's lazy exports (``_EXPORTS``, read from its ``if TYPE_CHECKING:`` block by
    ``typed_exports``) are the names that block imports, as ``X as X`` from the module that
    defines them."""
    import ast
    import importlib

    for init in sorted((ROOT / "jaxprop").rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        package = ".".join(init.parent.relative_to(ROOT).parts)
        module = importlib.import_module(package)
        lazy = getattr(module, "_NAMES", None) or getattr(module, "_EXPORTS", None)
        if lazy is None:
            continue
        wanted = {(m, n) for n, m in lazy.items()}
        wanted |= {(package, s) for s in getattr(module, "_SUBMODULES", ())}
        found = set()
        for node in tree.body:
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                for imp in node.body:
                    assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                    for alias in imp.names:
                        assert alias.asname == alias.name, f"{package}: {ast.unparse(imp)}"
                        found.add((imp.module, alias.name))
        assert found == wanted, (package, sorted(wanted - found), sorted(found - wanted))
