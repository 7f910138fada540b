"""``load_dataset``: read a dataset's files, split them and preprocess them as the courses do."""

from __future__ import annotations

import os

import numpy as np

from jaxprop.data._dataset import Dataset
from jaxprop.data.datasets import DATASETS

__all__ = ["PREPROCESS", "course_split", "load_dataset"]

PREPROCESS = ("cs231n", "deeprob", "none")
"""The preprocessing recipes: each course's mean subtraction, or none."""


def course_split(recipe: str, n_train: int, n_test: int) -> tuple[int, int, int]:
    """How many images each split takes, by the course recipe, from the files' train and test.

    ``"cs231n"`` (the CS231n notebook's ``num_training, num_validation, num_test``):
    validation is the last ``min(1000, n_train // 50)`` (at least 1) training images, training the
    ``n_train - n_val`` before them, test the first ``min(1000, n_test)`` test images. On
    CIFAR-10 (50,000 + 10,000) that is exactly 49,000 / 1,000 / 1,000; on a smaller
    folder the validation share stays 1/50.

    ``"deeprob"`` (DeepRob's ``validation_ratio=0.2``): training is the first
    ``int(n_train * 0.8)`` images, validation the rest, test the whole test set.

    Returns:
      ``(n_tr, n_val, n_te)``.

    Raises:
      ValueError: an unknown recipe, or too few images for three non-empty splits.
    """
    _check_choice("split recipe", recipe, ("cs231n", "deeprob"))
    if recipe == "cs231n":
        n_val = max(1, min(1000, n_train // 50))
        n_tr, n_te = n_train - n_val, min(1000, n_test)
    else:
        n_tr = int(n_train * (1.0 - 0.2))
        n_val, n_te = n_train - n_tr, n_test
    if n_tr < 1 or n_val < 1 or n_te < 1:
        raise ValueError(
            f"the {recipe} split of {n_train} training and {n_test} test images leaves "
            f"{n_tr} / {n_val} / {n_te} for train / val / test; every split needs at least one"
        )
    return n_tr, n_val, n_te


def _centre(recipe: str, max_value: float, train: np.ndarray, val: np.ndarray,
            image_shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The mean to subtract, float64 [prod(image_shape)], and the divisor applied first."""
    pixels = int(np.prod(image_shape))
    if recipe == "cs231n":
        # The per-pixel mean image of the training split, as the notebook computes it.
        return train.reshape(train.shape[0], pixels).mean(axis=0, dtype=np.float64), 1.0
    if recipe == "deeprob":
        # One mean per colour channel, over every training image before validation is
        # carved out (train and val), as DeepRob's preprocess_cifar10 computes it.
        channels = image_shape[2] if len(image_shape) == 3 else 1
        total = sum(x.reshape(-1, channels).sum(axis=0, dtype=np.float64) for x in (train, val))
        count = (train.shape[0] + val.shape[0]) * (pixels // channels)
        per_channel = total / count / max_value
        return np.tile(per_channel, pixels // channels), max_value  # HWC: channel fastest
    return np.zeros((pixels,), dtype=np.float64), 1.0


def _rows(x: np.ndarray, divisor: float, mean32: np.ndarray, bias_trick: bool) -> np.ndarray:
    rows = x.reshape(x.shape[0], -1).astype(np.float32)
    if divisor != 1.0:
        rows /= np.float32(divisor)
    rows -= mean32[np.newaxis, :]
    if bias_trick:  # CS231n: X = np.hstack([X, np.ones((X.shape[0], 1))])
        rows = np.hstack([rows, np.ones((rows.shape[0], 1), dtype=np.float32)])
    return rows


def _check_choice(what: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


def load_dataset(name: str, root: str | os.PathLike | None = None, *,
                 preprocess: str | None = None, bias_trick: bool = False,
                 num_train: int | None = None) -> Dataset:
    """Load a dataset, split and preprocessed the way its course does it.

    Datasets:
      - ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits (bundled, offline; ``root``
        is ignored). A fixed stratified split, the same everywhere: 1,444 train / 177 val /
        176 test (see ``jaxprop.data.digits_split``).
      - ``"cifar10"``: the CIFAR-10 python batches ``data_batch_1..5``, ``test_batch`` and
        ``batches.meta`` in ``root`` (or in ``root/cifar-10-batches-py``).
      - ``"props"``: DeepRob's PROPS Classification set, in the same CIFAR-10 file layout, in
        ``root`` (or ``root/PROPS-Classification``). Class names come from ``batches.meta``.
      - ``"mnist"``: the four IDX files ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``
        (each also accepted gzip-compressed, ``.gz``) in ``root`` (or ``root/MNIST/raw``).

    Preprocessing (``preprocess``):
      - ``"cs231n"``: raw pixel values, minus the per-pixel mean image of the training
        split. Split 49,000 / 1,000 / 1,000 on CIFAR-10 (see ``course_split``).
      - ``"deeprob"``: pixels scaled to [0, 1], minus the per-channel mean over all
        training images; validation is the last 20% of the training files, test the
        whole test set.
      - ``"none"``: raw pixel values as float32, nothing subtracted.
      - ``None``: the dataset's course: ``"cs231n"`` for cifar10, ``"deeprob"`` for props,
        and ``"deeprob"`` for digits (pixels 0..16 scaled to [0, 1], then centred) and mnist.
      With ``"none"``, cifar10 keeps the CS231n split and props and mnist the DeepRob one.
      Digits always use their fixed split.

    Args:
      name: one of ``DATASETS``.
      root: the folder holding the dataset's files. jaxprop never downloads them.
      preprocess: one of ``PREPROCESS``, or None for the course default.
      bias_trick: append a column of ones to every row, so ``x @ W`` with a [D + 1, C]
        ``W`` folds in the bias (CS231n's ``np.hstack([X, np.ones((N, 1))])``).
      num_train: keep only the first ``num_train`` training rows, for quick runs. The mean
        is still that of the whole training split, so the rows kept are unchanged.

    Returns:
      A ``Dataset``: float32 rows [N, D] (D = prod(image_shape), + 1 with the bias trick),
      int32 labels, the image shape, the class names and the mean subtracted.

    Raises:
      ValueError: an unknown name or preprocess (listing the valid choices), a bad
        ``num_train``, or a corrupt file (naming it and what is wrong).
      FileNotFoundError: ``root`` or a file is missing (naming the file and the directory).

    For example::

      data = load_dataset("digits")
      data.x_train.shape   # (1444, 64)
      load_dataset("cifar10", "~/data/cifar-10-batches-py", bias_trick=True).in_dim  # 3073
    """
    _check_choice("dataset", name, tuple(DATASETS))
    if preprocess is not None:
        _check_choice("preprocess", preprocess, PREPROCESS)
    spec = DATASETS[name]
    recipe = spec.course if preprocess is None else preprocess
    if num_train is not None and (isinstance(num_train, bool) or not isinstance(num_train, int)
                                  or num_train < 1):
        raise ValueError(f"num_train must be a positive int or None; got {num_train!r}")
    if not isinstance(bias_trick, (bool, np.bool_)):
        raise ValueError(f"bias_trick must be True or False; got {bias_trick!r}")

    raw = spec.read(root)
    class_names = raw.class_names
    (x_all, y_all), (x_te, y_te) = raw.train, raw.test
    image_shape = tuple(int(s) for s in x_all.shape[1:])
    if raw.val is not None:  # a fixed split of its own (digits)
        (x_tr, y_tr), (x_val, y_val) = raw.train, raw.val
    else:
        split_recipe = recipe if recipe != "none" else spec.course
        try:
            n_tr, n_val, n_te = course_split(split_recipe, x_all.shape[0], x_te.shape[0])
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        x_tr, y_tr = x_all[:n_tr], y_all[:n_tr]
        x_val, y_val = x_all[n_tr:n_tr + n_val], y_all[n_tr:n_tr + n_val]
        x_te, y_te = x_te[:n_te], y_te[:n_te]

    if num_train is not None and num_train > x_tr.shape[0]:
        raise ValueError(
            f"num_train={num_train} exceeds the {x_tr.shape[0]} training images of {name} "
            f"with preprocess {recipe!r}"
        )
    mean, divisor = _centre(recipe, spec.max_value, x_tr, x_val, image_shape)
    mean32 = mean.astype(np.float32)
    keep = x_tr.shape[0] if num_train is None else num_train
    return Dataset(
        name=name,
        x_train=_rows(x_tr[:keep], divisor, mean32, bias_trick),
        y_train=y_tr[:keep].astype(np.int32),
        x_val=_rows(x_val, divisor, mean32, bias_trick),
        y_val=y_val.astype(np.int32),
        x_test=_rows(x_te, divisor, mean32, bias_trick),
        y_test=y_te.astype(np.int32),
        image_shape=image_shape,
        class_names=tuple(class_names),
        mean=mean32,
        preprocess=recipe,
        bias_trick=bool(bias_trick),
    )
