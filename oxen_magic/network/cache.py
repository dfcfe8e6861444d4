"""An on-disk cache of seeded results, so rerunning a cell costs nothing and works offline.

An entry is keyed by the host and the exact JSON body (every request field; the key is never part
of it). Each entry is ONE file (`<key>.entry`: a marker line, the JSON record on one line, the
image, the thumbnail), written whole to a temporary name and renamed into place, and read in one
go. So several processes writing and reading the same key at once (two notebooks running the
same cell) each see a whole entry, theirs or another's, never the record of one with the image
of another (the old three-file layout did; its `.json`/`.img`/`.thumb` files are ignored now).
A checksum catches an entry damaged later, which then counts as to be sent (and priced) and is
simply fetched again; readers never delete an entry (it may be another process's good rewrite),
the next write replaces it. An entry is also distrusted field by field (it is a file anyone could
have written): wrong types, an image whose header does not decode or disagrees with the recorded
size, and it is damaged.

A folder that cannot be written is not an error (the run goes on uncached) but is said once per
session; a folder that can never be one (a file in the way, a NUL) is refused before anything is
sent, since the user named it and a typo there should not pass silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxen_magic.core.errors import OxenError
from oxen_magic.core.validate import folder_problem

_FIX = "set %config OxenMagic.cache_dir or OXEN_MAGIC_CACHE_DIR to a folder you can write"
#: An entry file's name ends so, and its content starts with this line.
SUFFIX = ".entry"
MARKER = b"oxen_magic cache entry 1\n"


def default_dir() -> Path:
    """`OXEN_MAGIC_CACHE_DIR`, else the platform's user cache folder."""
    if os.environ.get("OXEN_MAGIC_CACHE_DIR"):
        return Path(os.environ["OXEN_MAGIC_CACHE_DIR"])
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif os.uname().sysname == "Darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "oxen_magic"


class Noted:
    """Notes already said, so each is said once, not per cell: the caches' "not cached" note per
    folder, the data: URI caveat under its own name. The session holds one for the process
    (`ProcessState.notes`) and hands it to its caches and runs; a cache made on its own keeps
    its own."""

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def first(self, name: str) -> bool:
        """True the first time `name` is asked about (until `forget`)."""
        with self._lock:
            if name in self._said:
                return False
            self._said.add(name)
            return True

    def forget(self, name: str) -> None:
        with self._lock:
            self._said.discard(name)


@dataclass(frozen=True)
class Entry:
    data: bytes
    thumb: bytes | None
    meta: dict[str, Any]


