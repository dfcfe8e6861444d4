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

This module exports (and runs the command line); `pack_import.py` imports, `pack_format.py` holds
the zip format both read.

Command line: `python -m oxen_magic pack export OUT.zip [--host H] [--notebook NB [--cells 3,5]]`
and `python -m oxen_magic pack import PACK.zip` (`--cache-dir` on both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from oxen_magic.core.atomic import atomic_file
from oxen_magic.exports.pack_format import FORMAT, MANIFEST, META_FIELDS, VERSION, PackError, PackReport
from oxen_magic.exports.pack_import import import_pack
from oxen_magic.exports.templates import Template
from oxen_magic.network.cache import Cache
from oxen_magic.network.client import DEFAULT_HOST, normalize_host

# -- which prompts a notebook asks for ------------------------------------------------------------


def notebook_prompts(path: str | Path, cells: Iterable[int] | None = None) -> list[Template]:
    """A pattern per prompt the notebook's `%%oxenimage` / `%oxenimage` cells write.

    `{name}` placeholders match any text (the values are set while the notebook runs), `{{` and
    `}}` are literal braces; a prompt that is only placeholders (`{prompt}`, a regeneration of
    another cell's prompt) would match everything, so it adds nothing. `cells` picks cells by
    position in the notebook, counting from 0.
    """
    from oxen_magic.planning.options import PARSER, split_words
    from oxen_magic.planning.prompts import split_prompts

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
            meta.update({k: entry.meta[k] for k in META_FIELDS if k in entry.meta})
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


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic pack",
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


__all__ = ["PackError", "PackReport", "export_pack", "import_pack", "notebook_prompts"]

if __name__ == "__main__":
    sys.exit(main())
