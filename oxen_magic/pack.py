"""Offline packs: what the cache holds for some cells, as one zip a student machine imports.

An instructor runs the workshop's cells online once, then `export_pack("workshop.zip")` writes
the cached images of one host (the real API by default), optionally only those a notebook's
`%%oxenimage` cells ask for, with the model descriptions an offline rerun needs to plan the same
requests. `import_pack("workshop.zip")` on another machine adds them to its cache: the same cells
then answer from the cache with no request, no key and no network.

Cache entries are keyed by host and request body, so a pack made against `https://hub.oxen.ai`
answers students whose cells also go to hub.oxen.ai (the default), whatever their machine.

A pack comes from someone else: import reads only names it expects (no path from the archive is
ever used as a path), caps sizes before reading, checks every image against its checksum and
every entry against the request it claims to answer, and refuses a malformed pack in one sentence
before writing anything.

Command line: `python -m oxen_magic.pack export OUT.zip [--host H] [--notebook NB [--cells 3,5]]`
and `python -m oxen_magic.pack import PACK.zip` (`--cache-dir` on both).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .atomic import atomic_file
from .cache import Cache
from .client import DEFAULT_HOST, normalize_host
from .templates import Template

FORMAT = "oxen_magic-pack"
VERSION = 1
MANIFEST = "manifest.json"
#: Caps on what an import reads (a pack is someone else's file).
MAX_PACK_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 64 * 1024**2
MAX_META_BYTES = 1024**2
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_ENTRIES = 50_000
_HEX = r"[0-9a-f]{64}"
_NAME = re.compile(rf"^(?:{re.escape(MANIFEST)}|entries/{_HEX}\.(?:json|img|thumb)|models/{_HEX}\.json)$")
#: The meta fields an imported entry keeps (anything else in a pack is dropped).
_META_FIELDS = ("mime", "size", "created")


class PackError(ValueError):
    """A pack that cannot be written or read, in one sentence naming the problem and the fix."""


@dataclass
class PackReport:
    """What an export or import did, printed as one line."""

    path: Path
    entries: int = 0
    models: int = 0
    skipped: int = 0
    bytes: int = 0
    hosts: list[str] = field(default_factory=list)
    verb: str = "exported"

    def __str__(self) -> str:
        where = ", ".join(self.hosts) or "no host"
        text = f"{self.verb.capitalize()} {self.entries} image(s) and {self.models} model description(s)"
        text += f" for {where} ({self.bytes / 1e6:.1f} MB) {'to' if self.verb == 'exported' else 'from'} "
        text += f"{self.path}"
        if self.skipped:
            text += f"; {self.skipped} were already in the cache"
        return text + "."


# -- which prompts a notebook asks for ------------------------------------------------------------


def notebook_prompts(path: str | Path, cells: Iterable[int] | None = None) -> list[Template]:
    """A pattern per prompt the notebook's `%%oxenimage` / `%oxenimage` cells write.

    `{name}` placeholders match any text (the values are set while the notebook runs), `{{` and
    `}}` are literal braces; a prompt that is only placeholders (`{prompt}`, a regeneration of
    another cell's prompt) would match everything, so it adds nothing. `cells` picks cells by
    position in the notebook, counting from 0.
    """
    from .options import PARSER, split_prompts, split_words

    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        sources = [
            "".join(c["source"]) if isinstance(c["source"], list) else str(c["source"])
            for c in nb["cells"]
            if isinstance(c, dict)
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PackError(f"Cannot read the notebook {path} ({exc}); give a saved .ipynb file.") from None
    wanted = None if cells is None else set(cells)
    patterns: list[Template] = []
    for index, source in enumerate(sources):
        if wanted is not None and index not in wanted:
            continue
        lines = source.strip().splitlines()
        if lines and lines[0].startswith("%%oxenimage"):
            patterns += [_prompt_pattern(p) for p in split_prompts("\n".join(lines[1:])) if _literal(p)]
            continue
        for line in lines:
            if line.startswith("%oxenimage "):
                try:
                    args, _ = PARSER.parse_known_args(split_words(line[len("%oxenimage ") :]))
                except Exception:  # a line we cannot read asks for nothing we can find
                    continue
                if args.prompt and _literal(" ".join(args.prompt)):
                    patterns.append(_prompt_pattern(" ".join(args.prompt).strip()))
    return patterns


def _literal(prompt: str) -> bool:
    """Whether a prompt holds text besides `{name}` placeholders."""
    return bool(re.sub(r"\{[^{}]*\}", "", prompt.replace("{{", "").replace("}}", "")).strip())


def _prompt_pattern(prompt: str) -> Template:
    return Template(prompt)


# -- export ---------------------------------------------------------------------------------------


def _hosts(host: str) -> set[str]:
    """The spellings of `host` a cache entry may carry (`hub.oxen.ai` = `https://hub.oxen.ai`)."""
    names = {host}
    with contextlib.suppress(ValueError):
        names.add(normalize_host(host))
    return names


def export_pack(
    path: str | Path,
    *,
    host: str = DEFAULT_HOST,
    cache_dir: str | Path | None = None,
    notebook: str | Path | None = None,
    cells: Iterable[int] | None = None,
    models: Sequence[str] | None = None,
) -> PackReport:
    """Write the cached images of `host` (and the model descriptions they need) to a zip.

    `notebook` (and `cells`) keeps only images whose prompt one of those cells writes;
    `models` keeps only those models. Returns what was written; refuses an empty pack.
    """
    cache = Cache(cache_dir)
    hosts = _hosts(host)
    patterns = notebook_prompts(notebook, cells) if notebook is not None else None
    chosen: list[tuple[str, dict[str, Any], Any]] = []
    for meta_path in cache.entry_files():
        entry = cache.read_entry(meta_path)
        if (
            entry is None
            or entry.meta.get("host") not in hosts
            or not isinstance(entry.meta.get("body"), dict)
        ):
            continue
        body = entry.meta["body"]
        if models is not None and body.get("model") not in models:
            continue
        prompt = str(body.get("prompt", ""))
        if patterns is not None and not any(p.fullmatch(prompt) for p in patterns):
            continue
        chosen.append((meta_path.stem, body, entry))
    if not chosen:
        scope = f" for the cells of {notebook}" if notebook is not None else ""
        raise PackError(
            f"The cache at {cache.folder} holds no images from {host}{scope}; run those cells online "
            "first (with the same host), then export."
        )
    report = PackReport(Path(path), hosts=sorted({str(e.meta["host"]) for _, _, e in chosen}))
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "created": time.time()}
    manifest["entries"], manifest["models"] = [], []
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as out:  # whole or not at all; never through a link
            _write(out, chosen, cache, manifest, report)
    except OSError as exc:
        raise PackError(
            f"Cannot write the pack {target} ({exc.strerror or exc}); choose another path."
        ) from None
    report.entries, report.models = len(manifest["entries"]), len(manifest["models"])
    return report


def _write(
    out: BinaryIO,
    chosen: list[tuple[str, dict[str, Any], Any]],
    cache: Cache,
    manifest: dict[str, Any],
    report: PackReport,
) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        seen_models: set[tuple[str, str]] = set()
        for key, body, entry in chosen:
            meta = {k: entry.meta[k] for k in ("sha256", "thumb_size", "thumb_sha256", "host", "body")}
            meta.update({k: entry.meta[k] for k in _META_FIELDS if k in entry.meta})
            if entry.thumb is None:
                meta.pop("thumb_sha256", None)
            zf.writestr(f"entries/{key}.json", json.dumps(meta, sort_keys=True))
            zf.writestr(f"entries/{key}.img", entry.data)
            if entry.thumb is not None:
                zf.writestr(f"entries/{key}.thumb", entry.thumb)
            report.bytes += len(entry.data)
            manifest["entries"].append(
                {
                    "key": key,
                    "model": body.get("model"),
                    "seed": body.get("seed"),
                    "prompt": body.get("prompt"),
                }
            )
            seen_models.add((str(meta["host"]), str(body.get("model"))))
        for model_host, model_id in sorted(seen_models):
            obj = cache.get_model(model_host, model_id)
            if obj is None:
                continue
            key = Cache.key(model_host, {"model": model_id})
            zf.writestr(f"models/{key}.json", json.dumps(obj, sort_keys=True))
            manifest["models"].append({"key": key, "host": model_host, "id": model_id})
        zf.writestr(MANIFEST, json.dumps(manifest, sort_keys=True, indent=1))


# -- import ---------------------------------------------------------------------------------------


def _refuse(path: Path, problem: str) -> PackError:
    return PackError(f"{path} is not a usable oxen_magic pack: {problem}; ask for the pack again.")


def _read(zf: zipfile.ZipFile, name: str, cap: int, path: Path) -> bytes:
    """A member's bytes, reading at most `cap` (a lying header cannot make it read more)."""
    with zf.open(name) as member:
        data = member.read(cap + 1)
    if len(data) > cap:
        raise _refuse(path, f"{name} is larger than {cap} bytes")
    return data


def _json(zf: zipfile.ZipFile, name: str, path: Path) -> Any:
    try:
        return json.loads(_read(zf, name, MAX_META_BYTES, path))
    except ValueError:
        raise _refuse(path, f"{name} is not JSON") from None


def _checked_entry(
    zf: zipfile.ZipFile, key: str, path: Path
) -> tuple[str, dict[str, Any], dict[str, Any], bytes, bytes | None]:
    """One entry, checked: its request, its image against the checksum, its key against both."""
    meta = _json(zf, f"entries/{key}.json", path)
    if not isinstance(meta, dict):
        raise _refuse(path, f"entry {key[:12]} has no description")
    host, body = meta.get("host"), meta.get("body")
    if not isinstance(host, str) or not isinstance(body, dict) or body.get("seed") is None:
        raise _refuse(path, f"entry {key[:12]} does not say which seeded request it answers")
    if Cache.key(host, body) != key:
        raise _refuse(path, f"entry {key[:12]} is filed under a request it does not answer")
    try:
        data = _read(zf, f"entries/{key}.img", MAX_MEMBER_BYTES, path)
    except KeyError:
        raise _refuse(path, f"entry {key[:12]} has no image") from None
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise _refuse(path, f"the image of entry {key[:12]} is damaged (checksum mismatch)")
    _check_image(data, key, path)
    thumb = None
    if f"entries/{key}.thumb" in zf.NameToInfo:
        thumb = _read(zf, f"entries/{key}.thumb", MAX_MEMBER_BYTES, path)
        if hashlib.sha256(thumb).hexdigest() != meta.get("thumb_sha256"):
            thumb = None  # a thumbnail is remade from the image when needed
    extra = {k: meta[k] for k in _META_FIELDS if k in meta and isinstance(meta[k], (str, int, float, list))}
    thumb_size = meta.get("thumb_size")
    extra["thumb_size"] = thumb_size if isinstance(thumb_size, int) and thumb is not None else 0
    return host, body, extra, data, thumb


def _check_image(data: bytes, key: str, path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > 64_000_000:
                raise _refuse(path, f"the image of entry {key[:12]} is implausibly large")
            image.verify()
    except PackError:
        raise
    except Exception:
        raise _refuse(path, f"the image of entry {key[:12]} is not an image") from None


def import_pack(path: str | Path, *, cache_dir: str | Path | None = None) -> PackReport:
    """Check a pack whole, then add its images and model descriptions to the cache.

    Entries the cache already has are left as they are. Nothing is written unless every entry
    of the pack passes its checks.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PackError(
            f"Cannot open the pack {path} ({exc.strerror or exc}); check the file name."
        ) from None
    if size > MAX_PACK_BYTES:
        raise _refuse(path, f"it is larger than {MAX_PACK_BYTES // 1024**3} GB")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise _refuse(path, "it is not a zip file") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > 3 * MAX_ENTRIES + 1:
            raise _refuse(path, f"it holds more than {MAX_ENTRIES} entries")
        for info in infos:  # strict names: no path inside a pack is ever used as a path
            if not _NAME.match(info.filename) or info.is_dir():
                raise _refuse(path, f"it holds an unexpected file {info.filename[:80]!r}")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise _refuse(path, f"it unpacks to more than {MAX_TOTAL_BYTES // 1024**3} GB")
        if MANIFEST not in zf.NameToInfo:
            raise _refuse(path, "it has no manifest")
        manifest = _json(zf, MANIFEST, path)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise _refuse(path, "its manifest is not an oxen_magic pack manifest")
        if manifest.get("version") != VERSION:
            raise PackError(
                f"{path} is a version {manifest.get('version')!r} pack and this oxen_magic reads version "
                f"{VERSION}; upgrade oxen_magic or ask for a pack made by the same version."
            )
        entries, models = manifest.get("entries"), manifest.get("models", [])
        if not isinstance(entries, list) or not isinstance(models, list):
            raise _refuse(path, "its manifest lists no entries")
        keys = [e.get("key") if isinstance(e, dict) else None for e in entries]
        if not all(isinstance(k, str) and re.fullmatch(_HEX, k) for k in keys):
            raise _refuse(path, "its manifest lists an entry without a proper key")
        checked = [_checked_entry(zf, str(k), path) for k in dict.fromkeys(keys)]
        descriptions: list[tuple[str, str, dict[str, Any]]] = []
        for m in models:
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("host"), str)
                or not isinstance(m.get("id"), str)
            ):
                raise _refuse(path, "its manifest lists a model without a host and id")
            key = Cache.key(m["host"], {"model": m["id"]})
            if m.get("key") != key or f"models/{key}.json" not in zf.NameToInfo:
                raise _refuse(path, f"the description of {m['id'][:60]} is missing or misfiled")
            obj = _json(zf, f"models/{key}.json", path)
            if not isinstance(obj, dict) or obj.get("id") != m["id"]:
                raise _refuse(path, f"the description of {m['id'][:60]} is not a model object")
            descriptions.append((m["host"], m["id"], obj))
    cache = Cache(cache_dir)
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


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic.pack",
        description="Export cached images as one offline pack, or import a pack into this machine's cache.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    out = sub.add_parser("export", help="write the cached images of one host to a zip")
    out.add_argument("pack", help="the zip to write, e.g. workshop-pack.zip")
    out.add_argument("--host", default=DEFAULT_HOST, help=f"whose images (default {DEFAULT_HOST})")
    out.add_argument("--notebook", help="only images whose prompt this notebook's cells write")
    out.add_argument("--cells", help="with --notebook: cell positions counting from 0, e.g. 3,5")
    out.add_argument("--model", action="append", help="only this model (repeatable)")
    out.add_argument("--cache-dir", help="the cache folder (default: OXEN_MAGIC_CACHE_DIR or the user cache)")
    inp = sub.add_parser("import", help="add a pack's images to this machine's cache")
    inp.add_argument("pack", help="the zip to read")
    inp.add_argument("--cache-dir", help="the cache folder (default: OXEN_MAGIC_CACHE_DIR or the user cache)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            cells = None
            if args.cells:
                if not args.notebook or not re.fullmatch(r"\d+(,\d+)*", args.cells):
                    raise PackError("--cells takes positions like 3,5 and needs --notebook.")
                cells = [int(c) for c in args.cells.split(",")]
            report = export_pack(
                args.pack,
                host=args.host,
                cache_dir=args.cache_dir,
                notebook=args.notebook,
                cells=cells,
                models=args.model,
            )
        else:
            report = import_pack(args.pack, cache_dir=args.cache_dir)
    except PackError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
