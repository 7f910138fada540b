"""The settings of ``jaxprop compare``: defaults in code, a TOML file, ``--quick`` and ``--set``.

The defaults live here, so that an installed ``jaxprop`` runs without the repository;
``configs/compare.toml`` holds the same values (a test keeps them equal). The ``[quick]``
table is applied on top by ``--quick``, and every ``--set KEY=VALUE`` after that.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from jaxprop.compare.cases import ACTIVATIONS

__all__ = ["DEFAULTS", "QUICK", "SECTIONS", "DTYPES", "load_config", "apply_set",
           "validate"]

SECTIONS = ("width", "depth", "two_layer", "cheap_gradient", "big_jacobian")
"""The parts of the comparison that ``sections`` may choose from."""

DTYPES = ("float32", "float64")

DEFAULTS: dict[str, Any] = {
    "out": "runs/compare",
    "seed": 0,
    "dtype": "float32",
    "repeats": 15,
    "min_sample_ms": 20,
    "sections": list(SECTIONS),
    "width": {
        "product": 4096,
        "n": [4, 8, 16, 32, 64, 128, 256, 512, 1024],
        "hidden": 128,
        "depth": 3,
        "activation": "sigmoid",
    },
    "depth": {
        "depths": [1, 2, 4, 8, 16, 32, 64],
        "inputs": 4,
        "width": 256,
        "activation": "relu",
    },
    "two_layer": {
        "input": 3072,
        "hidden": 100,
        "classes": 10,
        "loss_input": 64,
        "loss_hidden": 32,
        "batch": 16,
        "reg": 1e-3,
    },
    "cheap_gradient": {
        "input": 64,
        "hiddens": [8, 16, 32, 64],
        "classes": 10,
        "batch": 128,
        "reg": 1e-3,
    },
    "big_jacobian": {
        "batch": 64,
        "input": 4096,
        "output": 4096,
        "run": True,
    },
}
"""The full run, the one ``docs/forward_vs_reverse.md`` reports."""

QUICK: dict[str, Any] = {
    "repeats": 3,
    "min_sample_ms": 2,
    "width": {"product": 256, "n": [2, 16, 128], "hidden": 16, "depth": 2},
    "depth": {"depths": [1, 16], "width": 64},
    "two_layer": {"input": 768, "hidden": 16, "loss_input": 16, "loss_hidden": 8, "batch": 8},
    "cheap_gradient": {"input": 16, "hiddens": [4, 16], "batch": 8},
    "big_jacobian": {"run": False},
}
"""What ``--quick`` changes: a run of well under a minute on two CPU cores."""

_NONNEGATIVE = {"seed", "reg"}
_CHOICES = {"dtype": DTYPES, "activation": ACTIVATIONS}


def _merge(base: dict, update: dict, where: str = "") -> dict:
    """Returns base with update's values; a key not in base is an error naming valid keys."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{where}{key}"
        if key not in base:
            valid = ", ".join(sorted(f"{where}{k}" for k in base))
            raise ValueError(f"unknown config key {name!r}; valid keys here: {valid}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise TypeError(f"config key {name!r} must be a table of settings, "
                                f"got {value!r}")
            out[key] = _merge(base[key], value, f"{name}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _union(a: dict, b: dict) -> dict:
    """Deep union of two partial settings; b wins."""
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _union(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``1e-3``, ``[1, 2]``, ``true``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(config: dict, assignment: str) -> dict:
    """Returns config with one ``KEY=VALUE`` applied; KEY is dotted (``width.hidden=32``).

    A list may be given as TOML (``[1, 2]``) or comma-separated (``1,2``).
    """
    if "=" not in assignment:
        raise ValueError(f"--set expects KEY=VALUE (e.g. width.hidden=32), got {assignment!r}")
    key, text = (part.strip() for part in assignment.split("=", 1))
    path = key.split(".")
    node = DEFAULTS
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            break
    if not isinstance(node, dict) or path[-1] not in node:
        raise ValueError(f"--set: unknown config key {key!r}; valid keys: "
                         f"{', '.join(all_keys())}")
    value = _parse_value(text)
    if isinstance(node[path[-1]], list) and not isinstance(value, list):
        value = [_parse_value(item.strip()) for item in str(text).split(",") if item.strip()]
    update: dict = value
    for part in reversed(path):
        update = {part: update}
    return _merge(config, update)


def all_keys(tree: dict | None = None, where: str = "") -> list[str]:
    """Every settable dotted key."""
    tree = DEFAULTS if tree is None else tree
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict):
            keys += all_keys(value, f"{where}{key}.")
        else:
            keys.append(f"{where}{key}")
    return keys


def _check_leaf(name: str, value: Any, default: Any) -> None:
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"config key {name!r} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"config key {name!r} must be an integer, got {value!r}")
        if value < (0 if leaf in _NONNEGATIVE else 1):
            bound = "non-negative" if leaf in _NONNEGATIVE else "positive"
            raise ValueError(f"config key {name!r} must be {bound}, got {value}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"config key {name!r} must be a number, got {value!r}")
        if value < 0:
            raise ValueError(f"config key {name!r} must be non-negative, got {value}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError(f"config key {name!r} must be a string, got {value!r}")
        if leaf in _CHOICES and value not in _CHOICES[leaf]:
            raise ValueError(f"config key {name!r} must be one of {_CHOICES[leaf]}, "
                             f"got {value!r}")
    elif isinstance(default, list):
        if not isinstance(value, list) or not value:
            raise TypeError(f"config key {name!r} must be a non-empty list, got {value!r}")
        for item in value:
            _check_leaf(name, item, default[0])
        if leaf == "sections":
            unknown = [s for s in value if s not in SECTIONS]
            if unknown:
                raise ValueError(f"config key 'sections' has unknown {unknown}; "
                                 f"expected some of {SECTIONS}")


def validate(config: dict, defaults: dict | None = None, where: str = "") -> dict:
    """Checks every value's type and range against the defaults; returns config."""
    defaults = DEFAULTS if defaults is None else defaults
    for key, default in defaults.items():
        name = f"{where}{key}"
        if isinstance(default, dict):
            validate(config[key], default, f"{name}.")
        else:
            _check_leaf(name, config[key], default)
    if not where:
        width = config["width"]
        bad = [n for n in width["n"] if width["product"] % n]
        if bad:
            raise ValueError(f"config key 'width.n' has {bad}, which do not divide "
                             f"width.product={width['product']} (m = product / n)")
    return config


def load_config(path: str | Path | None = None, *, quick: bool = False,
                sets: list[str] | tuple[str, ...] = (), out: str | None = None) -> dict:
    """The settings of one run: defaults, then the file, ``--quick``, ``--set`` and ``--out``.

    Args:
      path: a TOML file laid out like ``configs/compare.toml`` (it may give only some keys);
        ``None`` uses the defaults alone.
      quick: apply the ``[quick]`` table.
      sets: ``KEY=VALUE`` assignments, applied in order.
      out: the output folder, overriding ``out``.

    Returns:
      The validated settings, a dict shaped like :data:`DEFAULTS`.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError, TypeError: an unknown key, or a value of the wrong type or range.
    """
    file: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} not found")
        try:
            file = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    file_quick = file.pop("quick", {})
    if not isinstance(file_quick, dict):
        raise TypeError("config key 'quick' must be a table of settings")
    config = _merge(DEFAULTS, file)
    _merge(DEFAULTS, file_quick, "quick.")  # names a bad key in the file's [quick] table
    if quick:
        config = _merge(config, _union(QUICK, file_quick))
    for assignment in sets:
        config = apply_set(config, assignment)
    if out is not None:
        config["out"] = str(out)
    return validate(config)
