"""An on-disk cache of seeded results, so rerunning a cell costs nothing and works offline.

An entry is keyed by the host and the exact JSON body (every request field; the key is never part
of it). Each entry is three files written atomically, the `.json` last, so a reader sees a whole
entry or none; a checksum catches an entry damaged later, which is then simply fetched again.
An entry is also distrusted field by field (it is a file anyone could have written): wrong types,
an image whose header does not decode or disagrees with the recorded size, and it is dropped.

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

from .errors import OxenError
from .validate import folder_problem

#: Folders whose "not cached" note was shown in this process (so it is said once, not per cell).
_NOTED: set[str] = set()
_NOTED_LOCK = threading.Lock()
_FIX = "set %config OxenMagic.cache_dir or OXEN_MAGIC_CACHE_DIR to a folder you can write"


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


@dataclass(frozen=True)
class Entry:
    data: bytes
    thumb: bytes | None
    meta: dict[str, Any]


class Cache:
    """Results by (host, body); only seeded bodies are cacheable."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(os.path.expanduser(folder)) if folder else default_dir()
        #: Why this folder cannot be written (set by `check` or a failed write); writes stop.
        self.problem: str | None = None

    def check(self) -> str | None:
        """Before a run: refuse a path that cannot be a folder (`UsageProblem`); try a write, and
        return the "results will not be cached" note the first time this folder fails one."""
        self.problem = folder_problem(self.folder, "cache", keep=True, fix=_FIX)
        if self.problem is None:
            with _NOTED_LOCK:
                _NOTED.discard(str(self.folder))  # fixed: a later failure is worth a new note
        return self.note()

    def note(self) -> str | None:
        """The note for a write problem not yet shown in this session, else None."""
        if self.problem is None:
            return None
        with _NOTED_LOCK:
            if str(self.folder) in _NOTED:
                return None
            _NOTED.add(str(self.folder))
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
        """Whether a seeded body has an entry (unchecked: a damaged one is simply sent again)."""
        return self.cacheable(body) and self._paths(self.key(host, body))[0].is_file()

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.folder / key[:2] / key
        return base.with_suffix(".json"), base.with_suffix(".img"), base.with_suffix(".thumb")

    def get(self, host: str, body: dict[str, Any], thumb_size: int) -> Entry | None:
        """The entry, or None when absent or damaged (a damaged one is fetched again)."""
        meta_path, data_path, thumb_path = self._paths(self.key(host, body))
        try:
            meta = json.loads(meta_path.read_text())
            data = data_path.read_bytes()
        except (OSError, ValueError):
            return None
        if not _sound(meta, data):
            self._drop(meta_path)
            return None
        thumb = None
        if meta["thumb_size"] == thumb_size:
            try:
                thumb = thumb_path.read_bytes()
            except OSError:
                thumb = None
            if thumb is not None and (
                meta.get("thumb_sha256") != hashlib.sha256(thumb).hexdigest() or _header(thumb) is None
            ):
                thumb = None  # damaged (or unchecked): the caller remakes it from the image
        return Entry(data, thumb, meta)

    def _drop(self, meta_path: Path) -> None:
        """Forget a damaged entry (its `.json` goes; the next put rewrites all three files)."""
        try:
            meta_path.unlink(missing_ok=True)
        except OSError as exc:
            self._failed(exc)

    def put(
        self, host: str, body: dict[str, Any], data: bytes, thumb: bytes | None, thumb_size: int, **meta: Any
    ) -> None:
        """Store atomically; a failure to write (read-only disk, full disk) is not an error, but
        it is kept in `problem` (and further writes skipped) so the user can be told once."""
        if self.problem is not None:
            return
        meta_path, data_path, thumb_path = self._paths(self.key(host, body))
        # host and body are kept so an entry can be found again by what it answers (a pack of
        # one host's entries, `pack.export_pack`); the body never holds the key.
        record = {"sha256": hashlib.sha256(data).hexdigest(), "thumb_size": thumb_size, **meta}
        record.update(host=host, body=body)
        if thumb is not None:
            record["thumb_sha256"] = hashlib.sha256(thumb).hexdigest()
        try:
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(data_path, data)
            if thumb is not None:
                _atomic_write(thumb_path, thumb)
            _atomic_write(meta_path, json.dumps(record, sort_keys=True).encode())
        except OSError as exc:
            self._failed(exc)

    def put_thumb(self, host: str, body: dict[str, Any], entry: Entry, thumb: bytes, thumb_size: int) -> None:
        """Replace an entry's thumbnail (a new display size) without rewriting its image."""
        if self.problem is not None:
            return
        meta_path, _, thumb_path = self._paths(self.key(host, body))
        record = {**entry.meta, "thumb_size": thumb_size, "thumb_sha256": hashlib.sha256(thumb).hexdigest()}
        try:
            _atomic_write(thumb_path, thumb)
            _atomic_write(meta_path, json.dumps(record, sort_keys=True).encode())
        except OSError as exc:
            self._failed(exc)

    def entry_files(self) -> list[Path]:
        """Every entry's `.json` file (what `pack.export_pack` reads through)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("[0-9a-f][0-9a-f]/*.json") if not p.name.startswith("."))

    def read_entry(self, meta_path: Path) -> Entry | None:
        """One entry by its `.json` file, checked as `get` checks it; None when damaged."""
        try:
            meta = json.loads(meta_path.read_text())
            data = meta_path.with_suffix(".img").read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        thumb = None
        if meta.get("thumb_sha256"):
            try:
                thumb = meta_path.with_suffix(".thumb").read_bytes()
            except OSError:
                thumb = None
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
    from .images import decode_image  # Pillow: loaded only once a cache entry is read

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
