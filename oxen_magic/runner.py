"""Run a plan's requests concurrently, through the cache, reporting each arrival.

The caller owns display: `on_update(item)` is called in the caller's thread after each item
settles, and `on_update(None)` at least every `TICK` seconds while waiting, so a throttled
redraw can show what it skipped (see `Throttled`). Interrupting (Ctrl-C in
the kernel, or `cancel.set()` from a Stop button) stops everything that has not started and keeps
what arrived; requests already in flight finish in the background and land in the cache (not in
the returned results, which no longer change), so a rerun does not pay for them twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from .cache import Cache
from .client import Generation, OxenClient, decode_image
from .errors import Cancelled, OxenError
from .render import thumbnail
from .results import Item, Results

THREAD_PREFIX = "oxen-magic"
#: Threads that decode and thumbnail. Arrivals come in bursts (a round of `concurrency` requests
#: answered together); a few at a time finishes the first image first, instead of all of them
#: sharing the CPU and appearing together, and few threads touching the big decoded bitmaps keep
#: the allocator's per-thread arenas (and so the process's peak memory) small.
CPU_SLOTS = max(1, min(4, os.cpu_count() or 1))
#: Seconds between two wake-ups of the waiting loop (Ctrl-C, Stop and redraw ticks).
TICK = 0.1


class Throttled:
    """Call `draw()` at most every `every` seconds; a skipped change is drawn on the next call.

    Used as `on_update`: arrivals mark the grid dirty, ticks (`None`) draw it once it is due, so
    no image waits for the next arrival to appear and a burst of arrivals costs one redraw.
    """

    def __init__(self, draw: Callable[[], None], every: float = 0.2) -> None:
        self.draw, self.every = draw, every
        self.last = time.monotonic()
        self.dirty = False

    def __call__(self, item: Item | None = None) -> None:
        self.dirty = self.dirty or item is not None
        if self.dirty and time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        self.dirty, self.last = False, time.monotonic()
        self.draw()


def run(
    results: Results,
    client: OxenClient,
    *,
    cache: Cache | None = None,
    use_cache: bool = True,
    concurrency: int = 8,
    on_update: Callable[[Item | None], None] | None = None,
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

    # `concurrency` bounds the requests in flight (network slots), not the threads: a worker
    # gives its slot back as soon as the bytes are in, so the next request goes out while this
    # image is decoded and thumbnailed (twice the threads keep every slot busy meanwhile).
    slots = threading.Semaphore(max(1, concurrency))
    cpu = ThreadPoolExecutor(max_workers=CPU_SLOTS, thread_name_prefix=THREAD_PREFIX + "-cpu")

    closed = _Closed()  # once the run returns, late arrivals go to the cache only

    def work(item: Item) -> Item:
        return _generate(item, client, cache, results.size, cancel, slots, cpu, closed)

    pool = ThreadPoolExecutor(max_workers=2 * max(1, concurrency), thread_name_prefix=THREAD_PREFIX)
    futures: dict[Future[Item], Item] = {pool.submit(work, item): item for item in todo}
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, timeout=TICK, return_when=FIRST_COMPLETED)
            results.elapsed = time.monotonic() - started
            if on_update:
                for future in finished:
                    on_update(futures[future])
                on_update(None)
            if cancel.is_set():
                break
    except KeyboardInterrupt:
        cancel.set()
    finally:
        with closed.lock:
            closed.done = True
            if pending:
                results.interrupted = True
                for future in pending:
                    future.cancel()
                    item = futures[future]
                    if item.status == "pending":
                        item.status = "cancelled"
        pool.shutdown(wait=False, cancel_futures=True)
        cpu.shutdown(wait=False)  # queued thumbnails belong to requests already paid for: they run
        results.elapsed = time.monotonic() - started
    return results


class _Closed:
    """Set (under its lock) when `run` returns, so results stop changing from that moment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


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


def _thumbnail(generation: Generation, size: int) -> bytes:
    """Decode (a corrupt image fails here), thumbnail, and drop the pixels."""
    try:
        return thumbnail(generation.image, size)
    finally:
        generation.release()


def _on(pool: ThreadPoolExecutor, fn: Callable[..., bytes], *args: Any) -> bytes:
    """`fn(*args)` in `pool`, waiting for it; in this thread once the run is over (interrupted)."""
    try:
        future = pool.submit(fn, *args)
    except RuntimeError:  # the pool was shut down: this request finishes in the background
        return fn(*args)
    return future.result()


def _acquire(slots: threading.Semaphore, cancel: threading.Event) -> bool:
    """Wait for a network slot; False (holding none) once the run is stopped."""
    while not slots.acquire(timeout=0.1):
        if cancel.is_set():
            return False
    if cancel.is_set():
        slots.release()
        return False
    return True


def _generate(
    item: Item,
    client: OxenClient,
    cache: Cache | None,
    size: int,
    cancel: threading.Event,
    slots: threading.Semaphore,
    cpu: ThreadPoolExecutor,
    closed: _Closed,
) -> Item:
    """One request in a worker thread: generate, thumbnail once, cache, drop the pixels."""
    assert item.request is not None
    if cancel.is_set() or not _acquire(slots, cancel):
        item.status = "cancelled"
        return item
    body = item.request.payload()
    try:
        try:
            generation = client.generate_payload(body, cancel=cancel, decode=False)
        finally:
            slots.release()
        thumb = _on(cpu, _thumbnail, generation, size)
    except Cancelled:
        item.status = "cancelled"
        return item
    except OxenError as exc:
        item.error, item.status = str(exc), "failed"
        return item
    except Exception as exc:  # a bug must not take the whole grid down with it
        item.error = client.scrub(f"Unexpected error: {type(exc).__name__}: {exc}")  # the key too
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
    with closed.lock:
        if closed.done:  # arrived after the run returned: cached for a rerun, results left as shown
            return item
        item.data, item.thumb, item.mime = generation.data, thumb, generation.mime
        item.size, item.elapsed = generation.size, generation.elapsed
        item.status = "done"
    return item
