"""Multi-process training on JAX's distributed runtime: 2 local processes on CPU (gloo over
127.0.0.1) train to a 1-process run's parameters, resume across a restart of both, and stop
together when one refuses; every way of starting them wrong is one line and exit code 2 from
jaxprop's own handshake, in seconds, never JAX's C++ abort."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from jaxprop.cli import main
from jaxprop.train import distributed
from jaxprop.train.lock import LOCK_NAME

TIMEOUT_S = 180  # per pair of processes; a healthy pair takes about 10 s on 2 cores
SETTINGS = ["--quiet", "--set", "data.num_train=512", "--set", "model.hidden_dim=32",
            "--set", "train.batch_size=32"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAXPROP_COORD",
                                                                    "JAXPROP_NUM", "JAXPROP_PROC",
                                                                    "SLURM_"))}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _train(args, cwd):
    return subprocess.run([sys.executable, "-m", "jaxprop", "train", *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


def _finish(procs) -> list[tuple[int, str, str]]:
    """Each process's (exit code, stdout, stderr), waiting TIMEOUT_S at most; none outlives it."""
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            p.kill()
    return results


def _pair(args, cwd, only_1=()):
    """Processes 0 and 1 of a 2-process run of ``jaxprop train args`` (process 1 also gets
    ``only_1``): [(rc, out, err)]."""
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxprop", "train", *args, *(only_1 if i else ()),
         "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i), "--join-timeout", "60"],
        cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)]
    return _finish(procs)


def _params(folder):
    with np.load(folder / "params.npz") as f:
        return {k: f[k] for k in f.files}


def test_two_processes_train_and_resume_to_the_one_process_parameters(tmp_path):
    run = tmp_path / "two"
    first = _pair(["--out", str(run), *SETTINGS, "--set", "train.epochs=2"], tmp_path)
    for i, (rc, out, err) in enumerate(first):
        assert rc == 0, f"process {i}: {out}\n{err}"
    assert "devices        │ 2 x cpu" in first[0][1]
    assert "process 1 of 2: completed after 2 epochs" in first[1][1]
    with open(run / "summary.json") as f:
        assert json.load(f)["devices"] == 2

    resumed = _pair(["--out", str(run), "--resume", "--quiet", "--set", "train.epochs=4"],
                    tmp_path)
    for i, (rc, out, err) in enumerate(resumed):
        assert rc == 0, f"process {i}: {out}\n{err}"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [(h["event"], h["epoch"]) for h in history] == [("start", 0), ("resume", 2)]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]

    one = tmp_path / "one"
    rc = _train(["--out", str(one), *SETTINGS, "--set", "train.epochs=4"], tmp_path)
    assert rc.returncode == 0, rc.stderr
    a, b = _params(one), _params(run)
    assert a.keys() == b.keys()
    for name in a:
        # float32; the two processes sum each batch's gradient in another order. Measured:
        # at most 6e-8 apart after these 4 epochs (64 Adam steps), and after 66 steps of the
        # default run.
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # nothing stray


