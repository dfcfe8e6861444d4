"""Importing an offline pack: the whole pack is checked (names, sizes, manifest, every entry
against its checksum and the request it claims to answer) before anything is written to the
cache; a malformed pack is refused in one sentence (`pack_format.PackError`)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

from oxen_magic.exports.pack_format import (
    FORMAT,
    HEX,
    MANIFEST,
    MAX_ENTRIES,
    MAX_MEMBER_BYTES,
    MAX_PACK_BYTES,
    MAX_TOTAL_BYTES,
    META_FIELDS,
    NAME,
    VERSION,
    PackError,
    PackReport,
    read_json,
    read_member,
    refuse,
)
from oxen_magic.network.cache import Cache

#: One checked entry: host, request body, the meta fields kept, image bytes, thumbnail bytes.
Checked = tuple[str, dict[str, Any], dict[str, Any], bytes, "bytes | None"]
#: One checked model description: host, model id, the model object.
Description = tuple[str, str, dict[str, Any]]


def import_pack(path: str | Path, *, cache_dir: str | Path | None = None) -> PackReport:
    """Check a pack whole, then add its images and model descriptions to the cache.

    Entries the cache already has are left as they are. Nothing is written unless every entry
    of the pack passes its checks.
    """
    path = Path(path)
    with _open(path) as zf:
        _check_names(zf, path)
        keys, models = _manifest(zf, path)
        checked = [_checked_entry(zf, key, path) for key in keys]
        descriptions = [_description(zf, m, path) for m in models]
    return _add(Cache(cache_dir), path, checked, descriptions)


def _open(path: Path) -> zipfile.ZipFile:
    """The pack as a zip, refused when missing, too large or not a zip."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PackError(
            f"Cannot open the pack {path} ({exc.strerror or exc}); check the file name."
        ) from None
    if size > MAX_PACK_BYTES:
        raise refuse(path, f"it is larger than {MAX_PACK_BYTES // 1024**3} GB")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise refuse(path, "it is not a zip file") from None


def _check_names(zf: zipfile.ZipFile, path: Path) -> None:
    """Only the names a pack has, not too many, not unpacking to too much."""
    infos = zf.infolist()
    if len(infos) > 3 * MAX_ENTRIES + 1:
        raise refuse(path, f"it holds more than {MAX_ENTRIES} entries")
    for info in infos:  # strict names: no path inside a pack is ever used as a path
        if not NAME.match(info.filename) or info.is_dir():
            raise refuse(path, f"it holds an unexpected file {info.filename[:80]!r}")
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise refuse(path, f"it unpacks to more than {MAX_TOTAL_BYTES // 1024**3} GB")
    if MANIFEST not in zf.NameToInfo:
        raise refuse(path, "it has no manifest")


def _manifest(zf: zipfile.ZipFile, path: Path) -> tuple[list[str], list[Any]]:
    """The entry keys (each once, in order) and the model records the manifest lists."""
    manifest = read_json(zf, MANIFEST, path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise refuse(path, "its manifest is not an oxen_magic pack manifest")
    if manifest.get("version") != VERSION:
        raise PackError(
            f"{path} is a version {manifest.get('version')!r} pack and this oxen_magic reads version "
            f"{VERSION}; upgrade oxen_magic or ask for a pack made by the same version."
        )
    entries, models = manifest.get("entries"), manifest.get("models", [])
    if not isinstance(entries, list) or not isinstance(models, list):
        raise refuse(path, "its manifest lists no entries")
    keys = [e.get("key") if isinstance(e, dict) else None for e in entries]
    if not all(isinstance(k, str) and re.fullmatch(HEX, k) for k in keys):
        raise refuse(path, "its manifest lists an entry without a proper key")
    return [str(k) for k in dict.fromkeys(keys)], models


def _description(zf: zipfile.ZipFile, m: Any, path: Path) -> Description:
    """One model description, checked: filed under its host and id, and that model's object."""
    if not isinstance(m, dict) or not isinstance(m.get("host"), str) or not isinstance(m.get("id"), str):
        raise refuse(path, "its manifest lists a model without a host and id")
    key = Cache.key(m["host"], {"model": m["id"]})
    if m.get("key") != key or f"models/{key}.json" not in zf.NameToInfo:
        raise refuse(path, f"the description of {m['id'][:60]} is missing or misfiled")
    obj = read_json(zf, f"models/{key}.json", path)
    if not isinstance(obj, dict) or obj.get("id") != m["id"]:
        raise refuse(path, f"the description of {m['id'][:60]} is not a model object")
    return m["host"], m["id"], obj


def _add(cache: Cache, path: Path, checked: list[Checked], descriptions: list[Description]) -> PackReport:
    """Write the checked entries the cache lacks, and the model descriptions."""
    report = PackReport(path, verb="imported", hosts=sorted({c[0] for c in checked}))
    for host, body, extra, data, thumb in checked:
        if cache.get(host, body, -1) is not None:
            report.skipped += 1
            continue
        thumb_size = extra.pop("thumb_size")
        cache.put(host, body, data, thumb, thumb_size, **extra)
        if cache.get(host, body, -1) is None:
            raise PackError(
                f"Cannot write to the cache at {cache.folder}; check that the folder is writable."
            )
        report.entries += 1
        report.bytes += len(data)
    for host, model_id, obj in descriptions:
        cache.put_model(host, model_id, obj)
        report.models += 1
    return report


def _checked_entry(zf: zipfile.ZipFile, key: str, path: Path) -> Checked:
    """One entry, checked: its request, its image against the checksum, its key against both."""
    meta = read_json(zf, f"entries/{key}.json", path)
    if not isinstance(meta, dict):
        raise refuse(path, f"entry {key[:12]} has no description")
    host, body = meta.get("host"), meta.get("body")
    if not isinstance(host, str) or not isinstance(body, dict) or body.get("seed") is None:
        raise refuse(path, f"entry {key[:12]} does not say which seeded request it answers")
    if Cache.key(host, body) != key:
        raise refuse(path, f"entry {key[:12]} is filed under a request it does not answer")
    try:
        data = read_member(zf, f"entries/{key}.img", MAX_MEMBER_BYTES, path)
    except KeyError:
        raise refuse(path, f"entry {key[:12]} has no image") from None
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise refuse(path, f"the image of entry {key[:12]} is damaged (checksum mismatch)")
    _check_image(data, key, path)
    thumb = None
    if f"entries/{key}.thumb" in zf.NameToInfo:
        thumb = read_member(zf, f"entries/{key}.thumb", MAX_MEMBER_BYTES, path)
        if hashlib.sha256(thumb).hexdigest() != meta.get("thumb_sha256"):
            thumb = None  # a thumbnail is remade from the image when needed
    extra = {k: meta[k] for k in META_FIELDS if k in meta and isinstance(meta[k], (str, int, float, list))}
    thumb_size = meta.get("thumb_size")
    extra["thumb_size"] = thumb_size if isinstance(thumb_size, int) and thumb is not None else 0
    return host, body, extra, data, thumb


def _check_image(data: bytes, key: str, path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > 64_000_000:
                raise refuse(path, f"the image of entry {key[:12]} is implausibly large")
            image.verify()
    except PackError:
        raise
    except Exception:
        raise refuse(path, f"the image of entry {key[:12]} is not an image") from None
