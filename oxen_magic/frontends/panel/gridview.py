"""The panel's grid as one HTML widget per row, so a filling grid resends only the rows that changed.

A single `HTML` widget would resend the whole grid (every thumbnail so far) at each redraw; a
64-image sweep then pushes many times its final size through the comm to the browser, which is
what a user on a remote kernel (Colab, JupyterHub) waits on. The magic solved this with
`live.LiveGrid` (the progress line, then one output per table row, each resent only when it
changed); the panel uses the same `LiveGrid`, publishing each piece into a child widget here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

from oxen_magic.display.live import LiveGrid

if TYPE_CHECKING:
    from oxen_magic.results.results import Results


class GridView(widgets.VBox):
    """A grid shown as pieces: `value = html` shows one finished grid at once (a restore, a dry
    run); `live(results)` returns a `LiveGrid` that fills the pieces row by row. `value` reads
    back the whole grid as shown (the pieces in order)."""

    def __init__(self) -> None:
        super().__init__(children=())

    @property
    def value(self) -> str:
        return "".join(child.value for child in self.children if isinstance(child, widgets.HTML))

    @value.setter
    def value(self, html: str) -> None:
        self.children = (widgets.HTML(value=html),) if html else ()

    def live(self, results: Results) -> LiveGrid:
        """A live view of `results` whose pieces are this box's children (the old grid goes)."""
        self.children = ()

        def publish(index: int, html: str, first: bool) -> None:
            if first or index >= len(self.children):
                self.children = (*self.children, widgets.HTML(value=html))
            else:
                child = self.children[index]
                assert isinstance(child, widgets.HTML)
                child.value = html  # only this row's bytes go to the browser

        return LiveGrid(results, publish)
