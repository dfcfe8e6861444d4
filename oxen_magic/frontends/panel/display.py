"""How the panel shows its state: the status line, the buttons, the progress bar, and the
plain-HTML copy for front ends that cannot show widgets (nbviewer, a static HTML export)."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from oxen_magic.display.html import NO_MATH, esc
from oxen_magic.display.render import grid_html
from oxen_magic.results.results import Results


def _error(text: str) -> str:
    return f'<span class="oxen-error-text {NO_MATH}" style="color:#c62828;font-size:12px">{esc(text)}</span>'


def _note(text: str) -> str:
    return f'<span class="oxen-note-text {NO_MATH}" style="opacity:.7;font-size:12px">{esc(text)}</span>'


class StatusDisplay:
    """The status line, Generate and Stop, and the progress bar."""

    def __init__(self) -> None:
        self.generate_button = widgets.Button(
            description="Generate", button_style="primary", icon="play", tooltip="Generate the grid"
        )
        self.stop_button = widgets.Button(
            description="Stop",
            button_style="warning",
            icon="stop",
            disabled=True,
            tooltip="Cancel what has not started; keep what arrived",
        )
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="0/0")
        self.status = widgets.HTML(value="")

    def owned(self) -> list[Any]:
        """Every widget this part made (to close them with the panel)."""
        return [self.generate_button, self.stop_button, self.progress, self.status]

    def set_status(self, text: str, *, error: bool) -> None:
        """Plain text (escaped here, whatever it holds: a file name, a server's message); each
        line of it on a line of its own."""
        if error:
            self.status.value = _error(text)
        else:
            lines = "<br>".join(esc(line) for line in text.split("\n"))
            self.status.value = (
                f'<span class="oxen-status-text {NO_MATH}" style="font-size:12px">{lines}</span>'
            )

    def buttons(
        self, *, running: bool, blocked: bool, saveable: bool, save: widgets.Button, history: widgets.Box
    ) -> None:
        """Generate only when nothing runs and no control holds a problem; Stop while running;
        Save and the history's restore buttons only between runs."""
        self.generate_button.disabled = running or blocked
        self.stop_button.disabled = not running
        save.disabled = running or not saveable
        for box in history.children:
            for child in box.children:
                if isinstance(child, widgets.Button):
                    child.disabled = running

    def show_progress(self, results: Results) -> None:
        settled = results.done + results.failed
        total = results.total
        self.progress.max = max(1, total)
        self.progress.value = settled
        self.progress.description = f"{results.done}/{total}"
        self.progress.bar_style = "danger" if results.failed else ("success" if settled == total else "")


def static_copy(results: Results | None, line: str) -> str:
    """The panel as plain HTML for front ends that cannot show widgets: the latest grid, or the
    magic line before any run."""
    if results is not None:
        return grid_html(results)
    return (
        '<div class="oxen-panel-static" style="font-size:12px;opacity:.8">Oxen image panel '
        "(interactive; run the notebook to use it). As a cell: "
        f"<code>{html.escape(line)}</code></div>"
    )
