"""Experiment configs: frozen dataclasses, loaded from TOML and overridden by dotted keys.

A config is a tree of frozen dataclasses whose leaves are the keys a user sets, named by their
dotted path (``optimizer.lr``, ``train.batch_size``). The defaults below *are* the default
experiment (``configs/digits_two_layer.toml`` holds the same values), so ``jaxprop train``
works from any install, with or without the repository's ``configs/`` folder.

Every value is checked when a config is built: an unknown key (with the closest valid one
suggested), a wrong type, an out-of-range value or an unknown choice (with the valid ones
listed) raises ``ValueError``/``TypeError`` with a message naming the dotted key.

For example::

  cfg = load_config("digits_linear_svm", overrides=["optimizer.lr=1e-2", "train.epochs=5"])
  cfg.optimizer.lr        # 0.01
  print(to_toml(cfg))     # the resolved config, loadable again
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DATASETS",
    "PREPROCESS",
    "MODEL_KINDS",
    "LOSS_KINDS",
    "OPTIMIZERS",
    "PIPELINES",
    "SWEEP_KEYS",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "OptimizerConfig",
    "TrainConfig",
    "SweepConfig",
    "Config",
    "default_config",
    "from_dict",
    "to_dict",
    "to_toml",
    "parse_override",
    "apply_overrides",
    "find_config",
    "shipped_configs",
    "load_config",
]

DATASETS = ("digits", "cifar10", "props", "mnist")
PREPROCESS = ("cs231n", "deeprob", "none")
MODEL_KINDS = ("linear", "two_layer")
LOSS_KINDS = ("softmax", "svm")
OPTIMIZERS = ("sgd", "momentum", "adam")
PIPELINES = ("reverse", "forward", "jax")
SWEEP_KEYS = {"optimizer.lr": "lr", "loss.reg": "reg"}
"""Grid keys a sweep can vmap over (they are traced arrays inside the training step)."""


def _field(default, *, doc: str, choices: tuple[str, ...] | None = None,
           low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False):
    meta = {"doc": doc, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives, and how it is preprocessed."""

    dataset: str = _field("digits", doc="dataset name", choices=DATASETS)
    root: str | None = _field(None, doc="folder with the dataset files (absent: the default)")
    preprocess: str | None = _field(
        None, doc="mean subtraction as a course does it (absent: the dataset's course)",
        choices=PREPROCESS)
    bias_trick: bool = _field(False, doc="append a constant-1 feature to every input")
    num_train: int | None = _field(None, doc="use only the first N training examples", low=1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The classifier: linear scores s = xW + b, or the two-layer ReLU net."""

    kind: str = _field("two_layer", doc="model", choices=MODEL_KINDS)
    hidden_dim: int = _field(128, doc="H, the hidden width of the two-layer net", low=1)
    weight_scale: float | None = _field(
        None, doc="std of the initial weights (absent: 1e-3 linear, He two-layer)",
        low=0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The data loss and the L2 regularisation strength: L = data loss + reg * sum W^2."""

    kind: str = _field("softmax", doc="data loss", choices=LOSS_KINDS)
    reg: float = _field(1e-3, doc="L2 regularisation strength", low=0.0)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optax optimizer and its learning-rate schedule (decayed once per epoch)."""

    name: str = _field("adam", doc="optimizer", choices=OPTIMIZERS)
    lr: float = _field(3e-3, doc="learning rate", low=0.0, low_open=True)
    lr_decay: float = _field(0.95, doc="learning rate factor per epoch", low=0.0, high=1.0,
                             low_open=True)
    momentum: float = _field(0.9, doc="momentum (optimizer.name = 'momentum')", low=0.0,
                             high=1.0, high_open=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How long, in which batches, and where the gradients come from."""

    epochs: int = _field(30, doc="passes over the training set", low=1)
    batch_size: int = _field(64, doc="examples per step", low=1)
    pipeline: str = _field("reverse", doc="gradients from our VJP rules (reverse), our JVP "
                           "rules (forward), or JAX's own autodiff of the plain-jnp twin of "
                           "the model and loss, jaxprop.plain (jax)", choices=PIPELINES)
    forward_chunk_size: int = _field(64, doc="JVPs pushed at once by the forward pipeline",
                                     low=1)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The grid of ``jaxprop sweep``: every lr x every reg (empty: the single config value)."""

    lr: tuple[float, ...] = _field((), doc="learning rates to try", low=0.0, low_open=True)
    reg: tuple[float, ...] = _field((), doc="regularisation strengths to try", low=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    """One experiment. Field names are the dotted keys of ``--set`` and the TOML tables."""

    name: str = _field("digits_two_layer", doc="experiment name (runs/<name>/)")
    seed: int = _field(0, doc="seed of the initial weights and of the data order", low=0)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)


def default_config() -> Config:
    """The default experiment: the two-layer net on digits (= configs/digits_two_layer.toml)."""
    return Config()


# ----------------------------------------------------------------------------- validation


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _all_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_section(tp):
            keys += _all_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown_key(key: str, valid: Iterable[str]) -> ValueError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not close:  # a bare leaf name: "lr" -> "optimizer.lr"
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in valid if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown config key {key!r}{hint} Valid keys: {', '.join(valid)}")


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


def _convert(key: str, value, tp, meta):
    """Checks one leaf value against its type, range and choices; returns it normalised."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(key, value, inner, meta)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
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
    if meta["choices"] is not None and value not in meta["choices"]:
        close = difflib.get_close_matches(value, meta["choices"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"config key {key!r} must be one of {', '.join(map(repr, meta['choices']))}; "
            f"got {value!r}{hint}")
    if tp in (int, float):
        _check_range(key, value, meta)
    if tp is str and key == "name" and (not value or "/" in value or value in (".", "..")):
        raise ValueError(f"config key 'name' must be a non-empty name without '/'; got {value!r}")
    return value


def _build(cls, raw: Mapping[str, Any], prefix: str):
    if not isinstance(raw, Mapping):
        raise TypeError(f"config key {prefix.rstrip('.')!r} must be a table of keys; got "
                        f"{raw!r}")
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise _unknown_key(prefix + key, _all_keys())
    kwargs = {}
    for name, f in names.items():
        key, tp = prefix + name, hints[name]
        if _is_section(tp):
            kwargs[name] = _build(tp, raw.get(name, {}), key + ".")
        elif name in raw:
            kwargs[name] = _convert(key, raw[name], tp, f.metadata)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs[name] = default
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Builds a checked Config from nested tables; absent keys take their defaults.

    Raises:
      ValueError: an unknown key, an out-of-range value or an unknown choice.
      TypeError: a value of the wrong type.
    """
    return _build(Config, raw, "")


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as nested dicts (tuples as lists); ``None`` values are left out."""

    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else (list(v) if isinstance(v, tuple) else v)
                for k, v in d.items() if v is not None}

    return strip(dataclasses.asdict(cfg))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: Config) -> str:
    """The config as TOML text that ``load_config`` reads back to an equal Config."""
    d = to_dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for section, table in d.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- overrides


