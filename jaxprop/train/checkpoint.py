"""Checkpoints written atomically: a temporary file in the same folder, fsync, then rename.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a resumed run) sees either the
previous checkpoint or the new one, never half a file, even if the process dies mid-write.

A checkpoint is one ``.npz``: ``epoch`` (epochs completed), the leaves of
``(params, opt_state)`` in ``jax.tree`` order as ``leaf_0000, leaf_0001, ...``, and
``treedef``, the structure's text, and ``extra``, a JSON object (steps, seconds, and the
config the run was trained with). A checkpoint is checked when it is loaded, before it is
trusted: its epoch, every leaf's presence, shape and dtype, and that every value is finite.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import jax
import numpy as np

__all__ = ["atomic_write_files", "atomic_write_bytes", "atomic_write_text", "npz_bytes",
           "save_npz", "checkpoint_bytes", "save_checkpoint",
           "load_checkpoint", "read_info", "require_file", "stored_params", "describe_params",
           "named_os_error"]


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


def named_os_error(err: OSError, doing: str, path) -> OSError:
    """``err`` again, saying what was being done to which file: ``cannot write 'R/x': ...``.

    The errno is kept (``ENOSPC``, ``EFBIG``, ...); the message names the file a user knows,
    not a temporary one.
    """
    reason = err.strerror or str(err) or type(err).__name__
    message = f"{doing} {str(path)!r}: {reason}"
    return OSError(message) if err.errno is None else OSError(err.errno, message)


def _write_temporary(path: Path, data: bytes) -> str:
    """``data`` in a new temporary file beside ``path``, on disk (fsync); returns its name.

    The file gets the mode a plain ``open(path, "w")`` would give it, ``0o666 & ~umask``
    (``mkstemp`` alone would leave it private, 0600).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise named_os_error(err, "cannot write", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise named_os_error(err, "cannot write", path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_files(files: dict[str | os.PathLike, bytes]) -> None:
    """Writes ``{path: data}`` so that each file is always either old or new, whole, and
    none is new unless all were written.

    Every file's data goes to a temporary file beside it, on disk, before the first is
    renamed into place: a full disk (or a file size limit) fails while writing them, and
    leaves every file as it was. ``os.replace`` is atomic; only a crash between the renames
    (no space is needed for them) could leave some files new and others old.
    """
    written: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            written.append((_write_temporary(Path(path), data), Path(path)))
        for tmp, path in written:
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise named_os_error(err, "cannot write", path) from None
    finally:
        for tmp, _ in written:  # those not renamed into place
            Path(tmp).unlink(missing_ok=True)
    for folder in dict.fromkeys(path.parent for _, path in written):
        _fsync_folder(folder)  # make the renames themselves durable


def _fsync_folder(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that ``path`` is always either old or new, whole."""
    atomic_write_files({path: data})


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of ``np.savez`` of ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays``, written atomically."""
    atomic_write_bytes(path, npz_bytes(arrays))


def checkpoint_bytes(epoch: int, state, extra: dict | None = None) -> bytes:
    """The ``.npz`` bytes of a checkpoint of ``state`` after ``epoch`` epochs."""
    leaves, treedef = jax.tree.flatten(state)
    arrays = {f"leaf_{i:04d}": np.asarray(jax.device_get(x)) for i, x in enumerate(leaves)}
    arrays["epoch"] = np.asarray(epoch, np.int64)
    arrays["treedef"] = np.asarray(str(treedef))
    arrays["extra"] = np.asarray(json.dumps(extra or {}))
    return npz_bytes(arrays)


def save_checkpoint(path: str | os.PathLike, epoch: int, state, extra: dict | None = None) -> None:
    """Saves ``state`` (a pytree, e.g. ``(params, opt_state)``) after ``epoch`` epochs."""
    atomic_write_bytes(path, checkpoint_bytes(epoch, state, extra))


def _unreadable(path: Path, err: BaseException) -> ValueError:
    if isinstance(err, zipfile.BadZipFile):
        reason = f"not a zip archive: {err}"
    elif "pickle" in str(err).lower():
        # numpy would advise allow_pickle=True: never, loading a pickle can run code
        reason = "it holds pickled Python objects, which a jaxprop checkpoint never does"
    else:
        reason = f"{type(err).__name__}: {err}"
    return ValueError(
        f"checkpoint {str(path)!r} is unreadable ({reason}); it is not a checkpoint a run can "
        "continue from: start afresh with --overwrite, which moves the folder's contents "
        "aside")


def _load_arrays(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` (only ``keys``, if given), safely."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = z.files if keys is None else [k for k in keys if k in z.files]
            return {k: z[k] for k in names}
    except OSError as err:
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise named_os_error(err, "cannot read", path) from None
        raise _unreadable(path, err) from None
    except Exception as err:  # noqa: BLE001 - a torn or foreign file, whatever numpy says
        raise _unreadable(path, err) from None


def _epoch_and_extra(path: Path, data: dict) -> tuple[int, dict]:
    where = f"checkpoint {str(path)!r}"
    if "epoch" not in data:
        raise ValueError(f"{where} has no 'epoch' entry; it is not a checkpoint jaxprop wrote")
    epoch = data["epoch"]
    if epoch.shape != () or not np.issubdtype(epoch.dtype, np.integer) or int(epoch) < 0:
        raise ValueError(f"{where}: 'epoch' must be a non-negative integer; it holds "
                         f"{epoch.dtype} {epoch.tolist()!r}")
    try:
        extra = json.loads(str(data["extra"])) if "extra" in data else {}
    except ValueError:
        extra = None
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: 'extra' must be a JSON object; it is damaged")
    return int(epoch), extra


def read_info(path: str | os.PathLike) -> tuple[int, dict]:
    """``(epoch, extra)`` of a checkpoint, without loading its arrays.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file is not a readable checkpoint, or its epoch is not one.
    """
    path = Path(path)
    return _epoch_and_extra(path, _load_arrays(path, ("epoch", "extra")))


def _param_names(treedef: str) -> list[str] | None:
    """The names of the params (the state's first entry, a table of arrays) in a checkpoint's
    ``treedef`` text, in leaf order; None if its state does not start with such a table."""
    found = re.match(r"PyTreeDef\(\(\{((?:'[^']*': \*(?:, )?)*)\}", treedef)
    return None if found is None else re.findall(r"'([^']*)': \*", found.group(1))


def _params_of(data: dict) -> dict[str, tuple[int, ...]] | None:
    """``{name: shape}`` of the params in a checkpoint's arrays; None if it does not say."""
    names = _param_names(str(data.get("treedef")))
    if names is None or not all(f"leaf_{i:04d}" in data for i in range(len(names))):
        return None
    return {name: tuple(data[f"leaf_{i:04d}"].shape) for i, name in enumerate(names)}


def stored_params(path: str | os.PathLike) -> dict[str, tuple[int, ...]] | None:
    """``{name: shape}`` of the params a checkpoint holds (``W``, ``b``), or None if it does
    not say (a checkpoint whose state does not start with a table of params)."""
    path = Path(path)
    names = _param_names(str(_load_arrays(path, ("treedef",)).get("treedef")))
    if names is None:
        return None
    keys = ("treedef", *(f"leaf_{i:04d}" for i in range(len(names))))
    return _params_of(_load_arrays(path, keys))


def describe_params(params: dict[str, tuple[int, ...]]) -> str:
    """``W [64, 10], b [10]``: the names with their shapes."""
    return ", ".join(f"{name} {list(shape)}" for name, shape in params.items())


def require_file(path: Path) -> None:
    """Raises unless there is a checkpoint file at ``path``, naming what is there instead."""
    if path.is_file():
        return
    if path.exists():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise IsADirectoryError(
            f"cannot resume from {str(path)!r}: it is {what}, not a checkpoint file; put "
            "the run's checkpoint.npz back, or start afresh with --overwrite")
    raise FileNotFoundError(
        f"no checkpoint to resume from: {str(path)!r} does not exist (run without --resume "
        "to start afresh)")


def _leaf_names(template, labels: tuple[str, ...]) -> list[str]:
    names = []
    for key_path, _ in jax.tree_util.tree_flatten_with_path(template)[0]:
        text = jax.tree_util.keystr(key_path)
        if labels and text.startswith("[") and "]" in text:
            head, rest = text[1:].split("]", 1)
            if head.isdigit() and int(head) < len(labels):
                text = labels[int(head)] + rest
        names.append(text)
    return names


def load_checkpoint(path: str | os.PathLike, template, labels: tuple[str, ...] = ()
                    ) -> tuple[int, object, dict]:
    """Loads a checkpoint into the structure of ``template``, checking it first.

    Args:
      path: the ``.npz`` written by ``save_checkpoint``.
      template: a pytree with the expected structure, shapes and dtypes (freshly initialised
        params and optimizer state).
      labels: names of the template's top-level entries, for messages (``("params",
        "optimizer state")``).

    Returns:
      ``(epoch, state, extra)``.

    Raises:
      FileNotFoundError: no checkpoint at ``path``.
      ValueError: the checkpoint is unreadable, lacks its epoch or a leaf, does not fit
        ``template`` (a changed model, optimizer or dataset), or holds a NaN or Inf: it is
        not a good state to continue from.
    """
    path = Path(path)
    require_file(path)
    data = _load_arrays(path)
    epoch, extra = _epoch_and_extra(path, data)
    where = f"checkpoint {str(path)!r}"
    leaves, treedef = jax.tree.flatten(template)
    has = _params_of(data)
    params = template[0] if isinstance(template, tuple) and template else None
    if has is not None and isinstance(params, dict) and sorted(has) != sorted(params):
        expects = {k: np.shape(v) for k, v in sorted(params.items())}
        raise ValueError(
            f"{where} does not belong to this run's model: it holds the params "
            f"{describe_params(has)}, but this run's model has {describe_params(expects)}. "
            "Put this run's own checkpoint back, or start afresh with --overwrite")
    if str(data.get("treedef")) != str(treedef):
        raise ValueError(
            f"{where} does not match this config: it holds "
            f"{data.get('treedef')} but the model and optimizer expect {treedef}. Resume with "
            "the same model.kind and optimizer.name, or start afresh without --resume")
    names = _leaf_names(template, labels)
    loaded = []
    for i, ref in enumerate(leaves):
        key = f"leaf_{i:04d}"
        if key not in data:
            raise ValueError(f"{where} lacks array {key!r} ({names[i]}); it is damaged")
        arr = data[key]
        if arr.shape != np.shape(ref) or arr.dtype != np.asarray(ref).dtype:
            raise ValueError(
                f"{where}: array {i} has shape {arr.shape} {arr.dtype}, but "
                f"this config expects {np.shape(ref)} {np.asarray(ref).dtype} (changed "
                "model.hidden_dim, data.dataset or data.bias_trick?)")
        if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(
                f"{where}: {names[i]} holds {bad} NaN or Inf value(s); a checkpoint that is "
                "not finite is not a good state to continue from (start afresh with "
                "--overwrite)")
        loaded.append(arr)
    stored = [k for k in data if k.startswith("leaf_")]
    if len(stored) != len(leaves):
        raise ValueError(f"{where} holds {len(stored)} arrays but this config's state has "
                         f"{len(leaves)}; it is damaged or from another run")
    return epoch, jax.tree.unflatten(treedef, loaded), extra
