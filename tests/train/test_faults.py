"""Fault injection: signals at random moments, concurrent writers, a full disk, a killed run.

Each case runs ``jaxprop train`` as the console script does (a subprocess), does it harm, and
checks what holds at any moment it could have landed: the exit code, the one line on stderr,
that nothing saved was lost (checkpoint, params.npz, summary.json and metrics.jsonl agree),
and that resuming (or re-running, if nothing was written) ends bit-identical to a run that was
never interrupted. The moments are seeded random delays after a point the test synchronises
on: the handlers installed (read from /proc), the folder locked, or epochs in metrics.jsonl.

Two moments too short to hit from outside are injected in-process instead: a signal in the
middle of a checkpoint write, and Ctrl-C twice during one.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import numpy as np
import pytest

from jaxprop._signals import Stop
from jaxprop.train import checkpoint, load_data, train
from jaxprop.train.experiment import load_config
from jaxprop.train.lock import LOCK_NAME

EPOCHS = 60
RUN = ["train", "--config", "digits_linear_svm", "--quiet", "--set", f"train.epochs={EPOCHS}"]
CONSOLE_SCRIPT = "import sys; from jaxprop.cli import main; sys.exit(main())"
"""What the ``jaxprop`` console script runs (``jaxprop = "jaxprop.cli:main"``)."""
AS_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
"""Ctrl-C as Python has it in a terminal, even if this test runner ignores SIGINT."""
TIMEOUT = 120

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and uses Linux rlimits")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The children's environment: a compilation cache of this module's own."""
    cache = tmp_path_factory.mktemp("faults_xla_cache")
    return {**os.environ, "JAXPROP_CACHE_DIR": str(cache)}


