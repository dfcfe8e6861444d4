"""One window toward upstream for the whole room, with the seats served in turn.

At most `size` requests are upstream at once. When more wait, a freed place goes to the seat
whose turn it is (round robin over the seats that are waiting, each seat's own requests in the
order they came), so one student's 64-image sweep waits behind everyone else's next image instead
of holding the room's whole window. The window adapts: an upstream 429 halves it, answers grow it
back one place at a time up to `--upstream-window` (the 429'd request waits and is sent again, so
a seat never sees the room's rate limit).

Used only on the relay's event loop (no locks).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

#: The window's default (and most): a room's distinct images at once; 429s halve it.
WINDOW = 32


class FairWindow:
    """At most `size` requests upstream (between 1 and `most`), waiting seats served in turn."""

    def __init__(self, most: int) -> None:
        if most < 1:
            raise ValueError("the upstream window must be at least 1")
        self.most = most
        self.size = most
        self.busy = 0
        self._successes = 0
        #: Waiting requests by seat; the first seat is the one whose turn is next.
        self._waiting: OrderedDict[int, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, seat: int) -> None:
        """Wait for a place upstream (at once when one is free and nobody waits)."""
        if self.busy < self.size and not self._waiting:
            self.busy += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(seat, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # the place was handed over as we were cancelled: pass it on
            else:
                self._forget(seat, turn)
            raise

    def _forget(self, seat: int, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(seat)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self._waiting[seat]

    def release(self) -> None:
        """A request came back: its place goes to the next seat in turn (if the window allows)."""
        self.busy -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self.busy < self.size:
            seat, queue = next(iter(self._waiting.items()))
            turn = queue.popleft()
            if queue:
                self._waiting.move_to_end(seat)  # this seat's next request waits for the others
            else:
                del self._waiting[seat]
            if not turn.done():
                turn.set_result(None)
                self.busy += 1

    def refused(self) -> None:
        """Upstream said 429: halve the window (at least 1)."""
        self.size = max(1, self.size // 2)
        self._successes = 0

    def answered(self) -> None:
        """Upstream answered: after a window's worth of answers, one more place (up to `most`)."""
        if self.size < self.most:
            self._successes += 1
            if self._successes >= self.size:
                self.size += 1
                self._successes = 0
                self._admit()
