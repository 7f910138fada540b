"""What ``jaxprop compare`` measures: its settings schema, on the one settings engine.

The defaults live here, so that an installed ``jaxprop`` runs without the repository;
``configs/compare.toml`` holds the same values (a test keeps them equal). ``--quick``
applies :data:`QUICK` (and a file's own ``[quick]`` table) on top, then every
``--set KEY=VALUE``, with the grammar of ``jaxprop train`` (``jaxprop._settings``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxprop import _settings
from jaxprop._settings import field

__all__ = ["SECTIONS", "DTYPES", "Plan", "DEFAULTS", "QUICK", "load_config"]

SECTIONS = ("width", "depth", "two_layer", "cheap_gradient", "big_jacobian")
"""The parts of the comparison that ``sections`` may choose from."""

DTYPES = ("float32", "float64")


def _activations():
    from jaxprop.compare.problems import ACTIVATIONS

    return ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class Width:
    """x [n] -> y [m] through a chain of matmul + activation, n * m fixed."""

    product: int = field(4096, doc="n * m, the same Jacobian size at every point", low=1)
    n: tuple[int, ...] = field((4, 8, 16, 32, 64, 128, 256, 512, 1024),
                               doc="input widths n; m = product / n", low=1, nonempty=True)
    hidden: int = field(128, doc="width of the hidden layers", low=1)
    depth: int = field(3, doc="matmul + activation layers", low=1)
    activation: str = field("sigmoid", doc="the nonlinearity", choices=_activations)


@dataclasses.dataclass(frozen=True)
class Depth:
    """The gradient of sum(chain(x)), x [inputs]: memory against depth."""

    depths: tuple[int, ...] = field((1, 2, 4, 8, 16, 32, 64), doc="depths to measure", low=1,
                                    nonempty=True)
    inputs: int = field(4, doc="input width", low=1)
    width: int = field(256, doc="layer width", low=1)
    activation: str = field("relu", doc="the nonlinearity", choices=_activations)


@dataclasses.dataclass(frozen=True)
class TwoLayer:
    """The two-layer net: scores w.r.t. x [1, input]; loss w.r.t. the parameters."""

    input: int = field(3072, doc="D of the scores' Jacobian", low=1)
    hidden: int = field(100, doc="H of the scores' Jacobian", low=1)
    classes: int = field(10, doc="C", low=1)
    loss_input: int = field(64, doc="D of the loss's gradient", low=1)
    loss_hidden: int = field(32, doc="H of the loss's gradient", low=1)
    batch: int = field(16, doc="N of the loss", low=1)
    reg: float = field(1e-3, doc="L2 strength of the loss", low=0.0)


@dataclasses.dataclass(frozen=True)
class CheapGradient:
    """The loss gradient's cost over the forward pass's."""

    input: int = field(64, doc="D", low=1)
    hiddens: tuple[int, ...] = field((8, 16, 32, 64), doc="hidden widths H", low=1,
                                     nonempty=True)
    classes: int = field(10, doc="C", low=1)
    batch: int = field(128, doc="N, large enough that the forward pass is not all dispatch",
                       low=1)
    reg: float = field(1e-3, doc="L2 strength", low=0.0)


@dataclasses.dataclass(frozen=True)
class BigJacobian:
    """The lecture's 256 GB Jacobian: y = x w, x [N, D], w [D, M]."""

    batch: int = field(64, doc="N", low=1)
    input: int = field(4096, doc="D", low=1)
    output: int = field(4096, doc="M", low=1)
    run: bool = field(True, doc="also run and time the VJP (about 70 MB of arrays)")


@dataclasses.dataclass(frozen=True)
class Plan:
    """One run of ``jaxprop compare``."""

    out: str = field("runs/compare", doc="output folder")
    seed: int = field(0, doc="seed of the problems' data", low=0)
    dtype: str = field("float32", doc="float64 needs JAX_ENABLE_X64=1", choices=DTYPES)
    repeats: int = field(15, doc="timed samples per program; the median is reported", low=1)
    min_sample_ms: float = field(20.0, doc="each sample repeats a call until it lasts this long",
                                 low=0.0)
    sections: tuple[str, ...] = field(SECTIONS, doc="the parts to run", choices=SECTIONS,
                                      nonempty=True)
    width: Width = dataclasses.field(default_factory=Width)
    depth: Depth = dataclasses.field(default_factory=Depth)
    two_layer: TwoLayer = dataclasses.field(default_factory=TwoLayer)
    cheap_gradient: CheapGradient = dataclasses.field(default_factory=CheapGradient)
    big_jacobian: BigJacobian = dataclasses.field(default_factory=BigJacobian)

    def validate(self) -> None:
        bad = [n for n in self.width.n if self.width.product % n]
        if bad:
            raise ValueError(f"config key 'width.n' has {bad}, which do not divide "
                             f"width.product={self.width.product} (m = product / n)")


DEFAULTS: dict[str, Any] = _settings.to_dict(Plan())
"""The full run, the one ``docs/forward_vs_reverse.md`` reports, as tables."""

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


def load_config(path: str | Path | None = None, *, quick: bool = False,
                sets: list[str] | tuple[str, ...] = (), out: str | None = None) -> Plan:
    """The settings of one run: defaults, then the file, ``--quick``, ``--set`` and ``--out``.

    Args:
      path: a TOML file laid out like ``configs/compare.toml`` (it may give only some keys);
        ``None`` uses the defaults alone.
      quick: apply :data:`QUICK` and the file's ``[quick]`` tables.
      sets: ``KEY=VALUE`` assignments, applied in order.
      out: the output folder, overriding ``out``.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError, TypeError: an unknown key, or a value of the wrong type or range.
    """
    file: dict = {} if path is None else _settings.read_toml(path)
    file_quick = file.pop("quick", {})
    if not isinstance(file_quick, dict):
        raise TypeError("config key 'quick' must be a table of settings")
    plan = _settings.merge(Plan(), file)
    _settings.merge(plan, file_quick, "quick.")  # names a bad key in the file's [quick]
    if quick:
        plan = _settings.merge(plan, _settings.union(QUICK, file_quick))
    plan = _settings.apply(plan, sets)
    if out is not None:
        plan = dataclasses.replace(plan, out=str(out))
    return plan
