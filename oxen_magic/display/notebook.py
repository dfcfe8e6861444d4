"""The grid in a notebook as it fills in: what the magic and `generate()` in a notebook show.

A front end prepares a run, then shows its results while it executes:

    with notebook.showing(run.results, planned=spec.dry_run) as redraw:
        run.execute(on_update=redraw)

The grid is drawn at once (the run's results exist before anything is sent), one output per
table row, and a row is resent only when it changed (see `live.py`), at most every
`REDRAW_EVERY` seconds (`Throttled`); the last draw always happens, Ctrl-C or not. A dry run is
shown once, as planned. The panel draws into its own widgets but paces them with `Throttled` too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxen_magic.results.results import Item, Results

#: Seconds between two redraws of a grid that is filling in (the last one always draws).
REDRAW_EVERY = 0.2


class Throttled:
    """Call `draw()` at most every `every` seconds; a skipped change is drawn on the next call.

    Used as `on_update`: arrivals mark the grid dirty, ticks (`None`) draw it once it is due, so
    no image waits for the next arrival to appear and a burst of arrivals costs one redraw. A
    `draw()` that returns True held something back: the grid stays dirty.
    """

    def __init__(self, draw: Callable[[], bool | None], every: float = REDRAW_EVERY) -> None:
        self.draw, self.every = draw, every
        self.last = time.monotonic()
        self.dirty = False

    def __call__(self, item: Item | None = None) -> None:
        self.dirty = self.dirty or item is not None
        if self.dirty and time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        self.dirty, self.last = False, time.monotonic()
        self.dirty = bool(self.draw())


def in_notebook() -> bool:
    """True in a Jupyter kernel (rich display), False in a plain process or a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _ignore(item: Item | None) -> None:
    """A dry run's `on_update`: nothing arrives."""


@contextlib.contextmanager
def showing(results: Results, *, planned: bool = False) -> Iterator[Callable[[Item | None], None]]:
    """Draw `results` now and give the `on_update` that redraws it as it fills in; the last
    draw happens on leaving, whatever stopped the run. `planned`: a dry run, shown once."""
    from IPython.display import display

    from oxen_magic.display.live import LiveGrid

    if planned:
        display(results)
        yield _ignore
        return
    handles: dict[int, Any] = {}

    def publish(index: int, html: str, first: bool) -> None:
        # A terminal sees only text/plain: the summary, and at the end the notes and errors.
        plain = "" if index else repr(results) if first else results.plain()
        bundle = {"text/html": html, "text/plain": plain}
        if first:
            handles[index] = display(bundle, raw=True, display_id=True)
        elif handles.get(index) is not None:
            handles[index].update(bundle, raw=True)

    view = LiveGrid(results, publish)
    view.draw()
    try:
        yield Throttled(view.draw)
    finally:
        view.draw(force=True)
