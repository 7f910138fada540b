"""SIGINT and SIGTERM in a jaxprop process, from the first line of ``jaxprop.cli.main`` to its last.

One :data:`GUARD` per process holds the handlers and what a signal means at the moment it
arrives. There are three moments, each entered as a context:

* **abort**, the default once installed (starting up, importing JAX, loading data, compiling,
  printing): a signal stops the process now. The handler raises :class:`Stop`, which
  ``jaxprop.cli.main`` reports as one line and exit code 128 + the signal (130, 143).
* **graceful** (``GUARD.graceful()``, a training run): the first signal is recorded, and
  the run stops after the epoch in flight, saved. A second SIGINT aborts; a second SIGTERM
  is noted and changes nothing.
* **critical** (``GUARD.critical()``: writing a checkpoint and its summary, setting up or
  moving aside a run folder): every signal waits for the section to end, so the files never
  disagree; an abort asked for meanwhile is raised as the section ends.

Python cannot raise from everywhere. Inside an ``import`` a raised ``Stop`` may be turned
into an ``ImportError`` by a C extension initialising itself (numpy does), so a signal that
arrives while a module is being imported only records the stop, and the next
:meth:`Guard.check` (called at every phase boundary, right after the imports of JAX) raises
it. A ``Stop`` raised while a garbage-collector callback or a ``__del__`` runs (JAX's import
has both) is swallowed by the interpreter: the signal stays recorded for the next ``check()``
or the end of ``main``, and the swallowed one is not printed (``sys.unraisablehook``).

Nothing here imports JAX, so the handlers are in place before JAX is.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["GUARD", "Guard", "Stop", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(KeyboardInterrupt):
    """Raised to stop the process on SIGINT or SIGTERM.

    A ``KeyboardInterrupt``, so that code which lets Ctrl-C through lets it through too.

    Attributes:
      signum: the signal that stopped the run.
      detail: what was saved, for the one line the CLI prints ("" if nothing was written).
    """

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum)
        self.signum = signum
        self.detail = detail

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"{self.name}: stopped" + (f"; {self.detail}" if self.detail else "")


class Guard:
    """The process's SIGINT/SIGTERM handlers and the moment (abort, graceful, critical)."""

    def __init__(self):
        self.received: int | None = None  # the first signal since install (or reset)
        self.aborting = False  # a Stop is due
        self.muted = False  # exiting: signals are recorded, nothing more
        self.notify: Callable[[str], None] = _to_stderr
        self._graceful = 0
        self._critical = 0
        self._previous: dict | None = None
        self._previous_hook = None

    # ------------------------------------------------------------------ install

    @property
    def installed(self) -> bool:
        return self._previous is not None

    def install(self) -> bool:
        """Installs the handlers (main thread only); returns whether they are installed.

        A signal the parent process set to be ignored (``nohup``, a shell's background job
        and SIGINT) stays ignored, as Python itself leaves an ignored SIGINT ignored.
        """
        if self.installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        self.reset()
        self._previous = {s: signal.signal(s, self._handler) for s in SIGNALS
                          if signal.getsignal(s) is not signal.SIG_IGN}
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return True

    def uninstall(self) -> None:
        """Puts back the handlers that were there before :meth:`install`."""
        if not self.installed:
            return
        for s, h in self._previous.items():
            signal.signal(s, h)
        if sys.unraisablehook == self._unraisable:
            sys.unraisablehook = self._previous_hook
        self._previous = None
        self.reset()  # what was received was acted on; the next install starts afresh

    def reset(self) -> None:
        self.received, self.aborting, self.muted = None, False, False

    def mute(self) -> None:
        """From now on a signal is recorded only: the process is reporting and exiting."""
        self.muted = True

    def ignore(self) -> None:
        """Ignores SIGINT and SIGTERM from now on: the process has done its work and exits.

        The console script's last act. Python's own finalization puts the default action
        back for a signal with a Python handler (a SIGINT there would kill the process
        instead of letting it exit with its code), but leaves an ignored one ignored.
        """
        if self.installed:
            for s in self._previous:
                signal.signal(s, signal.SIG_IGN)

    # ------------------------------------------------------------------ moments

    @contextlib.contextmanager
    def graceful(self, notify: Callable[[str], None] | None = None):
        """A training run: the first signal is recorded for the loop to act on.

        Outside the CLI (``train()`` called from Python) the handlers are installed for the
        duration and the previous ones put back after, as a library should.
        """
        temporary = not self.installed and self.install()
        self.check()
        old_notify, self.notify = self.notify, notify or self.notify
        self._graceful += 1
        try:
            yield self
        finally:
            self._graceful -= 1
            self.notify = old_notify
            if temporary:
                self.uninstall()
        self.check()

    @contextlib.contextmanager
    def critical(self):
        """Files being written: signals wait until the section ends."""
        self._critical += 1
        try:
            yield self
        finally:
            self._critical -= 1
        self.check()

    def check(self) -> None:
        """Raises the Stop that is due, if one is (and no critical section is open)."""
        if self.aborting and self.installed and not self._critical and not self.muted:
            raise Stop(self.received)

    # ------------------------------------------------------------------ the handler

    def _handler(self, signum, frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self.muted:
            return
        name = signal.Signals(signum).name
        if not self._graceful:
            self.aborting = True
        elif first:
            self.notify(f"{name} received: finishing this epoch, then saving a checkpoint "
                        "(Ctrl-C again to abort now)")
        elif signum == signal.SIGINT:
            self.aborting = True
        else:
            self.notify(f"{name} received again: already stopping after this epoch")
        if self.aborting and self._critical:
            self.notify(f"{name} received: stopping as soon as the files being written "
                        "are complete")
        if not _importing(frame):
            self.check()

    def _unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, Stop):
            return  # recorded: the next check() raises it where it can propagate
        (self._previous_hook or sys.__unraisablehook__)(unraisable)


def _importing(frame) -> bool:
    """Whether the interrupted code runs inside an ``import`` (importlib is on the stack)."""
    depth = 0
    while frame is not None and depth < 500:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


GUARD = Guard()
"""The guard of this process."""
