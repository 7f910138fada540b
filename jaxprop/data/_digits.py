"""scikit-learn's 8x8 handwritten digits, with jaxprop's fixed train/val/test split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["DIGITS_SPLIT_SIZES", "digits_split", "read_digits"]

# What digits_split gives on the 1,797 images scikit-learn ships (checked by the tests).
DIGITS_SPLIT_SIZES = (1444, 177, 176)


def digits_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed, stratified split of the digits: indices of train, val and test.

    No random numbers: within each class, taken in the order scikit-learn ships the
    images, the k-th image goes to validation when ``k % 10 == 8``, to test when
    ``k % 10 == 9`` and to training otherwise. That is 80/10/10 in every class, the same
    on every machine and every NumPy version: 1,444 / 177 / 176 images.

    Args:
      labels: int [N] class of each image.

    Returns:
      ``(train, val, test)``: int64 index arrays, each in increasing order.
    """
    rank = np.empty(labels.shape[0], dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.size)
    slot = rank % 10
    return np.flatnonzero(slot < 8), np.flatnonzero(slot == 8), np.flatnonzero(slot == 9)


def _digits_file() -> Path | None:
    """scikit-learn's bundled ``digits.csv.gz``, found without importing scikit-learn (slow)."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def read_digits():
    """The digits, split: ``((x, y) train, (x, y) val, (x, y) test)``.

    Reads the same file as ``sklearn.datasets.load_digits`` (1,797 rows of 64 pixels and
    the label), directly when it can be found, which skips importing scikit-learn.
    x is float64 [n, 8, 8] with pixel values 0..16, y int64 [n].
    """
    path = _digits_file()
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        images, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:  # pragma: no cover - a scikit-learn that moved its data file
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = np.asarray(digits.images), np.asarray(digits.target, dtype=np.int64)
    if images.shape != (1797, 8, 8):
        raise ValueError(f"digits: scikit-learn's digits have shape {images.shape}, "
                         "expected (1797, 8, 8)")
    return tuple((images[idx], labels[idx]) for idx in digits_split(labels))