class Cache:
    """Results by (host, body); only seeded bodies are cacheable."""

    def __init__(self, folder: str | Path | None = None, noted: Noted | None = None) -> None:
        self.folder = Path(os.path.expanduser(folder)) if folder else default_dir()
        self.noted = noted if noted is not None else Noted()  # the session's: once per process
        #: Why this folder cannot be written (set by `check` or a failed write); writes stop.
        self.problem: str | None = None

    def check(self) -> str | None:
        """Before a run: refuse a path that cannot be a folder (`UsageProblem`); try a write, and
        return the "results will not be cached" note the first time this folder fails one."""
        self.problem = folder_problem(self.folder, "cache", keep=True, fix=_FIX)
        if self.problem is None:
            self.noted.forget(str(self.folder))  # fixed: a later failure is worth a new note
        return self.note()

    def note(self) -> str | None:
        """The note for a write problem not yet shown in this session, else None."""
        if self.problem is None:
            return None
        if not self.noted.first(str(self.folder)):
            return None
        return f"Results will not be cached: cannot write to {self.folder} ({self.problem}); {_FIX}."

    def _failed(self, exc: OSError) -> None:
        if self.problem is None:
            self.problem = exc.strerror or type(exc).__name__

    @staticmethod
    def cacheable(body: dict[str, Any]) -> bool:
        return body.get("seed") is not None

    @staticmethod
    def key(host: str, body: dict[str, Any]) -> str:
        text = json.dumps({"host": host, "body": body}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def has(self, host: str, body: dict[str, Any]) -> bool:
        """Whether a seeded body has a sound entry (its checksum and image header checked): a
        damaged one counts as to be sent, so the estimate and the budget price it."""
        if not self.cacheable(body):
            return False
        unit = self._read(self._path(self.key(host, body)))
        return unit is not None and _sound(unit[0], unit[1])

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / (key + SUFFIX)

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, Any], bytes, bytes | None] | None:
        """(record, image, thumbnail) of one entry file, read at once; None when absent or
        not in the entry format."""
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        return unpack(blob)

    def get(self, host: str, body: dict[str, Any], thumb_size: int) -> Entry | None:
        """The entry, or None when absent or damaged (a damaged one is fetched again)."""
        unit = self._read(self._path(self.key(host, body)))
        if unit is None or not _sound(unit[0], unit[1]):
            return None
        meta, data, thumb = unit
        if meta["thumb_size"] != thumb_size:
            thumb = None
        if thumb is not None and (
            meta.get("thumb_sha256") != hashlib.sha256(thumb).hexdigest() or _header(thumb) is None
        ):
            thumb = None  # damaged (or unchecked): the caller remakes it from the image
        return Entry(data, thumb, meta)

    def put(
        self, host: str, body: dict[str, Any], data: bytes, thumb: bytes | None, thumb_size: int, **meta: Any
    ) -> None:
        """Store as one file, atomically; a failure to write (read-only disk, full disk) is not
        an error, but it is kept in `problem` (and further writes skipped) so the user can be
        told once."""
        # host and body are kept so an entry can be found again by what it answers (a pack of
        # one host's entries, `pack.export_pack`); the body never holds the key.
        record = {"sha256": hashlib.sha256(data).hexdigest(), "thumb_size": thumb_size, **meta}
        record.update(host=host, body=body)
        self._write(self.key(host, body), record, data, thumb)

    def _write(self, key: str, record: dict[str, Any], data: bytes, thumb: bytes | None) -> None:
        if self.problem is not None:
            return
        record = {k: v for k, v in record.items() if k != "thumb_sha256"}
        if thumb is not None:
            record["thumb_sha256"] = hashlib.sha256(thumb).hexdigest()
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, pack(record, data, thumb))
        except OSError as exc:
            self._failed(exc)

    def put_thumb(self, host: str, body: dict[str, Any], entry: Entry, thumb: bytes, thumb_size: int) -> None:
        """Replace an entry's thumbnail (a new display size): the entry is rewritten whole."""
        self._write(self.key(host, body), {**entry.meta, "thumb_size": thumb_size}, entry.data, thumb)

    def entry_files(self) -> list[Path]:
        """Every entry's file (what `pack.export_pack` reads through; its stem is the key)."""
        if not self.folder.is_dir():
            return []
        found = self.folder.glob(f"[0-9a-f][0-9a-f]/*{SUFFIX}")
        return sorted(p for p in found if not p.name.startswith("."))

    def read_entry(self, path: Path) -> Entry | None:
        """One entry by its file, checked as `get` checks it (any thumbnail size); None when damaged."""
        unit = self._read(path)
        if unit is None or not _sound(unit[0], unit[1]):
            return None
        meta, data, thumb = unit
        if thumb is not None and meta.get("thumb_sha256") != hashlib.sha256(thumb).hexdigest():
            thumb = None
        return Entry(data, thumb, meta)

    # -- model descriptions: what an offline rerun needs to plan the same requests -------------
    def _model_path(self, host: str, model_id: str) -> Path:
        return self.folder / "models" / (self.key(host, {"model": model_id}) + ".json")

    def get_model(self, host: str, model_id: str) -> dict[str, Any] | None:
        try:
            obj = json.loads(self._model_path(host, model_id).read_text())
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def put_model(self, host: str, model_id: str, obj: dict[str, Any]) -> None:
        """Keep the API's model object (refreshed on every online run); failures are noted."""
        if self.problem is not None:
            return
        path = self._model_path(host, model_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, json.dumps(obj, sort_keys=True).encode())
        except OSError as exc:
            self._failed(exc)


def pack(record: dict[str, Any], data: bytes, thumb: bytes | None) -> bytes:
    """One entry file: the marker, the record (with the image's length) on one line, the image,
    the thumbnail."""
    line = json.dumps({**record, "data_bytes": len(data)}, sort_keys=True).encode()
    return MARKER + line + b"\n" + data + (thumb or b"")


def unpack(blob: bytes) -> tuple[dict[str, Any], bytes, bytes | None] | None:
    """(record, image, thumbnail or None) of an entry file, or None when it is not one."""
    if not blob.startswith(MARKER):
        return None
    end = blob.find(b"\n", len(MARKER))
    if end < 0:
        return None
    try:
        meta = json.loads(blob[len(MARKER) : end])
    except (ValueError, RecursionError):
        return None
    rest = blob[end + 1 :]
    length = meta.get("data_bytes") if isinstance(meta, dict) else None
    if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= len(rest):
        return None
    return meta, rest[:length], rest[length:] or None


def _sound(meta: Any, data: bytes) -> bool:
    """Whether a `.json` record is what `put` writes and matches its image, type by type."""
    if not isinstance(meta, dict):
        return False
    if not isinstance(meta.get("sha256"), str) or meta["sha256"] != hashlib.sha256(data).hexdigest():
        return False
    if not _whole(meta.get("thumb_size")) or not isinstance(meta.get("thumb_sha256", ""), str):
        return False
    if not isinstance(meta.get("mime"), (str, type(None))):
        return False
    created = meta.get("created")
    if created is not None and (isinstance(created, bool) or not isinstance(created, (int, float))):
        return False
    size = meta.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(_whole(n) for n in size)):
        return False
    actual = _header(data)
    return actual is not None and (size is None or tuple(size) == actual)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _header(data: bytes) -> tuple[int, int] | None:
    """The image's size from its header (cheap: no pixels decoded), or None if it is no image."""
    from oxen_magic.network.images import decode_image

    try:
        return decode_image(data, load=False).size
    except OxenError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
