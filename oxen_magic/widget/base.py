"""The panel's shared base: the widgets and state every part of it reads, and the cross calls.

`Panel` is assembled from parts with one job each (controls.py, checks.py, run.py, display.py);
they all derive from `PanelBase`, which declares what they share so each part type-checks on its
own. The methods here are placeholders that the real parts, earlier in the MRO, replace.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

if TYPE_CHECKING:
    from ..catalog import ModelInfo
    from ..options import Defaults
    from ..results import Results
    from ..session import Session
    from .gridview import GridView

#: What the magic line starts with; `build_spec` gets the rest.
PREFIX = "%%oxenimage"
_DESC = {"description_width": "110px"}


class PanelBase:
    """Attributes shared by the panel's parts (set in `Panel.__init__`)."""

    shell: Any
    session: Session
    prompt: widgets.Textarea
    models: Any  # SelectMultiple, or ModelsText when the list cannot be read
    seeds: widgets.Text
    aspect_ratio: widgets.Dropdown
    steps: widgets.Text
    input_image: widgets.Text
    extra_options: widgets.Text
    magic_line: widgets.Text
    generate_button: widgets.Button
    stop_button: widgets.Button
    progress: widgets.IntProgress
    status: widgets.HTML
    output: GridView  # one widget per grid row (gridview.py)
    history: widgets.HBox
    messages: dict[str, widgets.HTML]
    result: Results | None
    _schemas: dict[str, ModelInfo] | None
    _models_note: str | None
    _lock: threading.Lock
    _thread: threading.Thread | None
    _busy: bool
    _cancel: threading.Event
    _refreshing: bool
    _line: str
    _errors: dict[str, str]
    entries: list[Any]  # HistoryEntry, newest first
    guidance_knob: Any  # simple.Knob
    about_models: widgets.HTML

    # -- cross calls (implemented by the parts) ----------------------------------------------------
    @property
    def running(self) -> bool:
        raise NotImplementedError

    def _refresh(self, models_changed: bool = False) -> None:
        raise NotImplementedError

    def _set_status(self, text: str, *, error: bool) -> None:
        raise NotImplementedError

    def _buttons(self) -> None:
        raise NotImplementedError

    def _show_progress(self, results: Results) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _apply_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _defaults(self) -> Defaults:
        raise NotImplementedError

    def _user_ns(self) -> dict[str, Any]:
        raise NotImplementedError

    def _roles_note(self) -> str:
        raise NotImplementedError

    def _refresh_picks(self) -> None:
        raise NotImplementedError

    def _no_models_reason(self) -> str:
        return ""

    def _waiting(self) -> str:
        return ""

    def _guidance_words(self) -> list[str]:
        raise NotImplementedError

    def _guidance_names(self) -> set[str]:
        raise NotImplementedError

    def _chosen_infos(self) -> list[ModelInfo]:
        raise NotImplementedError

    def _fitted(self, spec: Any, line: str) -> Any:
        return spec

    def _show_spend(self) -> None:
        return None
