"""jaxprop.data: the loaders on small files written in the real formats (tests/data_files.py)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import re

import chex
import numpy as np
import pytest
from data_files import (
    CIFAR_NAMES,
    MNIST_STEMS,
    hwc_to_cifar_rows,
    py2_cifar_batch_bytes,
    write_cifar_batch,
    write_cifar_folder,
    write_cifar_meta,
    write_idx,
    write_mnist_folder,
)

from jaxprop.data import (
    DATASETS,
    DIGITS_SPLIT_SIZES,
    PREPROCESS,
    Dataset,
    course_split,
    digits_split,
    load_dataset,
)
from jaxprop.data.datasets import PROPS_CLASS_NAMES

# Rows are float32; a mean over ~100 rows of values up to 255 carries float32 rounding of
# about 255 * 6e-8 per term, so "centred" is checked to 1e-4 (1e-6 for [0, 1] pixels).
ATOL_RAW = 1e-4
ATOL_UNIT = 1e-6


def _check_splits(data: Dataset, sizes: tuple[int, int, int], width: int) -> None:
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        chex.assert_shape(x, (n, width))
        chex.assert_shape(y, (n,))
        assert x.dtype == np.float32 and y.dtype == np.int32, (split, x.dtype, y.dtype)
        assert y.min() >= 0 and y.max() < data.num_classes, (split, y.min(), y.max())
    assert data.in_dim == width


def _escaped(*parts: object) -> str:
    return ".*".join(re.escape(str(p)) for p in parts)


# ----------------------------------------------------------------------------- digits


def test_digits_default_is_deeprob_scaled_and_centred():
    data = load_dataset("digits")
    _check_splits(data, DIGITS_SPLIT_SIZES, 64)
    assert DIGITS_SPLIT_SIZES == (1444, 177, 176)
    assert data.image_shape == (8, 8) and data.num_classes == 10
    assert data.class_names == tuple("0123456789") and data.preprocess == "deeprob"
    # Pixels 0..16 scaled to [0, 1], then one mean (one channel) subtracted over train + val.
    pool = np.concatenate([data.x_train, data.x_val])
    chex.assert_trees_all_close(pool.mean(dtype=np.float64), 0.0, atol=ATOL_UNIT)
    chex.assert_trees_all_close(data.mean, np.full(64, data.mean[0], np.float32))
    restored = np.concatenate([pool, data.x_test]) + data.mean
    assert restored.min() >= -1e-6 and restored.max() <= 1 + 1e-6
    # Stratified: every class has 17 or 18 test and val images.
    for y in (data.y_val, data.y_test):
        assert set(np.bincount(y, minlength=10)) <= {17, 18}, np.bincount(y)


def test_digits_split_is_fixed_and_deterministic():
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, val, test = digits_split(digits.target)
    everything = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(everything), np.arange(1797))  # a partition
    # Pinned: the same indices on every machine and NumPy version (no random numbers).
    digest = hashlib.sha256(everything.astype("<i8").tobytes()).hexdigest()[:16]
    assert digest == "442dba373cf37218", digest
    np.testing.assert_array_equal(val[:4], [72, 74, 77, 82])
    # The loader reads scikit-learn's own file: the same pictures and labels, split.
    a, b = load_dataset("digits", preprocess="none"), load_dataset("digits", preprocess="none")
    np.testing.assert_array_equal(a.x_test, digits.data[test].astype(np.float32))
    np.testing.assert_array_equal(a.y_train, digits.target[train])
    for split in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        assert getattr(a, split).tobytes() == getattr(b, split).tobytes(), split


def test_digits_cs231n_bias_trick_and_num_train():
    full = load_dataset("digits", preprocess="cs231n")
    data = load_dataset("digits", preprocess="cs231n", bias_trick=True, num_train=100)
    _check_splits(data, (100, 177, 176), 65)
    # CS231n: raw pixel values minus the per-pixel mean image of the training split.
    chex.assert_trees_all_close(full.x_train.mean(axis=0, dtype=np.float64), np.zeros(64),
                                atol=ATOL_RAW)
    np.testing.assert_array_equal(data.x_train[:, -1], np.ones(100, np.float32))
    np.testing.assert_array_equal(data.x_test[:, -1], np.ones(176, np.float32))
    # num_train keeps the first rows, preprocessed exactly as in the full set.
    np.testing.assert_array_equal(data.x_train[:, :-1], full.x_train[:100])
    np.testing.assert_array_equal(data.x_val[:, :-1], full.x_val)
    np.testing.assert_array_equal(data.mean, full.mean)
    chex.assert_trees_all_close((full.x_train + full.mean).max(), 16.0)


def test_digits_none_is_raw_pixels():
    data = load_dataset("digits", preprocess="none")
    assert data.x_train.min() == 0.0 and data.x_train.max() == 16.0
    np.testing.assert_array_equal(data.mean, np.zeros(64, np.float32))


# ------------------------------------------------------------------------ cifar10 / props


def test_course_split_sizes():
    assert course_split("cs231n", 50000, 10000) == (49000, 1000, 1000)  # the notebook's
    assert course_split("deeprob", 50000, 10000) == (40000, 10000, 10000)  # 20% validation
    assert course_split("cs231n", 60000, 10000) == (59000, 1000, 1000)
    assert course_split("cs231n", 100, 30) == (98, 2, 30)  # validation stays 1/50
    assert course_split("deeprob", 100, 30) == (80, 20, 30)
    with pytest.raises(ValueError, match=r"leaves 0 / 1 / 3 for train / val / test"):
        course_split("cs231n", 1, 3)
    with pytest.raises(ValueError, match=r"unknown split recipe 'none'; valid choices: cs231n, "
                                         r"deeprob"):
        course_split("none", 100, 10)


def test_cifar10_cs231n_split_mean_and_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    raw = write_cifar_folder(folder, per_batch=20, n_test=30)
    data = load_dataset("cifar10", folder)
    assert data.preprocess == "cs231n" and data.image_shape == (32, 32, 3)
    assert data.class_names == CIFAR_NAMES
    _check_splits(data, (98, 2, 30), 3072)
    # Train: the first 98 training images, val the next 2, test the first 30 of test_batch.
    np.testing.assert_array_equal(data.y_train, raw["y_train"][:98])
    np.testing.assert_array_equal(data.y_val, raw["y_train"][98:])
    np.testing.assert_array_equal(data.y_test, raw["y_test"])
    # Per-pixel mean image of the training split, subtracted from every split.
    expected_mean = raw["x_train"][:98].reshape(98, -1).mean(axis=0)
    chex.assert_trees_all_close(data.mean, expected_mean.astype(np.float32), atol=ATOL_RAW)
    chex.assert_trees_all_close(data.x_train.mean(axis=0, dtype=np.float64), np.zeros(3072),
                                atol=ATOL_RAW)
    # Rows are HWC images: adding the mean back and reshaping gives the pictures written.
    chex.assert_trees_all_close((data.x_val + data.mean).reshape(2, 32, 32, 3),
                                raw["x_train"][98:].astype(np.float32), atol=ATOL_RAW)
    # The parent folder of cifar-10-batches-py is accepted too.
    again = load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_cifar10_channel_major_rows_become_hwc(tmp_path):
    # Written by hand, straight from the CIFAR-10 page: a row is 1024 red values, then
    # 1024 green, then 1024 blue, each plane row-major.
    write_cifar_folder(tmp_path, per_batch=2, n_test=1)
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0 * 1024 + 0 * 32 + 5] = 11   # red at (h=0, w=5)
    row[0, 1 * 1024 + 2 * 32 + 0] = 22   # green at (h=2, w=0)
    row[0, 2 * 1024 + 31 * 32 + 31] = 33  # blue at (h=31, w=31)
    write_cifar_batch(tmp_path / "test_batch", row, [7])
    data = load_dataset("cifar10", tmp_path, preprocess="none")
    image = data.x_test[0].reshape(data.image_shape)
    assert (image[0, 5, 0], image[2, 0, 1], image[31, 31, 2]) == (11, 22, 33)
    assert np.count_nonzero(image) == 3 and data.y_test[0] == 7


def test_cifar10_reads_python2_pickles_like_the_real_files(tmp_path):
    raw = write_cifar_folder(tmp_path, per_batch=2, n_test=3)
    rows = hwc_to_cifar_rows(raw["x_test"])
    (tmp_path / "test_batch").write_bytes(py2_cifar_batch_bytes(rows, [4, 0, 9]))
    data = load_dataset("cifar10", tmp_path, preprocess="none")
    np.testing.assert_array_equal(data.x_test, raw["x_test"].reshape(3, -1).astype(np.float32))
    np.testing.assert_array_equal(data.y_test, [4, 0, 9])


def test_cifar10_deeprob_per_channel_mean(tmp_path):
    raw = write_cifar_folder(tmp_path, per_batch=20, n_test=30)
    data = load_dataset("cifar10", tmp_path, preprocess="deeprob", bias_trick=True)
    _check_splits(data, (80, 20, 30), 3073)  # the last 20% of train validates
    pool = np.concatenate([data.x_train, data.x_val])[:, :-1].reshape(-1, 3)
    chex.assert_trees_all_close(pool.mean(axis=0, dtype=np.float64), np.zeros(3),
                                atol=ATOL_UNIT)
    per_channel = raw["x_train"].reshape(-1, 3).mean(axis=0) / 255.0
    chex.assert_trees_all_close(data.mean.reshape(32, 32, 3)[7, 9], per_channel.astype(np.float32),
                                atol=ATOL_UNIT)
    restored = data.x_test[:, :-1] + data.mean
    chex.assert_trees_all_close(restored, raw["x_test"].reshape(30, -1) / np.float32(255),
                                atol=ATOL_UNIT)
    np.testing.assert_array_equal(data.x_val[:, -1], np.ones(20, np.float32))


def test_props_reads_the_cifar_layout_with_deeprob_defaults(tmp_path):
    raw = write_cifar_folder(tmp_path / "PROPS-Classification", per_batch=10, n_test=12,
                             label_names=PROPS_CLASS_NAMES, seed=3)
    data = load_dataset("props", tmp_path)
    assert data.preprocess == "deeprob" and data.class_names == PROPS_CLASS_NAMES
    _check_splits(data, (40, 10, 12), 3072)
    np.testing.assert_array_equal(data.y_val, raw["y_train"][40:])
    # A batches.meta without label names falls back to DeepRob's ten PROPS objects.
    write_cifar_meta(tmp_path / "PROPS-Classification" / "batches.meta", label_names=None)
    assert load_dataset("props", tmp_path).class_names[:2] == ("master_chef_can", "cracker_box")


# ----------------------------------------------------------------------------- mnist


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_idx_plain_and_gzip(tmp_path, gz):
    raw = write_mnist_folder(tmp_path, n_train=60, n_test=10, gz=gz)
    data = load_dataset("mnist", tmp_path)
    assert data.image_shape == (28, 28) and data.preprocess == "deeprob"
    _check_splits(data, (48, 12, 10), 784)
    np.testing.assert_array_equal(data.y_train, raw["y_train"][:48])
    chex.assert_trees_all_close((data.x_test + data.mean).reshape(10, 28, 28),
                                raw["x_test"] / np.float32(255), atol=ATOL_UNIT)
    pool = np.concatenate([data.x_train, data.x_val])
    chex.assert_trees_all_close(pool.mean(dtype=np.float64), 0.0, atol=ATOL_UNIT)
    cs = load_dataset("mnist", tmp_path, preprocess="cs231n")
    _check_splits(cs, (59, 1, 10), 784)


# ----------------------------------------------------------------------------- errors


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; valid choices: "
                                         r"digits, cifar10, props, mnist"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match=r"unknown preprocess 'zca'; valid choices: "
                                         r"cs231n, deeprob, none"):
        load_dataset("digits", preprocess="zca")
    assert tuple(DATASETS) == ("digits", "cifar10", "props", "mnist")
    assert PREPROCESS == ("cs231n", "deeprob", "none")


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "10"])
def test_bad_num_train(bad):
    with pytest.raises(ValueError, match=r"num_train must be a positive int or None"):
        load_dataset("digits", num_train=bad)


def test_num_train_beyond_the_training_split():
    with pytest.raises(ValueError, match=r"num_train=5000 exceeds the 1444 training images"):
        load_dataset("digits", num_train=5000)


def test_missing_root_and_missing_files_name_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10: no data directory given.*"
                                                r"never downloads.*cifar-10-python"):
        load_dataset("cifar10")
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=_escaped(missing, "does not exist",
                                                         "never downloads")):
        load_dataset("cifar10", missing)
    with pytest.raises(FileNotFoundError, match=_escaped("expected file 'data_batch_1'",
                                                         tmp_path, "cifar-10-batches-py")):
        load_dataset("cifar10", tmp_path)
    write_cifar_folder(tmp_path, per_batch=2, n_test=2)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=_escaped("expected file 'data_batch_3'",
                                                         f"directory '{tmp_path}'")):
        load_dataset("cifar10", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=_escaped("props", "'data_batch_1'", empty,
                                                         "PROPS-Classification", "deeprob.org")):
        load_dataset("props", empty)


def test_mnist_missing_file(tmp_path):
    write_mnist_folder(tmp_path, n_train=5, n_test=5, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=_escaped("'t10k-labels-idx1-ubyte'",
                                                         f"directory '{tmp_path}'",
                                                         "never downloads")):
        load_dataset("mnist", tmp_path)


def test_corrupt_cifar_files(tmp_path):
    write_cifar_folder(tmp_path, per_batch=2, n_test=2)
    batch = tmp_path / "test_batch"
    good = batch.read_bytes()

    batch.write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match=_escaped("'test_batch'", tmp_path,
                                                  "not a CIFAR python pickle")):
        load_dataset("cifar10", tmp_path)

    batch.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"'test_batch'.*not a CIFAR python pickle"):
        load_dataset("cifar10", tmp_path)

    # A doctored pickle that would call a function: refused, never run.
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    batch.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ValueError, match=r"'test_batch'.*refusing to load global 'builtins.print'"):
        load_dataset("cifar10", tmp_path)

    write_cifar_batch(batch, np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(ValueError, match=r"'test_batch'.*b'data' must be uint8 \[n, 3072\]; "
                                         r"got uint8 \(2, 100\)"):
        load_dataset("cifar10", tmp_path)

    write_cifar_batch(batch, np.zeros((2, 3072), np.uint8), [0])
    with pytest.raises(ValueError, match=r"'test_batch'.*1 labels for 2 images"):
        load_dataset("cifar10", tmp_path)

    batch.write_bytes(pickle.dumps({b"labels": [0]}))
    with pytest.raises(ValueError, match=r"'test_batch'.*lacks key\(s\) \[b'data'\]"):
        load_dataset("cifar10", tmp_path)

    write_cifar_batch(batch, np.zeros((1, 3072), np.uint8), [10])
    with pytest.raises(ValueError, match=r"test_batch.*has label 10, outside 0..9"):
        load_dataset("cifar10", tmp_path)


def test_corrupt_idx_files(tmp_path):
    raw = write_mnist_folder(tmp_path, n_train=5, n_test=5)
    images = tmp_path / MNIST_STEMS[0]
    write_idx(images, raw["x_train"], magic=0x00000802)
    with pytest.raises(ValueError, match=_escaped(f"'{MNIST_STEMS[0]}'", tmp_path,
                                                  "magic number 0x00000802",
                                                  "expected 0x00000803")):
        load_dataset("mnist", tmp_path)

    write_idx(images, raw["x_train"])
    images.write_bytes(images.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"header says shape \(5, 28, 28\) \(3920 bytes of data\)"
                                         r" but the file holds 3913 .*truncated"):
        load_dataset("mnist", tmp_path)

    write_idx(images, raw["x_train"][:4])
    with pytest.raises(ValueError, match=r"holds 4 images but 'train-labels-idx1-ubyte' holds 5"):
        load_dataset("mnist", tmp_path)

    images.unlink()
    broken = tmp_path / f"{MNIST_STEMS[0]}.gz"
    broken.write_bytes(gzip.compress(b"\x00" * 100)[:-9])
    with pytest.raises(ValueError, match=r"'train-images-idx3-ubyte.gz'.*not a valid gzip file"):
        load_dataset("mnist", tmp_path)


def test_dataset_rejects_inconsistent_arrays():
    x = np.zeros((3, 4), np.float32)
    y = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"x_val must be float32 \[N, 4\]; got float64"):
        Dataset("toy", x, y, x.astype(np.float64), y, x, y, (2, 2), ("a", "b"),
                np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"mean must have shape \(4,\); got \(5,\)"):
        Dataset("toy", x, y, x, y, x, y, (2, 2), ("a", "b"), np.zeros(5, np.float32))
