"""Reading the CIFAR-10 python pickle batches (CIFAR-10 itself and DeepRob's PROPS).

The format, from the CIFAR-10 page: each batch file is a pickled dict with ``b"data"``,
a uint8 [10000, 3072] array whose rows hold a 32x32 colour image as three channel-major
planes (1024 red, then 1024 green, then 1024 blue values, each row-major), and
``b"labels"``, a list of ints in 0..9. ``batches.meta`` holds ``b"label_names"``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from jaxprop.data._files import locate_dir, require_file

__all__ = ["CIFAR_FILES", "read_batch", "read_cifar_folder"]

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*TRAIN_BATCHES, "test_batch", "batches.meta")
IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3

# What a CIFAR pickle may reference: numpy arrays (as Python 2 or 3 numpy pickles them)
# and the bytes helper of protocol 2. Anything else (os.system, ...) is refused, so
# opening a doctored batch file cannot run code.
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and numpy arrays."""

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core"):  # written by numpy < 2
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}'")
        return super().find_class(module, name)


def _str(key) -> str:
    return key.decode("latin1") if isinstance(key, bytes) else str(key)


def _unpickle(name: str, path: Path) -> dict:
    try:
        raw = path.read_bytes()
        # latin1, as CS231n's load_pickle: it reads numpy arrays pickled by Python 2.
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means a bad file
        raise ValueError(
            f"{name}: cannot read '{path.name}' in directory '{path.parent}': not a CIFAR "
            f"python pickle ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(
            f"{name}: '{path.name}' in directory '{path.parent}' holds a "
            f"{type(obj).__name__}, expected a dict with keys b'data' and b'labels'"
        )
    return {_str(k): v for k, v in obj.items()}


def _labels(name: str, where: str, raw, num_classes: int | None) -> np.ndarray:
    """``b"labels"`` as int64, refused unless every label is an integer in range.

    Never cast: a float label (1.7) would be truncated to a class silently, and an integer
    too large for int64 (2**70) would not fit.
    """
    values = raw.tolist() if isinstance(raw, np.ndarray) else raw
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name}: {where}: b'labels' must be a list of integer class "
                         f"indices; got {type(raw).__name__}")
    top = num_classes if num_classes is not None else 2**63
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: {where}: b'labels' must hold integer class indices; "
                             f"label {i} is {v!r} ({type(v).__name__})")
        if not 0 <= v < top:
            rule = f"0..{num_classes - 1}" if num_classes is not None else "a class index"
            raise ValueError(f"{name}: {where} has label {v}, outside {rule} (label {i})")
    return np.asarray(values, dtype=np.int64).reshape(len(values))


def read_batch(name: str, path: Path, num_classes: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file as HWC images.

    Args:
      name: the dataset's name, for messages.
      path: a ``data_batch_*`` or ``test_batch`` pickle.
      num_classes: labels must lie in ``0 .. num_classes - 1`` (None: any class index).

    Returns:
      ``(x, y)``: uint8 [n, 32, 32, 3] images (converted from the channel-major rows as
      CS231n's ``load_CIFAR10`` does) and int64 [n] labels.

    Raises:
      ValueError: the file is not a pickle, lacks a key, has the wrong sizes or dtype, or a
        label that is not an integer in range (naming the file and the label).
    """
    batch = _unpickle(name, path)
    where = f"'{path.name}' in directory '{path.parent}'"
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise ValueError(
            f"{name}: {where} lacks key(s) {[k.encode() for k in missing]}; "
            f"has {[k.encode() for k in batch]}"
        )
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{name}: {where}: b'data' must be uint8 [n, {PIXELS}]; got {got}")
    labels = _labels(name, where, batch["labels"], num_classes)
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{name}: {where}: {labels.size} labels for {data.shape[0]} images"
        )
    # [n, C, H, W] -> [n, H, W, C], a view: the caller's concatenate makes the one copy.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_label_names(name: str, path: Path) -> tuple[str, ...] | None:
    meta = _unpickle(name, path)
    names = meta.get("label_names")
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(
            f"{name}: '{path.name}' in directory '{path.parent}': b'label_names' must be a "
            f"non-empty list of names; got {names!r}"
        )
    return tuple(_str(n) for n in names)


def read_cifar_folder(name: str, root: str | os.PathLike | None, subdirs: tuple[str, ...],
                      source: str, fallback_names: tuple[str, ...] | None = None):
    """The five training batches, the test batch and the class names of a CIFAR folder.

    Args:
      name: the dataset's name, for messages (``"cifar10"``, or ``"props"``, which uses the
        same format).
      root: the folder holding ``data_batch_1..5``, ``test_batch`` and ``batches.meta``,
        or its parent.
      subdirs: folders inside ``root`` that may hold the batches instead
        (``cifar-10-batches-py``).
      source: where the user gets the files, for a missing-file message.
      fallback_names: class names to use when ``batches.meta`` has none (else an error).

    Returns:
      ``(x_train, y_train, x_test, y_test, class_names)``: uint8 [N, 32, 32, 3] images in
      file order (batch 1 first) and int64 labels.

    Raises:
      FileNotFoundError: a folder or file is missing (named, with the directory).
      ValueError: a file is corrupt, or a label is outside the class names.
    """
    directory = locate_dir(name, root, subdirs, (TRAIN_BATCHES[0],), source)
    paths = {f: require_file(name, directory, (f,), source) for f in CIFAR_FILES}
    class_names = _read_label_names(name, paths["batches.meta"])
    if class_names is None:
        if fallback_names is None:
            raise ValueError(
                f"{name}: 'batches.meta' in directory '{directory}' lacks b'label_names'"
            )
        class_names = fallback_names
    c = len(class_names)
    parts = [read_batch(name, paths[f], c) for f in TRAIN_BATCHES]
    x_test, y_test = read_batch(name, paths["test_batch"], c)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    for y, files in ((y_train, "data_batch_1..5"), (y_test, "test_batch")):
        bad = (y < 0) | (y >= len(class_names))
        if bad.any():
            raise ValueError(
                f"{name}: {files} in directory '{directory}' has label {int(y[bad][0])}, "
                f"outside 0..{len(class_names) - 1} ({len(class_names)} names in batches.meta)"
            )
    return x_train, y_train, x_test, y_test, class_names
