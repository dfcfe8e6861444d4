"""Full images on disk while their results live, so a sweep keeps thumbnails in memory, not images.

A thousand 1 MB images do not fit in a notebook kernel's memory; their thumbnails do. Each run
gets its own spool folder (inside the cache folder when there is one, else the temp folder);
an `Item` keeps a `Blob` and reads its bytes back when asked. The folder goes away when the
last item holding one of its blobs does, or when the interpreter exits; folders left by a
killed kernel are swept after a day.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

#: Spool folders untouched for this long belong to a kernel that died: the next run removes them.
STALE_AFTER = 24 * 3600


class Spool:
    """One run's folder of full images; created on first use."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.folder: Path | None = None
        self._lock = threading.Lock()
        self._count = 0

    def _open(self) -> tuple[Path | None, int]:
        """The run's folder (under `root`, else the temp folder; None when neither is writable)
        and a number for the next file."""
        with self._lock:
            if self.folder is None:
                for root in (self.root, Path(tempfile.gettempdir()) / "oxen-magic-spool"):
                    if root is None:
                        continue
                    try:
                        root.mkdir(parents=True, exist_ok=True)
                        _sweep(root)
                        self.folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
                    except OSError:
                        continue
                    weakref.finalize(self, shutil.rmtree, self.folder, True)
                    break
            self._count += 1
            return self.folder, self._count

    def put(self, data: bytes) -> Blob | None:
        """Keep `data` on disk; None when the disk refuses (the caller keeps the bytes in memory).

        A copy, not a hard link to the cache's file: damage to one (a file truncated in place)
        must not reach the other."""
        folder, number = self._open()
        if folder is None:
            return None
        path = folder / f"{number}.img"
        try:
            path.write_bytes(data)
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return Blob(self, path, len(data))


class Blob:
    """Bytes kept in a spool file; holding one keeps its spool folder alive."""

    __slots__ = ("path", "size", "spool")

    def __init__(self, spool: Spool, path: Path, size: int) -> None:
        self.spool, self.path, self.size = spool, path, size

    def read(self) -> bytes | None:
        """The bytes, or None when the file went away (removed by hand, a full disk)."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        return data if len(data) == self.size else None


def _sweep(root: Path) -> None:
    """Remove spool folders of kernels that died without cleaning up (old, and their process
    gone: a folder is named after its process id)."""
    cutoff = time.time() - STALE_AFTER
    with contextlib.suppress(OSError):
        for old in root.iterdir():
            with contextlib.suppress(OSError):
                if old.is_dir() and old.stat().st_mtime < cutoff and not _alive(old.name.split("-")[0]):
                    shutil.rmtree(old, ignore_errors=True)


def _alive(pid: str) -> bool:
    if os.name == "nt":  # os.kill would end the process there: never sweep on Windows
        return True
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except OSError:  # someone else's process (PermissionError): alive
        return True
    return True
