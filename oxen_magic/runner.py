"""Run a plan's requests concurrently, through the cache, reporting each arrival.

The caller owns display: `on_update(item)` is called in the caller's thread after each item
settles, and `on_update(None)` at least every `TICK` seconds while waiting, so a throttled
redraw can show what it skipped (see `notebook.Throttled`). Interrupting (Ctrl-C in
the kernel, or `cancel.set()` from a Stop button) stops everything that has not started and keeps
what arrived; requests already in flight finish in the background and land in the cache (not in
the returned results, which no longer change), so a rerun does not pay for them twice.
`on_billed(item, gateway)` hears of every answer the API may bill, from the worker thread, even
after the run returned: `gateway` is None for a POST the API answered with success (billed then,
whatever becomes of the download), or the 502/504 of a gateway that answered a POST the backend
may have billed all the same. `on_sent(item)`: each POST about to go out (the budget holds its price).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from .cache import Cache
from .claims import FileClaim
from .client import Generation, OxenClient
from .errors import Cancelled, NetworkError, OxenError
from .inputs import fetch_failure
from .render import thumbnail_of
from .results import Item, Results
from .several import UNCACHED, Several, extra_cell, followers, group
from .spool import Spool

# The stdlib pool joins its workers at exit: a kernel shut down or restarted after Ctrl-C would
# wait for requests still in flight. These workers are daemons, so it does not.
from .threads import DaemonPool as ThreadPoolExecutor
from .window import Ticket, Window, WindowMemory

THREAD_PREFIX = "oxen-magic"
#: `on_billed(item, gateway)`: the API answered the POST with success (None: billed then, whatever
#: the download does), or it may have been billed with no image back: a gateway's 502/503/504, or
#: `errors.TIMED_OUT` (sent, never answered). `on_sent(item)`: its POST is about to go out.
Billed = Callable[[Item, int | None], None]
Sent = Callable[[Item], None]
#: Threads that decode and thumbnail. Arrivals come in bursts (a round of `concurrency` requests
#: answered together); a few at a time finishes the first image first, instead of all of them
#: sharing the CPU and appearing together, and few threads touching the big decoded bitmaps keep
#: the allocator's per-thread arenas (and so the process's peak memory) small.
CPU_SLOTS = max(1, min(4, os.cpu_count() or 1))
#: Seconds between two wake-ups of the waiting loop (Ctrl-C, Stop and redraw ticks).
TICK = 0.1


def run(
    results: Results,
    client: OxenClient,
    *,
    cache: Cache | None = None,
    use_cache: bool = True,
    concurrency: int = 0,
    on_update: Callable[[Item | None], None] | None = None,
    cancel: threading.Event | None = None,
    on_billed: Billed | None = None,
    on_sent: Sent | None = None,
    windows: WindowMemory | None = None,
) -> Results:
    """Fill `results` in place and return it; raises only when a request is due and the key is
    missing or unusable (after the cache has answered what it can).

    `concurrency` caps the requests in flight; 0 lets the window find the server's limit alone
    (see `window.py`), up to its ceiling, starting where the session's last run to this host
    ended (`windows`, the session's memory; this run's end is written back to it)."""
    cancel = cancel or threading.Event()
    started = time.monotonic()
    spool = Spool(cache.folder / "spool" if cache is not None else None)
    results.running = True
    frozen = _Frozen()
    futures: dict[Future[Item], Item] = {}
    pending: set[Future[Item]] = set()
    pool: ThreadPoolExecutor | None = None
    cpu: ThreadPoolExecutor | None = None
    window: Window | None = None
    try:
        todo: list[Item] = []
        members = followers(results.items)
        for item in results.items:
            if item.request is None or item.status == "done" or cancel.is_set():
                continue
            if item.request.image and group(item.request) in members:
                continue  # filled from its sender's answer (or from the cache with it, below)
            entry = _cached(item, client.base, cache, results.size, spool) if use_cache else None
            if entry is None:
                todo.append(item)
                continue
            _settle(item, frozen, **entry)
            others = members.get(group(item.request), ())
            _rest_from_cache(item, others, client.base, cache, spool, frozen, results)
            results.elapsed = time.monotonic() - started
            if on_update:
                on_update(item)
        if todo and not cancel.is_set():
            client.check_key()  # one clear sentence before anything is sent, not one per cell
            # The window bounds the requests in flight (network places), not the threads: a
            # worker gives its place back as soon as the bytes are in, so the next request goes
            # out while this image is decoded and thumbnailed; a refused request waits without one.
            hint = windows.get(client.base) if windows is not None else None
            window = Window(concurrency if concurrency > 0 else None, planned=len(todo), hint=hint)
            cpu = ThreadPoolExecutor(max_workers=CPU_SLOTS, thread_name_prefix=THREAD_PREFIX + "-cpu")
            pool = ThreadPoolExecutor(max_workers=2 * window.limit, thread_name_prefix=THREAD_PREFIX)
            job = _Job(client, cache, use_cache, results.size, cancel, window, cpu, frozen, spool)
            job.on_billed, job.on_sent = on_billed, on_sent
            job.followers, job.results = members, results
            futures = {pool.submit(job.generate, item, turn): item for turn, item in enumerate(todo)}
            pending = set(futures)
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
        with frozen.lock:  # from here on the results do not change
            frozen.done = True
            results.running = False
            for future in pending:
                future.cancel()
            for item in results.items:
                if item.status == "pending":
                    item.status = "cancelled"
            # Stopped by the user (Ctrl-C, Stop), not by an error such as a missing key, which
            # the caller reports in its own sentence.
            results.interrupted = cancel.is_set() and any(i.status == "cancelled" for i in results.items)
        if window is not None and windows is not None:
            windows.put(client.base, window.hint())
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if cpu is not None:
            cpu.shutdown(wait=False)  # thumbnails of requests already paid for still run
        results.elapsed = time.monotonic() - started
    return results


class _Frozen:
    """Set (under its lock) when `run` returns: a late arrival goes to the cache, not the results."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


