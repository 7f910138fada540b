"""Reading MNIST's IDX files, plain or gzip-compressed.

The IDX format (from the MNIST page): a 4-byte magic number, two zero bytes, a type code
(0x08 = unsigned byte) and the number of dimensions; then one big-endian uint32 per
dimension; then the values, row-major. Images are ``0x00000803`` ([n, 28, 28] uint8),
labels ``0x00000801`` ([n] uint8).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from jaxprop.data._files import locate_dir, require_file

__all__ = ["MNIST_FILES", "read_idx", "read_mnist_folder"]

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _spellings(stem: str) -> tuple[str, ...]:
    """A file's accepted names: ``train-images-idx3-ubyte``, ``train-images.idx3-ubyte``, + .gz."""
    dotted = stem.replace("-idx", ".idx")
    return (stem, f"{stem}.gz", dotted, f"{dotted}.gz")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in one IDX file.

    Args:
      path: an IDX file, gzip-compressed when its first bytes are gzip's magic.
      ndim: the number of dimensions the file must have (3 for images, 1 for labels).

    Returns:
      uint8 array with the shape the header gives.

    Raises:
      ValueError: naming the file, for a bad gzip stream, a wrong magic number (type code
        or number of dimensions) or a size that does not match the header.
    """
    where = f"'{path.name}' in directory '{path.parent}'"
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"mnist: {where} is not a valid gzip file ({err})") from None
    expected_magic = 0x0800 | ndim
    if len(raw) < 4:
        raise ValueError(f"mnist: {where} is too short ({len(raw)} bytes) to hold an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"mnist: {where} has IDX magic number 0x{magic:08x}, expected "
            f"0x{expected_magic:08x} (unsigned bytes, {ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"mnist: {where} is truncated inside its IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = math.prod(shape)  # Python ints: a header of 2**32-1 sizes cannot overflow
    if len(raw) - header != size:
        raise ValueError(
            f"mnist: {where}: header says shape {shape} ({size} bytes of data) but the file "
            f"holds {len(raw) - header} bytes of data (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_mnist_folder(root: str | os.PathLike | None, subdirs: tuple[str, ...], source: str):
    """MNIST's training and test sets from the four IDX files in ``root`` (or one of
    ``subdirs`` inside it, such as torchvision's ``MNIST/raw``); ``source`` says where the
    files come from, for a missing-file message.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: uint8 [N, H, W] images and int64 [N] labels.

    Raises:
      FileNotFoundError: the folder or one of the four files is missing.
      ValueError: a file is corrupt, or images and labels disagree in number.
    """
    first = _spellings(MNIST_FILES["train_images"])
    directory = locate_dir("mnist", root, subdirs, first, source)
    paths = {k: require_file("mnist", directory, _spellings(v), source)
             for k, v in MNIST_FILES.items()}
    arrays = {}
    for split in ("train", "test"):
        x = read_idx(paths[f"{split}_images"], 3)
        if 0 in x.shape[1:]:
            raise ValueError(
                f"mnist: '{paths[f'{split}_images'].name}' in directory '{directory}' holds "
                f"images of {x.shape[1]} x {x.shape[2]} pixels; an image needs at least one")
        y = read_idx(paths[f"{split}_labels"], 1).astype(np.int64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"mnist: '{paths[f'{split}_images'].name}' holds {x.shape[0]} images but "
                f"'{paths[f'{split}_labels'].name}' holds {y.shape[0]} labels "
                f"(directory '{directory}')"
            )
        if (y > 9).any():
            raise ValueError(
                f"mnist: '{paths[f'{split}_labels'].name}' in directory '{directory}' has "
                f"label {int(y[y > 9][0])}, outside 0..9"
            )
        arrays[split] = (x, y)
    return (*arrays["train"], *arrays["test"])
