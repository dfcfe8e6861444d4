"""The magic's live grid: separate outputs, so a redraw resends only what changed.

Every redraw of a filling grid used to resend the whole grid (a 64-image sweep pushed ~18 times
its final size through the display channel, which is what a user on a remote kernel waits on).
Here the grid is the progress line, then one output per table row; a row is resent only when
it changed, and not at every arrival. Plain HTML in plain display outputs, so JupyterLab,
Notebook 7, VS Code, Colab and saved notebooks (nbviewer) all show the same complete grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from oxen_magic.display.html import NO_MATH
from oxen_magic.display.render import PAGE_CELLS, grid_head, grid_pages

if TYPE_CHECKING:
    from oxen_magic.results.results import Results


def live_parts(results: Results) -> list[str]:
    """The first page of the grid as separate pieces (the progress line, then one table per row)
    for a view that resends only the pieces that changed. Every table has the same fixed column
    widths, so the separate tables line up as one grid."""
    pages = grid_pages(results, PAGE_CELLS)
    rows = pages[0]
    shown = sum(n for n, _, _ in rows)
    plan = results.plan
    width = results.size + 8
    label = 0
    if plan.row_axes:
        label = min(260, max(80, 7 * max((len(x) for x in plan.row_labels), default=0) + 16))
    ncols = min(max(1, results.cols), max(1, len(plan.col_labels)))
    cols = (f'<col style="width:{label}px">' if label else "") + f'<col style="width:{width}px">' * ncols
    style = f"border-collapse:collapse;table-layout:fixed;width:{label + ncols * width}px;margin:0"
    tables = [
        f'<table class="oxen-grid {NO_MATH}" style="{style}"><colgroup>{cols}</colgroup>{text}</table>'
        for _, text, _ in rows
    ]
    head = f'<div class="oxen-magic {NO_MATH}">' + grid_head(results, shown, 1, len(pages)) + "</div>"
    return [head, *tables]


_DONE = 'class="oxen-cell oxen-done"'
#: A row holding images waits at most this long to show newer ones (see `LiveGrid`).
STALE_AFTER = 1.0


class LiveGrid:
    """A filling grid shown as separate outputs (the progress line, then one per table row), so a
    redraw resends only the rows that changed, not the whole grid again at every redraw. The
    saved outputs, read in order, are the complete grid.

    A row is resent when its first image arrives, when it is complete, when its new images
    since it was last sent at least match those already shown (so its sends grow geometrically
    and add up to about twice its final size), or when an image has waited `STALE_AFTER`
    seconds; `draw(force=True)` sends everything. `publish(index, html, first)` shows piece
    `index` (first time) or replaces it; the front end owns the display machinery.
    """

    def __init__(self, results: Results, publish: Callable[[int, str, bool], None]) -> None:
        self.results, self.publish = results, publish
        self.sent: list[str] = []
        self.waiting: dict[int, float] = {}  # row piece -> when a change was first held back

    def draw(self, force: bool = False) -> bool:
        """Send what is due; True when a change is held back (draw again soon)."""
        now = time.monotonic()
        for index, piece in enumerate(live_parts(self.results)):
            if index >= len(self.sent):
                self.sent.append(piece)
                self.publish(index, piece, True)
            elif piece != self.sent[index]:
                if force or index == 0 or self._due(index, piece, now):
                    self.sent[index] = piece
                    self.waiting.pop(index, None)
                    self.publish(index, piece, False)
                else:
                    self.waiting.setdefault(index, now)
        return bool(self.waiting)

    def _due(self, index: int, piece: str, now: float) -> bool:
        shown, ready = self.sent[index].count(_DONE), piece.count(_DONE)  # not input pictures
        return (
            shown == 0
            or ready - shown >= shown
            or "oxen-pending" not in piece
            or now - self.waiting.get(index, now) >= STALE_AFTER
        )
