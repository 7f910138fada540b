"""The docs name real things: every jaxprop name that README.md and docs/*.md show exists, and
every test that a "Nothing lost" claim names exists, in the file named with it (their examples
run in tests/test_docs.py)."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):
        return False


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



def test_the_tests_that_the_nothing_lost_claims_name_exist():
    """README's and docs/training.md's "Nothing lost" claims name the tests that prove them:
    each named test must exist (in the file named with it, where one is)."""
    defined = {path.name: set(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.M))
               for path in (ROOT / "tests").rglob("test_*.py")}
    everywhere = set().union(*defined.values())
    named = 0
    for doc in (ROOT / "README.md", ROOT / "docs" / "training.md"):
        text = doc.read_text()
        section = re.split(r"^#+ Nothing lost$", text, flags=re.M)[1].split("\n## ", 1)[0]
        for path in re.findall(r"tests/[\w/]+\.py", section):
            assert (ROOT / path).is_file(), f"{doc.name}: {path} is no file"
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
