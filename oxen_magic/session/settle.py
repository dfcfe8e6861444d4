"""How an outcome lands in a cell, and what the cache answers for a cell.

Both the runner's first pass (what the cache answers before anything is sent) and each worker
(a twin's answer, read back from the cache) fill cells the same way: through `settle`, which
does nothing once the run has returned (`Frozen`), so a late arrival goes to the cache and not
into results the caller already holds; an answer with more images than asked gets cells of its
own (`extra_cell`). Split from `runner.py`: the scheduling there and the job of one request
(`job.py`) share these.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any

from oxen_magic.core.errors import OxenError
from oxen_magic.display.render import thumbnail_of
from oxen_magic.network.cache import Cache
from oxen_magic.results.item import Item
from oxen_magic.results.results import Results
from oxen_magic.results.spool import Spool

#: A cell whose request's first image came from the cache but not this one (a failed write).
UNCACHED = "This image is not in the cache although its request's first image is; rerun with --no-cache."


class Frozen:
    """Set (under its lock) when `run` returns: a late arrival goes to the cache, not the results."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


def settle(item: Item, frozen: Frozen, **fields: Any) -> None:
    """Apply an outcome to `item`, unless the run has already returned."""
    with frozen.lock:
        if not frozen.done:
            for name, value in fields.items():
                setattr(item, name, value)


def kept(spool: Spool, data: bytes) -> dict[str, Any]:
    """An item's fields for its image bytes: a spool file, or the bytes when the disk refuses."""
    blob = spool.put(data)
    return {"_blob": blob} if blob is not None else {"data": data}


def cached(item: Item, host: str, cache: Cache | None, size: int, spool: Spool) -> dict[str, Any] | None:
    """The item's fields from the cache, or None (absent, damaged, or not cacheable)."""
    assert item.request is not None
    body = item.request.key_body()
    if cache is None or not cache.cacheable(body):
        return None
    entry = cache.get(host, body, size)
    if entry is None:
        return None
    thumb = entry.thumb
    if thumb is None:  # cached at another --size: make this one once and keep it too
        try:
            thumb = thumbnail_of(entry.data, size)
        except OxenError:
            return None
        cache.put_thumb(host, body, entry, thumb, size)
    wh = entry.meta.get("size")
    return {
        **kept(spool, entry.data),
        "thumb": thumb,
        "cached": True,
        "mime": entry.meta.get("mime"),
        "size": (int(wh[0]), int(wh[1])) if isinstance(wh, list) and len(wh) == 2 else None,
        "elapsed": 0.0,
        "created": entry.meta.get("created") if isinstance(entry.meta.get("created"), int) else None,
        "status": "done",
        "url": entry.meta.get("url") if isinstance(entry.meta.get("url"), str) else None,
        "key": Cache.key(host, body),
    }


def rest_from_cache(
    item: Item,
    others: Iterable[Item],
    host: str,
    cache: Cache | None,
    spool: Spool,
    frozen: Frozen,
    results: Results,
) -> None:
    """Images 1.. of a `num_images` answer whose first image came from the cache, then any the
    answer brought past the count asked (billed, kept in the cache: shown again off the grid)."""
    for other in others:
        got = cached(other, host, cache, results.size, spool)
        settle(other, frozen, **(got or {"status": "failed", "error": UNCACHED}))
    assert item.request is not None
    image = item.request.count
    while item.request.image == 0:
        probe = Item(dataclasses.replace(item.request, image=image), item.row, -1)
        got = cached(probe, host, cache, results.size, spool)
        if got is None:
            return
        settle(extra_cell(item, image, results, frozen), frozen, **got)
        image += 1


def extra_cell(item: Item, image: int, results: Results | None, frozen: Frozen) -> Item:
    """A new item for image `image` of `item`'s answer, past the count asked (left out of the
    results once the run has returned: the ledger and the cache still get it)."""
    assert item.request is not None
    with frozen.lock:
        # Past the grid's last column, so no view takes it for the cell of image 1.
        col = len(results.plan.col_labels) + image if results is not None else -1
        extra = Item(dataclasses.replace(item.request, image=image), item.row, col)
        if frozen.done or results is None:
            return extra
        extra.index = len(results.items)
        results.items.append(extra)
        note = (
            f"{item.request.model} returned more images than asked; the extra ones are kept "
            "at the end of the results, off the grid (grid[-1]; .save() and .to_oxen() include them)."
        )
        if note not in results.notes:
            results.notes.append(note)
    return extra
