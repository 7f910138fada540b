"""The ``Dataset`` record that every loader returns: preprocessed, flattened splits."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Dataset"]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One classification dataset, split and preprocessed, rows ready for ``x @ W``.

    Every split is a matrix of flattened images, one row per example, as the lecture's
    linear classifier ``s = x W + b`` expects it. Images are flattened in height, width,
    channel order (CS231n's ``load_CIFAR10`` layout), so ``row.reshape(image_shape)`` is
    the picture and a column of ``W`` reshaped the same way is a class template.

    Attributes:
      name: the dataset's name, one of ``jaxprop.data.DATASETS``.
      x_train: float32 [N, D] training rows (D = prod(image_shape), plus a trailing
        column of ones when loaded with ``bias_trick=True``).
      y_train: int32 [N] labels in ``0 .. num_classes - 1``.
      x_val: float32 [N_val, D] validation rows; ``y_val``: int32 [N_val].
      x_test: float32 [N_test, D] test rows; ``y_test``: int32 [N_test].
      image_shape: the shape of one image: (8, 8) digits, (28, 28) mnist,
        (32, 32, 3) cifar10 and props.
      class_names: one name per class, in label order.
      mean: float32 [prod(image_shape)], what was subtracted from every row (without
        the bias column); add it back to undo the centring for pictures. All zeros
        when nothing was subtracted.
      preprocess: the preprocessing that produced the rows (``"cs231n"``,
        ``"deeprob"`` or ``"none"``).
      bias_trick: whether the rows end in a column of ones.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    mean: np.ndarray
    preprocess: str = "none"
    bias_trick: bool = False

    def __post_init__(self) -> None:
        pixels = int(np.prod(self.image_shape))
        width = pixels + int(self.bias_trick)
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != width:
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} must be float32 [N, {width}]; "
                    f"got {x.dtype} {x.shape}"
                )
            if y.dtype != np.int32 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} must be int32 [{x.shape[0]}]; "
                    f"got {y.dtype} {y.shape}"
                )
        if self.mean.shape != (pixels,):
            raise ValueError(
                f"Dataset {self.name!r}: mean must have shape ({pixels},); got {self.mean.shape}"
            )

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.class_names)

    @property
    def in_dim(self) -> int:
        """D, the width of one row (the bias column included)."""
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={list(self.x_train.shape)}, "
            f"val={list(self.x_val.shape)}, test={list(self.x_test.shape)}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
            f"preprocess={self.preprocess!r}, bias_trick={self.bias_trick})"
        )
