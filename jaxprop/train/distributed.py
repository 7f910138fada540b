"""Multi-process data parallelism on JAX's own distributed runtime (``jax.distributed``).

N processes, on one machine or many, run the same ``jaxprop train`` command, each with its
own process id. Together they form one device mesh: every batch is split over all the
devices of all the processes, and the gradient is summed across them by XLA's collectives
(gloo on CPU, NCCL on GPU). Each process gathers and sends only its own part of each batch
(``sharding.batches_from_host``); parameters and optimizer state are replicated, so every
process holds the same numbers, and process 0 alone writes the run's files.

Where the coordinator's address, the number of processes and this process's id come from,
the first that applies:

1. the flags ``--coordinator HOST:PORT --num-processes N --process-id I``;
2. the environment: ``JAXPROP_COORDINATOR``, ``JAXPROP_NUM_PROCESSES``,
   ``JAXPROP_PROCESS_ID``;
3. an ``srun`` step of more than one task (``SLURM_STEP_NUM_TASKS`` > 1): JAX's own
   cluster detection reads all three from SLURM's variables (the coordinator is the step's
   first node);
4. otherwise one process, and nothing is initialized.

For example, two processes on one machine::

  jaxprop train --coordinator 127.0.0.1:4321 --num-processes 2 --process-id 0 &
  jaxprop train --coordinator 127.0.0.1:4321 --num-processes 2 --process-id 1

Before JAX's distributed runtime starts, the processes meet in jaxprop's own small handshake
(``rendezvous``) on the coordinator's port: process 0 checks that the port is free, every
process checks that it reaches process 0, and process 0 checks that they agree on the number
of processes, that their ids are unique and that they run the same jaxprop and JAX.
What fails there is one line and exit code 2, never JAX's C++ abort.

Every decision that ends a run early is taken by all the processes together (``agree``), so
that no process waits forever in a collective for one that stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import selectors
import socket
import sys
import time

__all__ = ["Cluster", "ProcessGroupError", "PeerLost", "resolve", "rendezvous", "initialize",
           "agree", "first_signal", "together", "exit_lost"]

ENV = {"coordinator": "JAXPROP_COORDINATOR", "num_processes": "JAXPROP_NUM_PROCESSES",
       "process_id": "JAXPROP_PROCESS_ID"}
FLAGS = {"coordinator": "--coordinator", "num_processes": "--num-processes",
         "process_id": "--process-id"}
SHUTDOWN_TIMEOUT_S = 30
"""How long a finished process waits at exit for the others (JAX's default is 300 s)."""
JOIN_TIMEOUT_S = 60
"""Default of ``--join-timeout``: well under JAX's 100 s heartbeat, far under its 300 s."""
ANSWER_TIMEOUT_S = 5
"""How long a process waits for process 0 to acknowledge its hello; a program on the port
that accepts the connection but says nothing (not jaxprop) is named after this."""
_MAGIC = "jaxprop-join/1"
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ProcessGroupError(OSError):
    """The processes of a run could not start or continue together (exit code 2)."""


class PeerLost(ProcessGroupError):
    """A collective failed: another process died outright (killed, its host lost)."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Who this process is in a run.

    Attributes:
      num_processes: N (1: a single-process run).
      process_id: this process's id in ``0..N-1`` (None when SLURM says it).
      coordinator: ``HOST:PORT`` of process 0's coordination service (None: SLURM's).
      source: ``"flags"``, ``"environment"``, ``"slurm"`` or ``"single"``.
    """

    num_processes: int = 1
    process_id: int | None = 0
    coordinator: str | None = None
    source: str = "single"

    @property
    def multi(self) -> bool:
        return self.num_processes > 1


def _int(value, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer; got {value!r}") from None


def resolve(coordinator: str | None = None, num_processes: int | str | None = None,
            process_id: int | str | None = None, environ=None) -> Cluster:
    """The :class:`Cluster` from the flags, else the environment, else SLURM's variables.

    Raises:
      ValueError: some but not all of the three are given, or one is malformed (named,
        with what is expected).
    """
    environ = os.environ if environ is None else environ
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    source, names = "flags", FLAGS
    if all(v is None for v in given.values()):
        given = {k: environ.get(v) or None for k, v in ENV.items()}
        source, names = "environment", ENV
    if all(v is None for v in given.values()):
        # the tasks of this srun step (an allocation's SLURM_NTASKS is set in a batch
        # script too, where a plain jaxprop train is one process)
        tasks = environ.get("SLURM_STEP_NUM_TASKS")
        if tasks and _int(tasks, "SLURM_STEP_NUM_TASKS") > 1:
            return Cluster(_int(tasks, "SLURM_STEP_NUM_TASKS"), None, None, "slurm")
        return Cluster()
    missing = [names[k] for k, v in given.items() if v is None]
    if missing:
        raise ValueError(
            f"a multi-process run needs all of {', '.join(names.values())}; missing "
            f"{', '.join(missing)} (every process gets the same coordinator and number of "
            "processes, and its own id)")
    n = _int(given["num_processes"], names["num_processes"])
    i = _int(given["process_id"], names["process_id"])
    if n < 1:
        raise ValueError(f"{names['num_processes']} must be at least 1; got {n}")
    if not 0 <= i < n:
        raise ValueError(f"{names['process_id']} must be in 0..{n - 1} for {n} processes; "
                         f"got {i}")
    address = str(given["coordinator"]).strip()
    match = _ADDRESS.match(address)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"{names['coordinator']} must be HOST:PORT with a port in 1..65535 "
                         f"(process 0's address, e.g. 10.0.0.1:4321); got {address!r}")
    return Cluster(n, i, address, source)

# -- jaxprop's own handshake, before JAX's runtime can abort the process ---------------------


class Met:
    """What ``rendezvous`` leaves: on process 0 the coordinator's port, still bound and
    listening, so that no other program can take it before JAX's service binds it."""

    def __init__(self, listener: socket.socket | None = None):
        self.listener = listener

    def release(self) -> None:
        """Closes the port (just before ``jax.distributed.initialize`` binds it)."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def rendezvous(cluster: Cluster, timeout_s: int = JOIN_TIMEOUT_S,
               fingerprint: dict | None = None) -> Met:
    """Every process meets process 0 on the coordinator's port before JAX does.

    Process 0 binds the port, which proves it free, and listens; every other process
    connects (retrying until process 0 is up) and says how many processes it was told, its
    id and its ``fingerprint`` (jaxprop's and JAX's versions, in the CLI).
    Process 0 answers each at once (``wait``), and when all N-1 have come and agree it answers
    ``ok`` to each. They close their side first, so that no connection is left in TIME_WAIT
    on process 0's port. Process 0 keeps the port bound and listening (``Met``) until
    ``initialize`` closes it just before JAX's service binds it again (with SO_REUSEADDR) in
    ``jax.distributed.initialize``; the other processes' JAX clients retry their connection
    until then. So there is no race for the port with another program but for that moment
    between the close and JAX's bind. The same port, not a second one, so that a cluster
    needs only the one port open, and a check of the port is a check of JAX's.

    It needs no JAX: the CLI runs it before importing JAX, so a run started wrongly stops in
    about a second. Nothing for a single process, nor for a SLURM step (JAX reads SLURM's
    consistent values and picks the port itself).

    Returns:
      A ``Met``, to hand to ``initialize``.

    Raises:
      ProcessGroupError: in one line, naming the flag or the process: the port is in use,
        process 0 cannot be reached within ``timeout_s`` seconds, a process did not come, the
        processes disagree on the number of processes, two have the same id, something other
        than jaxprop answers on the port, or the fingerprints differ. Every process that has
        reached process 0 gets the same line.
    """
    if not cluster.multi or cluster.source == "slurm":
        return Met()
    names = FLAGS if cluster.source == "flags" else ENV
    hello = {"magic": _MAGIC, "num_processes": cluster.num_processes,
             "process_id": cluster.process_id, "fingerprint": fingerprint or {},
             "names": [names["num_processes"], names["process_id"]]}
    deadline = time.monotonic() + timeout_s
    if cluster.process_id == 0:
        return Met(_serve(cluster, names, hello, timeout_s, deadline))
    _join(cluster, names, hello, timeout_s, deadline)
    return Met()


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def _send(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):  # a peer gone already learns nothing more
        conn.sendall(json.dumps({"magic": _MAGIC, **message}).encode() + b"\n")


def _read(conn: socket.socket, timeout_s: float, reader=None) -> dict | None:
    """The next message, or None: the connection closed, or what came is not jaxprop's.
    ``reader`` (``conn.makefile("rb")``) keeps what arrived after the message for the next
    call; without it, that is dropped.

    Raises:
      TimeoutError: nothing complete within ``timeout_s``.
    """
    if reader is None:
        with conn.makefile("rb") as reader:
            return _read(conn, timeout_s, reader)
    conn.settimeout(max(timeout_s, 0.01))
    try:
        line = reader.readline(65536)
    except TimeoutError:
        raise
    except OSError:
        return None
    try:
        message = json.loads(line) if line.endswith(b"\n") else None
    except ValueError:
        return None
    return message if isinstance(message, dict) and message.get("magic") == _MAGIC else None


def _listen(port: int) -> socket.socket:
    """A socket listening on ``port`` of every interface, as JAX's service will (``[::]``).

    SO_REUSEADDR, so that connections of an earlier run in TIME_WAIT do not count as "in
    use"; not SO_REUSEPORT, so that any other listener on the port makes ``bind`` fail.
    """
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            return sock
        except OSError as err:
            sock.close()
            if family == socket.AF_INET or err.errno in (errno.EADDRINUSE, errno.EACCES):
                raise  # else no IPv6 here: IPv4 only
    raise OSError("no IPv4 or IPv6 socket can be opened")


def _serve(cluster: Cluster, names: dict, hello: dict, timeout_s: int,
           deadline: float) -> socket.socket:
    """Process 0's side: the port, then every other process's hello. Returns the port, still
    listening."""
    host, port = _host_port(cluster.coordinator)
    n = cluster.num_processes
    where = f"{names['coordinator']} {cluster.coordinator}"
    try:
        listener = _listen(port)
    except OSError as err:
        _port_in_use(host, port, where, hello, err)
    joined: dict[int, socket.socket] = {}
    pending: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)

    def fail(text: str, *also: socket.socket):
        for conn in (*joined.values(), *also):
            _send(conn, {"error": text})
        raise ProcessGroupError(text)

    try:
        while len(joined) < n - 1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [str(i) for i in range(1, n) if i not in joined]
                fail(f"process{'es' if len(missing) > 1 else ''} {', '.join(missing)} of {n} "
                     f"did not join within --join-timeout {timeout_s} s (process 0 waited at "
                     f"{where}): start every process with the same {names['coordinator']} and "
                     f"{names['num_processes']} {n}, each with "
                     f"its own {names['process_id']}")
            for key, _ in selector.select(min(remaining, 1.0)):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pending.append(conn)
                    selector.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj
                selector.unregister(conn)
                if key.data is not None:  # a process that had joined has gone (Ctrl-C)
                    del joined[key.data]
                    conn.close()
                    continue
                pending.remove(conn)
                try:
                    other = _read(conn, 1.0)  # a hello is one short line, already sent
                except TimeoutError:
                    other = None
                if other is None:  # not jaxprop (a port scan), or a process gone again
                    conn.close()
                    continue
                text = _disagreement(cluster, names, hello, other, joined)
                if text is not None:
                    fail(text, conn)
                joined[other["process_id"]] = conn
                _send(conn, {"status": "wait", "joined": len(joined) + 1, "of": n})
                selector.register(conn, selectors.EVENT_READ, other["process_id"])
        for conn in joined.values():
            _send(conn, {"status": "ok"})
        _until_closed(list(joined.values()), time.monotonic() + 2.0)
    except BaseException:
        listener.close()
        raise
    finally:
        for conn in (*joined.values(), *pending):
            conn.close()
        selector.close()
    return listener


def _until_closed(conns: list[socket.socket], deadline: float) -> None:
    """Waits (briefly) for each peer to close first, so TIME_WAIT stays on their side."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            while conn.recv(4096):
                pass


def _disagreement(cluster: Cluster, names: dict, hello: dict, other: dict,
                  joined: dict) -> str | None:
    """What is wrong with another process's hello, as one line, or None."""
    n, i = other.get("num_processes"), other.get("process_id")
    n_name, i_name = (other.get("names") or [names["num_processes"], names["process_id"]])[:2]
    if not isinstance(i, int):
        return f"a process says {i_name} {i!r}, which is not an id"
    if n != cluster.num_processes:
        return f"process {i} says {n_name} {n}, process 0 says {cluster.num_processes}"
    if i == 0 or i in joined:
        return (f"two processes say {i_name} {i}: each process of the run needs its own id, "
                f"0..{cluster.num_processes - 1}")
    if not 0 < i < cluster.num_processes:
        return f"process {i} is not in 0..{cluster.num_processes - 1} ({i_name})"
    mine, theirs = hello["fingerprint"], other.get("fingerprint") or {}
    for key in sorted(set(mine) & set(theirs)):  # what both know
        if mine.get(key) != theirs.get(key):
            return (f"process {i} has {key} {theirs.get(key)}, process 0 has "
                    f"{mine.get(key)}: install the same versions everywhere")
    return None


def _port_in_use(host: str, port: int, where: str, hello: dict, err: OSError):
    """Process 0 could not listen: another process 0 of this run, or another program."""
    if err.errno == errno.EACCES:
        raise ProcessGroupError(f"{where}: this host does not allow listening on port {port} "
                                "(ports below 1024 need root); pick another port") from None
    if err.errno == errno.EADDRINUSE:  # ask whoever holds it whether it is a process 0
        for _ in range(3):  # (one that has bound the port but not yet listens refuses)
            try:
                with socket.create_connection((host, port), timeout=ANSWER_TIMEOUT_S) as conn:
                    _send(conn, {k: v for k, v in hello.items() if k != "magic"})
                    answer = _read(conn, ANSWER_TIMEOUT_S)
            except ConnectionRefusedError:
                time.sleep(0.2)
                continue
            except (OSError, TimeoutError):
                break
            if answer is not None and answer.get("error"):
                raise ProcessGroupError(answer["error"])
            break
        raise ProcessGroupError(
            f"{where}: port {port} on this host is already in use, by another program or a "
            "run that has already started there; pick a free port for every process") from None
    raise ProcessGroupError(f"{where}: cannot listen on port {port}: "
                            f"{err.strerror or err}") from None


def _join(cluster: Cluster, names: dict, hello: dict, timeout_s: int, deadline: float) -> None:
    """The side of a process other than 0: reach process 0, say hello, wait for its answer."""
    host, port = _host_port(cluster.coordinator)
    where = f"{names['coordinator']} {cluster.coordinator}"
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProcessGroupError(
                f"process {cluster.process_id} cannot reach process 0 at {where} within "
                f"--join-timeout {timeout_s} s ({last}): start process 0 with the same "
                f"{names['coordinator']}, or check that its host and port can be reached "
                "from here")
        try:
            conn = socket.create_connection((host, port), timeout=min(remaining, 5.0))
            break
        except socket.gaierror as err:
            raise ProcessGroupError(f"{where}: unknown host {host!r} ({err.strerror})") from None
        except OSError as err:
            last = err.strerror or type(err).__name__
            time.sleep(min(0.2, max(remaining, 0)))
    with conn, conn.makefile("rb") as reader:  # "wait" and "ok" may come in one packet
        _send(conn, {k: v for k, v in hello.items() if k != "magic"})
        try:
            answer = _read(conn, min(ANSWER_TIMEOUT_S, max(deadline - time.monotonic(), 1)),
                           reader)
        except TimeoutError:
            answer = None
        if answer is None:
            raise ProcessGroupError(
                f"{where} answers, but not as jaxprop's process 0: another program listens "
                "on that port, or a run has already started there")
        while answer.get("status") == "wait":
            try:
                answer = _read(conn, deadline - time.monotonic(), reader) or {
                    "error": f"process 0 at {where} closed the connection before all "
                             "processes had joined"}
            except TimeoutError:
                raise ProcessGroupError(
                    f"process {cluster.process_id} reached process 0 at {where}, but the "
                    f"others did not all join within --join-timeout {timeout_s} s") from None
        if answer.get("status") != "ok":
            raise ProcessGroupError(str(answer.get("error") or answer))


def initialize(cluster: Cluster, timeout_s: int = JOIN_TIMEOUT_S, met: Met | None = None) -> None:
    """Joins the run described by ``cluster``: jaxprop's handshake (``rendezvous``, unless
    ``met`` says it is done), then ``jax.distributed.initialize``; nothing for a single
    process. Call it before anything asks JAX for its devices.

    On CPU the cross-process collectives use gloo, and JAX's preemption service (which
    would catch SIGTERM itself) is off; both settings are made here, for this process, and
    only for a multi-process run.

    Raises:
      ProcessGroupError: the port is in use, the coordinator could not be reached, or the
        processes did not all join and agree, within ``timeout_s`` seconds (see
        ``rendezvous``).
    """
    if not cluster.multi:
        return
    met = rendezvous(cluster, timeout_s) if met is None else met
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption notifier would take SIGTERM from jaxprop's handlers; the run's own
    # per-epoch agreement (first_signal) stops every process after the same saved epoch.
    jax.config.update("jax_enable_preemption_service", False)
    where = (f"the coordinator at {cluster.coordinator}" if cluster.coordinator else
             "the coordinator SLURM names")
    who = "" if cluster.process_id is None else f" as process {cluster.process_id}"
    try:
        if cluster.source == "slurm":
            met.release()
            jax.distributed.initialize(initialization_timeout=timeout_s,
                                       shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
        else:
            met.release()  # the port, to JAX's service, bound in the next line
            jax.distributed.initialize(cluster.coordinator, cluster.num_processes,
                                       cluster.process_id, initialization_timeout=timeout_s,
                                       shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ProcessGroupError(
            f"could not join the {cluster.num_processes}-process run through {where}{who} "
            f"(waiting at most {timeout_s} s): {first}. Start every process with the same "
            "coordinator and number of processes, each with its own id, and check that "
            "process 0's host and port can be reached") from None


def _exchange(code: int) -> list[int]:
    """Every process's ``code``, by process id (one small all-gather)."""
    import jax

    if jax.process_count() == 1:
        return [code]
    import numpy as np
    from jax.experimental import multihost_utils

    try:  # one int32: any error is the runtime's (gloo's raises ValueError: UNKNOWN: ...)
        gathered = np.asarray(multihost_utils.process_allgather(np.int32(code)))
    except (jax.errors.JaxRuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PeerLost(
            f"lost another process of the {jax.process_count()}-process run (it was killed, "
            f"or its host or the network went down): {first}. This process stops too; a run "
            "folder keeps its last saved epoch, to continue with --resume") from None
    return [int(c) for c in gathered.reshape(-1)]


_FAILED = -1


def agree(ok: bool, what: str) -> None:
    """All processes together: returns if every process is ``ok``. A process that is not ok
    returns too (it goes on to raise its own error); the others raise.

    Raises:
      ProcessGroupError: another process was not ok (``what`` says at which point).
    """
    codes = _exchange(0 if ok else _FAILED)
    if ok:
        _raise_if_failed(codes, what)


def first_signal(received: int | None) -> int | None:
    """The signal (SIGINT/SIGTERM number) any process has received, or None: the same answer
    on every process, so that they all stop after the same epoch.

    Raises:
      ProcessGroupError: another process failed (it called ``agree(False, ...)``).
    """
    codes = _exchange(received or 0)
    _raise_if_failed(codes, "the end of an epoch")
    signals = [c for c in codes if c > 0]
    return signals[0] if signals else None


def _raise_if_failed(codes: list[int], what: str) -> None:
    failed = [str(i) for i, c in enumerate(codes) if c == _FAILED]
    if failed:
        raise ProcessGroupError(
            f"process {', '.join(failed)} of {len(codes)} stopped (this process was at "
            f"{what}); its own message says why, and this process stops with it")


@contextlib.contextmanager
def together(what: str):
    """A block that either every process finishes or every process leaves by an exception:
    ``agree`` at its end, or ``agree(False)`` before this process's exception goes on."""
    try:
        yield
    except BaseException:
        agree(False, what)
        raise
    agree(True, what)


def exit_lost(err: PeerLost, prog: str = "jaxprop train") -> None:
    """Prints ``err`` as one line and ends this process at once with exit code 2.

    After a lost process, JAX's shutdown at exit would wait for it in a barrier
    (``SHUTDOWN_TIMEOUT_S``) and then abort the process from C++; ``os._exit`` skips that.
    The run's files are already closed (every write is atomic, the lock released)."""
    print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)
