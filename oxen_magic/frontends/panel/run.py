"""The panel's run and its history: Generate starts a background thread (`session.prepare`, then
`run.execute`, as the magic does), Stop cancels what has not started, and each finished run is
kept in a strip of thumbnails whose "restore" puts the controls and the grid back."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import ipywidgets as widgets
from IPython.core.error import UsageError

from oxen_magic.core.errors import OxenError, UsageProblem, redact
from oxen_magic.core.money import left_of
from oxen_magic.display.html import esc
from oxen_magic.display.notebook import Throttled
from oxen_magic.display.render import grid_html
from oxen_magic.frontends.panel.base import PREFIX
from oxen_magic.planning import options
from oxen_magic.results.results import Item, Results

if TYPE_CHECKING:
    from oxen_magic.frontends.panel.gridview import GridView
    from oxen_magic.session.session import Session

#: How many earlier runs the history strip keeps.
HISTORY = 5


class RunHost(Protocol):
    """What a run reads and calls on the panel that holds it."""

    result: Results | None
    _errors: dict[str, str]
    _line: str

    def _set_status(self, text: str, *, error: bool) -> None: ...
    def _refresh(self, models_changed: bool = False) -> None: ...
    def _user_ns(self) -> dict[str, Any]: ...
    def _fitted(self, spec: options.Spec, line: str) -> options.Spec: ...
    def _state(self) -> dict[str, Any]: ...
    def _apply_state(self, state: dict[str, Any]) -> None: ...
    def _show_progress(self, results: Results) -> None: ...
    def _refresh_picks(self) -> None: ...
    def _show_spend(self) -> None: ...
    def _waiting(self) -> str: ...
    def _buttons(self) -> None: ...


@dataclass
class HistoryEntry:
    """One finished run: the control values that made it, its magic line and its results."""

    state: dict[str, Any]
    line: str
    results: Results


class Runs:
    """Generate, Stop, wait, restore, and the background thread.

    A part of the panel: it owns the run's thread, the history strip (`history`, `entries`) and
    is handed the session, the widgets it writes and the panel's calls (`RunHost`), which the
    methods below read under the names they have always used."""

    def __init__(
        self, host: RunHost, session: Session, *, prompt: Any, output: GridView, progress: Any
    ) -> None:
        self._host = host
        self.session, self.prompt, self.output, self.progress = session, prompt, output, progress
        self.history = widgets.HBox([])
        self.entries: list[HistoryEntry] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._cancel = threading.Event()
        self._set_status, self._refresh, self._user_ns = host._set_status, host._refresh, host._user_ns
        self._fitted, self._state, self._apply_state = host._fitted, host._state, host._apply_state
        self._show_progress, self._refresh_picks = host._show_progress, host._refresh_picks
        self._show_spend, self._waiting, self._buttons = host._show_spend, host._waiting, host._buttons

    @property
    def result(self) -> Results | None:
        return self._host.result

    @result.setter
    def result(self, results: Results | None) -> None:
        self._host.result = results

    @property
    def _errors(self) -> dict[str, str]:
        return self._host._errors

    @property
    def _line(self) -> str:
        return self._host._line

    @property
    def running(self) -> bool:
        """True while a run (plan check + requests) is going in the background."""
        return self._busy

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run ends; False if it is still going after `timeout` s."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def generate(self) -> bool:
        """What the Generate button does; returns whether a run started.

        Ignored while a run is going (never doubled) and refused while a control holds a problem.
        """
        with self._lock:
            if self.running:
                self._set_status("Already generating; press Stop first to start again.", error=False)
                return False
            self._refresh()
            if self._errors:
                return False
            line = self._line
            try:
                spec = self.session.spec(line[len(PREFIX) :], self.prompt.value, self._user_ns())
                spec = self._fitted(spec, line[len(PREFIX) :])
            except (UsageProblem, UsageError) as exc:
                self._set_status(str(exc), error=True)
                return False
            self._cancel = threading.Event()
            state = self._state()
            self.progress.value, self.progress.max, self.progress.description = 0, 1, "0/…"
            self.progress.bar_style = ""
            self._set_status("Checking the models…", error=False)
            self._busy = True
            self._thread = threading.Thread(
                target=self._work,
                args=(spec, self._cancel, state, line),
                name="oxen-panel",
                daemon=True,
            )
            self._thread.start()
            self._buttons()
            return True

    def stop(self) -> None:
        """What the Stop button does: cancel what has not started and keep what arrived."""
        if self.running:
            self._cancel.set()
            self._set_status("Stopping…", error=False)

    def restore(self, index: int) -> None:
        """Set the controls (and the grid) back to history entry `index` (0 = the newest)."""
        if self.running:
            return
        entry = self.entries[index]
        self._apply_state(entry.state)
        self.result = entry.results
        self.output.value = grid_html(entry.results)
        self._show_progress(entry.results)
        self._set_status("Restored: " + entry.results.summary(), error=False)

    def _work(
        self,
        spec: options.Spec,
        cancel: threading.Event,
        state: dict[str, Any],
        line: str,
    ) -> None:
        """prepare → execute, in this thread; the grid redraws at most every notebook.REDRAW_EVERY s."""
        results: Results | None = None
        problem: str | None = None
        try:
            try:
                run = self.session.prepare(spec)
            except UsageProblem as exc:
                problem = self._plain_refusal(exc)
                return
            except OxenError as exc:
                problem = str(exc)
                return
            self.result = results = run.results
            view = self.output.live(results)  # one widget per row: a redraw sends only what changed
            view.draw()
            self._show_progress(results)
            self._set_status("Generating…", error=False)
            shown = results
            grid = Throttled(view.draw)

            def redraw(item: Item | None) -> None:
                if item is not None:
                    self._show_progress(shown)
                grid(item)

            try:
                run.execute(on_update=redraw, cancel=cancel)
            except OxenError as exc:
                problem = str(exc)
            view.draw(force=True)
            if spec.out:
                self._user_ns()[spec.out] = results
        except Exception as exc:  # a bug must not leave the panel stuck in "running"
            problem = redact(f"Unexpected error: {type(exc).__name__}: {exc}")
        finally:
            self._finish(results, problem, state, line)

    def _finish(self, results: Results | None, problem: str | None, state: dict[str, Any], line: str) -> None:
        if results is not None:
            if self.output.value == "":  # refused before it ran: show the plan (else drawn live)
                self.output.value = grid_html(results)
            self._show_progress(results)
            self._refresh_picks()  # its images can be the next run's input
            self._show_spend()
            if results.done:
                self._remember(HistoryEntry(state=state, line=line, results=results))
        if problem:
            self._set_status(problem, error=True)
        elif results is not None:
            text = results.summary()
            if results.interrupted:
                text = f"Stopped: kept {results.done} of {results.total} images ({text})."
            waiting = self._waiting()  # a control changed during the run: say why Generate is off
            self._set_status(f"{text}\n{waiting}" if waiting else text, error=False)
        self._thread_done()

    def _plain_refusal(self, exc: UsageProblem) -> str:
        """The session's refusal, or for a budget it would pass, what a non-coder can do."""
        text = str(exc)
        try:
            spent = self.session.spend()
        except UsageProblem:
            return text
        if spent.budget <= 0 or "budget" not in text.lower():
            return text
        left = getattr(spent, "left", None)
        left = max(0.0, spent.budget - spent.total) if not isinstance(left, (int, float)) else left
        return (
            f"Not enough budget left for these pictures: {left_of(left, spent.budget)}. "
            "Make fewer pictures or pick a cheaper model (pictures made before are free), "
            "or ask your instructor to raise the budget."
        )

    def _thread_done(self) -> None:
        # Called from the worker just before it exits: buttons must not wait for is_alive().
        self._busy = False
        self._buttons()

    def _remember(self, entry: HistoryEntry) -> None:
        self.entries.insert(0, entry)
        del self.entries[HISTORY:]
        boxes = []
        for index, kept in enumerate(self.entries):
            thumb = next((i.thumb for i in kept.results.items if i.thumb is not None), None)
            image = widgets.Image(value=thumb or b"", format="jpeg", layout=widgets.Layout(width="64px"))
            label = widgets.HTML(
                value=(
                    '<code style="font-size:10px;line-height:1.3;display:block">'
                    f"{esc(kept.line[len(PREFIX) :].strip())}</code>"
                ),
                layout=widgets.Layout(max_width="220px"),
            )
            button = widgets.Button(
                description="restore",
                tooltip="Set the controls and the grid back to this run",
                layout=widgets.Layout(width="80px"),
            )
            button.add_class("oxen-restore")
            button.on_click(lambda _b, i=index: self.restore(i))
            box = widgets.VBox([image, label, button], layout=widgets.Layout(margin="0 8px 0 0"))
            box.add_class("oxen-history-entry")
            boxes.append(box)
        old = self.history.children
        self.history.children = tuple(boxes)
        for box in old:
            for child in box.children:
                child.close()
            box.close()
