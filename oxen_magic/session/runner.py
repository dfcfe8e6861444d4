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

This module schedules: the cache's first pass, the window and the pools, the waiting loop. The
job of one request (twins in flight, the POST, the thumbnail) is `job.py`; how an outcome lands
in a cell is `settle.py`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait

# The stdlib pool joins its workers at exit: a kernel shut down or restarted after Ctrl-C would
# wait for requests still in flight. These workers are daemons, so it does not.
from oxen_magic.core.threads import DaemonPool
from oxen_magic.network.cache import Cache
from oxen_magic.network.client import OxenClient
from oxen_magic.results.item import Item
from oxen_magic.results.results import Results
from oxen_magic.results.spool import Spool
from oxen_magic.session.job import TICK, Billed, Job, Sent
from oxen_magic.session.settle import Frozen, cached, rest_from_cache, settle
from oxen_magic.session.several import followers, group
from oxen_magic.session.state import InFlight
from oxen_magic.session.window import Window, WindowMemory

THREAD_PREFIX = "oxen-magic"
#: Threads that decode and thumbnail. Arrivals come in bursts (a round of `concurrency` requests
#: answered together); a few at a time finishes the first image first, instead of all of them
#: sharing the CPU and appearing together, and few threads touching the big decoded bitmaps keep
#: the allocator's per-thread arenas (and so the process's peak memory) small.
CPU_SLOTS = max(1, min(4, os.cpu_count() or 1))


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
    in_flight: InFlight | None = None,
) -> Results:
    """Fill `results` in place and return it; raises only when a request is due and the key is
    missing or unusable (after the cache has answered what it can).

    `concurrency` caps the requests in flight; 0 lets the window find the server's limit alone
    (see `window.py`), up to its ceiling, starting where the session's last run to this host
    ended (`windows`, the session's memory; this run's end is written back to it). `in_flight`:
    the session's table of seeded requests on their way, so an identical request of another run
    in this process waits for this one's answer instead of being sent twice (None: a table of
    this run's own)."""
    table = in_flight if in_flight is not None else InFlight()  # an empty table is falsy
    scheduled = _Scheduled(results, client, cache, cancel or threading.Event(), on_update)
    try:
        todo = scheduled.answer_from_cache(use_cache)
        if todo and not scheduled.cancel.is_set():
            client.check_key()  # one clear sentence before anything is sent, not one per cell
            job = scheduled.open(todo, concurrency, windows, use_cache, table)
            job.on_billed, job.on_sent = on_billed, on_sent
            scheduled.send(todo, job)
        scheduled.wait()
    except KeyboardInterrupt:
        scheduled.cancel.set()
    finally:
        scheduled.finish(windows)
    return results


class _Scheduled:
    """One call of `run`: the cache's first pass, the pools and the window, the waiting loop."""

    def __init__(
        self,
        results: Results,
        client: OxenClient,
        cache: Cache | None,
        cancel: threading.Event,
        on_update: Callable[[Item | None], None] | None,
    ) -> None:
        self.results, self.client, self.cache, self.cancel = results, client, cache, cancel
        self.on_update = on_update
        self.started = time.monotonic()
        self.spool = Spool(cache.folder / "spool" if cache is not None else None)
        self.frozen = Frozen()
        self.members = followers(results.items)
        self.futures: dict[Future[Item], Item] = {}
        self.pending: set[Future[Item]] = set()
        self.pool: DaemonPool | None = None
        self.cpu: DaemonPool | None = None
        self.window: Window | None = None
        self.job: Job | None = None
        results.running = True

    def answer_from_cache(self, use_cache: bool) -> list[Item]:
        """Settle what the cache answers (reported as it lands); the items left to send."""
        results, host = self.results, self.client.base
        todo: list[Item] = []
        for item in results.items:
            if item.request is None or item.status == "done" or self.cancel.is_set():
                continue
            if item.request.image and group(item.request) in self.members:
                continue  # filled from its sender's answer (or from the cache with it, below)
            entry = cached(item, host, self.cache, results.size, self.spool) if use_cache else None
            if entry is None:
                todo.append(item)
                continue
            settle(item, self.frozen, **entry)
            others = self.members.get(group(item.request), ())
            rest_from_cache(item, others, host, self.cache, self.spool, self.frozen, results)
            results.elapsed = time.monotonic() - self.started
            if self.on_update:
                self.on_update(item)
        return todo

    def open(
        self,
        todo: list[Item],
        concurrency: int,
        windows: WindowMemory | None,
        use_cache: bool,
        in_flight: InFlight,
    ) -> Job:
        """The window (starting where the session's last run to this host ended), the pools, and
        the job every worker shares.

        The window bounds the requests in flight (network places), not the threads: a worker
        gives its place back as soon as the bytes are in, so the next request goes out while this
        image is decoded and thumbnailed; a refused request waits without one."""
        hint = windows.get(self.client.base) if windows is not None else None
        self.window = Window(concurrency if concurrency > 0 else None, planned=len(todo), hint=hint)
        self.cpu = DaemonPool(max_workers=CPU_SLOTS, thread_name_prefix=THREAD_PREFIX + "-cpu")
        self.pool = DaemonPool(max_workers=2 * self.window.limit, thread_name_prefix=THREAD_PREFIX)
        return Job(
            self.client,
            self.cache,
            use_cache,
            self.results,
            cancel=self.cancel,
            window=self.window,
            cpu=self.cpu,
            frozen=self.frozen,
            spool=self.spool,
            in_flight=in_flight,
            followers=self.members,
        )

    def send(self, todo: list[Item], job: Job) -> None:
        """Hand each item to a worker, in the grid's order (its turn in the window)."""
        assert self.pool is not None
        self.futures = {self.pool.submit(job.generate, item, turn): item for turn, item in enumerate(todo)}
        self.pending = set(self.futures)

    def wait(self) -> None:
        """Report arrivals (and a tick every `TICK` s) until every worker is done or Stop."""
        while self.pending:
            finished, self.pending = wait(self.pending, timeout=TICK, return_when=FIRST_COMPLETED)
            self.results.elapsed = time.monotonic() - self.started
            if self.on_update:
                for future in finished:
                    self.on_update(self.futures[future])
                self.on_update(None)
            if self.cancel.is_set():
                break

    def finish(self, windows: WindowMemory | None) -> None:
        """Freeze the results (a late arrival goes only to the cache), cancel what has not
        started, and remember where the window ended for the next run to this host."""
        results = self.results
        with self.frozen.lock:  # from here on the results do not change
            self.frozen.done = True
            results.running = False
            for future in self.pending:
                future.cancel()
            for item in results.items:
                if item.status == "pending":
                    item.status = "cancelled"
            # Stopped by the user (Ctrl-C, Stop), not by an error such as a missing key, which
            # the caller reports in its own sentence.
            results.interrupted = self.cancel.is_set() and any(i.status == "cancelled" for i in results.items)
        if self.window is not None and windows is not None:
            windows.put(self.client.base, self.window.hint())
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.cpu is not None:
            self.cpu.shutdown(wait=False)  # thumbnails of requests already paid for still run
        results.elapsed = time.monotonic() - self.started
