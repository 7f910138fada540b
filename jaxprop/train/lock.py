"""One writer per folder: a lock file naming the process that holds it.

``FolderLock(folder).acquire()`` creates ``folder/.jaxprop.lock`` and takes an exclusive
``flock`` on it, then writes the holder's PID, host, start time and command into it. A second
writer is refused at once (``FileExistsError`` naming the holder's PID). The kernel drops the
``flock`` when its process dies, however it dies, so a lock file that nobody holds is stale:
the next writer takes it over and says whose it was. ``release()`` unlinks the file while
still holding the lock; a writer that opened the old file just before checks, after locking,
that its file is still the one at the path, and tries again if not.

Where ``fcntl`` is missing (Windows), or the file system refuses ``flock``, the file is
created exclusively instead, and a file whose PID no longer runs is stale.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "FolderLock", "describe_stale"]

LOCK_NAME = ".jaxprop.lock"

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class FolderLock:
    """The lock of one folder.

    Attributes:
      path: the lock file.
      stale: the record left by a holder that died without releasing, once taken over (the
        dict it wrote: ``pid``, ``host``, ``started``, ``command``), else None.
    """

    def __init__(self, folder: str | os.PathLike, command: str = "jaxprop"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.stale: dict | None = None
        self._fd: int | None = None

    def _record(self) -> bytes:
        return (json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": self.command}) + "\n").encode()

    def _in_use(self, holder: dict) -> FileExistsError:
        who = f"PID {holder.get('pid', '?')}"
        if holder.get("host") and holder["host"] != socket.gethostname():
            who += f" on host {holder['host']}"
        since = f", started {holder['started']}" if holder.get("started") else ""
        what = holder.get("command") or "jaxprop"
        return FileExistsError(
            f"--out {str(self.folder)!r} is in use by another {what} (holder: {who}{since}, "
            f"lock file {str(self.path)!r}); wait for it to finish, or give another --out")

    def acquire(self) -> FolderLock:
        """Takes the lock, or raises FileExistsError naming the holder's PID."""
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_exclusive()
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise self._in_use(holder) from None
            except OSError as err:
                os.close(fd)
                if err.errno in _NO_FLOCK:  # a file system without flock: PIDs instead
                    return self._acquire_exclusive()
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released (unlinked) between our open and our flock: again
                os.close(fd)
                continue
            previous = _read(fd)
            self.stale = previous or None
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._record(), 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise FileExistsError(f"--out {str(self.folder)!r}: could not take its lock file "
                              f"{str(self.path)!r}; other writers keep replacing it")

    def _acquire_exclusive(self) -> FolderLock:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                with open(self.path, "rb") as f:
                    holder = _parse(f.read())
                if _alive(holder.get("pid")):
                    raise self._in_use(holder) from None
                self.stale = holder or None
                Path(self.path).unlink(missing_ok=True)
                continue
            os.write(fd, self._record())
            self._fd = fd
            return self
        raise FileExistsError(f"--out {str(self.folder)!r}: could not take its lock file")

    def release(self) -> None:
        """Removes the lock file and lets go of the lock (unlink first, then unlock)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def describe_stale(record: dict) -> str:
    """One line about a stale lock that was taken over."""
    since = f", started {record['started']}" if record.get("started") else ""
    return (f"took over a stale lock of PID {record.get('pid', '?')}{since}, which no longer "
            "holds it (that run ended without releasing it: killed, or its machine stopped)")


def _parse(raw: bytes) -> dict:
    try:
        record = json.loads(raw.decode("utf-8", "replace") or "{}")
    except ValueError:
        return {"pid": raw.decode("utf-8", "replace").strip()[:40] or "?"}
    return record if isinstance(record, dict) else {}


def _read(fd: int) -> dict:
    return _parse(os.pread(fd, 4096, 0))


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError, OSError):
        return False
    return True
