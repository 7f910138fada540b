"""A training experiment's settings: the schema of ``jaxprop train`` and ``jaxprop sweep``.

A config is a tree of frozen dataclasses (``jaxprop._settings``) whose leaves are the keys a
user sets, named by their dotted path (``optimizer.lr``, ``train.batch_size``). The
defaults below *are* the default experiment (``configs/digits_two_layer.toml`` holds the
same values), so ``jaxprop train`` works from any install, with or without the repository's
``configs/`` folder. The choices of ``data.dataset``, ``model.kind``, ``loss.kind``,
``optimizer.name`` and ``train.pipeline`` are the names of their registries.

For example::

  cfg = load_config("digits_linear_svm", overrides=["optimizer.lr=1e-2", "train.epochs=5"])
  cfg.optimizer.lr        # 0.01
  print(to_toml(cfg))     # the resolved config, loadable again
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jaxprop import _settings
from jaxprop._settings import field

__all__ = [
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
    "apply_overrides",
    "find_config",
    "shipped_configs",
    "load_config",
]


def _datasets():
    from jaxprop.data import DATASETS

    return DATASETS


def _preprocess():
    from jaxprop.data import PREPROCESS

    return PREPROCESS


def _models():
    from jaxprop.models import MODELS

    return MODELS


def _losses():
    from jaxprop.losses import LOSSES

    return LOSSES


def _model_spec(value):
    from jaxprop.models import resolve

    return resolve(value)


def _loss_spec(value):
    from jaxprop.losses import resolve

    return resolve(value)


def _optimizers():
    from jaxprop.train.optimizers import OPTIMIZERS

    return OPTIMIZERS


def _pipelines():
    from jaxprop.train.engine import PIPELINES

    return PIPELINES


NAME_MAX = 100
"""The longest experiment name: it names a folder (``runs/<name>_sweep.old-N``)."""

FLOAT32_TINY = 1.1754943508222875e-38
"""The smallest normal float32: below it a value is 0 or loses its precision in training."""

FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: above it a value is Inf in training."""


def _check_name(key: str, value: str) -> None:
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"config key {key!r} must be a non-empty name without '/'; got "
                         f"{value!r}")
    if not value.isprintable():
        raise ValueError(f"config key {key!r} must be printable (it names a folder); got "
                         f"{value!r}")
    if len(value) > NAME_MAX:
        raise ValueError(f"config key {key!r} must be at most {NAME_MAX} characters (it names "
                         f"a folder); got {len(value)}: {value[:30]!r}...")


def _check_float32(key: str, value: float) -> None:
    """A value of the training dtype: refused if float32 makes it 0 or Inf."""
    if value == 0 or FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
        return
    becomes = "Inf" if abs(value) > FLOAT32_MAX else "0 (or loses its precision)"
    raise ValueError(
        f"config key {key!r} = {value!r} becomes {becomes} in float32, the training dtype; "
        f"give a value between {FLOAT32_TINY:.3g} and {FLOAT32_MAX:.3g}")


