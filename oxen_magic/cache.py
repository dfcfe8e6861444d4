"""An on-disk cache of seeded results, so rerunning a cell costs nothing and works offline.

An entry is keyed by the host and the exact JSON body (every request field; the key is never part
of it). Each entry is three files written atomically, the `.json` last, so a reader sees a whole
entry or none; a checksum catches an entry damaged later, which is then simply fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
        self.folder = Path(folder) if folder else default_dir()

    @staticmethod
    def cacheable(body: dict[str, Any]) -> bool:
        return body.get("seed") is not None

    @staticmethod
    def key(host: str, body: dict[str, Any]) -> str:
        text = json.dumps({"host": host, "body": body}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

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
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        thumb = None
        if meta.get("thumb_size") == thumb_size:
            try:
                thumb = thumb_path.read_bytes()
            except OSError:
                thumb = None
            if thumb is not None and meta.get("thumb_sha256") != hashlib.sha256(thumb).hexdigest():
                thumb = None  # damaged (or unchecked): the caller remakes it from the image
        return Entry(data, thumb, meta)

    def put(
        self, host: str, body: dict[str, Any], data: bytes, thumb: bytes | None, thumb_size: int, **meta: Any
    ) -> None:
        """Store atomically; a failure to write (read-only disk, full disk) is not an error."""
        meta_path, data_path, thumb_path = self._paths(self.key(host, body))
        record = {"sha256": hashlib.sha256(data).hexdigest(), "thumb_size": thumb_size, **meta}
        if thumb is not None:
            record["thumb_sha256"] = hashlib.sha256(thumb).hexdigest()
        try:
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(data_path, data)
            if thumb is not None:
                _atomic_write(thumb_path, thumb)
            _atomic_write(meta_path, json.dumps(record, sort_keys=True).encode())
        except OSError:
            pass

    def put_thumb(self, host: str, body: dict[str, Any], entry: Entry, thumb: bytes, thumb_size: int) -> None:
        """Replace an entry's thumbnail (a new display size) without rewriting its image."""
        meta_path, _, thumb_path = self._paths(self.key(host, body))
        record = {**entry.meta, "thumb_size": thumb_size, "thumb_sha256": hashlib.sha256(thumb).hexdigest()}
        try:
            _atomic_write(thumb_path, thumb)
            _atomic_write(meta_path, json.dumps(record, sort_keys=True).encode())
        except OSError:
            pass

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
        """Keep the API's model object (refreshed on every online run); failures are ignored."""
        path = self._model_path(host, model_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, json.dumps(obj, sort_keys=True).encode())
        except OSError:
            pass


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