def test_a_refusing_process_0_stops_both(tmp_path):
    run = tmp_path / "taken"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (rc0, _, err0), (rc1, _, err1) = _pair(["--out", str(run), *SETTINGS], tmp_path)
    assert rc0 == 2 and "already holds" in err0, err0
    assert rc1 == 2, err1
    assert "process 0 of 2 stopped (this process was at opening the run folder" in err1, err1
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("only_1, where, message", [
    (["--config", "missing.toml"], "reading the config", "missing.toml"),
    (["--set", "data.dataset=mnist", "--set", "data.root=no_mnist_here"], "setting up the run",
     "no_mnist_here"),
], ids=["config", "setup"])
def test_a_failure_on_one_process_stops_both_at_once(tmp_path, only_1, where, message):
    """Process 1 alone fails; neither waits for the other in a collective."""
    start = time.monotonic()
    (rc0, _, err0), (rc1, _, err1) = _pair(["--out", str(tmp_path / "run"), *SETTINGS],
                                           tmp_path, only_1)
    assert rc1 == 2 and message in err1, err1
    assert rc0 == 2 and f"process 1 of 2 stopped (this process was at {where}" in err0, err0
    assert time.monotonic() - start < 60  # JAX's shutdown barrier alone would wait 300 s
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "2"], "missing --coordinator, --process-id"),
    (["--coordinator", "host", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "h:70000", "--num-processes", "2", "--process-id", "0"], "1..65535"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "in 0..1"),
    (["--coordinator", "h:1", "--num-processes", "two", "--process-id", "0"],
     "--num-processes must be an integer; got 'two'"),
    (["--join-timeout", "0"], "--join-timeout must be at least 1 (seconds); got 0"),
])
def test_bad_multi_process_flags_are_named(flags, message, capsys, tmp_path):
    assert main(["train", "--out", str(tmp_path / "r"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_where_the_processes_come_from():
    env = {"JAXPROP_COORDINATOR": "10.0.0.1:4321", "JAXPROP_NUM_PROCESSES": "4",
           "JAXPROP_PROCESS_ID": "3", "SLURM_STEP_NUM_TASKS": "8"}
    assert distributed.resolve(environ={}) == distributed.Cluster()
    assert distributed.resolve(environ=env) == distributed.Cluster(4, 3, "10.0.0.1:4321",
                                                                   "environment")
    assert distributed.resolve("[::1]:5", 2, 1, environ=env) == distributed.Cluster(
        2, 1, "[::1]:5", "flags")  # flags before the environment
    assert distributed.resolve(environ={"SLURM_STEP_NUM_TASKS": "8"}) == distributed.Cluster(
        8, None, None, "slurm")
    assert not distributed.resolve(environ={"SLURM_STEP_NUM_TASKS": "1"}).multi
    # an allocation of 8 tasks, outside any srun step: a plain run is one process
    assert not distributed.resolve(environ={"SLURM_NTASKS": "8"}).multi
    with pytest.raises(ValueError, match="missing JAXPROP_PROCESS_ID"):
        distributed.resolve(environ={"JAXPROP_COORDINATOR": "a:1", "JAXPROP_NUM_PROCESSES": "2"})


def test_one_process_agrees_with_itself():
    distributed.agree(True, "nothing")
    assert distributed.first_signal(None) is None
    assert distributed.first_signal(15) == 15


def test_a_signal_to_one_process_stops_both_after_the_same_epoch(tmp_path):
    run = tmp_path / "run"
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxprop", "train", "--out", str(run), *SETTINGS,
         "--set", "train.epochs=200", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i), "--join-timeout", "60"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)]
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + TIMEOUT_S
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert time.monotonic() < deadline and procs[0].poll() is None, "no epoch ran"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)  # process 1 only; process 0 writes the files
        results = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [143, 143], results
    assert "SIGTERM: stopped after epoch" in results[0][1]
    with open(run / "summary.json") as f:
        summary = json.load(f)
    lines = metrics.read_text().splitlines()
    assert summary["status"] == "interrupted" and 1 <= summary["epochs"] < 200
    assert len(lines) == summary["epochs"]


JOIN_S = 3  # --join-timeout of the tests that start a run wrongly
JAX_ABORT = ("client.h", "Check failure", "Terminating process", "Segmentation")


def _processes(commands, cwd):
    """Starts every ``jaxprop train`` command at once: [(rc, out, err)] and the seconds the
    last one took."""
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "jaxprop", "train", *args], cwd=cwd,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for args in commands]
    return _finish(procs), time.monotonic() - start


def _joining(port, n, i, *more):
    return [*SETTINGS, "--set", "train.epochs=2", "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", str(n), "--process-id", str(i), *more]


# (--num-processes, --process-id) of each process started, and the line each must print
STARTED_WRONG = {
    "process 1 never starts": ([(2, 0)], [
        f"process 1 of 2 did not join within --join-timeout {JOIN_S} s (process 0 waited at "
        "--coordinator 127.0.0.1:{port})"]),
    "only process 1 starts": ([(2, 1)], [
        "process 1 cannot reach process 0 at --coordinator 127.0.0.1:{port} within "
        f"--join-timeout {JOIN_S} s (Connection refused)"]),
    "3 processes, then 2": ([(3, 0), (2, 1)],
                            ["process 1 says --num-processes 2, process 0 says 3"] * 2),
    "2 processes, then 3": ([(2, 0), (3, 1)],
                            ["process 1 says --num-processes 3, process 0 says 2"] * 2),
    "both say process 0": ([(2, 0), (2, 0)], ["two processes say --process-id 0"] * 2),
    "the port is taken": ([(2, 0), (2, 1)], [
        "--coordinator 127.0.0.1:{port}: port {port} on this host is already in use",
        "--coordinator 127.0.0.1:{port} answers, but not as jaxprop's process 0"]),
}


@pytest.mark.parametrize("case", STARTED_WRONG, ids=list(STARTED_WRONG))
def test_a_run_started_wrongly_stops_with_one_line(tmp_path, case):
    """Each way of starting the processes wrongly: exit code 2 and jaxprop's line on every
    process, within the join timeout, before JAX's runtime starts (which would abort from C++
    after it, or never notice 2 processes against 3)."""
    started, lines = STARTED_WRONG[case]
    with socket.socket() as other_program:
        if case == "the port is taken":  # listens, never answers
            other_program.bind(("127.0.0.1", 0))
            other_program.listen()
            port = other_program.getsockname()[1]
        else:
            port = _free_port()
        results, seconds = _processes(
            [_joining(port, n, i, "--out", str(tmp_path / "run"), "--join-timeout", str(JOIN_S))
             for n, i in started], tmp_path)
    for i, ((rc, out, err), line) in enumerate(zip(results, lines)):
        assert rc == 2 and line.format(port=port) in err, f"process {i}: {out}\n{err}"
        assert len(err.strip().splitlines()) == 1, err  # one line, no JAX log
        assert not any(text in err for text in JAX_ABORT), err
    assert seconds < JOIN_S + 30  # start-up (imports) included, on 2 busy cores
    assert not (tmp_path / "run").exists()


