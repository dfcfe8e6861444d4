"""A claim on one cache key shared by every process using the cache folder.

Two notebooks (or a kernel and `oxen-image`) running the same seeded, uncached cell at the same
moment would each send it and each pay. The runner's in-process claim only coordinates threads,
so the sender also takes an exclusive `flock` on a small lock file per key in the cache folder:
taken before sending, released once the entry is written. The other process waits for it
(honouring Stop and Ctrl-C), then answers from the cache. A crashed holder's lock is released by
the operating system. The holder removes the file while still holding it, so claims leave nothing
behind; a waiter that got the lock of a removed file opens the new one instead.

Where `fcntl` does not exist (Windows) or the folder cannot be written, there is no claim and the
request is sent as before: a cache problem is never a reason not to generate.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no cross-process claim
    fcntl = None  # type: ignore[assignment]

#: The lock files' folder inside the cache folder.
FOLDER = "claims"


class FileClaim:
    """An exclusive claim on `key` among processes; `take` then `release`."""

    def __init__(self, folder: Path, key: str) -> None:
        self.path = folder / FOLDER / (key + ".lock")
        self._fd: int | None = None

    def busy(self) -> bool:
        """Try once: False when the claim is now ours (or there is none to take), True when
        another process holds it."""
        if fcntl is None or self._fd is not None:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError:
            return False  # an unwritable folder: send unclaimed, as without a cache
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return True
        except OSError:
            os.close(fd)
            return False
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if not same:  # its holder removed the file after we opened it: claim the new one
            os.close(fd)
            return True
        self._fd = fd
        return False

    def take(self, cancel: threading.Event, tick: float) -> bool:
        """Wait for the claim; False (holding nothing) once `cancel` is set."""
        while self.busy():
            if cancel.wait(tick):
                return False
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)  # while still holding it: see the module's note
        os.close(fd)
