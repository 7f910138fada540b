"""Checkpoints written atomically: a temporary file in the same folder, fsync, then rename.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a resumed run) sees either the
previous checkpoint or the new one, never half a file, even if the process dies mid-write.

A checkpoint is one ``.npz``: ``epoch`` (epochs completed), the leaves of
``(params, opt_state)`` in ``jax.tree`` order as ``leaf_0000, leaf_0001, ...``, and
``treedef``, the structure's text, checked when it is loaded.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "save_npz", "save_checkpoint",
           "load_checkpoint"]


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # elsewhere: set and restore (briefly process-wide)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that ``path`` is always either old or new, whole.

    The file gets the mode a plain ``open(path, "w")`` would give it, ``0o666 & ~umask``
    (``mkstemp`` alone would leave it private, 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays``, written atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(path: str | os.PathLike, epoch: int, state, extra: dict | None = None) -> None:
    """Saves ``state`` (a pytree, e.g. ``(params, opt_state)``) after ``epoch`` epochs."""
    leaves, treedef = jax.tree.flatten(state)
    arrays = {f"leaf_{i:04d}": np.asarray(jax.device_get(x)) for i, x in enumerate(leaves)}
    arrays["epoch"] = np.asarray(epoch, np.int64)
    arrays["treedef"] = np.asarray(str(treedef))
    arrays["extra"] = np.asarray(json.dumps(extra or {}))
    save_npz(path, arrays)


def load_checkpoint(path: str | os.PathLike, template) -> tuple[int, object, dict]:
    """Loads a checkpoint into the structure of ``template``.

    Args:
      path: the ``.npz`` written by ``save_checkpoint``.
      template: a pytree with the expected structure, shapes and dtypes (freshly initialised
        params and optimizer state).

    Returns:
      ``(epoch, state, extra)``.

    Raises:
      FileNotFoundError: no checkpoint at ``path``.
      ValueError: the checkpoint is unreadable or does not fit ``template`` (a changed model,
        optimizer or dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint to resume from: {str(path)!r} does not exist (run without --resume "
            "to start afresh)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as err:  # noqa: BLE001 - a torn or foreign file
        raise ValueError(f"checkpoint {str(path)!r} is unreadable: {err}") from None
    leaves, treedef = jax.tree.flatten(template)
    if str(data.get("treedef")) != str(treedef):
        raise ValueError(
            f"checkpoint {str(path)!r} does not match this config: it holds "
            f"{data.get('treedef')} but the model and optimizer expect {treedef}. Resume with "
            "the same model.kind and optimizer.name, or start afresh without --resume")
    loaded = []
    for i, ref in enumerate(leaves):
        arr = data[f"leaf_{i:04d}"]
        if arr.shape != np.shape(ref) or arr.dtype != np.asarray(ref).dtype:
            raise ValueError(
                f"checkpoint {str(path)!r}: array {i} has shape {arr.shape} {arr.dtype}, but "
                f"this config expects {np.shape(ref)} {np.asarray(ref).dtype} (changed "
                "model.hidden_dim, data.dataset or data.bias_trick?)")
        loaded.append(arr)
    extra = json.loads(str(data.get("extra", "{}")))
    return int(data["epoch"]), jax.tree.unflatten(treedef, loaded), extra