def _parse_literal(text: str):
    """A TOML literal (``1e-3``, ``true``, ``"x"``, ``[1, 2]``); a bare word stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    """Splits ``"optimizer.lr=1e-3"`` into ``("optimizer.lr", 0.001)``.

    The value is read as a TOML literal, so ``1e-3`` is a number, ``true`` a boolean and
    ``[1, 2]`` a list; anything that is not a TOML literal (``cifar10``, ``data/cifar``) is a
    string, so quotes are optional.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set expects KEY=VALUE, e.g. optimizer.lr=1e-3; got {item!r}")
    return key, _parse_literal(text.strip())


def apply_overrides(cfg: Config, overrides: Iterable[str | tuple[str, Any]]) -> Config:
    """Returns cfg with each ``KEY=VALUE`` (or ``(key, value)``) applied and checked."""
    raw = to_dict(cfg)
    valid = _all_keys()
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        if key not in valid:
            raise _unknown_key(key, valid)
        *path, leaf = key.split(".")
        table = raw
        for part in path:
            table = table.setdefault(part, {})
        table[leaf] = value
    return from_dict(raw)


# ----------------------------------------------------------------------------- files


def _config_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    dirs = [Path.cwd() / "configs", here.parent / "configs", here / "configs"]
    unique = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


_SECTIONS = ("data", "model", "loss", "optimizer", "train", "sweep")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def _not_an_experiment(path: Path, raw: Mapping[str, Any]) -> str | None:
    """Why the TOML file at ``path`` is not a training experiment, or None if it is one."""
    if not any(k in raw for k in _SECTIONS):
        return f"it has none of the tables [{'], ['.join(_SECTIONS)}]"
    try:
        from_dict({"name": path.stem, **raw})
    except (ValueError, TypeError) as err:
        return str(err).split(" Valid keys:")[0]
    return None