def _check_odd(key: str, value: int) -> None:
    if value % 2 == 0:
        raise ValueError(f"config key {key!r} must be odd (the padding (k - 1) / 2 keeps the "
                         f"image's size); got {value}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives, and how it is preprocessed."""

    dataset: str = field("digits", doc="dataset name", choices=_datasets)
    root: str | None = field(None, doc="folder with the dataset files (absent: the default)")
    preprocess: str | None = field(
        None, doc="mean subtraction as a course does it (absent: the dataset's course)",
        choices=_preprocess)
    bias_trick: bool = field(False, doc="append a constant-1 feature to every input")
    num_train: int | None = field(None, doc="use only the first N training examples", low=1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The classifier: linear scores s = xW + b, the two-layer ReLU net, or the ConvNet."""

    kind: str = field("two_layer", doc="model (or module:attr of your own Model)",
                      choices=_models, spec=_model_spec)
    hidden_dim: int = field(128, doc="H, the hidden width of the two-layer net and the "
                            "ConvNet", low=1)
    weight_scale: float | None = field(
        None, doc="std of the initial weights (absent: 1e-3 linear and convnet, He "
        "two-layer)", low=0.0, low_open=True, check=_check_float32)
    num_filters: int = field(32, doc="the ConvNet's filters", low=1)
    filter_size: int = field(7, doc="the side of the ConvNet's square filters (odd: the "
                             "padding keeps the image's size)", low=1, check=_check_odd)
    batchnorm: bool = field(False, doc="the ConvNet's batch norm: spatial after the conv, "
                            "plain after the hidden affine layer")
    dropout_keep: float = field(1.0, doc="the ConvNet's dropout: the probability of keeping "
                                "a hidden unit in training (1: no dropout)", low=0.0,
                                high=1.0, low_open=True, check=_check_float32)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The data loss and the L2 regularisation strength: L = data loss + reg * sum W^2."""

    kind: str = field("softmax", doc="data loss (or module:attr of your own Loss)",
                      choices=_losses, spec=_loss_spec)
    reg: float = field(1e-3, doc="L2 regularisation strength", low=0.0,
                       check=_check_float32)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optax optimizer and its learning-rate schedule (decayed once per epoch)."""

    name: str = field("adam", doc="optimizer", choices=_optimizers)
    lr: float = field(3e-3, doc="learning rate", low=0.0, low_open=True,
                      check=_check_float32)
    lr_decay: float = field(0.95, doc="learning rate factor per epoch", low=0.0, high=1.0,
                            low_open=True, check=_check_float32)
    momentum: float = field(0.9, doc="momentum (optimizer.name = 'momentum')", low=0.0,
                            high=1.0, high_open=True, check=_check_float32)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How long, in which batches, and where the gradients come from."""

    epochs: int = field(30, doc="passes over the training set", low=1)
    batch_size: int = field(64, doc="examples per step", low=1)
    pipeline: str = field("reverse", doc="gradients from our VJP rules (reverse), our JVP "
                          "rules (forward), or JAX's own autodiff of the plain-jnp twin of "
                          "the model and loss, jaxprop.reference (jax)", choices=_pipelines)
    forward_chunk_size: int = field(64, doc="JVPs pushed at once by the forward pipeline",
                                    low=1)
    cpu_gemm: str = field("default", doc="XLA:CPU's matmul backend for the compiled epoch: "
                          "what XLA picks (default), its Eigen kernels (eigen) or oneDNN "
                          "(onednn); ignored on GPU/TPU", choices=("default", "eigen",
                                                                   "onednn"))


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The grid of ``jaxprop sweep``: every lr x every reg (empty: the single config value)."""

    lr: tuple[float, ...] = field((), doc="learning rates to try", low=0.0, low_open=True,
                                  check=_check_float32)
    reg: tuple[float, ...] = field((), doc="regularisation strengths to try", low=0.0,
                                   check=_check_float32)


SWEEP_KEYS = {"optimizer.lr": "lr", "loss.reg": "reg"}
"""Grid keys a sweep can vmap over (they are traced arrays inside the training step), and
the ``[sweep]`` list that holds each one's values."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One experiment. Field names are the dotted keys of ``--set`` and the TOML tables."""

    name: str = field("digits_two_layer", doc="experiment name (runs/<name>/)",
                      check=_check_name)
    seed: int = field(0, doc="seed of the initial weights and of the data order", low=0,
                      high=2**32 - 1)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)

    def validate(self) -> None:
        """What involves several keys: a learning rate must not decay to 0 in float32."""
        o, epochs = self.optimizer, self.train.epochs
        for key, lr in [("optimizer.lr", o.lr)] + [
                (f"sweep.lr[{i}]", v) for i, v in enumerate(self.sweep.lr)]:
            last = lr * o.lr_decay ** (epochs - 1)
            if last < FLOAT32_TINY:
                epoch = 1 + math.ceil(math.log(FLOAT32_TINY / lr) / math.log(o.lr_decay))
                raise ValueError(
                    f"config key {key!r} = {lr:g} decays below float32's smallest normal "
                    f"number ({FLOAT32_TINY:.3g}) by epoch {epoch} of train.epochs={epochs} "
                    f"(optimizer.lr_decay={o.lr_decay:g}), and from then on nothing would "
                    "train: raise optimizer.lr_decay or lower train.epochs")


SECTIONS = tuple(f.name for f in dataclasses.fields(Config)
                 if dataclasses.is_dataclass(f.default_factory))
"""The tables of a training experiment's TOML file."""


def default_config() -> Config:
    """The default experiment: the two-layer net on digits (= configs/digits_two_layer.toml)."""
    return Config()


def from_dict(raw: dict[str, Any]) -> Config:
    """Builds a checked Config from nested tables; absent keys take their defaults."""
    return _settings.from_dict(Config, raw)


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as nested dicts (tuples as lists); absent values left out."""
    return _settings.to_dict(cfg)


def to_toml(cfg: Config, header: str = "") -> str:
    """The config as TOML text that ``load_config`` reads back to an equal Config."""
    return _settings.to_toml(cfg, header)


def apply_overrides(cfg: Config, overrides: Iterable[str | tuple[str, Any]]) -> Config:
    """Returns cfg with each ``KEY=VALUE`` (or ``(key, value)``) applied and checked."""
    return _settings.apply(cfg, overrides)


# ----------------------------------------------------------------------------- files


def config_dirs() -> list[Path]:
    """Where experiments are looked up by name: ``./configs``, then the shipped ones."""
    package = Path(__file__).resolve().parents[1]
    dirs = [Path.cwd() / "configs", package.parent / "configs", package / "configs"]
    return list(dict.fromkeys(dirs))


def _not_an_experiment(path: Path, raw: dict[str, Any]) -> str | None:
    """Why the TOML file at ``path`` is not a training experiment, or None if it is one."""
    if not any(k in raw for k in SECTIONS):
        return f"it has none of the tables [{'], ['.join(SECTIONS)}]"
    try:
        from_dict({"name": path.stem, **raw})
    except (ValueError, TypeError) as err:
        return str(err).split(" Valid keys:")[0].split("; valid keys:")[0]
    return None


def _toml_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in config_dirs():
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
            if _not_an_experiment(p, _settings.read_toml(p)) is None:
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
    if path.is_file() or path.is_dir():
        return path
    name = path.stem if path.suffix == ".toml" and len(path.parts) == 1 else str(path_or_name)
    shipped = shipped_configs()
    if name in shipped:
        return shipped[name]
    names = ", ".join(shipped) or "none found"
    other = _toml_files().get(name)
    if other is not None and any(k in _settings.read_toml(other) for k in SECTIONS):
        return other  # an experiment with a mistake: load_config names it
    if other is not None:
        raise ValueError(
            f"config {name!r} ({other}) is not a training experiment, so `jaxprop train` and "
            f"`jaxprop sweep` cannot use it; the training experiments are: {names}")
    raise FileNotFoundError(
        f"config file {str(path_or_name)!r} not found, and it is not the name of a shipped "
        f"experiment (in {', '.join(str(d) for d in config_dirs())}: {names})")


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
        raw = _settings.read_toml(path)
        if not any(k in raw for k in SECTIONS):
            names = ", ".join(shipped_configs()) or "none found"
            raise ValueError(
                f"config file {str(path)!r} is not a training experiment: it has none of the "
                f"tables [{'], ['.join(SECTIONS)}]. Give a training config, e.g. one of: "
                f"{names}")
        raw.setdefault("name", path.stem)
        cfg = from_dict(raw)
    return apply_overrides(cfg, overrides)
