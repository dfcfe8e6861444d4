"""The offline pack's zip format: its names, version and caps, the one-sentence `PackError`, the
`PackReport` both directions print, and the guarded reads an import makes (`pack.py` exports,
`pack_import.py` imports)."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "oxen_magic-pack"
VERSION = 1
MANIFEST = "manifest.json"
#: Caps on what an import reads (a pack is someone else's file).
MAX_PACK_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 64 * 1024**2
MAX_META_BYTES = 1024**2
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_ENTRIES = 50_000
HEX = r"[0-9a-f]{64}"
NAME = re.compile(rf"^(?:{re.escape(MANIFEST)}|entries/{HEX}\.(?:json|img|thumb)|models/{HEX}\.json)$")
#: The meta fields an imported entry keeps (anything else in a pack is dropped).
META_FIELDS = ("mime", "size", "created")


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


# -- reading a member (a pack is someone else's file) ---------------------------------------------


def refuse(path: Path, problem: str) -> PackError:
    """The sentence for a malformed pack: what is wrong, and that the fix is a new copy."""
    return PackError(f"{path} is not a usable oxen_magic pack: {problem}; ask for the pack again.")


def read_member(zf: zipfile.ZipFile, name: str, cap: int, path: Path) -> bytes:
    """A member's bytes, reading at most `cap` (a lying header cannot make it read more)."""
    with zf.open(name) as member:
        data = member.read(cap + 1)
    if len(data) > cap:
        raise refuse(path, f"{name} is larger than {cap} bytes")
    return data


def read_json(zf: zipfile.ZipFile, name: str, path: Path) -> Any:
    """A small JSON member (a manifest, an entry's or a model's description), capped."""
    try:
        return json.loads(read_member(zf, name, MAX_META_BYTES, path))
    except ValueError:
        raise refuse(path, f"{name} is not JSON") from None
