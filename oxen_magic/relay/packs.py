"""`--pack FILE`: an offline pack's images put in the room's store before the class.

The pack is checked whole by `pack.import_pack` (into a throwaway cache folder, so every check it
makes on someone else's zip applies here too), then each entry the upstream would answer (made
against the same host, by a request with no input image) becomes a stored result under the key
the relay shares by. A seat's identical seeded request is then answered from the store, free,
with no upstream request. Preloaded images cost nothing and belong to no seat.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from oxen_magic.exports.pack import import_pack
from oxen_magic.network.cache import Cache
from oxen_magic.network.keys import normalize_host
from oxen_magic.relay.ledger import Ledger
from oxen_magic.relay.pricing import share_key
from oxen_magic.relay.routes import GENERATE_PATH
from oxen_magic.relay.upstream import sniff


def preload(db: Ledger, pack: str | Path, upstream: str) -> int:
    """Store the pack's images for `upstream`; returns how many were new (`PackError` if bad)."""
    added = 0
    with tempfile.TemporaryDirectory(prefix="relay-pack-") as folder:
        import_pack(pack, cache_dir=folder)
        cache = Cache(folder)
        for path in cache.entry_files():
            entry = cache.read_entry(path)
            if entry is None or not isinstance(entry.meta.get("body"), dict):
                continue
            body, host = entry.meta["body"], entry.meta.get("host")
            try:
                same_host = isinstance(host, str) and normalize_host(host) == upstream
            except ValueError:
                same_host = False
            key = share_key(upstream, GENERATE_PATH, body)
            if not same_host or "input_image" in body or key is None:
                continue
            added += db.preload(key, str(body.get("model", "")), GENERATE_PATH, sniff(entry.data), entry.data)
    return added
