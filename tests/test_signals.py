"""The process's signal guard: abort, graceful and critical moments, deferral where Python
cannot raise (an import, a gc callback), and an ignored signal left ignored."""

import gc
import importlib
import signal
import sys
import time

import pytest

from jaxprop._signals import Guard, Stop


@pytest.fixture
def guard():
    g = Guard()
    assert g.install()
    yield g
    g.uninstall()


def _deliver(signum):
    signal.raise_signal(signum)  # to this thread: no other thread can take it and lag
    time.sleep(0.01)  # the handler runs here, in the main thread


def test_abort_raises_at_once(guard):
    with pytest.raises(Stop) as stop:
        _deliver(signal.SIGTERM)
    assert stop.value.exit_code == 143 and str(stop.value) == "SIGTERM: stopped"


def test_graceful_records_and_a_second_sigint_aborts(guard):
    notes, after = [], []
    with pytest.raises(Stop) as stop:
        with guard.graceful(notes.append):
            _deliver(signal.SIGTERM)
            assert guard.received == signal.SIGTERM and not guard.aborting
            _deliver(signal.SIGTERM)  # a second SIGTERM changes nothing
            assert not guard.aborting
            _deliver(signal.SIGINT)
            after.append("not reached")
    assert not after
    assert stop.value.signum == signal.SIGTERM  # the first signal decides the exit code
    assert [n.split(":")[0] for n in notes] == ["SIGTERM received", "SIGTERM received again"]


def test_critical_defers_every_signal_to_its_end(guard):
    done = []
    with pytest.raises(Stop):
        with guard.critical():
            _deliver(signal.SIGINT)
            done.append("wrote the rest")
    assert done == ["wrote the rest"]


def test_a_stop_inside_an_import_is_deferred_to_the_next_check(guard, tmp_path, monkeypatch):
    (tmp_path / "slow_module_for_signals.py").write_text(
        "import os, signal, time\n"
        "signal.raise_signal(signal.SIGINT)\n"
        "time.sleep(0.01)\n"
        "IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("slow_module_for_signals")  # never an ImportError
    assert module.IMPORTED and guard.aborting
    with pytest.raises(Stop):
        guard.check()
    sys.modules.pop("slow_module_for_signals", None)


def test_a_stop_swallowed_by_a_gc_callback_is_silent_and_raised_later(guard, capsys):
    def callback(phase, info):
        if phase == "start":
            _deliver(signal.SIGTERM)

    gc.callbacks.append(callback)
    try:
        gc.collect()  # the Stop raised in the callback is "ignored" by the interpreter
    finally:
        gc.callbacks.remove(callback)
    assert "Exception ignored" not in capsys.readouterr().err
    assert guard.aborting
    with pytest.raises(Stop):
        guard.check()


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        g = Guard()
        assert g.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == g._handler
        g.uninstall()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_cli_handlers_are_installed_only_while_training(tmp_path):
    g = Guard()
    before = signal.getsignal(signal.SIGTERM)
    with g.graceful():
        assert signal.getsignal(signal.SIGTERM) == g._handler
    assert signal.getsignal(signal.SIGTERM) is before and not g.installed


def test_the_console_script_exits_with_its_code_whatever_arrives_after():
    """After main() returns, Python's shutdown would give a signal its default action back
    (killed, not the exit code): the console script ignores them from then on."""
    import subprocess

    code = ("import os, signal, sys\n"
            "from jaxprop._signals import GUARD\n"
            "GUARD.install(); GUARD.ignore()\n"
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM)\n"
            "sys.exit(7)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 7, result.stderr
