"""SIGINT and SIGTERM during training: finish the epoch in flight, save, then stop."""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["Signals"]


class Signals:
    """SIGINT/SIGTERM set a flag (the epoch in flight finishes); a second SIGINT aborts."""

    def __init__(self, console):
        self.received: int | None = None
        self.console = console

    def _handler(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        self.console.print(f"[yellow]{signal.Signals(signum).name} received: finishing this "
                           "epoch, then saving a checkpoint (Ctrl-C again to abort now)[/]")

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
