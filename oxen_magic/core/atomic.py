"""Files written whole or not at all, and never through a symbolic link.

Every file the project writes for a user (PNGs, the contact sheet, the HTML gallery, the rows of
an Oxen table, packs, handouts) goes through here, because a plain `open(path, "wb")` truncates
the old file first: a full disk, a Ctrl-C or a crash then leaves neither the old file nor the
new one, and a link planted under the output's name turns its target into our file.

The recipe: write to a fresh temporary name in the same folder (opened with O_EXCL|O_NOFOLLOW, so
it can be neither an existing file nor a link), flush and fsync it, then rename it into place in
one step (`os.replace`, or `os.link` when an existing file must not be replaced). Whatever goes
wrong before the rename, the temporary file is removed and the old file is untouched.

    write_bytes_atomic(path, data)        replace `path` (refused if `path` is a symlink)
    write_text_atomic(path, text)         the same for text (UTF-8 by default)
    write_new(path, data)                 never replace: an identical file is kept, a different
                                          one keeps its name and `stem_2.ext` is used instead
    with atomic_file(path) as f: ...      a file object for writers that stream (zipfile)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
#: Errors meaning "this file system cannot make hard links": fall back to check-then-rename.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


class SymlinkRefused(OSError):
    """The destination is a symbolic link; we write files, never through links."""

    def __init__(self, path: Path) -> None:
        reason = "it is a symbolic link, and oxen_magic never writes through one"
        super().__init__(errno.ELOOP, reason, str(path))


def _refuse_link(path: Path) -> None:
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise SymlinkRefused(path)
    except FileNotFoundError:
        pass


def _temp(folder: Path, name: str) -> tuple[int, Path]:
    """A new file next to the destination, created exclusively (never an existing file or link)."""
    while True:
        tmp = folder / f".{name[:200]}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can open a folder)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _written(path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield (file, temporary path); on success the data is flushed and fsynced, on any failure
    (including KeyboardInterrupt) the temporary file is removed and the error re-raised."""
    fd, tmp = _temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, tmp
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _place(tmp: Path, path: Path) -> None:
    try:
        _refuse_link(path)  # a link made while we wrote is refused too (os.replace would not follow it)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` whole, replacing an earlier file; returns the path.

    Refuses (`SymlinkRefused`, an `OSError`) when `path` is a symbolic link. On any failure the
    earlier file is as it was and no temporary file is left.
    """
    target = Path(path)
    _refuse_link(target)
    with _written(target) as (out, tmp):
        out.write(data)
    _place(tmp, target)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """`write_bytes_atomic` for text."""
    return write_bytes_atomic(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace `path` only if the block ends without error."""
    target = Path(path)
    _refuse_link(target)
    with _written(target) as (out, tmp):
        yield out
    _place(tmp, target)


def _same(path: Path, data: bytes) -> bool:
    """Whether `path` is a regular file (not a link) holding exactly `data`."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as held:
            return held.read(len(data) + 1) == data
    except OSError:
        return False


def _candidates(path: Path) -> Iterator[Path]:
    yield path
    n = 2
    while True:
        yield path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1


def write_new(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` without ever replacing a file: returns where it is.

    If `path` is free it is used; if it already holds exactly `data`, it is kept as it is; if it
    holds anything else (an earlier run's image, a symbolic link), the next free name of the form
    `stem_2.ext`, `stem_3.ext`, ... is used. The name is claimed atomically (a hard link of the
    finished temporary file), so two processes saving at once never overwrite each other.
    """
    target = Path(path)
    with _written(target) as (out, tmp):
        out.write(data)
    try:
        for candidate in _candidates(target):
            if _same(candidate, data):
                return candidate
            try:
                os.link(tmp, candidate, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if os.path.lexists(candidate):  # no hard links here: check, then rename
                    continue
                os.replace(tmp, candidate)
            _sync_folder(target.parent)
            return candidate
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
