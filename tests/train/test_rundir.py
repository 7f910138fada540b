"""A run folder is a unit of work: refused when it holds anything, moved aside on --overwrite,
locked against a second writer (named by PID), a stale lock detected, temporaries cleaned."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxprop.cli import main
from jaxprop.train import rundir
from jaxprop.train.lock import LOCK_NAME, FolderLock
from jaxprop.train.rundir import RunDir

SVM = ["--config", "digits_linear_svm", "--quiet"]


def _train(out, *extra, epochs=2):
    return main(["train", *SVM, "--set", f"train.epochs={epochs}", "--out", str(out), *extra])


def _one_line_error(err: str, command: str = "train") -> str:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"jaxprop {command}: error: "), lines
    return lines[0]


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerunning_into_a_finished_run_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "R"
    assert _train(run, epochs=3) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert _train(run, epochs=1) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"--out '{run}' already holds a training run (its checkpoint is at epoch 3)" in line
    assert "--resume" in line and "--overwrite" in line and "nothing is deleted" in line
    assert _snapshot(run) == before  # not a byte changed


def test_a_folder_of_the_users_files_is_refused(tmp_path, capsys):
    (tmp_path / "config.toml").write_text("# my own, commented\n[train]\nepochs = 2\n")
    (tmp_path / "summary.json").write_text('{"mine": true}\n')
    (tmp_path / "notes.txt").write_text("keep me")
    before = _snapshot(tmp_path)
    assert _train(tmp_path) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "already holds 3 file(s) or folder(s) that are not a run's: config.toml, notes.txt" \
        in line
    assert "--resume" not in line  # nothing there to resume
    assert _snapshot(tmp_path) == before


def test_overwrite_moves_the_old_run_aside_and_deletes_nothing(tmp_path, capsys):
    run = tmp_path / "R"
    assert _train(run, epochs=3) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert _train(run, "--overwrite", epochs=1) == 0
    err = capsys.readouterr().err
    assert f"--overwrite: moved what {run} held to {tmp_path / 'R.old-1'}" in err
    assert _snapshot(tmp_path / "R.old-1") == before  # the old run, whole
    with np.load(run / "checkpoint.npz") as z:
        assert int(z["epoch"]) == 1
    assert _train(run, "--overwrite", epochs=1) == 0  # and again: the next free name
    assert (tmp_path / "R.old-2" / "checkpoint.npz").is_file()
    assert _snapshot(tmp_path / "R.old-1") == before
    assert _one_line_error_code(["train", "--resume", "--overwrite", "--out", str(run)]) == 2


def _one_line_error_code(argv):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    return exit.value.code  # argparse: --resume and --overwrite exclude each other


def test_sweep_into_a_sweep_is_refused_and_overwrite_moves_it(tmp_path, capsys):
    argv = ["sweep", "--set", "model.kind=linear", "--set", "train.epochs=1", "--grid",
            "optimizer.lr=1e-3,1e-2", "--out", str(tmp_path / "S"), "--quiet"]
    assert main(argv) == 0
    before = (tmp_path / "S" / "sweep.csv").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_line_error(capsys.readouterr().err, "sweep")
    assert "already holds a sweep (sweep.csv)" in line and "--overwrite" in line
    assert "--resume" not in line
    assert (tmp_path / "S" / "sweep.csv").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    assert (tmp_path / "S.old-1" / "sweep.csv").read_bytes() == before


def test_second_writer_is_refused_at_once_naming_the_holder(tmp_path, capsys):
    with FolderLock(tmp_path, "jaxprop train") as held:
        record = json.loads(held.path.read_text())
        assert record["pid"] == os.getpid() and record["command"] == "jaxprop train"
        assert _train(tmp_path / "sub") == 0  # another folder: free
        capsys.readouterr()
        assert _train(tmp_path) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert f"is in use by another jaxprop train (holder: PID {os.getpid()}" in line
        with pytest.raises(FileExistsError, match=f"PID {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()  # released: the file is gone
    with FolderLock(tmp_path):
        pass


def test_stale_lock_of_a_dead_process_is_detected_and_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "command": "jaxprop train"}))
    assert _train(tmp_path) == 0
    err = capsys.readouterr().err
    assert f"took over a stale lock of PID {pid}" in err
    assert not (tmp_path / LOCK_NAME).exists()


def test_leftover_temporaries_of_a_crash_are_removed_and_user_files_kept(tmp_path):
    run = tmp_path / "R"
    assert _train(run) == 0
    debris = [".checkpoint.npz.abc12_xy.tmp", ".summary.json.q9w8e7r6.tmp"]
    for name in debris:
        (run / name).write_bytes(b"half a file")
    (run / ".mine.tmp").write_text("not ours")
    files = RunDir.open(run, "resume", enabled=True)
    try:
        assert sorted(files.removed) == sorted(debris)
    finally:
        files.close()
    assert not any((run / name).exists() for name in debris)
    assert (run / ".mine.tmp").read_text() == "not ours"


def test_a_folder_a_failed_run_created_is_removed_again(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    root = tmp_path / "empty"
    root.mkdir()
    assert main(["train", "--config", "cifar10_linear_svm", "--set", f"data.root={root}",
                 "--out", str(out)]) == 2
    assert "data_batch_1" in _one_line_error(capsys.readouterr().err)
    assert not out.exists()  # no empty folder (or lock file) left to block the next try


@pytest.mark.parametrize("bad, match", [
    ("a\x00b", "cannot hold a NUL character"),
    ("x" * 300, "is 300 bytes long; a file system allows at most 255"),
    ("", "is empty"),
])
def test_out_paths_that_cannot_be_folders(bad, match):
    with pytest.raises(ValueError, match=match):
        rundir.check_out_path(bad)


def test_a_file_above_the_folder_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"'.*/f' is a file, not a folder"):
        rundir.check_out_path(tmp_path / "f" / "run")


def test_rich_markup_in_a_user_given_path_is_printed_as_text(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train("mk[/]up") == 0  # rich would raise MarkupError at the very end
    out = capsys.readouterr().out
    assert "mk[/]up" in out and "digits_linear_svm: completed" in out
    assert (tmp_path / "mk[/]up" / "summary.json").is_file()


def test_without_flock_the_lock_falls_back_to_the_holders_pid(tmp_path, monkeypatch):
    """A file system that refuses flock: the lock file is created exclusively and a second
    writer is refused while its PID runs; once that PID is gone the lock is stale."""
    import errno

    from jaxprop.train import lock

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    with FolderLock(tmp_path, "jaxprop train"):
        with pytest.raises(FileExistsError, match=f"holder: PID {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout)}))
    with FolderLock(tmp_path) as taken:
        assert taken.stale == {"pid": int(dead.stdout)}