def _settle(item: Item, frozen: _Frozen, **fields: Any) -> None:
    """Apply an outcome to `item`, unless the run has already returned."""
    with frozen.lock:
        if not frozen.done:
            for name, value in fields.items():
                setattr(item, name, value)


def _kept(spool: Spool, data: bytes) -> dict[str, Any]:
    """An item's fields for its image bytes: a spool file, or the bytes when the disk refuses."""
    blob = spool.put(data)
    return {"_blob": blob} if blob is not None else {"data": data}


def _cached(item: Item, host: str, cache: Cache | None, size: int, spool: Spool) -> dict[str, Any] | None:
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
        **_kept(spool, entry.data),
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


def _rest_from_cache(
    item: Item,
    others: Iterable[Item],
    host: str,
    cache: Cache | None,
    spool: Spool,
    frozen: _Frozen,
    results: Results,
) -> None:
    """Images 1.. of a `num_images` answer whose first image came from the cache, then any the
    answer brought past the count asked (billed, kept in the cache: shown again off the grid)."""
    for other in others:
        got = _cached(other, host, cache, results.size, spool)
        _settle(other, frozen, **(got or {"status": "failed", "error": UNCACHED}))
    assert item.request is not None
    image = item.request.count
    while item.request.image == 0:
        probe = Item(dataclasses.replace(item.request, image=image), item.row, -1)
        got = _cached(probe, host, cache, results.size, spool)
        if got is None:
            return
        _settle(extra_cell(item, image, results, frozen), frozen, **got)
        image += 1


#: Seeded requests on their way, across runs: a rerun right after Stop waits for the request
#: already sent (and then reads its image from the cache) instead of paying for it again.
_IN_FLIGHT: dict[str, threading.Event] = {}
_IN_FLIGHT_LOCK = threading.Lock()


def _claim(key: str) -> threading.Event | None:
    """None when the caller now owns `key`; else the event set when its current owner is done."""
    with _IN_FLIGHT_LOCK:
        owner = _IN_FLIGHT.get(key)
        if owner is None:
            _IN_FLIGHT[key] = threading.Event()
        return owner


def _release(key: str) -> None:
    with _IN_FLIGHT_LOCK:
        done = _IN_FLIGHT.pop(key, None)
    if done is not None:
        done.set()