def _start(argv, env, limit_bytes=None):
    """``jaxprop ARGV`` as a terminal starts it; ``limit_bytes``: under ``ulimit -f``."""
    limit = "" if limit_bytes is None else (
        f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, "
        f"{limit_bytes})); ")
    return subprocess.Popen([sys.executable, "-B", "-c", AS_A_TERMINAL + limit + CONSOLE_SCRIPT,
                             *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def _run(argv, env, **kw):
    return _finish(_start(argv, env, **kw))


def _wait(proc, ready, what):
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the run ended (code {proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _handlers_installed(proc):
    """jaxprop.cli.main has installed its handlers: SIGTERM is caught (/proc's SigCgt)."""
    def ready():
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            return False
        caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
        return bool(caught & (1 << (signal.SIGTERM - 1)))
    return ready


def _epochs_logged(run, n):
    def ready():
        path = run / "metrics.jsonl"
        return path.is_file() and path.read_text().count("\n") >= n
    return ready


def _params(run):
    with np.load(run / "params.npz") as z:
        return {k: z[k] for k in z.files}


def _metrics(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]


@pytest.fixture(scope="module")
def digits():
    return load_data(load_config("digits_linear_svm"))


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    """An uninterrupted run: what every harmed run must end as, bit for bit. Trained here, in
    this process (float64 on: the run is float32 all the same, and its bits are those of
    the console script's)."""
    run = tmp_path_factory.mktemp("faults_reference") / "R"
    train(load_config("digits_linear_svm", [f"train.epochs={EPOCHS}"]), run, dataset=digits,
          progress=False, write_plots=False)
    return {"params": _params(run), "metrics": _metrics(run)}


def _consistent(run) -> int | None:
    """What a stopped run left is whole and agrees with itself; returns its epoch."""
    if not (run / "checkpoint.npz").exists():
        assert not run.exists() or not any(run.iterdir()), sorted(os.listdir(run))
        return None
    assert not (run / LOCK_NAME).exists()  # released
    assert not list(run.glob(".*.tmp"))  # no debris
    with np.load(run / "checkpoint.npz") as z:
        epoch = int(z["epoch"])
        w, b = z["leaf_0000"], z["leaf_0001"]
    params = _params(run)
    np.testing.assert_array_equal(params["W"], w)
    np.testing.assert_array_equal(params["b"], b)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == epoch, (summary["status"], summary["epochs"], epoch)
    assert summary["status"] in ("interrupted", "completed", "running")
    assert [m["epoch"] for m in _metrics(run)] == list(range(1, epoch + 1))
    return epoch


def _finish_and_compare(run, env, reference, epoch):
    """Resumes the run; it must end as the reference. (With nothing saved there is nothing
    to resume: ``_consistent`` has checked that nothing is left to get in a new run's way.)"""
    if epoch is None:
        return
    code, _, err = _run(["train", "--quiet", "--resume", "--out", str(run)], env)
    assert code == 0, err
    chex.assert_trees_all_equal(_params(run), reference["params"])
    assert _metrics(run) == reference["metrics"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == EPOCHS


def _one_line(err: str, pattern: str) -> re.Match:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    match = re.fullmatch(pattern, lines[0])
    assert match, lines[0]
    return match


STOPPED = (r"jaxprop(?: train)?: (?P<sig>SIG[A-Z]+): stopped(?:"
           r" after epoch (?P<after>\d+) of 60; checkpoint saved in .*"
           r"| after the last epoch: all 60 epochs are saved in .*"
           r"|; nothing was written"
           r"|; the run in .* is saved at epoch (?P<saved>\d+) of 60; continue with: .*"
           r"|; the run in .* is complete and saved \(60 epochs\))")

# name: (signal, sync point, seeded delay range in s, a second signal after 10 ms)
MOMENTS = {
    "startup": (signal.SIGTERM, "handlers", (0.0, 0.15), None),
    "importing JAX": (signal.SIGINT, "handlers", (0.15, 1.0), None),  # it took ~2.4 s
    "loading and compiling": (signal.SIGTERM, "locked", (0.0, 0.4), None),
    "mid-training, SIGTERM twice": (signal.SIGTERM, "epochs", (0.0, 0.2), signal.SIGTERM),
    "mid-training, Ctrl-C twice": (signal.SIGINT, "epochs", (0.0, 0.2), signal.SIGINT),
    "after the last epoch": (signal.SIGTERM, "done", (0.0, 0.05), None),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_signal_at_any_moment_exits_cleanly_and_loses_nothing(moment, env, reference,
                                                                 tmp_path):
    signum, sync, (low, high), again = MOMENTS[moment]
    delay = random.Random(f"issue 11: {moment}").uniform(low, high)
    run = tmp_path / "R"
    proc = _start([*RUN, "--out", str(run)], env)
    ready = {"handlers": _handlers_installed(proc),
             "locked": lambda: (run / LOCK_NAME).exists(),
             "epochs": _epochs_logged(run, 3),
             "done": _epochs_logged(run, EPOCHS)}[sync]
    _wait(proc, ready, sync)
    time.sleep(delay)
    proc.send_signal(signum)
    if again is not None:
        time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(again)
    code, _, err = _finish(proc)
    assert code == 128 + signum, (code, err)  # never killed by the signal, never 0 or 1
    stopped = _one_line(err, STOPPED)
    assert stopped["sig"] == signal.Signals(signum).name
    epoch = _consistent(run)
    named = stopped["after"] or stopped["saved"]
    if named is not None:
        assert int(named) == epoch
    if "nothing was written" in err:
        assert epoch is None
    if sync == "epochs":
        assert epoch is not None and epoch >= 3
    if sync == "done":  # complete: nothing to resume, and the bits are already final
        assert epoch == EPOCHS and "after the last epoch" in err
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
        chex.assert_trees_all_equal(_params(run), reference["params"])
        assert _metrics(run) == reference["metrics"]
        return
    _finish_and_compare(run, env, reference, epoch)


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(env, reference,
                                                                            tmp_path):
    """Two writers on one --out: the second is refused at once, naming the first's PID, and
    writes nothing. Then the first is SIGKILLed mid-training: its lock file stays behind, the
    next run takes it over and says whose it was, and ends as if nothing had happened."""
    run = tmp_path / "R"
    first = _start([*RUN, "--out", str(run)], env)
    _wait(first, _epochs_logged(run, 3), "3 epochs")
    time.sleep(random.Random("issue 11: two writers").uniform(0.0, 0.1))
    first.send_signal(signal.SIGSTOP)  # hold it mid-training while the second writer tries
    try:
        code, _, err = _run([*RUN, "--out", str(run)], env)
    finally:
        first.kill()  # SIGKILL: no handler, no tidying up
        first.communicate(timeout=TIMEOUT)
    assert code == 2
    _one_line(err, rf"jaxprop train: error: --out '.*R' is in use by another jaxprop train "
                   rf"\(holder: PID {first.pid}, started .*\); wait for it to finish, or give "
                   r"another --out")
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == first.pid  # left behind
    with np.load(run / "checkpoint.npz") as z:  # whole, though killed at any moment
        assert int(z["epoch"]) >= 3
    code, _, err = _run(["train", "--quiet", "--resume", "--out", str(run)], env)
    assert code == 0, err
    assert f"took over a stale lock of PID {first.pid}" in err and "Traceback" not in err
    assert _consistent(run) == EPOCHS
    chex.assert_trees_all_equal(_params(run), reference["params"])
    assert _metrics(run) == reference["metrics"]  # one run's lines, once each


def test_a_full_disk_stops_naming_the_file_and_the_run_resumes(env, reference, tmp_path):
    """``ulimit -f 8``: no file may grow past 8 KiB. The checkpoint (6.5 KB) fits; the 40-odd
    epochs of metrics.jsonl do not."""
    run = tmp_path / "R"
    no_cache = {**env, "JAXPROP_CACHE_DIR": "off"}  # JAX's cache files are larger than that
    code, _, err = _run([*RUN, "--out", str(run)], no_cache, limit_bytes=8192)
    assert code == 2, err
    _one_line(err, r"jaxprop train: error: cannot write '.*R/metrics\.jsonl': File too large")
    assert (run / "checkpoint.npz").stat().st_size < 8192
    with np.load(run / "checkpoint.npz") as z:
        epoch = int(z["epoch"])
    assert 20 < epoch < EPOCHS
    # the torn line of the failed append is the only thing past the checkpoint
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines[:epoch]] == list(range(1, epoch + 1))
    assert len(lines) <= epoch + 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == epoch
    _finish_and_compare(run, env, reference, epoch)


def test_a_full_disk_while_resuming_with_set_leaves_config_and_checkpoint_as_they_were(
        env, tmp_path):
    """``--resume --set train.epochs=4`` under ``ulimit -f 4 KiB``: config.toml (600 bytes)
    would fit, the checkpoint (6.5 KB) does not. config.toml is written with its checkpoint,
    so neither changes, and a plain --resume afterwards continues the run as it was rather
    than refusing a config.toml "edited" to epochs = 4."""
    from jaxprop.cli import main

    run = tmp_path / "R"
    assert main(["train", "--config", "digits_linear_svm", "--quiet", "--set",
                 "train.epochs=2", "--out", str(run)]) == 0
    kept = ("config.toml", "checkpoint.npz", "params.npz")
    before = {name: (run / name).read_bytes() for name in kept}
    no_cache = {**env, "JAXPROP_CACHE_DIR": "off"}  # JAX's cache files are larger than that
    code, _, err = _run(["train", "--quiet", "--resume", "--set", "train.epochs=4", "--out",
                         str(run)], no_cache, limit_bytes=4096)
    assert code == 2, err
    _one_line(err, r"jaxprop train: error: cannot write '.*R/checkpoint\.npz': File too large")
    assert {name: (run / name).read_bytes() for name in kept} == before
    assert not list(run.glob(".*.tmp"))
    assert main(["train", "--quiet", "--resume", "--out", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_truncated_compilation_cache_entries_are_removed_quietly(env, tmp_path):
    """A run under ``ulimit -f 20 KiB`` leaves JAX's larger cache entries truncated (JAX
    writes them in place). The next run removes them before JAX reads them, without a word,
    and caches them again whole; JAX would otherwise warn about each, at every run."""
    cache = tmp_path / "xla"
    cached = {**env, "JAXPROP_CACHE_DIR": str(cache)}
    argv = ["train", "--config", "digits_linear_svm", "--quiet", "--set", "train.epochs=1"]
    code, _, err = _run([*argv, "--out", str(tmp_path / "A")], cached, limit_bytes=20 * 1024)
    assert code == 0, err
    torn = [p.name for p in cache.glob("*-cache") if p.stat().st_size == 20 * 1024]
    assert torn, sorted(p.name for p in cache.iterdir())
    code, _, err = _run([*argv, "--out", str(tmp_path / "B")], cached)
    assert code == 0, err
    assert "compilation cache" not in err, err
    assert all((cache / name).stat().st_size > 20 * 1024 for name in torn)


# ----------------------------------------------------------- in-process: mid-write


class _SignalMidWrite:
    """``os`` for jaxprop.train.checkpoint whose ``replace`` of the checkpoint of epoch
    ``epoch`` first delivers ``signals`` to this process: the signal lands mid-write, after
    the new file is written and before it takes the old one's place."""

    def __init__(self, epoch: int, signals):
        self.epoch, self.signals, self.count = epoch, signals, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        if Path(dst).name == "checkpoint.npz":
            self.count += 1
            if self.count == self.epoch + 1:  # epoch 0 is the first checkpoint written
                for s in self.signals:
                    signal.raise_signal(s)  # to this thread, at once
                    time.sleep(0.01)  # let its handler run: two at once would be one
        return os.replace(src, dst)


@pytest.mark.parametrize("signals, raises", [
    ((signal.SIGTERM,), False),
    ((signal.SIGINT, signal.SIGINT), True),  # Ctrl-C twice: abort, but not mid-write
], ids=["SIGTERM", "Ctrl-C twice"])
def test_a_signal_during_a_checkpoint_write_waits_for_the_write(signals, raises, digits,
                                                                tmp_path, monkeypatch):
    cfg = load_config("digits_linear_svm", ["train.epochs=5"])
    full = train(cfg, tmp_path / "full", dataset=digits, progress=False, write_plots=False)
    run = tmp_path / "R"
    monkeypatch.setattr(checkpoint, "os", _SignalMidWrite(2, signals))
    if raises:
        with pytest.raises(Stop) as stop:
            train(cfg, run, dataset=digits, progress=False, write_plots=False)
        assert stop.value.exit_code == 130
        assert "saved at epoch 2 of 5" in str(stop.value)
    else:
        result = train(cfg, run, dataset=digits, progress=False, write_plots=False)
        assert result.exit_code == 143 and result.status == "interrupted"
        assert "stopped after epoch 2 of 5" in result.message
    monkeypatch.undo()
    assert _consistent(run) == 2  # the write in flight completed, and its summary with it
    resumed = train(cfg, run, resume=True, dataset=digits, progress=False, write_plots=False)
    chex.assert_trees_all_equal(resumed.params, full.params)
    assert _metrics(run) == [{k: v for k, v in m.items() if k != "seconds"}
                             for m in full.metrics]


def test_sigterm_after_the_last_epoch_says_completed(digits, tmp_path, monkeypatch):
    """The signal lands while the summary is computed: the run is complete, the summary
    says so, the exit code says SIGTERM, and the plots are skipped (and said to be)."""
    from jaxprop.train import loop

    cfg = load_config("digits_linear_svm", ["train.epochs=3"])
    real = loop._summary

    def summary_then_signal(*args, **kw):
        if kw.get("state") is not None:  # the final summary, after the last epoch
            signal.raise_signal(signal.SIGTERM)
        return real(*args, **kw)

    monkeypatch.setattr(loop, "_summary", summary_then_signal)
    result = train(cfg, tmp_path, dataset=digits, progress=False)
    assert result.status == "completed" and result.exit_code == 143
    assert "stopped after the last epoch: all 3 epochs are saved" in result.message
    assert "the plots were not drawn" in result.message
    assert not (tmp_path / "loss.svg").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 3
    assert summary["test_accuracy"] is not None
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert int(z["epoch"]) == 3
