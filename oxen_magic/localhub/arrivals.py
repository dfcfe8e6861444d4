"""Counting requests as they arrive and as they are answered, so a test can wait on the event
itself (`LocalHub.wait_for_calls`) instead of sleeping and hoping.

`LocalHub.requests` keeps a request once it is answered (the record holds the status), which a
slow answer (`latency`, `drip`) holds back, and it drops its oldest records past its bounds. A
test that must know a request *reached* the hub (to press Ctrl-C mid-run, to count what a client
sent before giving up) needs the moment of arrival; one that reads `requests` needs the moment
of answer. Both are counted here, without bound, under one condition variable.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable

from oxen_magic.localhub.replies import RecordedRequest
from oxen_magic.localhub.routes import BARE_EDIT_PATH, EDIT_PATH, GENERATE_PATH

#: Route names a test may wait on: the image POSTs (any other name is taken as a literal path,
#: counted whatever the method).
ROUTES: dict[str, tuple[str, ...]] = {
    "generate": (GENERATE_PATH,),
    "edit": (EDIT_PATH, BARE_EDIT_PATH),
    "images": (GENERATE_PATH, EDIT_PATH, BARE_EDIT_PATH),
}


def posts_to(records: Iterable[RecordedRequest], route: str) -> list[RecordedRequest]:
    """The POSTs among `records` to a named route ("generate", "edit", "images"), in order."""
    return [r for r in records if r.method == "POST" and r.path.split("?")[0] in ROUTES[route]]


class CallWatch:
    """Thread-safe counts of requests by (method, path), at arrival and at answer."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._arrived: Counter[tuple[str, str]] = Counter()
        self._answered: Counter[tuple[str, str]] = Counter()

    def note(self, method: str, target: str, answered: bool = False) -> None:
        """Count one request (`target` may carry a query string) and wake the waiters."""
        key = (method, target.partition("?")[0])
        with self._changed:
            (self._answered if answered else self._arrived)[key] += 1
            self._changed.notify_all()

    def _count(self, route: str, answered: bool) -> int:
        counts = self._answered if answered else self._arrived
        if route in ROUTES:
            return sum(counts[("POST", path)] for path in ROUTES[route])
        return sum(n for (_, path), n in counts.items() if path == route)

    def count(self, route: str = "generate", answered: bool = False) -> int:
        """Requests to `route` that arrived (or, `answered=True`, were answered) so far."""
        with self._changed:
            return self._count(route, answered)

    def wait(self, n: int, route: str = "generate", answered: bool = False, timeout: float = 10.0) -> int:
        """Block until at least `n` requests to `route` arrived (or were answered); returns the
        count. Raises TimeoutError naming the count when `timeout` seconds pass first."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._count(route, answered) >= n, timeout):
                what = "answered" if answered else "arrived"
                seen = self._count(route, answered)
                raise TimeoutError(f"{seen} of {n} {route} requests {what} within {timeout} s")
            return self._count(route, answered)

    def changed(self) -> None:
        """Wake the waiters: something they may be waiting on (say `in_flight`) changed."""
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `predicate()` holds, checked at each arrival, answer or `changed()`;
        TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"the hub did not reach the awaited state within {timeout} s")

    def clear(self) -> None:
        with self._changed:
            self._arrived.clear()
            self._answered.clear()
            self._changed.notify_all()


class Tally:
    """The hub's counters: images billed (made, whatever was answered afterwards), requests in
    flight and their peak, and 429s sent for going over `max_concurrent`."""

    def __init__(self) -> None:
        self.billed = self.rejected = self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()

    def enter(self, cap: int | None) -> bool:
        """Count one more request in flight; False (counted in `rejected`) when `cap` are already."""
        with self._lock:
            if cap is not None and self.in_flight >= cap:
                self.rejected += 1
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def bill(self, images: int) -> None:
        with self._lock:
            self.billed += images

    def reset(self) -> None:
        """Zero the counters; the peak starts again from what is in flight now."""
        with self._lock:
            self.peak_in_flight = self.in_flight
            self.billed = self.rejected = 0
