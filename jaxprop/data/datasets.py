"""The datasets jaxprop loads, each one entry holding every fact about it.

An entry says how to read the files (a reader from ``_digits``, ``_cifar`` or ``_idx``),
the largest raw pixel value (what "scale to [0, 1]" divides by), which course's recipe is
its default preprocessing, and where a user gets the files. ``load_dataset`` and the config
(``data.dataset``) read this table; nothing else lists the datasets.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from jaxprop.data._cifar import read_cifar_folder
from jaxprop.data._digits import read_digits
from jaxprop.data._idx import read_mnist_folder

__all__ = ["DatasetSpec", "DATASETS", "PROPS_CLASS_NAMES", "Raw"]

DIGIT_NAMES = tuple(str(d) for d in range(10))

PROPS_CLASS_NAMES = (
    "master_chef_can", "cracker_box", "sugar_box", "tomato_soup_can", "mustard_bottle",
    "tuna_fish_can", "gelatin_box", "potted_meat_can", "mug", "large_marker",
)
"""The ten YCB objects of DeepRob's PROPS datasets, in DeepRob's label order; used only when
batches.meta carries no label names."""


@dataclasses.dataclass(frozen=True)
class Raw:
    """What a reader returns: uint8 (or float) images [N, *image_shape] and int64 labels.

    ``val`` is given only by a dataset with a fixed split of its own (digits); the others
    are split by the course recipe (``jaxprop.data.course_split``).
    """

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    class_names: tuple[str, ...]
    val: tuple[np.ndarray, np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset.

    Attributes:
      name: the name configs use (``data.dataset``).
      summary: one line for listings.
      read: ``root -> Raw``; raises ``FileNotFoundError`` naming a missing file and
        ``ValueError`` naming a corrupt one.
      max_value: the largest raw pixel value.
      course: the default preprocessing recipe, ``"cs231n"`` or ``"deeprob"``.
      source: where a user gets the files (None: bundled).
    """

    name: str
    summary: str
    read: Callable[[str | os.PathLike | None], Raw]
    max_value: float
    course: str
    source: str | None = None


def _digits(root) -> Raw:
    train, val, test = read_digits()
    return Raw(train, test, DIGIT_NAMES, val)


_CIFAR10_SOURCE = (
    "get the CIFAR-10 python version (cifar-10-python.tar.gz) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and set data.root to the "
    "extracted cifar-10-batches-py folder (or to the folder that contains it)")
_PROPS_SOURCE = (
    "get the PROPS Classification set (CIFAR-10 format) from "
    "https://deeprob.org/datasets/props-classification/, extract it, and set data.root "
    "to the folder holding data_batch_1..5, test_batch and batches.meta")
_MNIST_SOURCE = (
    "get the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, plain or .gz) from "
    "http://yann.lecun.com/exdb/mnist/ or a mirror, and set data.root to their folder")


def _cifar10(root) -> Raw:
    x, y, x_te, y_te, names = read_cifar_folder("cifar10", root, ("cifar-10-batches-py",),
                                                _CIFAR10_SOURCE)
    return Raw((x, y), (x_te, y_te), names)


def _props(root) -> Raw:
    x, y, x_te, y_te, names = read_cifar_folder("props", root, ("PROPS-Classification",),
                                                _PROPS_SOURCE, PROPS_CLASS_NAMES)
    return Raw((x, y), (x_te, y_te), names)


def _mnist(root) -> Raw:
    x, y, x_te, y_te = read_mnist_folder(root, ("MNIST/raw",), _MNIST_SOURCE)  # torchvision's
    return Raw((x, y), (x_te, y_te), DIGIT_NAMES)


DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec("digits", "scikit-learn's 1,797 8x8 handwritten digits, bundled: the default",
                _digits, max_value=16.0, course="deeprob"),
    DatasetSpec("cifar10", "CIFAR-10's python pickle batches (CS231n)", _cifar10,
                max_value=255.0, course="cs231n", source=_CIFAR10_SOURCE),
    DatasetSpec("props", "DeepRob's PROPS Classification set, in CIFAR-10's format", _props,
                max_value=255.0, course="deeprob", source=_PROPS_SOURCE),
    DatasetSpec("mnist", "MNIST's four IDX files, plain or gzipped", _mnist,
                max_value=255.0, course="deeprob", source=_MNIST_SOURCE),
)}
"""Every dataset by name."""
