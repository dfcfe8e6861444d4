"""The job of one request, in a worker thread: wait for a twin, take a place, send, thumbnail,
cache, settle its cells.

A twin is the same seeded request already on its way: in this process (the session's in-flight
table, `state.InFlight`: a rerun right after Stop waits for the request already sent, then reads
its image from the cache) or in another one (a second notebook, the CLI: `claims.FileClaim`).
Split from `runner.py`, which schedules these jobs through the window and waits for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from oxen_magic.core.errors import Cancelled, NetworkError, OxenError
from oxen_magic.core.threads import DaemonPool
from oxen_magic.display.render import thumbnail_of
from oxen_magic.network.cache import Cache
from oxen_magic.network.client import Generation, OxenClient
from oxen_magic.planning.image_refs import fetch_failure
from oxen_magic.results.item import Item
from oxen_magic.results.results import Results
from oxen_magic.results.spool import Spool
from oxen_magic.session.claims import FileClaim
from oxen_magic.session.settle import Frozen, cached, extra_cell, kept, rest_from_cache, settle
from oxen_magic.session.several import group
from oxen_magic.session.state import InFlight
from oxen_magic.session.window import Place, Window

#: `on_billed(item, gateway)`: the API answered the POST with success (None: billed then, whatever
#: the download does), or it may have been billed with no image back: a gateway's 502/503/504, or
#: `errors.TIMED_OUT` (sent, never answered). `on_sent(item)`: its POST is about to go out.
Billed = Callable[[Item, int | None], None]
Sent = Callable[[Item], None]
#: Seconds between two looks at a stop request while waiting (for a twin, or the runner's loop).
TICK = 0.1


def _thumbnail(generation: Generation, size: int) -> bytes:
    """Decode (a corrupt image fails here) at no more than the thumbnail's size, and thumbnail;
    the full-size pixels are decoded only if asked for later (`Item.image`)."""
    generation.release()  # pixels decoded by the client (decode=True) are not needed here
    return thumbnail_of(generation.data, size)


class Job:
    """What every worker of one run shares; `generate(item, turn)` is one worker's task."""

    def __init__(
        self,
        client: OxenClient,
        cache: Cache | None,
        use_cache: bool,
        results: Results,
        *,
        cancel: threading.Event,
        window: Window,
        cpu: DaemonPool,
        frozen: Frozen,
        spool: Spool,
        in_flight: InFlight,
        followers: dict[str, list[Item]],
    ) -> None:
        self.client, self.cache, self.size, self.cancel = client, cache, results.size, cancel
        self.use_cache = use_cache  # False (--no-cache): always send, but still write the cache
        self.window, self.cpu, self.frozen, self.spool = window, cpu, frozen, spool
        self.in_flight = in_flight
        self.on_billed: Billed | None = None
        self.on_sent: Sent | None = None  # see `runner.run`
        self.followers = followers
        self.results = results

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
        while key is not None and (twin := self.in_flight.claim(key)) is not None:
            self.window.pass_turn(turn)  # no place needed while a twin is out
            while not twin.wait(TICK):
                if self.cancel.is_set():
                    return self._outcome(item, status="cancelled")
            entry = self._cached(item)
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
            entry = self._cached(item) if key else None
            return self._from_cache(item, entry) if entry else self._send(item, body, turn)
        finally:
            if claim is not None:
                claim.release()
            if key is not None:
                self.in_flight.release(key)

    def _cached(self, item: Item) -> dict[str, Any] | None:
        return cached(item, self.client.base, self.cache, self.size, self.spool)

    def _count(self, item: Item) -> list[Item]:
        """The cells one POST fills: `item` and the rest of its `num_images` count."""
        assert item.request is not None
        return [item, *self.followers.get(group(item.request), ())]

    def _from_cache(self, item: Item, entry: dict[str, Any]) -> Item:
        """A twin's answer, read from the cache: this cell and the rest of its `num_images` count."""
        assert item.request is not None
        others = self.followers.get(group(item.request), ())
        rest_from_cache(item, others, self.client.base, self.cache, self.spool, self.frozen, self.results)
        return self._outcome(item, **entry)

    def _send(self, item: Item, body: dict[str, Any], turn: int) -> Item:
        """Take a place in the window, POST, thumbnail; a failure becomes the cell's error."""
        request = item.request
        assert request is not None
        place = Place(self.window, self.cancel)
        if self.cancel.is_set() or not place.take(turn):
            return self._outcome(item, status="cancelled")
        try:
            generation = self._post(item, place)
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

    def _post(self, item: Item, place: Place) -> Generation:
        """The POST, holding `place`; every image it may have billed is told to `on_billed`."""
        request = item.request
        assert request is not None
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
            if exc.maybe_billed and billed is not None:
                for member in self._count(item):  # each image asked
                    billed(member, exc.billed_marker)
            lost()
            raise
        except BaseException:
            place.give_back(ok=False)
            lost()
            raise
        place.give_back(ok=True)
        return generation

    def _fill_others(self, item: Item, generation: Generation) -> None:
        """Images 1.. of the answer into their cells (`several.py`); more than asked get cells of
        their own (kept, saved and billed: a note says so); fewer than asked fail the cells left."""
        assert item.request is not None
        cells = {
            i.request.image: i for i in self.followers.get(group(item.request), ()) if i.request is not None
        }
        for k, other in enumerate(generation.others, start=1):
            member = cells.pop(k, None)
            if member is None:  # an image nobody asked for, billed all the same: keep and count it
                member = extra_cell(item, k, self.results, self.frozen)
            if self.on_billed is not None:
                self.on_billed(member, None)
            assert member.request is not None
            try:
                thumb = self._run_in_cpu_pool(_thumbnail, other, self.size)
            except OxenError as exc:
                self._outcome(member, error=str(exc), status="failed")
                continue
            self._keep(member, member.request.key_body(), other, thumb)
        for member in (i for i in cells.values() if i.status != "done"):
            error = f"The API returned {generation.count} of the {item.request.count} images asked."
            self._outcome(member, error=error, status="failed")

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
            **kept(self.spool, generation.data),
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
        """Settle `item`; a failure or a stop settles the rest of its `num_images` count too."""
        settle(item, self.frozen, **fields)
        if fields.get("status") in ("failed", "cancelled") and item.request is not None:
            for member in self.followers.get(group(item.request), ()) if not item.request.image else ():
                if member.status == "pending":
                    settle(member, self.frozen, **fields)
        return item

    def _run_in_cpu_pool(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        """`fn(*args)` in the small decode pool; in this thread once the run is over."""
        try:
            future = self.cpu.submit(fn, *args)
        except RuntimeError:  # the pool was shut down: this request finishes in the background
            return fn(*args)
        return future.result()
