"""Progress for a terminal: a one-line bar with an ETA on a TTY, plain lines otherwise.

Used as the runner's `on_update` by the command line (and by `generate(show=True)` outside a
notebook). Small on purpose: no dependency, redraws at most every `EVERY` seconds. The bar's text
is the same progress line the notebook and the panel show (`pace.progress_line`).
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, TextIO

from oxen_magic.core.pace import Tally, progress_line

if TYPE_CHECKING:
    from oxen_magic.results.results import Item, Results

EVERY = 0.1
WIDTH = 24


class Progress:
    """`on_update(item)` for a terminal; call `close()` when the run ends."""

    def __init__(self, results: Results, stream: TextIO, tty: bool | None = None) -> None:
        self.results = results
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.last = 0.0
        self.drawn = False

    def line(self) -> str:
        """`[##########..............] 5/12 images, 1 failed, 3.1 s, about 14 s left`: a bar of the
        settled images, then the progress line every front end shows (`pace.progress_line`), cut to
        the terminal's width on a TTY (a wrapped line would not be redrawn in place)."""
        r = self.results
        filled = WIDTH * (r.done + r.failed) // max(1, r.total)
        tally = Tally.of(r.items, r.elapsed, r.running, r.interrupted)
        text = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {progress_line(tally, brief=True)}"
        return text[: shutil.get_terminal_size().columns - 1] if self.tty else text

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
