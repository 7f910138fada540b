"""The one settings engine: frozen dataclass schemas, TOML files and ``--set KEY=VALUE``.

A schema is a tree of frozen dataclasses whose leaves are the keys a user sets, named by
their dotted path (``optimizer.lr``, ``width.hidden``). Each leaf is declared with
:func:`field`, which records its documentation, its choices (a tuple, or a function that
returns the names of a registry, looked up only when a value is checked), its range, and an
optional extra check. ``jaxprop train``, ``jaxprop sweep`` and ``jaxprop compare`` all read
their settings through this module, so they share one grammar:

* a value is a TOML literal (``1e-3``, ``true``, ``"x y"``, ``[1, 2]``); anything that is not
  one (``cifar10``, ``data/cifar``) is a string, so quotes are optional;
* a key whose type is a list also takes a comma-separated value, ``1e-3,1e-2``;
* an optional key (absent by default) is made absent again by an empty value (``KEY=``), and
  an optional number also by ``none``.

Every value is checked when a schema is built: an unknown key (with the closest valid one
suggested), a wrong type, an out-of-range value or an unknown choice (with the valid ones
listed) raises ``ValueError``/``TypeError`` with a message naming the dotted key. Nothing
here imports JAX.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["field", "keys", "leaf", "value_of", "diff", "from_dict", "to_dict", "to_toml",
           "parse_literal", "parse_assignment", "apply", "merge", "union", "read_toml",
           "describe", "choices_of"]


def field(default, *, doc: str, choices: tuple | Callable[[], Iterable[str]] | None = None,
          low: float | None = None, high: float | None = None, low_open: bool = False,
          high_open: bool = False, nonempty: bool = False,
          check: Callable[[str, Any], None] | None = None,
          spec: Callable[[str], Any] | None = None):
    """A leaf of a schema.

    Args:
      default: the value when the key is absent (a tuple for a list-typed key).
      doc: one line for ``--keys`` listings.
      choices: the valid values, or a function returning them (a registry's names).
      low, high: the range of a number (each item's, for a list); ``*_open`` excludes the
        bound itself.
      nonempty: a list-typed key must hold at least one item.
      check: ``(key, value) -> None``, raising ``ValueError`` for a value the type and range
        cannot rule out.
      spec: besides the choices, a value ``"module:attr"`` is accepted when
        ``spec(value)`` loads it (a user's own registry entry); it raises naming the
        problem otherwise.
    """
    meta = {"doc": doc, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "nonempty": nonempty, "check": check, "spec": spec}
    if isinstance(default, (list, dict)):
        raise TypeError("settings.field: give list defaults as tuples (schemas are frozen)")
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def keys(schema, prefix: str = "") -> list[str]:
    """Every settable dotted key of ``schema``, in declaration order."""
    out = []
    for f in dataclasses.fields(schema):
        tp = _hints(schema)[f.name]
        if _is_section(tp):
            out += keys(tp, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def leaf(schema, key: str) -> tuple[dataclasses.Field, Any]:
    """``(field, type)`` of the dotted ``key`` in ``schema``."""
    *path, name = key.split(".")
    cls = schema
    for part in path:
        cls = _hints(cls)[part]
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f, _hints(cls)[name]


def value_of(obj, key: str):
    """The value of the dotted ``key`` in a schema instance."""
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def diff(a, b) -> dict[str, tuple[Any, Any]]:
    """``{key: (value in a, value in b)}`` for every dotted key where two instances differ."""
    out = {}
    for key in keys(type(a)):
        va, vb = value_of(a, key), value_of(b, key)
        if va != vb:
            out[key] = (list(va) if isinstance(va, tuple) else va,
                        list(vb) if isinstance(vb, tuple) else vb)
    return out


def choices_of(meta) -> tuple | None:
    """The valid values of a leaf, resolving a registry's names when they are asked for."""
    choices = meta["choices"]
    return tuple(choices()) if callable(choices) else choices


def _unknown_key(key: str, valid: Iterable[str]) -> ValueError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not close:  # a bare leaf name: "lr" -> "optimizer.lr"
        last = key.rsplit(".", 1)[-1]
        close = [k for k in valid if k.rsplit(".", 1)[-1] == last][:1]
    listing = ", ".join(valid)
    if close:
        return ValueError(f"unknown config key {key!r}; did you mean {close[0]!r}? "
                          f"Valid keys: {listing}")
    return ValueError(f"unknown config key {key!r}; valid keys: {listing}")


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(inner[0])} (or absent)"
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0]).split(' ', 1)[1]}s"
    return {int: "an integer", float: "a number", bool: "a boolean (true/false)",
            str: "a string"}[tp]


