"""A run's folder: its config, metrics, checkpoint, parameters and summary, written safely.

Every file but ``metrics.jsonl`` is rewritten atomically (``checkpoint.atomic_write_*``);
``metrics.jsonl`` gets one fsync-ed line per epoch, and a line torn by a crash in the middle
of an append is dropped when the run is resumed. Only process 0 writes: the processes of a
multi-process run hold the same replicated parameters and share one output folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from jaxprop.train import checkpoint

__all__ = ["CHECKPOINT", "RunDir", "read_metrics", "host_params"]

CHECKPOINT = "checkpoint.npz"


class RunDir:
    """The files of one run in ``out``."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.enabled = jax.process_index() == 0

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def text(self, name: str, text: str) -> None:
        if self.enabled:
            checkpoint.atomic_write_text(self.out / name, text)

    def state(self, epoch: int, state, extra: dict) -> None:
        """The checkpoint (params and optimizer state) and params.npz, both atomically."""
        if self.enabled:
            checkpoint.save_checkpoint(self.checkpoint, epoch, state, extra)
            checkpoint.save_npz(self.out / "params.npz", host_params(state[0]))

    def metrics(self, records: list[dict]) -> None:
        """Rewrites ``metrics.jsonl`` with exactly ``records``."""
        self.text("metrics.jsonl", "".join(json.dumps(m) + "\n" for m in records))

    def metric(self, record: dict) -> None:
        """Appends one epoch's record to ``metrics.jsonl``, flushed to disk."""
        if self.enabled:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())


def read_metrics(path: Path, upto: int) -> list[dict]:
    """The records of ``metrics.jsonl`` up to epoch ``upto``.

    A crash in the middle of an append leaves a torn last line: it is dropped (the file is
    rewritten from the kept records by the caller). An undecodable line anywhere else means
    the file was damaged some other way, and raises.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "epoch" not in record:
                raise ValueError("not an epoch record")
        except ValueError as err:
            if k == len(numbered) - 1:
                break  # the torn tail of an interrupted append
            raise ValueError(
                f"{str(path)!r} line {lineno} is not a metrics record ({err}); fix or delete "
                "that line, or start afresh without --resume") from None
        records.append(record)
    return [m for m in records if m["epoch"] <= upto]


def host_params(tree) -> dict:
    """Parameters as host NumPy arrays, by their course names."""
    return {k: np.asarray(v) for k, v in jax.device_get(tree).items()}
