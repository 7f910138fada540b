"""Writers of small dataset files in the real formats, for the loader tests.

- CIFAR-10 / PROPS: pickled dicts with ``b"batch_label"``, ``b"labels"``, ``b"data"`` (uint8
  [n, 3072], rows of three channel-major 32x32 planes, R then G then B) and ``b"filenames"``,
  named ``data_batch_1..5`` and ``test_batch``, plus ``batches.meta`` with
  ``b"label_names"``, ``b"num_cases_per_batch"`` and ``b"num_vis"``.
- MNIST: IDX files, a big-endian header (magic ``0x00000800 | D`` for D dimensions, then one
  uint32 per dimension) followed by the uint8 values, optionally gzip-compressed.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def hwc_to_cifar_rows(images: np.ndarray) -> np.ndarray:
    """uint8 [n, 32, 32, 3] images to CIFAR's [n, 3072] rows of R, G, B planes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(images.shape[0], 3072))


def write_cifar_batch(path: Path, rows: np.ndarray, labels, protocol: int = 2) -> None:
    """One batch pickle, holding ``rows`` (uint8 [n, 3072]) and ``labels``, as CIFAR's."""
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in labels],
        b"data": rows,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar_meta(path: Path, label_names=CIFAR_NAMES, per_batch: int = 10000) -> None:
    meta = {b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    if label_names is not None:
        meta[b"label_names"] = [n.encode() for n in label_names]
    path.write_bytes(pickle.dumps(meta, protocol=2))


def write_cifar_folder(directory: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0,
                       label_names=CIFAR_NAMES) -> dict[str, np.ndarray]:
    """A CIFAR-format folder with five training batches of ``per_batch`` images each.

    Returns:
      The HWC images and labels written: ``x_train`` uint8 [5 * per_batch, 32, 32, 3],
      ``y_train``, ``x_test`` [n_test, 32, 32, 3], ``y_test``, in file order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    num_classes = len(label_names) if label_names is not None else 10
    x_train = rng.integers(0, 256, (5 * per_batch, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, num_classes, 5 * per_batch)
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, num_classes, n_test)
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        write_cifar_batch(directory / f"data_batch_{b + 1}",
                          hwc_to_cifar_rows(x_train[part]), y_train[part])
    write_cifar_batch(directory / "test_batch", hwc_to_cifar_rows(x_test), y_test)
    write_cifar_meta(directory / "batches.meta", label_names, per_batch)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array: magic, big-endian uint32 dims, values."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False, magic: int | None = None) -> None:
    data = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def write_mnist_folder(directory: Path, n_train: int = 60, n_test: int = 10, gz: bool = False,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST IDX files (``.gz`` names when ``gz``) with random 28x28 digits."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    suffix = ".gz" if gz else ""
    for stem, key in zip(MNIST_STEMS, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        write_idx(directory / f"{stem}{suffix}", arrays[key], gz=gz)
    return arrays


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` in a pickle: SHORT_BINSTRING, or BINSTRING when long."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def py2_cifar_batch_bytes(rows: np.ndarray, labels) -> bytes:
    """A batch pickled the way the real CIFAR-10 files were: Python 2, protocol 2.

    Keys and the array's bytes are Python 2 ``str`` (BINSTRING opcodes) and the array is
    rebuilt by ``numpy.core.multiarray._reconstruct`` with ``ndarray.__setstate__``, which is
    what ``pickle.load(f, encoding="latin1")`` must cope with on the downloaded files.
    Written opcode by opcode, since Python 3 cannot produce these opcodes itself.
    """
    n, d = rows.shape
    out = b"\x80\x02}(" + _py2_str(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
    out += _py2_str(b"b") + b"\x87R"
    out += b"(K\x01M" + struct.pack("<H", n) + b"M" + struct.pack("<H", d) + b"\x86"
    out += b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + _py2_str(b"|")
    out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + _py2_str(np.ascontiguousarray(rows, np.uint8).tobytes()) + b"tb"
    out += _py2_str(b"labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"e"
    out += _py2_str(b"batch_label") + _py2_str(b"testing batch 1 of 1") + b"u."
    return out
