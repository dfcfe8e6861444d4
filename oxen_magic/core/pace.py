"""How far a run is and when it should end: the one progress line and the one ETA.

Why one module: the terminal bar (`progress.py`), the notebook's live grid (`live.py`, through
`Results.summary`) and the panel's status all say the same thing, `12/16 images, 1 failed,
4.2 s, about 8 s left`; written once, they cannot drift apart (they once had two ETA formulas).

Pure (core layer): it reads items through their `status`, `cached`, `placeholder` and `request`
attributes only, so it imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class _Item(Protocol):
    status: str
    cached: bool
    placeholder: bool
    request: Any


def duration(seconds: float) -> str:
    """`8 s`, `3 min`, `1 h 20 min`: an ETA, rounded the way people say it."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def eta(elapsed: float, fetched: int, left: int) -> float | None:
    """Seconds until `left` more images arrive at the pace of the `fetched` ones so far (images
    from the cache are not a pace: they are not counted); None when nothing came yet or none is left."""
    if elapsed <= 0 or not fetched or not left:
        return None
    return left * elapsed / fetched


@dataclass(frozen=True)
class Tally:
    """A run's counts at one moment, read from its items (see `of`)."""

    total: int
    done: int = 0
    failed: int = 0
    cached: int = 0
    placeholders: int = 0
    fetched: int = 0  # settled (done or failed) and not from the cache: the pace
    pending: int = 0
    elapsed: float = 0.0
    running: bool = False
    interrupted: bool = False

    @classmethod
    def of(cls, items: Iterable[_Item], elapsed: float, running: bool, interrupted: bool = False) -> Tally:
        """Count a grid's items (`Results.items`); cells without a request are not images."""
        listed = list(items)
        status = [i.status for i in listed]
        return cls(
            total=sum(1 for i in listed if i.request is not None),
            done=status.count("done"),
            failed=status.count("failed"),
            cached=sum(1 for i in listed if i.cached),
            placeholders=sum(1 for i in listed if i.placeholder),
            fetched=sum(1 for i in listed if i.status in ("done", "failed") and not i.cached),
            pending=status.count("pending"),
            elapsed=elapsed,
            running=running,
            interrupted=interrupted,
        )

    @property
    def settled(self) -> int:
        return self.done + self.failed

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far, while the run runs (None otherwise)."""
        return eta(self.elapsed, self.fetched, self.pending) if self.running else None


def progress_line(tally: Tally, brief: bool = False) -> str:
    """`12/16 images, 1 failed, 2 from cache, 4.2 s, about 8 s left`: the progress line of every
    front end (a placeholder the local hub drew is said here, as a PNG does not say it; `brief`,
    for a terminal bar that must fit one line, leaves out why it is one)."""
    text = f"{tally.done}/{tally.total} images"
    if tally.failed:
        text += f", {tally.failed} failed"
    if tally.cached:
        text += f", {tally.cached} from cache"
    drawn = tally.placeholders
    if drawn:
        text += f", {drawn} placeholder{'s' if drawn > 1 else ''}"
        text += "" if brief else " (the local hub's, not a model's)"
    text += f", {tally.elapsed:.1f} s"
    left = tally.eta
    if left is not None:
        text += f", about {duration(left)} left"
    if tally.interrupted:
        text += " (interrupted)"
    return text
