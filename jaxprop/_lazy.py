"""Lazy public names (PEP 562): a package names what it exports, and each module loads on first use.

So ``import jaxprop`` and the ``jaxprop`` command's ``--help`` load no JAX; ``jaxprop.reverse``
or ``jaxprop.explain`` does. A package states its public names once, as the imports of its
``if TYPE_CHECKING:`` block (``from module import name as name``, the form mypy, pyright and
editors read); :func:`typed_exports` reads that block, so the lazy table is never written
twice.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["typed_exports", "exports", "load_spec", "resolve"]


def typed_exports(init_file: str) -> dict[str, str]:
    """The public names of a package, each to the module that defines it: what the
    ``if TYPE_CHECKING:`` block of its ``__init__`` (``init_file``) imports. A name imported
    from the package itself is one of its submodules."""
    names = {}
    for node in ast.parse(Path(init_file).read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    names.update({alias.asname or alias.name: imp.module for alias in imp.names})
    return names


def exports(package: str, names: Mapping[str, str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each public name to the
    module that defines it (``package`` itself for a submodule)."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if names[name] == package:
            return importlib.import_module(f"{package}.{name}")
        return getattr(importlib.import_module(names[name]), name)

    def __dir__():
        module = importlib.import_module(package)
        return sorted(set(vars(module)) | set(names))

    return __getattr__, __dir__


def load_spec(spec: str, kind: type, what: str):
    """The object named by ``"module:attr"`` (a user's own registry entry), checked to be a
    ``kind``; the errors name the spec and what was expected."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{what} {spec!r}: expected a registered name or module:attr")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{what} {spec!r}: cannot import module {module_name!r} ({err})"
                         ) from None
    obj = getattr(module, attr, None)
    if not isinstance(obj, kind):
        found = "nothing" if obj is None else f"a {type(obj).__name__}"
        raise ValueError(f"{what} {spec!r}: module {module_name!r} has {found} named "
                         f"{attr!r}; expected a jaxprop {kind.__name__} entry")
    return obj


def resolve(registry: Mapping, name: str, kind: type, key: str, noun: str):
    """The entry a config names (``key``, e.g. ``loss.kind``): a registered name, or
    ``"module:attr"`` of a user's own ``kind``; anything else is named with the choices."""
    if name in registry:
        return registry[name]
    if ":" in name:
        return load_spec(name, kind, key)
    raise ValueError(f"unknown {noun} {name!r}; expected one of {sorted(registry)} or "
                     f"module:attr of a {kind.__module__}.{kind.__name__}")
