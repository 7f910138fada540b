"""Lazy public names (PEP 562): a package names what it exports, and each module loads on first use.

So ``import jaxprop`` and the ``jaxprop`` command's ``--help`` load no JAX; ``jaxprop.reverse``
or ``jaxprop.explain`` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["exports"]


def exports(package: str, names: Mapping[str, str],
            submodules: tuple[str, ...] = ()) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each public name to the
    module that defines it; ``submodules`` are public modules of the package itself."""

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        module = importlib.import_module(package)
        return sorted(set(vars(module)) | set(names) | set(submodules))

    return __getattr__, __dir__
