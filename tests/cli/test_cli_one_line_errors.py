"""The CLI's one error path: every user or environment error (a bad file, key, value, path or
dataset) is one line naming the file, key or argument and what was expected, with exit code 2,
never "internal error"."""

import errno
import gzip
import io
import os
import pickle
import re
import sys

import numpy as np
import pytest
from data_files import (
    MNIST_STEMS,
    idx_bytes,
    write_cifar_folder,
    write_mnist_folder,
)

from jaxprop import cli
from jaxprop.cli import main

SVM = ["--config", "digits_linear_svm", "--quiet", "--set", "train.epochs=1"]
CIFAR = ["--set", "data.dataset=cifar10", "--set", "model.kind=linear", "--quiet",
         "--set", "train.epochs=1", "--set", "train.batch_size=8"]
MNIST = ["--set", "data.dataset=mnist", "--set", "model.kind=linear", "--quiet",
         "--set", "train.epochs=1", "--set", "train.batch_size=8"]


def _file(tmp, name="a_file"):
    (tmp / name).write_text("the user's own file")
    return tmp / name


def _cifar(tmp, label):
    """A CIFAR folder whose data_batch_2 holds ``label`` as its second label, as pickled."""
    write_cifar_folder(tmp / "cifar", per_batch=4, n_test=4)
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, label, 1, 2]}
    (tmp / "cifar" / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    return tmp / "cifar"


def _mnist_images(tmp, data: bytes, gz: bool = False):
    write_mnist_folder(tmp / "mnist", n_train=10, n_test=5)
    path = tmp / "mnist" / MNIST_STEMS[0]
    path.write_bytes(data)
    if gz:
        path.rename(path.with_name(path.name + ".gz"))
    return tmp / "mnist"


def _corrupt_gz(tmp):
    raw = gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8)), mtime=0)
    return _mnist_images(tmp, raw[:10] + bytes([raw[10] ^ 0xFF]) + raw[11:], gz=True)


def _checkpoint(tmp, change):
    run = tmp / "R"
    assert main(["train", *SVM, "--out", str(run)]) == 0
    change(run / "checkpoint.npz")
    return run


def _without(key):
    def change(path):
        with np.load(path) as z:
            data = {k: z[k] for k in z.files if k != key}
        buf = io.BytesIO()
        np.savez(buf, **data)
        path.write_bytes(buf.getvalue())
    return change


def _user_module(tmp, text):
    (tmp / "user_fns.py").write_text(text)
    return f"{tmp / 'user_fns.py'}:f"


class _FullDisk:
    """``os`` for jaxprop.train.checkpoint, whose fsync finds the disk full."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")


def _folder_instead(path):
    path.unlink()
    path.mkdir()


def _two_layer_run_with_a_linear_checkpoint(tmp):
    """A two-layer run whose checkpoint.npz was copied from a linear run's folder."""
    run = tmp / "T"
    assert main(["train", "--quiet", "--set", "train.epochs=1", "--out", str(run)]) == 0
    (run / "checkpoint.npz").write_bytes((_checkpoint(tmp, lambda p: None) /
                                         "checkpoint.npz").read_bytes())
    return run


RAISES = """import jax.numpy as jnp


def helper(y):
    raise RuntimeError("boom from user code")


def f(x):
    return helper(jnp.sin(x))
"""
"""A user's module whose function raises its own exception, in a helper (line 5)."""

SHAPES = "import jax.numpy as jnp\n\n\ndef f(x):\n    return jnp.dot(x, jnp.ones(3))\n"
"""A user's function whose shapes JAX refuses (line 5)."""

HUGE_HEADER = (0x803).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") * 3 + b"\0" * 64
"""An IDX images header of 3 sizes of 2**32 - 1 (their product overflows int64), 64 bytes."""

