"""Progress for a terminal: a one-line bar with an ETA on a TTY, plain lines otherwise.

Used as the runner's `on_update` by the command line (and by `generate(show=True)` outside a
notebook). Small on purpose: no dependency, redraws at most every `EVERY` seconds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .results import Item, Results

EVERY = 0.1
WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s"


class Progress:
    """`on_update(item)` for a terminal; call `close()` when the run ends."""

    def __init__(self, results: Results, stream: TextIO, tty: bool | None = None) -> None:
        self.results = results
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def line(self) -> str:
        """`[#######.................]  5/12  1 failed  ETA 14 s`"""
        r = self.results
        total = max(1, r.total)
        settled = r.done + r.failed
        filled = WIDTH * settled // total
        text = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {settled}/{r.total}"
        if r.failed:
            text += f"  {r.failed} failed"
        cached = sum(1 for i in r.items if i.cached)
        if cached:
            text += f"  {cached} from cache"
        sent = settled - cached
        elapsed = time.monotonic() - self.started
        left = r.total - settled
        if left and sent:
            text += f"  ETA {_duration(elapsed / sent * left)}"
        elif not left:
            text += f"  {_duration(elapsed)}"
        return text

    def __call__(self, item: Item | None = None) -> None:
        if self.tty:
            now = time.monotonic()
            if item is None and now - self.last < EVERY:
                return
            if now - self.last >= EVERY or self.results.done + self.results.failed == self.results.total:
                self.last = now
                self.stream.write("\r" + self.line() + "\033[K")
                self.stream.flush()
                self.drawn = True
            return
        if item is None:
            return
        r = self.results
        what = f"{item.model} seed {item.seed}" if item.seed is not None else f"{item.model}"
        if item.status == "done":
            how = "from cache" if item.cached else f"{item.elapsed or 0:.1f} s"
            state = f"done ({how})"
        else:
            state = f"{item.status}: {item.error or ''}".rstrip(": ")
        self.stream.write(f"{r.done + r.failed}/{r.total} {what}: {state}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\033[K\n")
            self.stream.flush()
