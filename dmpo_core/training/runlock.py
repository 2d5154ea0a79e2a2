"""An exclusive lock on a run folder, so that two processes never write one run.

``RUN/.lock`` is held with ``fcntl.flock`` for the life of the process that trains (or
resumes, or overwrites) the run. The kernel releases a flock when its process dies, so a
lock left by a killed run is never stale: the next run takes it at once. The file also
records the holder's pid, host and start time, for the message a second run prints.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from dmpo_core.errors import ConfigError

LOCK_NAME = ".lock"


class RunLock:
    """Context manager: ``with RunLock(run_dir): ...`` holds the folder's lock or raises.

    Raises:
        ConfigError: another live process holds the lock (names its pid and host).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock (creating the run folder), or raise naming the process that holds it."""
        import fcntl  # POSIX; imported here so that the module loads everywhere

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError([f"{self.path.parent} is in use by {self.holder()}; wait for it to finish, "
                               "or pick another --output-dir"], source="--output-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def check_free(self) -> None:
        """Raise (as :meth:`acquire`) when a live process holds the lock; write nothing otherwise."""
        if self.path.exists():
            self.acquire().release()

    def holder(self) -> str:
        """Who holds the lock, as the lock file says (best effort)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"process {info['pid']} on {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def release(self) -> None:
        """Let go of the lock (the file stays; it is only a lock while a process holds it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
