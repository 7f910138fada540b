"""The package as pip builds it: every subpackage and every shipped config is included."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "jaxprop").rglob("__init__.py")
    }
    assert found | {"jaxprop.configs"} == listed, f"add {sorted(found - listed)} to pyproject.toml"


def test_shipped_configs_are_found_by_name_outside_the_repo(tmp_path, monkeypatch):
    from jaxprop.config import find_config

    monkeypatch.chdir(tmp_path)
    for path in (ROOT / "configs").glob("digits_*.toml"):
        assert find_config(path.stem).read_text() == path.read_text()