def _check_range(key: str, value, meta) -> None:
    low, high = meta["low"], meta["high"]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config key {key!r} must be a finite number; got {value}")
    bad = (low is not None and (value <= low if meta["low_open"] else value < low)) or (
        high is not None and (value >= high if meta["high_open"] else value > high))
    if bad:
        lo = "" if low is None else f"{'>' if meta['low_open'] else '>='} {low}"
        hi = "" if high is None else f"{'<' if meta['high_open'] else '<='} {high}"
        rule = " and ".join(s for s in (lo, hi) if s)
        raise ValueError(f"config key {key!r} must be {rule}; got {value!r}")


def _split_list(value):
    """A comma-separated string as a list of TOML literals; anything else as it is."""
    if isinstance(value, str) and "," in value:
        return [parse_literal(v.strip()) for v in value.split(",") if v.strip()]
    return value


def _convert(key: str, value, tp, meta):
    """Checks one leaf value against its type, range and choices; returns it normalised."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        absent = value is None or value == "" or (
            inner in (int, float) and isinstance(value, str) and value.lower() == "none")
        return None if absent else _convert(key, value, inner, meta)
    if origin is tuple:
        value = _split_list(value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        if meta["nonempty"] and not value:
            raise TypeError(f"config key {key!r} must be a non-empty list; got {list(value)}")
        (inner, _) = typing.get_args(tp)
        return tuple(_convert(f"{key}[{i}]", v, inner, meta) for i, v in enumerate(value))
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise TypeError(
            f"config key {key!r} must be {_type_name(tp)}; got {value!r} "
            f"({type(value).__name__})")
    if tp is float:
        value = float(value)
    choices = choices_of(meta)
    if choices is not None and value not in choices and meta["spec"] is not None and \
            isinstance(value, str) and ":" in value:
        meta["spec"](value)  # a user's entry, module:attr: loadable, or an error naming it
    elif choices is not None and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) \
            else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        also = ("; module:attr naming your own entry is accepted too"
                if meta["spec"] is not None else "")
        raise ValueError(
            f"config key {key!r} must be one of {', '.join(map(repr, choices))}; "
            f"got {value!r}{hint}{also}")
    if tp in (int, float):
        _check_range(key, value, meta)
    if meta["check"] is not None:
        meta["check"](key, value)
    return value


def from_dict(schema, raw: Mapping[str, Any], where: str = ""):
    """Builds a checked ``schema`` instance from nested tables; absent keys take defaults.

    ``where`` prefixes the keys in messages (``"quick."`` for a file's ``[quick]`` table).
    After building, a schema's ``validate()`` method (if it has one) checks what involves
    several keys.

    Raises:
      ValueError: an unknown key, an out-of-range value or an unknown choice.
      TypeError: a value of the wrong type.
    """
    valid = [where + k for k in keys(schema)]
    obj = _build(schema, raw, where, valid)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def _build(schema, raw, prefix: str, valid: list[str]):
    if not isinstance(raw, Mapping):
        raise TypeError(f"config key {prefix.rstrip('.')!r} must be a table of keys; got "
                        f"{raw!r}")
    hints = _hints(schema)
    names = {f.name: f for f in dataclasses.fields(schema)}
    for key in raw:
        if key not in names:
            raise _unknown_key(prefix + key, valid)
    kwargs = {}
    for name, f in names.items():
        key, tp = prefix + name, hints[name]
        if _is_section(tp):
            kwargs[name] = _build(tp, raw.get(name, {}), key + ".", valid)
        elif name in raw:
            kwargs[name] = _convert(key, raw[name], tp, f.metadata)
        else:
            kwargs[name] = f.default if f.default is not dataclasses.MISSING else \
                f.default_factory()
    return schema(**kwargs)


def to_dict(obj) -> dict[str, Any]:
    """The settings as nested dicts (tuples as lists); absent (``None``) values left out."""

    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else (list(v) if isinstance(v, tuple) else v)
                for k, v in d.items() if v is not None}

    return strip(dataclasses.asdict(obj))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\t", "\\t"))
        return '"' + "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}"
                             for c in escaped) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(obj, header: str = "") -> str:
    """The settings as TOML text that :func:`from_dict` reads back to an equal instance."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]

    def table(d: dict, name: str):
        scalars = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
        if name:
            lines.extend(["", f"[{name}]"] if lines else [f"[{name}]"])
        lines.extend(scalars)
        for k, v in d.items():
            if isinstance(v, dict):
                table(v, f"{name}.{k}" if name else k)

    table(to_dict(obj), "")
    return "\n".join(lines) + "\n"


def parse_literal(text: str):
    """A TOML literal (``1e-3``, ``true``, ``"x"``, ``[1, 2]``); a bare word stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(item: str, flag: str = "--set") -> tuple[str, Any]:
    """Splits ``"optimizer.lr=1e-3"`` into ``("optimizer.lr", 0.001)``.

    The value is read as a TOML literal, so ``1e-3`` is a number, ``true`` a boolean and
    ``[1, 2]`` a list; anything that is not a TOML literal (``cifar10``, ``data/cifar``) is a
    string, so quotes are optional.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{flag} expects KEY=VALUE, e.g. optimizer.lr=1e-3; got {item!r}")
    return key, parse_literal(text.strip())


def _set(raw: dict, key: str, value) -> None:
    *path, name = key.split(".")
    table = raw
    for part in path:
        table = table.setdefault(part, {})
    table[name] = value


def apply(obj, assignments: Iterable[str | tuple[str, Any]], flag: str = "--set"):
    """Returns ``obj`` with each ``KEY=VALUE`` (or ``(key, value)``) applied and checked."""
    schema = type(obj)
    raw = to_dict(obj)
    valid = keys(schema)
    for item in assignments:
        key, value = parse_assignment(item, flag) if isinstance(item, str) else item
        if key not in valid:
            raise ValueError(f"{flag}: {_unknown_key(key, valid)}")
        _set(raw, key, value)
    return from_dict(schema, raw)


def union(a: Mapping, b: Mapping) -> dict:
    """Deep union of two tables; b wins."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = union(out[key], value)
        else:
            out[key] = value
    return out


def merge(obj, partial: Mapping[str, Any], where: str = ""):
    """Returns ``obj`` with the (possibly partial) tables of ``partial`` applied and checked.

    ``where`` names the table in messages (``"quick."``).
    """
    schema = type(obj)
    _build(schema, partial, where, [where + k for k in keys(schema)])  # names a bad key
    return from_dict(schema, union(to_dict(obj), partial))


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The tables of a TOML file, or an error naming the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory, not a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {str(path)!r} is not a text file (it is not UTF-8); expected "
                         "TOML") from None
    except OSError as err:
        raise OSError(f"{what} {str(path)!r} cannot be read: {err.strerror or err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid TOML: {err}") from None


def describe(schema, defaults=None) -> str:
    """Every key of ``schema`` with its type, default, choices or range, and its doc."""
    defaults = schema() if defaults is None else defaults
    lines = []
    for key in keys(schema):
        f, tp = leaf(schema, key)
        value = defaults
        for part in key.split("."):
            value = getattr(value, part)
        meta = f.metadata
        extra = []
        choices = choices_of(meta)
        if choices is not None:
            extra.append("one of " + ", ".join(map(str, choices)))
        lo, hi = meta["low"], meta["high"]
        if lo is not None:
            extra.append(f"{'>' if meta['low_open'] else '>='} {lo}")
        if hi is not None:
            extra.append(f"{'<' if meta['high_open'] else '<='} {hi}")
        shown = "absent" if value is None else (
            ",".join(map(str, value)) if isinstance(value, tuple) else str(value).lower()
            if isinstance(value, bool) else str(value))
        note = f" ({'; '.join(extra)})" if extra else ""
        lines.append(f"  {key} = {shown}\n      {meta['doc']}{note}")
    return "\n".join(lines)
