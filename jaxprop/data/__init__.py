"""Datasets for the lecture's classifiers, split and preprocessed as the courses do.

``load_dataset(name, root, preprocess=..., bias_trick=..., num_train=...)`` returns a
``Dataset`` of float32 rows [N, D] and int32 labels for train, val and test:

- ``digits``: scikit-learn's 1,797 8x8 digits, offline, fixed split 1,444 / 177 / 176.
- ``cifar10``: CIFAR-10's python pickle batches; CS231n's 49,000 / 1,000 / 1,000 split and
  per-pixel mean image.
- ``props``: DeepRob's PROPS Classification set in the CIFAR-10 layout; DeepRob's
  [0, 1] scaling, per-channel mean and last-20%-of-train validation.
- ``mnist``: the four IDX files, plain or gzipped.

Every dataset is one entry of ``DATASETS`` (``jaxprop.data.datasets``). Files are read from
``root`` only: jaxprop never downloads. A missing file raises
``FileNotFoundError`` naming it and the directory; a corrupt one raises ``ValueError``.
"""

from jaxprop.data._dataset import Dataset
from jaxprop.data._digits import DIGITS_SPLIT_SIZES, digits_split
from jaxprop.data._load import PREPROCESS, course_split, load_dataset
from jaxprop.data.datasets import DATASETS, DatasetSpec

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DIGITS_SPLIT_SIZES",
    "PREPROCESS",
    "Dataset",
    "course_split",
    "digits_split",
    "load_dataset",
]
