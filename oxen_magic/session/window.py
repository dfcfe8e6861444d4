"""How many requests may be in flight: a congestion window, like TCP's, for one run.

Users should not need to know their account's rate limit. The window starts with every request
the plan has (up to `START`, so a small sweep takes one round trip), opens while requests are
accepted, and closes when the server says it is full (429, or 503), so a run settles just under
what the server carries; the session remembers where it settled for each host (`Hint`,
`WindowMemory`), so the next sweep starts there instead of meeting the same refusals again:

* **Slow start**: every accepted request opens the window by one (it doubles per round trip)
  until the first refusal; after that, **additive increase**: by one per window's worth of
  accepted requests, and slower still (`PROBE_SLOWDOWN`) when the next step would reach the level
  the server last refused, so a server at its limit sees a probe every few rounds, not each round.
* **Multiplicative decrease**: a refusal halves the window, once per burst (refusals of requests
  sent before the last cut are the same news). It never closes below what the server has shown
  it carries: the requests sent before the refused one and still running, and, once they have run
  for `ADMITTED_AFTER`, all accepted requests still in flight.
* A request counts as **accepted** once it has run `ADMITTED_AFTER` seconds without a refusal
  (servers refuse at once: a 429 carries no work), or when it succeeds. Waiting for whole
  generations (5 to 30 s each) instead would take a minute to open the window to its ceiling.

Places go out in the grid's order (`turn`: a request waits until every earlier one has had a
place or passed), so a grid fills from its first cell and a failure lands where it was sent.
The window never exceeds `limit`: `--concurrency N` (a hard cap; the window then starts at N,
the number the user chose) or the ceiling (`CEILING`, so a real account is not flooded).
Starting at 16 rather than 4 (issue 22): at 1 s latency 8 images took 1.38 s instead of 1.11 s
and 16 took 1.99 s, one extra latency for the typical 8-16-image sweep; a server with fewer
slots refuses the excess at once (a 429 carries no work and bills nothing), and the hint makes
the second sweep on that host start at the level it carries.
The refused request itself waits out its Retry-After, then for a place in the smaller window
(see `runner.py`); the window does not pause the others, which the server is still serving.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from oxen_magic.core.errors import Cancelled

#: The most requests the first burst to a host sends (fewer when the plan has fewer), and how
#: far the window may open.
START = 16
CEILING = 32
#: Seconds a request must run without being refused to count as accepted.
ADMITTED_AFTER = 0.25
#: Near the level last refused, additive increase is this many times slower.
PROBE_SLOWDOWN = 8
#: Seconds between two looks at the clock of a thread waiting for a place.
TICK = 0.1


@dataclass(frozen=True)
class Hint:
    """Where a run's window ended on one host, for the next run to start from.

    `refused`: the server refused one more than `size` (the next run probes slowly above it);
    otherwise `size` is the most requests it has carried at once, with room to spare.
    """

    size: int
    refused: bool


class WindowMemory:
    """The hint per host for one session (the session owns it: process state, not a global)."""

    def __init__(self) -> None:
        self._hints: dict[str, Hint] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> Hint | None:
        with self._lock:
            return self._hints.get(host)

    def put(self, host: str, hint: Hint | None) -> None:
        if hint is None:
            return
        with self._lock:
            self._hints[host] = hint

    def forget(self) -> None:
        """Start every host afresh (a benchmark's cold runs; a server whose limit changed)."""
        with self._lock:
            self._hints.clear()


@dataclass(eq=False)
class Ticket:
    """One request's place in the window."""

    sent: float
    accepted: bool = False


class Window:
    """A thread-safe congestion window; `clock` is injectable so tests need no sleeping."""

    def __init__(
        self,
        cap: int | None = None,
        *,
        planned: int | None = None,
        hint: Hint | None = None,
        start: int = START,
        ceiling: int = CEILING,
        accepted_after: float = ADMITTED_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, cap if cap else ceiling)
        self.capped = bool(cap)
        self.start_hint = None if cap else hint
        self.threshold = math.inf  # slow start below it, additive increase above it
        self.refused_at = math.inf  # the window size at the last refusal (+1): probe slowly there
        if cap:
            first = self.limit  # the number the user chose
        elif hint is not None and hint.refused:
            first = hint.size  # where the last run settled: additive increase, slow probes above
            self.threshold, self.refused_at = float(hint.size), float(hint.size + 1)
        else:
            first = max(start, hint.size) if hint is not None else start
        if not cap and planned is not None:
            first = min(first, planned)  # no more places than requests: the rest is slow start
        self.size = float(max(1, min(first, self.limit)))
        self.accepted_after = accepted_after
        self.clock = clock
        self.flight: list[Ticket] = []
        self.last_cut = -math.inf
        self.throttles = 0  # refusals seen (429/503)
        self.peak = 0  # most requests in flight at once
        self._turn = 0  # requests take places in the grid's order: this turn's may go next
        self._passed: set[int] = set()
        self._cond = threading.Condition()

    # -- the places -----------------------------------------------------------------------------
    @property
    def room(self) -> int:
        """Places the window allows in all (at least one, so a run always progresses)."""
        return max(1, int(self.size))

    def try_acquire(self, turn: int | None = None) -> Ticket | None:
        """A place if one is free now (and it is `turn`'s turn), else None."""
        with self._cond:
            self._promote()
            if len(self.flight) >= self.room or (turn is not None and turn > self._turn):
                return None
            ticket = Ticket(self.clock())
            self.flight.append(ticket)
            self.peak = max(self.peak, len(self.flight))
            if turn is not None:
                self._pass(turn)
            return ticket

    def acquire(self, cancel: threading.Event | None = None, turn: int | None = None) -> Ticket | None:
        """Wait for a place (after every lower `turn` has had one or passed); None (holding none)
        once `cancel` is set."""
        while True:
            if cancel is not None and cancel.is_set():
                return None
            ticket = self.try_acquire(turn)
            if ticket is not None:
                return ticket
            with self._cond:
                self._cond.wait(TICK)

    def pass_turn(self, turn: int) -> None:
        """`turn` needs no place (cached, waiting for a twin, stopped): the next may go."""
        with self._cond:
            self._pass(turn)

    def _pass(self, turn: int) -> None:
        if turn >= self._turn:
            self._passed.add(turn)
            while self._turn in self._passed:
                self._passed.discard(self._turn)
                self._turn += 1
            self._cond.notify_all()

    def release(self, ticket: Ticket, ok: bool) -> None:
        """The request is over; `ok` (it succeeded) counts as accepted if not counted yet."""
        with self._cond:
            if ticket in self.flight:
                self.flight.remove(ticket)
            if ok and not ticket.accepted:
                ticket.accepted = True
                self._grow()
            self._cond.notify_all()

    def refused(self, ticket: Ticket) -> None:
        """The server refused this request (429/503): give its place back and close the window."""
        with self._cond:
            self._promote()
            self.throttles += 1
            if ticket in self.flight:
                self.flight.remove(ticket)
            if ticket.sent > self.last_cut:  # once per burst: older refusals are the same news
                carried = sum(1 for t in self.flight if t.sent < ticket.sent or t.accepted)
                self.size = min(float(self.limit), max(1.0, self.size / 2, float(carried)))
                self.threshold = self.size
                self.refused_at = float(int(self.size) + 1)
                self.last_cut = self.clock()
            self._cond.notify_all()

    def hint(self) -> Hint | None:
        """Where this run leaves the window, for the session's next run to the same host (None:
        nothing learned, keep the last hint).

        After a refusal in this run: the level the server carries. Otherwise what is known
        still holds, raised by what this run proved: a run that started from a refused level
        and met no refusal keeps that level (or the higher one it reached), and an unrefused
        host keeps the most requests it has carried at once (the window itself opened further
        on requests that were only accepted). A small sweep never lowers the memory, and a
        `--concurrency N` run that met no refusal says nothing about the server's limit.
        """
        with self._cond:
            if self.throttles:
                return Hint(max(1, int(self.size)), refused=True)
            if self.capped or not self.peak:
                return None
            known = self.start_hint
            if known is not None and known.refused:
                return Hint(max(known.size, int(self.size)), refused=True)
            return Hint(max(self.peak, known.size if known is not None else 0), refused=False)

    # -- growth -------------------------------------------------------------------------------
    def _promote(self) -> None:
        """Count requests that have run long enough without a refusal as accepted."""
        now = self.clock()
        fresh = [t for t in self.flight if not t.accepted and now - t.sent >= self.accepted_after]
        for ticket in fresh:
            ticket.accepted = True
            self._grow()
        if fresh and self.last_cut > -math.inf:
            # After a cut: the server carries every accepted request still in flight.
            carried = sum(1 for t in self.flight if t.accepted)
            self.size = min(float(self.limit), max(self.size, float(carried)))
            self.refused_at = max(self.refused_at, float(int(self.size) + 1))

    def _grow(self) -> None:
        if self.size < self.threshold:
            step = 1.0
        else:
            step = 1.0 / self.size
            if self.refused_at - 1 <= self.size < self.refused_at:  # next: the level last refused
                step /= PROBE_SLOWDOWN
        self.size = min(float(self.limit), self.size + step)


class Place:
    """One request's place in the window, across the client's retries of a refused request
    (moved here from `runner.py`: it is the window seen from one request)."""

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
