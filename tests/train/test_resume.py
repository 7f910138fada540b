"""--resume resumes the run that was: its own config.toml, changed only by --set (recorded in
history.jsonl), never fewer epochs, and a checkpoint checked (epoch, leaves, finiteness)
before it is trusted."""

import io
import json
import os
import re
import shutil
from pathlib import Path

import chex
import numpy as np
import pytest

from jaxprop.cli import main

SVM = ["--config", "digits_linear_svm", "--quiet"]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxprop train: error: "), lines
    return lines[0]


def _resume(run, *sets):
    argv = ["train", "--quiet", "--out", str(run), "--resume"]
    for s in sets:
        argv += ["--set", s]
    return main(argv)


def _params(run):
    with np.load(run / "params.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A 2-epoch run of the linear SVM with a learning rate that is not the default."""
    out = tmp_path_factory.mktemp("resume") / "R"
    assert main(["train", *SVM, "--set", "train.epochs=2", "--set", "optimizer.lr=0.05",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(pristine, tmp_path):
    """A copy of the pristine run, to resume or damage."""
    return Path(shutil.copytree(pristine, tmp_path / "R"))


def _files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_resume_with_config_is_refused(run, capsys):
    before = _files(run)
    assert main(["train", "--out", str(run), "--resume", "--config", "digits_linear_svm",
                 "--set", "train.epochs=4"]) == 2
    assert "--config cannot be given with --resume" in _error(capsys)
    assert _files(run) == before


def test_resume_with_the_config_missing_is_refused(run, capsys):
    (run / "config.toml").unlink()
    before = _files(run)
    assert _resume(run, "train.epochs=4") == 2
    line = _error(capsys)
    assert f"cannot resume '{run}': its config.toml is missing" in line
    assert "the defaults would train another run" in line
    assert _files(run) == before


def test_an_edited_config_is_refused_unless_set_explicitly_and_then_recorded(run, tmp_path,
                                                                            capsys):
    path = run / "config.toml"
    path.write_text(path.read_text().replace("lr = 0.05", "lr = 0.2"))
    before = _files(run)
    assert _resume(run, "train.epochs=3") == 2
    line = _error(capsys)
    assert "config.toml' was edited after the checkpoint was saved (optimizer.lr is 0.2 " \
           "there but the run trained with 0.05)" in line
    assert "--set optimizer.lr=0.2" in line
    assert _files(run) == before
    # explicit: accepted, and the change is in the run's history
    assert _resume(run, "train.epochs=3", "optimizer.lr=0.2") == 0
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["epoch"] == 2
    assert history[1]["changed"] == {"optimizer.lr": [0.05, 0.2], "train.epochs": [2, 3]}
    assert history[1]["set"] == ["train.epochs=3", "optimizer.lr=0.2"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 3


def test_resume_keeps_the_runs_own_settings(run, tmp_path):
    """Resumed twice (2 -> 3 -> 5 epochs) from config.toml alone: the same bits as one run of
    5 epochs with the run's learning rate, not the default one."""
    assert _resume(run, "train.epochs=3") == 0
    assert _resume(run, "train.epochs=5") == 0
    full = tmp_path / "full"
    assert main(["train", *SVM, "--set", "train.epochs=5", "--set", "optimizer.lr=0.05",
                 "--out", str(full)]) == 0
    chex.assert_trees_all_equal(_params(run), _params(full))


def test_fewer_epochs_than_the_checkpoint_is_refused(run, capsys):
    before = _files(run)
    assert _resume(run, "train.epochs=1") == 2
    line = _error(capsys)
    assert "train.epochs=1 is below the 2 epochs the run in" in line
    assert "cannot undo epochs" in line
    assert _files(run) == before


def _rewrite_checkpoint(run, change):
    path = run / "checkpoint.npz"
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    change(data)
    buf = io.BytesIO()
    np.savez(buf, **data)
    path.write_bytes(buf.getvalue())


def _nan_leaf(data):
    data["leaf_0000"] = data["leaf_0000"].copy()
    data["leaf_0000"].flat[3] = np.nan


CORRUPT = {
    "random bytes": (lambda run: (run / "checkpoint.npz").write_bytes(os.urandom(4096)),
                     r"checkpoint '.*checkpoint\.npz' is unreadable"),
    "truncated": (lambda run: (run / "checkpoint.npz").write_bytes(
        (run / "checkpoint.npz").read_bytes()[:300]), r"checkpoint '.*' is unreadable"),
    "no epoch": (lambda run: _rewrite_checkpoint(run, lambda d: d.pop("epoch")),
                 r"has no 'epoch' entry"),
    "no leaf": (lambda run: _rewrite_checkpoint(run, lambda d: d.pop("leaf_0001")),
                r"lacks array 'leaf_0001' \(params\['b'\]\); it is damaged"),
    "NaN leaf": (lambda run: _rewrite_checkpoint(run, _nan_leaf),
                 r"params\['W'\] holds 1 NaN or Inf value\(s\); a checkpoint that is not "
                 r"finite is not a good state"),
    "epoch 10**6": (lambda run: _rewrite_checkpoint(
        run, lambda d: d.update(epoch=np.asarray(10**6))),
        r"says epoch 1000000, beyond the train\.epochs=2 of the config it records"),
    "negative epoch": (lambda run: _rewrite_checkpoint(
        run, lambda d: d.update(epoch=np.asarray(-3))), r"'epoch' must be a non-negative"),
    "pickled object": (lambda run: _rewrite_checkpoint(
        run, lambda d: d.update(extra=np.asarray([{"x": 1}], dtype=object))),
        r"holds pickled Python objects"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_checkpoint_is_refused_naming_it_and_left_as_it_is(case, run, capsys):
    damage, match = CORRUPT[case]
    damage(run)
    before = _files(run)
    sets = ["train.epochs=1000005", "optimizer.lr_decay=1.0"] if case == "epoch 10**6" \
        else ["train.epochs=4"]
    assert _resume(run, *sets) == 2
    line = _error(capsys)
    assert str(run / "checkpoint.npz") in line
    assert re.search(match, line), line
    assert "allow_pickle" not in line  # numpy's advice to load unsafely is never passed on
    assert _files(run) == before


def test_the_library_names_a_checkpoint_that_is_a_folder_or_another_models(run):
    """``jaxprop.train(..., resume=True)`` as the CLI: a folder where the checkpoint should be
    is named as one, and a linear run's checkpoint is not this two-layer model's."""
    from jaxprop.train import train
    from jaxprop.train.experiment import load_config

    two_layer = load_config(None, ["train.epochs=3"])
    with pytest.raises(ValueError, match=r"checkpoint '.*R/checkpoint\.npz' does not belong "
                       r"to this run's model: it holds the params W \[64, 10\], b \[10\], but "
                       r"this run's model has W1 \[64, 128\], W2 \[128, 10\], b1 \[128\], "
                       r"b2 \[10\]\."):
        train(two_layer, run, resume=True, progress=False)
    (run / "checkpoint.npz").unlink()
    (run / "checkpoint.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=r"cannot resume from '.*R/checkpoint\.npz': "
                       r"it is a folder, not a checkpoint file"):
        train(two_layer, run, resume=True, progress=False)
