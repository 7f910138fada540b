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

Every decision that ends a run early is taken by all the processes together (``agree``), so
that no process waits forever in a collective for one that stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re

__all__ = ["Cluster", "ProcessGroupError", "resolve", "initialize", "agree", "first_signal",
           "together"]

ENV = {"coordinator": "JAXPROP_COORDINATOR", "num_processes": "JAXPROP_NUM_PROCESSES",
       "process_id": "JAXPROP_PROCESS_ID"}
FLAGS = {"coordinator": "--coordinator", "num_processes": "--num-processes",
         "process_id": "--process-id"}
SHUTDOWN_TIMEOUT_S = 30
"""How long a finished process waits at exit for the others (JAX's default is 300 s)."""
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ProcessGroupError(OSError):
    """The processes of a run could not start or continue together (exit code 2)."""


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


def initialize(cluster: Cluster, timeout_s: int = 300) -> None:
    """Joins the run described by ``cluster`` (``jax.distributed.initialize``); nothing for a
    single process. Call it before anything asks JAX for its devices.

    On CPU the cross-process collectives use gloo, and JAX's preemption service (which
    would catch SIGTERM itself) is off; both settings are made here, for this process, and
    only for a multi-process run.

    Raises:
      ProcessGroupError: the coordinator could not be reached, or the processes did not all
        join, within ``timeout_s`` seconds.
    """
    if not cluster.multi:
        return
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
            jax.distributed.initialize(initialization_timeout=timeout_s,
                                       shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
        else:
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

    return [int(c) for c in np.asarray(
        multihost_utils.process_allgather(np.int32(code))).reshape(-1)]


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
