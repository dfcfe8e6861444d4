"""How the panel shows its state: the status line, the buttons, the progress bar, and the
plain-HTML copy for front ends that cannot show widgets (nbviewer, a static HTML export)."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..cells import NO_MATH, esc
from ..render import grid_html
from ..results import Results
from .base import PanelBase


def _error(text: str) -> str:
    return f'<span class="oxen-error-text {NO_MATH}" style="color:#c62828;font-size:12px">{esc(text)}</span>'


def _note(text: str) -> str:
    return f'<span class="oxen-note-text {NO_MATH}" style="opacity:.7;font-size:12px">{esc(text)}</span>'


class Display(PanelBase):
    """Status, buttons, progress and the static copy."""

    def _set_status(self, text: str, *, error: bool) -> None:
        """Plain text (escaped here, whatever it holds: a file name, a server's message); each
        line of it on a line of its own."""
        if error:
            self.status.value = _error(text)
        else:
            lines = "<br>".join(esc(line) for line in text.split("\n"))
            self.status.value = (
                f'<span class="oxen-status-text {NO_MATH}" style="font-size:12px">{lines}</span>'
            )

    def _buttons(self) -> None:
        running = self.running
        self.generate_button.disabled = running or bool(self._errors)
        self.stop_button.disabled = not running
        save = getattr(self, "save_button", None)
        if save is not None:
            save.disabled = running or self.result is None or not self.result.done
        for box in self.history.children:
            for child in box.children:
                if isinstance(child, widgets.Button):
                    child.disabled = running

    def _show_progress(self, results: Results) -> None:
        settled = results.done + results.failed
        total = results.total
        self.progress.max = max(1, total)
        self.progress.value = settled
        self.progress.description = f"{results.done}/{total}"
        self.progress.bar_style = "danger" if results.failed else ("success" if settled == total else "")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget view, plus a plain-HTML copy for front ends that cannot show widgets."""
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]  # the widget's own
        if data is None:
            return None
        if self.result is not None:
            static = grid_html(self.result)
        else:
            static = (
                '<div class="oxen-panel-static" style="font-size:12px;opacity:.8">Oxen image panel '
                "(interactive; run the notebook to use it). As a cell: "
                f"<code>{html.escape(self._line)}</code></div>"
            )
        data["text/html"] = static
        return data
