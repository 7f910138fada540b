"""The package as pip builds it: every subpackage and every shipped config is included."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "jaxprop").rglob("__init__.py")
    }
    assert found | {"jaxprop.configs"} == listed, f"add {sorted(found - listed)} to pyproject.toml"


def test_shipped_configs_are_found_by_name_outside_the_repo(tmp_path, monkeypatch):
    from jaxprop.train.experiment import find_config

    monkeypatch.chdir(tmp_path)
    for path in (ROOT / "configs").glob("digits_*.toml"):
        assert find_config(path.stem).read_text() == path.read_text()


def test_ruff_lint_is_clean():
    """ruff, configured in pyproject.toml, is run by the tests so it is not a tool nobody runs."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