# Each case: (argv from the test's tmp folder, a regex the one line must match).
CASES = {
    "--out is a file (train)": (lambda t: ["train", *SVM, "--out", str(_file(t))],
                                r"--out '.*a_file' is a file, not a folder"),
    "--out is a file (sweep)": (lambda t: ["sweep", "--quiet", "--out", str(_file(t))],
                                r"--out '.*a_file' is a file, not a folder"),
    "--out is a file (explain)": (lambda t: ["explain", "simple", "--out", str(_file(t))],
                                  r"--out '.*a_file' is a file, not a folder"),
    "--out is a file (compare)": (lambda t: ["compare", "--quick", "--out", str(_file(t))],
                                  r"--out '.*a_file' is a file, not a folder"),
    "a 300-character name": (lambda t: ["train", *SVM, "--set", "name=" + "n" * 300],
                             r"config key 'name' must be at most 100 characters"),
    "seed=2**64": (lambda t: ["train", *SVM, "--set", f"seed={2**64}", "--out", str(t / "r")],
                   r"config key 'seed' must be >= 0 and <= 4294967295; got 18446744073709551616"),
    "a name with NUL": (
        lambda t: (t / "nul.toml").write_text('name = "a\\u0000b"\n[train]\nepochs = 1\n')
        and ["train", "--config", str(t / "nul.toml"), "--out", str(t / "r")],
        r"config key 'name' must be printable \(it names a folder\); got 'a\\x00b'"),
    "--out with NUL": (lambda t: ["train", *SVM, "--out", "a\x00b"],
                       r"--out 'a\\x00b': a path cannot hold a NUL character"),
    "disk full": (lambda t: ["train", *SVM, "--out", str(t / "r")],
                  r"cannot write '.*/r/[a-z_]+\.[a-z]+': No space left on device"),
    "binary config file": (
        lambda t: (t / "bin.toml").write_bytes(b"\xff\xfe\x00\x01" * 64)
        and ["train", "--config", str(t / "bin.toml")],
        r"config file '.*bin\.toml' is not a text file \(it is not UTF-8\); expected TOML"),
    "config path is a folder": (lambda t: ["train", "--config", str(t)],
                                r"config file '.*' is a directory, not a TOML file"),
    "corrupt .gz body": (lambda t: ["train", *MNIST, "--set", f"data.root={_corrupt_gz(t)}",
                                    "--out", str(t / "r")],
                         r"mnist: 'train-images-idx3-ubyte\.gz' in directory '.*mnist' is not "
                         r"a valid gzip file \(Error -3"),
    "CIFAR label 2**70": (lambda t: ["train", *CIFAR, "--set", f"data.root={_cifar(t, 2**70)}",
                                     "--out", str(t / "r")],
                          r"cifar10: 'data_batch_2' in directory '.*cifar' has label "
                          r"1180591620717411303424, outside 0\.\.9 \(label 1\)"),
    "CIFAR float label": (lambda t: ["train", *CIFAR, "--set", f"data.root={_cifar(t, 1.7)}",
                                     "--out", str(t / "r")],
                          r"cifar10: 'data_batch_2' in directory '.*cifar': b'labels' must "
                          r"hold integer class indices; label 1 is 1\.7 \(float\)"),
    "MNIST 0x0 images": (
        lambda t: ["train", *MNIST, "--set",
                   f"data.root={_mnist_images(t, idx_bytes(np.zeros((10, 0, 0), np.uint8)))}",
                   "--out", str(t / "r")],
        r"mnist: 'train-images-idx3-ubyte' in directory '.*mnist' holds images of 0 x 0 "
        r"pixels; an image needs at least one"),
    "IDX header whose product overflows": (
        lambda t: ["train", *MNIST, "--set", f"data.root={_mnist_images(t, HUGE_HEADER)}",
                   "--out", str(t / "r")],
        r"mnist: 'train-images-idx3-ubyte' in directory '.*': header says shape \(4294967295, "
        r"4294967295, 4294967295\) \(79228162458924105385300197375 bytes of data\) but the "
        r"file holds 64 bytes"),
    "checkpoint without epoch": (
        lambda t: ["train", "--quiet", "--resume", "--set", "train.epochs=3", "--out",
                   str(_checkpoint(t, _without("epoch")))],
        r"checkpoint '.*R/checkpoint\.npz' has no 'epoch' entry"),
    "checkpoint without a leaf": (
        lambda t: ["train", "--quiet", "--resume", "--set", "train.epochs=3", "--out",
                   str(_checkpoint(t, _without("leaf_0000")))],
        r"checkpoint '.*R/checkpoint\.npz' lacks array 'leaf_0000' \(params\['W'\]\)"),
    "random bytes as a checkpoint": (
        lambda t: ["train", "--quiet", "--resume", "--set", "train.epochs=3", "--out",
                   str(_checkpoint(t, lambda p: p.write_bytes(os.urandom(2000))))],
        r"checkpoint '.*R/checkpoint\.npz' is unreadable \((?!.*allow_pickle)"),
    "explain module with a SyntaxError": (
        lambda t: ["explain", _user_module(t, "def f(x):\n    return x +\n"), "--args",
                   "[1.0]", "--out", str(t / "pics")],
        r"user_fns\.py:f: .*user_fns\.py has a syntax error at line 2: invalid syntax"),
    "explain module that raises": (
        lambda t: ["explain", _user_module(t, "raise RuntimeError('no config here')\n"),
                   "--args", "[1.0]", "--out", str(t / "pics")],
        r"user_fns\.py:f: importing .*user_fns\.py raised RuntimeError: no config here"),
    "explain: the user's function raises": (
        lambda t: ["explain", _user_module(t, RAISES), "--args", "[[1.0]]", "--out",
                   str(t / "pics")],
        r"your code raised RuntimeError: boom from user code \(at user_fns\.py:5, in helper\)"),
    "check: the user's function raises": (
        lambda t: ["check", _user_module(t, RAISES), "--args", "[[1.0]]"],
        r"your code raised RuntimeError: boom from user code \(at user_fns\.py:5, in helper\)"),
    "explain: JAX refuses the user's shapes": (
        lambda t: ["explain", _user_module(t, SHAPES), "--args", "[[1.0, 2.0]]", "--out",
                   str(t / "pics")],
        r"your code raised TypeError: dot_general requires contracting dimensions to have the "
        r"same shape, got \(2,\) and \(3,\)\. \(at user_fns\.py:5, in f\)"),
    "check: JAX refuses the user's shapes": (
        lambda t: ["check", _user_module(t, SHAPES), "--args", "[[1.0, 2.0]]"],
        r"your code raised TypeError: dot_general .* \(at user_fns\.py:5, in f\)"),
    "a --grid value that is not a number": (
        lambda t: ["sweep", "--grid", "optimizer.lr=abc,1e-3", "--out", str(t / "s")],
        r"--grid optimizer\.lr=abc,1e-3: config key 'optimizer\.lr' must be a number; got "
        r"'abc'"),
    "a --grid value out of range": (
        lambda t: ["sweep", "--grid", "loss.reg=1e-3,-1", "--out", str(t / "s")],
        r"--grid loss\.reg=1e-3,-1: config key 'loss\.reg' must be >= 0\.0; got -1\.0"),
    "--out '' (train)": (lambda t: ["train", *SVM, "--out", ""], r"--out is empty"),
    "--out '' (train --resume)": (lambda t: ["train", "--quiet", "--resume", "--out", ""],
                                  r"--out is empty"),
    "--out '' (sweep)": (lambda t: ["sweep", "--quiet", "--out", ""], r"--out is empty"),
    "--out '' (explain)": (lambda t: ["explain", "simple", "--out", ""], r"--out is empty"),
    "--out '' (compare)": (lambda t: ["compare", "--quick", "--out", ""], r"--out is empty"),
    "checkpoint.npz is a folder": (
        lambda t: ["train", "--quiet", "--resume", "--set", "train.epochs=3", "--out",
                   str(_checkpoint(t, _folder_instead))],
        r"cannot resume from '.*R/checkpoint\.npz': it is a folder, not a checkpoint file"),
    "another model's checkpoint": (
        lambda t: ["train", "--quiet", "--resume", "--set", "train.epochs=3", "--out",
                   str(_two_layer_run_with_a_linear_checkpoint(t))],
        r"checkpoint '.*T/checkpoint\.npz' does not belong to this run's model: it holds the "
        r"params W \[64, 10\], b \[10\] \(saved by the run 'digits_linear_svm', model\.kind "
        r"= 'linear'\), but the model of '.*T/config\.toml' \(model\.kind = 'two_layer'\) "
        r"has W1, W2, b1, b2\."),
    "a second --grid for the same key": (
        lambda t: ["sweep", "--grid", "optimizer.lr=1e-3", "--grid", "optimizer.lr=1e-2",
                   "--out", str(t / "s")],
        r"--grid optimizer\.lr is given twice \('optimizer\.lr=1e-3' and 'optimizer\.lr=1e-2'\)"
        r"; give all its values in one"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_are_one_line_naming_what_was_wrong(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # explain may add the cwd
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES)
    argv, pattern = CASES[case]
    argv = argv(tmp_path)
    if case == "disk full":
        from jaxprop.train import checkpoint

        monkeypatch.setattr(checkpoint, "os", _FullDisk())
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    command = argv[0]
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"jaxprop {command}: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


def test_internal_error_is_kept_for_real_bugs(monkeypatch, capsys):
    """A bug (here a KeyError inside a command) is still reported as one, exit code 1.

    The broken command is compiled as if it were in jaxprop/cli/explain.py: an exception
    raised in a file outside jaxprop (this test's own) would be the user's code's.
    """
    import jaxprop.cli.explain as explain

    code = compile("def broken(args):\n    raise KeyError('a bug')\n", explain.__file__, "exec")
    namespace = {}
    exec(code, namespace)
    monkeypatch.setattr(explain, "run", namespace["broken"])
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("jaxprop.cli.explain",))
    assert main(["explain", "simple"]) == 1
    err = capsys.readouterr().err
    assert "jaxprop explain: internal error: KeyError: 'a bug'" in err
    assert "please report it" in err