def _toml_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in _config_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def shipped_configs() -> dict[str, Path]:
    """The training experiments in ``configs/`` (cwd's, then the repository's), by name.

    Only files that are valid experiments count: ``configs/compare.toml`` (the settings of
    ``jaxprop compare``) and other foreign TOML files are left out.
    """
    found: dict[str, Path] = {}
    for name, p in _toml_files().items():
        try:
            if _not_an_experiment(p, _read_toml(p)) is None:
                found[name] = p
        except (OSError, ValueError):
            continue
    return found


def find_config(path_or_name: str | Path) -> Path:
    """Resolves a TOML path, or the name of a shipped experiment (``digits_linear_svm``).

    Raises:
      FileNotFoundError: neither a file nor a shipped name (the names are listed).
      ValueError: the name is a TOML file in ``configs/`` that is not a training
        experiment (none of its tables is a config section, as ``compare``).
    """
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = path.stem if path.suffix == ".toml" and len(path.parts) == 1 else str(path_or_name)
    shipped = shipped_configs()
    if name in shipped:
        return shipped[name]
    names = ", ".join(shipped) or "none found"
    other = _toml_files().get(name)
    if other is not None and any(k in _read_toml(other) for k in _SECTIONS):
        return other  # an experiment with a mistake: load_config names it
    if other is not None:
        raise ValueError(
            f"config {name!r} ({other}) is not a training experiment, so `jaxprop train` and "
            f"`jaxprop sweep` cannot use it; the training experiments are: {names}")
    raise FileNotFoundError(
        f"config file {str(path_or_name)!r} not found, and it is not the name of a shipped "
        f"experiment (in {', '.join(str(d) for d in _config_dirs())}: {names})")


def load_config(path_or_name: str | Path | None = None,
                overrides: Iterable[str | tuple[str, Any]] = ()) -> Config:
    """Loads a TOML config (or the defaults, with ``None``) and applies ``--set`` overrides.

    Args:
      path_or_name: a TOML file, a shipped experiment's name, or None for the defaults.
      overrides: ``"KEY=VALUE"`` strings or ``(key, value)`` pairs, applied in order.

    Returns:
      The checked Config. A file without a ``name`` is named after its file.
    """
    if path_or_name is None:
        cfg = default_config()
    else:
        path = find_config(path_or_name)
        raw = _read_toml(path)
        if not any(k in raw for k in _SECTIONS):
            names = ", ".join(shipped_configs()) or "none found"
            raise ValueError(
                f"config file {str(path)!r} is not a training experiment: it has none of the "
                f"tables [{'], ['.join(_SECTIONS)}]. Give a training config, e.g. one of: "
                f"{names}")
        raw.setdefault("name", path.stem)
        cfg = from_dict(raw)
    return apply_overrides(cfg, overrides)
