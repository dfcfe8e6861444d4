"""What one process remembers between runs, owned by its `Session` (`session.state`).

Four tables outlive a single run but not the process: the seeded requests on their way (a rerun
right after Stop waits for them instead of paying twice), the grids made lately (`latest()` and
the check cells look there), the exercises' start cells and accepted grids, and the cache
folders whose "not cached" note was already said. They used to be module globals beside the
session; held here, a new session (`reset_session()`, a test) starts with all four empty, and
whoever needs one is handed it (the runner gets the in-flight table as a parameter) or asks the
session for it (the check cells), so no module keeps process state of its own.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oxen_magic.network.cache import Noted

if TYPE_CHECKING:
    from oxen_magic.results.results import Results


class InFlight:
    """Seeded requests on their way, by cache key: a twin waits for its owner's answer (then reads
    it from the cache) instead of sending the same request again."""

    def __init__(self) -> None:
        self._owners: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> threading.Event | None:
        """None when the caller now owns `key`; else the event set when its current owner is done."""
        with self._lock:
            owner = self._owners.get(key)
            if owner is None:
                self._owners[key] = threading.Event()
            return owner

    def release(self, key: str) -> None:
        """The owner of `key` is done (answered, failed or stopped): its twins look again."""
        with self._lock:
            done = self._owners.pop(key, None)
        if done is not None:
            done.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._owners)


class RecentGrids:
    """Grids made in this process, newest last: the newest is held (a cell without --out keeps
    nothing else), older ones only while something else holds them, so a grid's spooled images
    go when its last user does."""

    def __init__(self, keep: int = 16) -> None:
        self._recent: deque[weakref.ref[Results]] = deque(maxlen=keep)
        self._newest: Results | None = None
        self._lock = threading.Lock()

    def add(self, results: Results) -> None:
        """A grid the session has just laid out (the magic, the panel, `generate()`, the CLI)."""
        with self._lock:
            self._recent.append(weakref.ref(results))
            self._newest = results

    def alive(self) -> list[Results]:
        """The grids still held by someone, oldest first."""
        with self._lock:
            return [r for r in (ref() for ref in self._recent) if r is not None]

    def latest(self, **fields: Any) -> Results:
        """The most recent finished grid, or the most recent holding an image whose fields
        match (`latest(prompt="a paper boat on a pond")`); `LookupError` when there is none."""
        for results in reversed(self.alive()):
            if results.done and (not fields or results.select(**fields)):
                return results
        wanted = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        raise LookupError(
            f"No grid{' with ' + wanted if wanted else ''} has been made in this notebook yet; "
            "run your cell above first."
        )


class Exercises:
    """Per exercise: the grids that existed when its start cell ran (weakly held), and the grid
    its last passing check accepted (a later exercise may compare to it)."""

    def __init__(self) -> None:
        self._started: dict[str, weakref.WeakSet[Results]] = {}
        self._accepted: dict[str, Results] = {}
        self._lock = threading.Lock()

    def start(self, name: str, existing: list[Results]) -> None:
        with self._lock:
            self._started[name] = weakref.WeakSet(existing)
            self._accepted.pop(name, None)

    def before(self, name: str) -> set[Results] | None:
        """The grids made before exercise `name` began (None: its start cell has not run)."""
        with self._lock:
            started = self._started.get(name)
            return set(started) if started is not None else None

    def accept(self, name: str, grid: Results) -> None:
        with self._lock:
            self._accepted[name] = grid

    def accepted(self, name: str) -> Results | None:
        with self._lock:
            return self._accepted.get(name)


@dataclass
class ProcessState:
    """The session's tables (see the module doc); each guards itself with its own lock."""

    in_flight: InFlight = field(default_factory=InFlight)
    grids: RecentGrids = field(default_factory=RecentGrids)
    exercises: Exercises = field(default_factory=Exercises)
    #: Notes said once per process: each cache folder's "results will not be cached", and the
    #: data: URI caveat.
    notes: Noted = field(default_factory=Noted)