def _thumbnail(generation: Generation, size: int) -> bytes:
    """Decode (a corrupt image fails here) at no more than the thumbnail's size, and thumbnail;
    the full-size pixels are decoded only if asked for later (`Item.image`)."""
    generation.release()  # pixels decoded by the client (decode=True) are not needed here
    return thumbnail_of(generation.data, size)


class _Job(Several):
    """What every worker of one run shares."""

    def __init__(
        self,
        client: OxenClient,
        cache: Cache | None,
        use_cache: bool,
        size: int,
        cancel: threading.Event,
        window: Window,
        cpu: ThreadPoolExecutor,
        frozen: _Frozen,
        spool: Spool,
    ) -> None:
        self.client, self.cache, self.size, self.cancel = client, cache, size, cancel
        self.use_cache = use_cache  # False (--no-cache): always send, but still write the cache
        self.window, self.cpu, self.frozen, self.spool = window, cpu, frozen, spool
        self.on_billed: Billed | None = None
        self.on_sent: Sent | None = None  # see `run`
        self._thumb = _thumbnail
        self.followers: dict[str, list[Item]] = {}
        self.results: Results | None = None

    def generate(self, item: Item, turn: int) -> Item:
        """One image in a worker thread: (wait for a twin in flight,) send, thumbnail, cache.
        `turn` orders the sends (the pool starts items in order, so every earlier turn is
        already on its way to a place or to passing it)."""
        try:
            return self._generate(item, turn)
        finally:
            self.window.pass_turn(turn)

    def _generate(self, item: Item, turn: int) -> Item:
        assert item.request is not None
        body = item.request.key_body()  # input images by identity, not their (data:) URIs
        readable = self.use_cache and self.cache is not None and self.cache.cacheable(body)
        key = Cache.key(self.client.base, body) if readable else None
        while key is not None and (twin := _claim(key)) is not None:
            self.window.pass_turn(turn)  # no place needed while a twin is out
            while not twin.wait(TICK):
                if self.cancel.is_set():
                    return self._outcome(item, status="cancelled")
            entry = _cached(item, self.client.base, self.cache, self.size, self.spool)
            if entry is not None:
                return self._from_cache(item, entry)
        # Another process (a second notebook, the CLI) may be sending the same request: wait for it.
        claim = FileClaim(self.cache.folder, key) if key is not None and self.cache is not None else None
        try:
            if claim is not None and claim.busy():
                self.window.pass_turn(turn)  # no place needed while the other process sends it
                if not claim.take(self.cancel, TICK):
                    return self._outcome(item, status="cancelled")
            # A twin may have finished between the cache pass and our claim: look once more.
            entry = _cached(item, self.client.base, self.cache, self.size, self.spool) if key else None
            return self._from_cache(item, entry) if entry else self._send(item, body, turn)
        finally:
            if claim is not None:
                claim.release()
            if key is not None:
                _release(key)

    def _count(self, item: Item) -> list[Item]:
        """The cells one POST fills: `item` and the rest of its `num_images` count."""
        assert item.request is not None
        return [item, *self.followers.get(group(item.request), ())]

    def _from_cache(self, item: Item, entry: dict[str, Any]) -> Item:
        """A twin's answer, read from the cache: this cell and the rest of its `num_images` count."""
        assert item.request is not None
        others = self.followers.get(group(item.request), ())
        if self.results is not None:
            _rest_from_cache(
                item, others, self.client.base, self.cache, self.spool, self.frozen, self.results
            )
        return self._outcome(item, **entry)

    def _send(self, item: Item, body: dict[str, Any], turn: int) -> Item:
        request = item.request
        assert request is not None
        place = _Place(self.window, self.cancel)
        if self.cancel.is_set() or not place.take(turn):
            return self._outcome(item, status="cancelled")
        billed = self.on_billed  # called at the POST's 200, whatever the download then does
        ok: list[bool] = []

        def answered() -> None:  # image 1; the rest of a count as they arrive (`_fill_others`)
            ok.append(True)
            if billed is not None:
                billed(item, None)

        def lost() -> None:  # answered 200, then the body or a download failed: all asked are billed
            if ok and billed is not None:
                for member in self._count(item):
                    billed(member, None)

        try:
            if self.on_sent is not None:  # every image asked is on its way (the budget holds each)
                for member in self._count(item):
                    self.on_sent(member)
            try:
                generation = self.client.generate_payload(
                    request.payload(),
                    cancel=self.cancel,
                    decode=False,
                    path=request.path,
                    on_throttle=place.refused,
                    on_answered=answered,
                    read_timeout=request.read_timeout,
                )
            except OxenError as exc:
                place.give_back(ok=False, refused=exc.status in (429, 503) and not exc.maybe_billed)
                if exc.maybe_billed and self.on_billed is not None:
                    for member in self._count(item):  # each image asked
                        self.on_billed(member, exc.billed_marker)
                lost()
                raise
            except BaseException:
                place.give_back(ok=False)
                lost()
                raise
            place.give_back(ok=True)
            self._fill_others(item, generation)
            thumb = self._run_in_cpu_pool(_thumbnail, generation, self.size)
        except Cancelled:
            return self._outcome(item, status="cancelled")
        except OxenError as exc:  # offline: the grid's note says how to get on without a network
            error = fetch_failure(str(exc), exc.status, request.inputs) or str(exc)
            return self._outcome(item, error=error, status="failed", offline=isinstance(exc, NetworkError))
        except Exception as exc:  # a bug must not take the whole grid down with it
            error = self.client.scrub(f"Unexpected error: {type(exc).__name__}: {exc}")
            return self._outcome(item, error=error, status="failed")
        return self._keep(item, body, generation, thumb)

    def _keep(self, item: Item, body: dict[str, Any], generation: Generation, thumb: bytes) -> Item:
        """Cache one arrived image and settle its cell."""
        cacheable = self.cache is not None and self.cache.cacheable(body)
        if self.cache is not None and cacheable:
            self.cache.put(
                self.client.base,
                body,
                generation.data,
                thumb,
                self.size,
                mime=generation.mime,
                size=list(generation.size),
                created=generation.created,
                url=generation.url,
            )
        return self._outcome(
            item,
            **_kept(self.spool, generation.data),
            thumb=thumb,
            mime=generation.mime,
            size=generation.size,
            elapsed=generation.elapsed,
            created=generation.created,
            status="done",
            url=generation.url,
            key=Cache.key(self.client.base, body) if cacheable else None,
        )

    def _outcome(self, item: Item, **fields: Any) -> Item:
        _settle(item, self.frozen, **fields)
        if fields.get("status") in ("failed", "cancelled") and item.request is not None:
            for member in self.followers.get(group(item.request), ()) if not item.request.image else ():
                if member.status == "pending":
                    _settle(member, self.frozen, **fields)
        return item

    def _run_in_cpu_pool(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        """`fn(*args)` in the small decode pool; in this thread once the run is over."""
        try:
            future = self.cpu.submit(fn, *args)
        except RuntimeError:  # the pool was shut down: this request finishes in the background
            return fn(*args)
        return future.result()


class _Place:
    """One request's place in the window, across the client's retries of a refused request."""

    def __init__(self, window: Window, cancel: threading.Event) -> None:
        self.window, self.cancel = window, cancel
        self.ticket: Ticket | None = None

    def take(self, turn: int | None = None) -> bool:
        """Wait for a place; False (holding none) once the run is stopped."""
        self.ticket = self.window.acquire(self.cancel, turn)
        if self.ticket is not None and self.cancel.is_set():
            self.give_back(ok=False)
        return self.ticket is not None

    def refused(self, delay: float) -> None:
        """The client's `on_throttle`: close the window, wait out Retry-After, then for a place."""
        self.give_back(ok=False, refused=True)
        if self.cancel.wait(delay) or not self.take():
            raise Cancelled("Stopped before this image was generated.")

    def give_back(self, ok: bool, refused: bool = False) -> None:
        ticket, self.ticket = self.ticket, None
        if ticket is None:
            return
        if refused:
            self.window.refused(ticket)
        else:
            self.window.release(ticket, ok)