def test_the_join_timeout_is_under_jaxs_heartbeat():
    """Without --join-timeout, a process waits at most 60 s for the others (JAX alone would
    wait 300 s and then abort); JAX's heartbeat notices a process lost later (100 s)."""
    import inspect

    from jaxprop.cli import build_parser

    default = build_parser().parse_args(["train"]).join_timeout
    heartbeat = inspect.signature(jax.distributed.initialize).parameters[
        "heartbeat_timeout_seconds"].default
    assert default == distributed.JOIN_TIMEOUT_S == 60 < heartbeat


def test_the_handshake_waits_no_longer_than_its_timeout():
    cluster = distributed.Cluster(2, 0, f"127.0.0.1:{_free_port()}", "flags")
    start = time.monotonic()
    with pytest.raises(distributed.ProcessGroupError, match="did not join within "
                       "--join-timeout 1 s"):
        distributed.rendezvous(cluster, 1)
    assert 1 <= time.monotonic() - start < 3
    joining = distributed.Cluster(2, 1, f"127.0.0.1:{_free_port()}", "environment")
    with pytest.raises(distributed.ProcessGroupError, match="process 1 cannot reach process 0 "
                       "at JAXPROP_COORDINATOR 127.0.0.1:.* within --join-timeout 1 s"):
        distributed.rendezvous(joining, 1)
    with pytest.raises(distributed.ProcessGroupError, match="unknown host 'no.such.host"):
        distributed.rendezvous(distributed.Cluster(2, 1, "no.such.host.invalid:1", "flags"), 1)


def test_the_handshake_holds_the_port_for_jax(tmp_path):
    """In one process, with threads: process 0 and process 1 meet; process 0 still holds the
    port afterwards (no other program can take it) until JAX is about to bind it."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    errors = []

    def process_1():
        try:
            distributed.rendezvous(distributed.Cluster(2, 1, address, "flags"), 10,
                                   {"jax": jax.__version__})
        except Exception as err:  # noqa: BLE001 (reported by the assert below)
            errors.append(err)

    thread = threading.Thread(target=process_1)
    thread.start()
    met = distributed.rendezvous(distributed.Cluster(2, 0, address, "flags"), 10,
                                 {"jax": jax.__version__})
    thread.join(10)
    assert not errors and not thread.is_alive()
    with socket.socket() as other_program, pytest.raises(OSError):
        other_program.bind(("127.0.0.1", port))
    met.release()
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", port))  # free for JAX's service now


def test_a_process_that_leaves_the_handshake_is_waited_for_again():
    port = _free_port()
    cluster = distributed.Cluster(3, 0, f"127.0.0.1:{port}", "flags")

    def leaving():  # a process 1 that says hello, then is stopped (Ctrl-C)
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(json.dumps({"magic": distributed._MAGIC, "num_processes": 3,
                                     "process_id": 1}).encode() + b"\n")
            assert b'"wait"' in conn.recv(4096)

    thread = threading.Thread(target=leaving)
    thread.start()
    with pytest.raises(distributed.ProcessGroupError, match="processes 1, 2 of 3 did not join"):
        distributed.rendezvous(cluster, 2)
    thread.join()


@pytest.mark.parametrize("victim", [1, 0])
def test_a_process_killed_mid_run_ends_the_other_within_seconds(tmp_path, victim):
    """A process that dies outright mid-run (SIGKILL, a lost host). Process 0 survivor: the
    next collective fails, jaxprop's line, exit code 2. Process 1 survivor: the same, unless
    JAX's runtime notices first that its coordination service (it ran in process 0) is gone
    and aborts the process from C++, exit code 134 (SIGABRT), with JAX's own message, which
    jaxprop cannot catch (measured: each about half of the time)."""
    run = tmp_path / "run"
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxprop", "train", "--out", str(run), *SETTINGS,
         "--set", "train.epochs=200", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i)],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)]
    survivor = procs[1 - victim]
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + TIMEOUT_S
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert time.monotonic() < deadline and survivor.poll() is None, "no epoch ran"
            time.sleep(0.05)
        procs[victim].kill()
        killed = time.monotonic()
        out, err = survivor.communicate(timeout=TIMEOUT_S)
        seconds = time.monotonic() - killed
    finally:
        for p in procs:
            p.kill()
    # measured: 0.1-0.5 s; JAX's heartbeat (100 s) and shutdown barrier (30 s) are not waited
    assert seconds < 15, (seconds, err)
    ours = "jaxprop train: error: lost another process of the 2-process run"
    if victim == 1:
        assert survivor.returncode == 2 and ours in err, err
        assert not any(text in err for text in JAX_ABORT), err
        assert (run / "checkpoint.npz").is_file() and not (run / LOCK_NAME).exists()
    elif survivor.returncode == 2:  # JAX's client may have logged its error already
        assert ours in err, err
    else:
        assert survivor.returncode == -signal.SIGABRT, err
        assert "Terminating process because the JAX distributed service detected fatal " \
               "errors" in err, err
