"""Run a plan's requests concurrently, through the cache, reporting each arrival.

The caller owns display: `on_update(item)` is called in the caller's thread after each item
settles, so a magic can redraw its grid and a panel can count progress. Interrupting (Ctrl-C in
the kernel, or `cancel.set()` from a Stop button) stops everything that has not started and keeps
what arrived; requests already in flight finish in the background and land in the cache, so a
rerun does not pay for them twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .cache import Cache
from .client import OxenClient, decode_image
from .errors import Cancelled, OxenError, redact
from .render import thumbnail
from .results import Item, Results

THREAD_PREFIX = "oxen-magic"


def run(
    results: Results,
    client: OxenClient,
    *,
    cache: Cache | None = None,
    use_cache: bool = True,
    concurrency: int = 8,
    on_update: Callable[[Item], None] | None = None,
    cancel: threading.Event | None = None,
) -> Results:
    """Fill `results` in place and return it; never raises for a failed image."""
    cancel = cancel or threading.Event()
    started = time.monotonic()
    todo: list[Item] = []
    for item in results.items:
        if item.request is None or item.status == "done":
            continue
        if cache is not None and use_cache and _from_cache(item, client.base, cache, results.size):
            results.elapsed = time.monotonic() - started
            if on_update:
                on_update(item)
        else:
            todo.append(item)
    if not todo:
        results.elapsed = time.monotonic() - started
        return results

    def work(item: Item) -> Item:
        return _generate(item, client, cache, results.size, cancel)

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=THREAD_PREFIX)
    futures: dict[Future[Item], Item] = {pool.submit(work, item): item for item in todo}
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            results.elapsed = time.monotonic() - started
            for future in finished:
                if on_update:
                    on_update(futures[future])
            if cancel.is_set():
                break
    except KeyboardInterrupt:
        cancel.set()
    finally:
        if pending:
            results.interrupted = True
            for future in pending:
                future.cancel()
                item = futures[future]
                if item.status == "pending":
                    item.status = "cancelled"
        pool.shutdown(wait=False, cancel_futures=True)
        results.elapsed = time.monotonic() - started
    return results


def _from_cache(item: Item, host: str, cache: Cache, size: int) -> bool:
    assert item.request is not None
    body = item.request.payload()
    if not cache.cacheable(body):
        return False
    entry = cache.get(host, body, size)
    if entry is None:
        return False
    try:
        thumb = entry.thumb or thumbnail(decode_image(entry.data), size)
    except OxenError:
        return False
    item.data, item.thumb, item.cached = entry.data, thumb, True
    item.mime = entry.meta.get("mime")
    size_wh = entry.meta.get("size")
    item.size = (
        (int(size_wh[0]), int(size_wh[1])) if isinstance(size_wh, list) and len(size_wh) == 2 else None
    )
    item.elapsed = 0.0
    item.status = "done"
    return True


def _generate(
    item: Item, client: OxenClient, cache: Cache | None, size: int, cancel: threading.Event
) -> Item:
    """One request in a worker thread: generate, thumbnail once, cache, drop the pixels."""
    assert item.request is not None
    if cancel.is_set():
        item.status = "cancelled"
        return item
    body = item.request.payload()
    try:
        generation = client.generate_payload(body, cancel=cancel)
        thumb = thumbnail(generation.image, size)
        generation.release()
    except Cancelled:
        item.status = "cancelled"
        return item
    except OxenError as exc:
        item.error, item.status = str(exc), "failed"
        return item
    except Exception as exc:  # a bug must not take the whole grid down with it
        item.error = redact(f"Unexpected error: {type(exc).__name__}: {exc}")
        item.status = "failed"
        return item
    if cache is not None and cache.cacheable(body):
        cache.put(
            client.base,
            body,
            generation.data,
            thumb,
            size,
            mime=generation.mime,
            size=list(generation.size),
            created=generation.created,
        )
    item.data, item.thumb, item.mime = generation.data, thumb, generation.mime
    item.size, item.elapsed = generation.size, generation.elapsed
    item.status = "done"
    return item
