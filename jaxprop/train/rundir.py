"""A run's folder, a unit of work: checked, locked, never overwritten by accident.

``RunDir.open(out, mode)`` does everything that can fail about the folder before any data is
loaded or anything compiled:

* ``out`` must be a folder or not exist yet (it is created); a file, a NUL character or an
  over-long name is refused, naming the argument;
* the folder is locked (``jaxprop.train.lock``): a second writer is refused at once, naming
  the PID of the first, and a lock left by a killed run is taken over and reported;
* temporary files that a crash in the middle of an atomic write left behind
  (``.checkpoint.npz.XXXXXXXX.tmp``) are removed;
* a new run (``mode="new"``) refuses a folder that holds anything; ``"overwrite"`` first
  moves everything there to a sibling folder ``<out>.old-N`` (nothing is deleted);
  ``"resume"`` needs a checkpoint there.

Every file but ``metrics.jsonl`` and ``history.jsonl`` is rewritten atomically
(``checkpoint.atomic_write_*``); those two get one fsync-ed line at a time, and a line torn
by a crash in the middle of an append is dropped when the run is resumed. Only process 0
writes: the processes of a multi-process run hold the same replicated parameters and share
one output folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from jaxprop._signals import GUARD, Stop
from jaxprop.train import checkpoint
from jaxprop.train.lock import LOCK_NAME, FolderLock

__all__ = ["CHECKPOINT", "RUN_FILES", "RunDir", "check_out_path", "read_metrics",
           "host_params"]

CHECKPOINT = "checkpoint.npz"

RUN_FILES = ("config.toml", "metrics.jsonl", "history.jsonl", "summary.json", "params.npz",
             CHECKPOINT, "loss.svg", "accuracy.svg", "templates.svg", "sweep.csv",
             "heatmap.svg", "sweep_config.toml", "best_config.toml")
"""The files a run or a sweep writes."""

_TEMPORARY = re.compile(r"^\.(" + "|".join(re.escape(n) for n in RUN_FILES)
                        + r")\.[A-Za-z0-9_]{8}\.tmp$")
"""What ``atomic_write_bytes`` names its temporary files: ``.<name>.<8 random>.tmp``."""

MAX_NAME_BYTES = 255


def check_out_path(out: str | os.PathLike, flag: str = "--out") -> Path:
    """``out`` as a Path, or an error naming ``flag`` if it cannot be an output folder.

    Raises:
      ValueError: empty, holds a NUL character, or a name longer than the file system allows.
      NotADirectoryError: ``out`` (or a folder above it) is a file.
    """
    text = os.fspath(out)
    if not str(text).strip():
        raise ValueError(f"{flag} is empty; give a folder")
    if "\x00" in str(text):
        raise ValueError(f"{flag} {text!r}: a path cannot hold a NUL character")
    path = Path(text).expanduser()
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > MAX_NAME_BYTES:
            raise ValueError(f"{flag} {text[:60]!r}...: the name {part[:40]!r}... is {size} "
                             f"bytes long; a file system allows at most {MAX_NAME_BYTES}")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag} {text!r} is a file, not a folder; give a folder "
                                 "(it is created if it does not exist)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{flag} {text!r}: {str(parent)!r} is a file, not "
                                         "a folder")
            break
    return path


def _describe(out: Path, names: list[str]) -> str:
    if CHECKPOINT in names:
        try:
            epoch, _ = checkpoint.read_info(out / CHECKPOINT)
            return f"a training run (its checkpoint is at epoch {epoch})"
        except (OSError, ValueError):
            return "a training run (its checkpoint is unreadable)"
    if "sweep.csv" in names:
        return "a sweep (sweep.csv)"
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    if set(names) <= set(RUN_FILES):
        return f"the files of a run ({shown})"
    return f"{len(names)} file(s) or folder(s) that are not a run's: {shown}"


def _aside(out: Path) -> Path:
    """The first free sibling ``<out>.old-N``."""
    base = out.resolve()
    i = 1
    while (base.parent / f"{base.name}.old-{i}").exists():
        i += 1
    return base.parent / f"{base.name}.old-{i}"


class RunDir:
    """The files of one run in ``out`` (open it with :meth:`open`).

    Attributes:
      out: the folder.
      enabled: whether this process writes (process 0 of a multi-process run).
      moved_to: where ``--overwrite`` moved the folder's previous contents, or None.
      removed: temporary files of a crashed write that were removed on opening.
      lock: the folder's lock (None when not opened, or not process 0).
      saved: one line on what the folder holds now, for a message if the run stops.
    """

    def __init__(self, out: str | os.PathLike, enabled: bool | None = None):
        self.out = Path(out)
        if enabled is None:
            import jax

            enabled = jax.process_index() == 0
        self.enabled = enabled
        self.moved_to: Path | None = None
        self.removed: list[str] = []
        self.lock: FolderLock | None = None
        self.created = False
        self.saved = ""

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(cls, out: str | os.PathLike, mode: str = "new", *, command: str = "jaxprop train",
             resumable: bool = True, enabled: bool | None = None) -> RunDir:
        """Checks, creates and locks ``out`` for a run; see the module docstring.

        Args:
          out: the output folder.
          mode: ``"new"``, ``"overwrite"`` or ``"resume"``.
          command: who holds the lock, for a second writer's message.
          resumable: whether to suggest ``--resume`` when a new run finds a run there.
          enabled: whether this process writes (default: process 0).

        Raises:
          FileExistsError: another process holds the folder, or a new run finds it in use.
          FileNotFoundError, IsADirectoryError: ``"resume"`` and there is no checkpoint
            file.
          NotADirectoryError, ValueError: ``out`` cannot be a folder.
          OSError: the folder cannot be created or written (named).
        """
        if mode not in ("new", "overwrite", "resume"):
            raise ValueError(f"RunDir.open: mode must be new, overwrite or resume; got {mode!r}")
        path = check_out_path(out)
        files = cls(path, enabled)
        if mode == "resume":
            checkpoint.require_file(path / CHECKPOINT)
        if not files.enabled:
            return files
        files.created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise checkpoint.named_os_error(err, "cannot create the output folder", path) \
                from None
        files.lock = FolderLock(path, command)
        try:
            files.lock.acquire()
        except FileExistsError:
            raise
        except OSError as err:
            raise checkpoint.named_os_error(err, "cannot write the lock file of", path) \
                from None
        try:
            with GUARD.critical():
                files._settle(mode, command, resumable)
        except BaseException as err:
            files.close()
            if isinstance(err, Stop) and not err.detail:
                err.detail = files.stopped_note()  # says where --overwrite moved the old run
            raise
        return files

    def _settle(self, mode: str, command: str, resumable: bool) -> None:
        path = self.out
        for entry in sorted(os.listdir(path)):
            if _TEMPORARY.match(entry):
                (path / entry).unlink(missing_ok=True)
                self.removed.append(entry)
        names = sorted(n for n in os.listdir(path) if n != LOCK_NAME)
        if mode == "resume":
            checkpoint.require_file(path / CHECKPOINT)  # once more, under the lock
            return
        if not names:
            return
        if mode == "new":
            then = "Continue it with --resume, or start" if resumable and CHECKPOINT in names \
                else "Start"
            raise FileExistsError(
                f"--out {str(path)!r} already holds {_describe(path, names)}. {then} afresh "
                f"with --overwrite, which moves what is there to {str(_aside(path))!r} "
                "(nothing is deleted), or give another --out")
        target = _aside(path)
        try:
            target.mkdir()
            for name in names:
                os.rename(path / name, target / name)
        except OSError as err:
            raise checkpoint.named_os_error(
                err, "--overwrite: cannot move the old contents aside to", target) from None
        self.moved_to = target

    def close(self) -> None:
        """Releases the lock; removes the folder again if this run created it and left it
        empty."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
            if self.created:
                try:
                    self.out.rmdir()  # only if empty
                except OSError:
                    pass

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stopped_note(self, resumed: bool = False) -> str:
        """What the folder holds, for the line of a run stopped by a signal."""
        if self.saved:
            return self.saved
        if resumed:
            return f"{self.out} is unchanged"
        if self.moved_to is not None:
            return f"nothing was written; what {self.out} held is in {self.moved_to}"
        return "nothing was written"

    # ------------------------------------------------------------------ files

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def text(self, name: str, text: str) -> None:
        if self.enabled:
            checkpoint.atomic_write_text(self.out / name, text)

    def json(self, name: str, obj: dict) -> None:
        self.text(name, json.dumps(obj, indent=2) + "\n")

    def state(self, epoch: int, state, extra: dict, config: str | None = None) -> None:
        """The checkpoint (params and optimizer state) and params.npz, and ``config.toml``
        when ``config`` is given: all written before any is renamed into place
        (``checkpoint.atomic_write_files``), so a full disk leaves all three as they were
        and config.toml never says what its checkpoint does not."""
        if self.enabled:
            files = {self.checkpoint: checkpoint.checkpoint_bytes(epoch, state, extra),
                     self.out / "params.npz": checkpoint.npz_bytes(host_params(state[0]))}
            if config is not None:
                files[self.out / "config.toml"] = config.encode()
            checkpoint.atomic_write_files(files)

    def metrics(self, records: list[dict]) -> None:
        """Rewrites ``metrics.jsonl`` with exactly ``records``."""
        self.text("metrics.jsonl", "".join(json.dumps(m) + "\n" for m in records))

    def _append(self, name: str, record: dict) -> None:
        if self.enabled:
            path = self.out / name
            try:
                with open(path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:
                raise checkpoint.named_os_error(err, "cannot write", path) from None

    def metric(self, record: dict) -> None:
        """Appends one epoch's record to ``metrics.jsonl``, flushed to disk."""
        self._append("metrics.jsonl", record)

    def history(self, event: dict) -> None:
        """Appends one line to ``history.jsonl``: how the run was started or resumed."""
        self._append("history.jsonl", {"time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                       "pid": os.getpid(), **event})


def read_metrics(path: Path, upto: int) -> list[dict]:
    """The records of ``metrics.jsonl`` up to epoch ``upto``.

    A crash in the middle of an append leaves a torn last line: it is dropped (the file is
    rewritten from the kept records by the caller). An undecodable line anywhere else means
    the file was damaged some other way, and raises.
    """
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise checkpoint.named_os_error(err, "cannot read", path) from None
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
    import jax

    return {k: np.asarray(v) for k, v in jax.device_get(tree).items()}
