"""`%oxenpanel` / `oxen_magic.panel()`: a point-and-click front end to the same pipeline.

The panel's single source of truth is the magic line. The controls are written out as the
`%%oxenimage ...` first line a learner could type (shown in `magic_line`), and generating parses
that line with `options.build_spec` and runs it through `pipeline.prepare` / `pipeline.execute`,
exactly as the cell magic does. Only how progress is shown differs.

Live validation on every control change is pure: the grammar (`build_spec`) plus the model
schemas read once when the panel opens (`GET /api/ai/models`), checked with `plan.make_plan`.
No generate request is sent until Generate is pressed, and Generate stays disabled while any
control holds a problem.

Generating runs in a background thread, so the kernel stays free: the grid in `output` fills in
as images arrive, `progress` counts them, and `stop_button` cancels what has not started (what
arrived is kept). `wait()` blocks until the run ends; `running` says whether one is going.

Where widgets cannot be shown (nbviewer, a static HTML export), the panel's display carries a
`text/html` copy of the latest grid (or of its magic line before any run).
"""

from __future__ import annotations

import html
import shlex
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.core.error import UsageError
from ipywidgets.widgets.trait_types import TypedTuple
from traitlets import Any as AnyTrait
from traitlets import Unicode

from . import options
from .catalog import ModelInfo
from .errors import OxenError, UsageProblem
from .plan import make_plan, suggest
from .render import grid_html

if TYPE_CHECKING:
    from .magic import OxenMagic
    from .results import Item, Results

#: What the magic line starts with; `build_spec` gets the rest.
PREFIX = "%%oxenimage"
#: Seconds between two redraws of the grid while it fills in (the last one always draws).
#: How many earlier runs the history strip keeps.
HISTORY = 5
#: Offered when no chosen model lists its aspect ratios but one takes the parameter.
COMMON_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
#: The options that have their own control; the rest of a line goes to `extra_options`.
CONTROLLED = ("model", "seed", "aspect_ratio", "steps")
_DESC = {"description_width": "110px"}


class ModelsText(widgets.VBox):
    """The free-text fallback for `Panel.models` when the model list cannot be fetched.

    Ids are typed comma separated into `.text`; `.value` is the tuple of ids, like the
    `SelectMultiple` it replaces, and setting `.value` rewrites the text.
    """

    value = TypedTuple(trait=Unicode(), help="The model ids typed, in order, without duplicates")
    description = Unicode("Models")

    def __init__(self, value: Sequence[str] = (), description: str = "Models", **kwargs: Any) -> None:
        self.text = widgets.Text(
            description=description,
            placeholder="model ids, comma separated",
            style=_DESC,
            layout=widgets.Layout(width="560px"),
        )
        super().__init__(children=[self.text], **kwargs)
        self.description = description
        self._syncing = False
        self.text.observe(self._from_text, names="value")
        self.observe(self._to_text, names="value")
        self.value = tuple(value)

    @staticmethod
    def split(text: str) -> tuple[str, ...]:
        out: list[str] = []
        for part in text.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
        return tuple(out)

    def _from_text(self, change: Mapping[str, Any]) -> None:
        if not self._syncing:
            self._syncing = True
            try:
                self.value = self.split(change["new"])
            finally:
                self._syncing = False

    def _to_text(self, change: Mapping[str, Any]) -> None:
        if not self._syncing:
            self._syncing = True
            try:
                self.text.value = ", ".join(change["new"])
            finally:
                self._syncing = False


@dataclass
class HistoryEntry:
    """One finished run: the control values that made it, its magic line and its results."""

    state: dict[str, Any]
    line: str
    results: Results


class Panel(widgets.VBox):
    """The image-grid panel. See the module docstring; the public widgets are listed below.

    `prompt`, `models` (`.value`: tuple of ids), `seeds`, `aspect_ratio`, `steps`,
    `extra_options` (any other `%%oxenimage` options, e.g. `--size 128 --no-cache`),
    `generate_button`, `stop_button`, `progress`, `status`, `output`, `magic_line`, `history`,
    `messages` (name → the message widget next to that control), and the trait `result`.
    """

    result = AnyTrait(None, allow_none=True, help="The latest Results (what %%oxenimage returns)")

    def __init__(self, magic: OxenMagic | None = None, line: str = "", **initial: Any) -> None:
        if magic is None:
            from IPython import get_ipython

            from .magic import OxenMagic

            magic = OxenMagic(shell=get_ipython())
        self.magic = magic
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._cancel = threading.Event()
        self._refreshing = False
        self._line = PREFIX
        self._errors: dict[str, str] = {}
        self.entries: list[HistoryEntry] = []

        args = _initial_args(line, initial)
        defaults = magic.defaults()
        host = args.host or defaults.host
        try:
            chosen = options.split_list(args.model, "model") if args.model else (defaults.model,)
            ratios = options.split_list(args.aspect_ratio, "aspect ratio") if args.aspect_ratio else ()
        except UsageProblem as exc:
            raise UsageError(str(exc)) from None

        self.prompt = widgets.Textarea(
            value=" ".join(args.prompt).strip(),
            description="Prompt",
            placeholder="a red cube on a white background (--- on its own line separates prompts)",
            style=_DESC,
            layout=widgets.Layout(width="560px", height="80px"),
        )
        self._schemas, models_note = _fetch_models(host)
        self.models: Any
        if self._schemas is None:
            self.models = ModelsText(value=chosen, description="Models")
        else:
            ids = list(self._schemas)
            ids += [m for m in chosen if m not in ids]
            self.models = widgets.SelectMultiple(
                options=ids,
                value=tuple(chosen),
                description="Models",
                rows=min(8, max(3, len(ids))),
                style=_DESC,
                layout=widgets.Layout(width="560px"),
            )
        self.seeds = widgets.Text(
            value=args.seed or "",
            description="Seeds",
            placeholder="7, 1..4, 1..10:3, 1,5,9 or random:4 (empty: the server picks)",
            style=_DESC,
            layout=widgets.Layout(width="560px"),
        )
        ratio = ",".join(ratios)
        self.aspect_ratio = widgets.Dropdown(
            options=[("model default", "")] + ([(ratio, ratio)] if ratio else []),
            value=ratio,
            description="Aspect ratio",
            style=_DESC,
        )
        self.steps = widgets.Text(
            value=args.steps or "",
            description="Steps",
            placeholder="model default",
            style=_DESC,
            layout=widgets.Layout(width="360px"),
        )
        self.extra_options = widgets.Text(
            value=_extra_words(args),
            description="More options",
            placeholder="e.g. --size 128 --cols 4 --no-cache --param guidance=3.5",
            style=_DESC,
            layout=widgets.Layout(width="560px"),
        )
        self.magic_line = widgets.Text(
            description="Magic line",
            tooltip="The same grid as a cell: paste this line above your prompt",
            style=_DESC,
            layout=widgets.Layout(width="95%", min_width="560px"),
        )
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
        self.output = widgets.HTML(value="")
        self.history = widgets.HBox([])

        names = ("prompt", "models", "seeds", "aspect_ratio", "steps", "extra_options")
        self.messages: dict[str, widgets.HTML] = {name: widgets.HTML(value="") for name in names}
        if models_note:
            self.messages["models"].value = _note(models_note)
        self._models_note = models_note

        for widget, css in (
            (self.prompt, "oxen-prompt"),
            (self.models, "oxen-models"),
            (self.seeds, "oxen-seeds"),
            (self.aspect_ratio, "oxen-aspect-ratio"),
            (self.steps, "oxen-steps"),
            (self.extra_options, "oxen-extra-options"),
            (self.magic_line, "oxen-magic-line"),
            (self.generate_button, "oxen-generate"),
            (self.stop_button, "oxen-stop"),
            (self.progress, "oxen-progress"),
            (self.status, "oxen-status"),
            (self.output, "oxen-output"),
            (self.history, "oxen-history"),
        ):
            widget.add_class(css)
        self.progress.add_class("oxen-panel-progress")  # the grid HTML has an .oxen-progress too
        if isinstance(self.models, ModelsText):
            self.models.add_class("oxen-models-text")
            self.models.text.add_class("oxen-models-input")
        for name, message in self.messages.items():
            message.add_class("oxen-message")
            message.add_class(f"oxen-{name.replace('_', '-')}-message")

        def row(control: Any, name: str) -> widgets.Box:
            return widgets.HBox([control, self.messages[name]], layout=widgets.Layout(align_items="center"))

        super().__init__(
            children=[
                row(self.prompt, "prompt"),
                row(self.models, "models"),
                row(self.seeds, "seeds"),
                row(self.aspect_ratio, "aspect_ratio"),
                row(self.steps, "steps"),
                row(self.extra_options, "extra_options"),
                self.magic_line,
                widgets.HBox(
                    [self.generate_button, self.stop_button, self.progress, self.status],
                    layout=widgets.Layout(align_items="center"),
                ),
                self.output,
                self.history,
            ]
        )
        self.add_class("oxen-panel")

        for control in (self.prompt, self.models, self.seeds, self.aspect_ratio, self.steps):
            control.observe(self._changed, names="value")
        self.extra_options.observe(self._changed, names="value")
        self.magic_line.observe(self._keep_line, names="value")
        self.generate_button.on_click(lambda _b: self.generate())
        self.stop_button.on_click(lambda _b: self.stop())
        self._refresh(models_changed=True)

    # -- public -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a run (plan check + requests) is going in the background."""
        return self._busy

    @property
    def errors(self) -> dict[str, str]:
        """The current problems, by control name (`prompt`, `seeds`, ..., `general`)."""
        return dict(self._errors)

    @property
    def cell_text(self) -> str:
        """The whole equivalent cell: the magic line, then the prompt."""
        return f"{self._line}\n{self.prompt.value}"

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
                spec = options.build_spec(
                    line[len(PREFIX) :], self.prompt.value, self._user_ns(), self.magic.defaults()
                )
                client = self.magic.client(spec.host, spec.concurrency)
                cache = self.magic.cache()
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
                args=(spec, client, cache, self._cancel, state, line),
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

    def close(self) -> None:
        """Stop any run, then close the widgets."""
        if hasattr(self, "messages"):  # not a panel whose __init__ failed
            self._cancel.set()
            self.wait(5)
            for child in self._all_widgets():
                child.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget view, plus a plain-HTML copy for front ends that cannot show widgets."""
        data = super()._repr_mimebundle_(**kwargs)
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

    # -- controls → line --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt.value,
            "models": tuple(self.models.value),
            "seeds": self.seeds.value,
            "aspect_ratio": self.aspect_ratio.value,
            "steps": self.steps.value,
            "extra_options": self.extra_options.value,
        }

    def _apply_state(self, state: Mapping[str, Any]) -> None:
        self._refreshing = True
        try:
            self.prompt.value = state["prompt"]
            self._select_models(state["models"])
            self.seeds.value = state["seeds"]
            self.steps.value = state["steps"]
            self.extra_options.value = state["extra_options"]
            self._set_ratio_choices(keep=state["aspect_ratio"])
        finally:
            self._refreshing = False
        self._refresh(models_changed=True)

    def _select_models(self, ids: Sequence[str]) -> None:
        if isinstance(self.models, widgets.SelectMultiple):
            known = list(self.models.options)
            missing = [m for m in ids if m not in known]
            if missing:
                self.models.options = known + missing
        self.models.value = tuple(ids)

    def make_line(self) -> str:
        """The `%%oxenimage ...` first line the controls stand for (only the options set)."""
        words = [PREFIX]
        chosen = tuple(self.models.value)
        if chosen:
            words += ["--model", shlex.quote(",".join(chosen))]
        for flag, text in (
            ("--seed", self.seeds.value),
            ("--aspect-ratio", self.aspect_ratio.value or ""),
            ("--steps", self.steps.value),
        ):
            if text.strip():
                words += [flag, shlex.quote(text.strip())]
        extra = self.extra_options.value.strip()
        if extra:
            words.append(extra)
        return " ".join(words)

    def _changed(self, change: Mapping[str, Any]) -> None:
        if not self._refreshing:
            self._refresh(models_changed=change.get("owner") is self.models)

    def _keep_line(self, change: Mapping[str, Any]) -> None:
        """`magic_line` is read-only: an edit in the browser is put back (copying still works)."""
        if change["new"] != self._line:
            self.magic_line.value = self._line

    def _refresh(self, models_changed: bool = False) -> None:
        """Recompute the choices, the line and the problems after a control changed."""
        if self._refreshing:
            return
        self._refreshing = True
        try:
            if models_changed:
                self._set_ratio_choices(keep=self.aspect_ratio.value)
                self._set_steps_hint()
            self._line = self.make_line()
            self.magic_line.value = self._line
            self._validate()
        finally:
            self._refreshing = False
        self._buttons()

    def _chosen_infos(self) -> list[ModelInfo]:
        schemas = self._schemas or {}
        return [
            info
            for info in (schemas.get(m) for m in self.models.value)
            if info is not None and info.request_schema is not None
        ]

    def _set_ratio_choices(self, keep: str) -> None:
        """Only the ratios every chosen model allows; a value already chosen stays (flagged)."""
        enums: list[list[str]] = []
        free = not self._schemas  # unknown schemas: offer the common ratios
        for info in self._chosen_infos():
            prop = info.properties.get("aspect_ratio")
            if prop is None:
                continue
            enum = prop.get("enum")
            if isinstance(enum, list) and enum:  # match_input_image needs an input image: not here
                enums.append([str(v) for v in enum if v != "match_input_image"])
            else:
                free = True
        if self._schemas and any(
            m not in self._schemas or self._schemas[m].request_schema is None for m in self.models.value
        ):
            free = True
        if enums:
            allowed = [v for v in enums[0] if all(v in e for e in enums[1:])]
        else:
            allowed = list(COMMON_RATIOS) if free else []
        choices = [("model default", "")] + [(v, v) for v in allowed]
        if keep and keep not in allowed:
            choices.append((keep, keep))
        self.aspect_ratio.options = choices
        self.aspect_ratio.value = keep
        self.aspect_ratio.disabled = not allowed and not keep

    def _set_steps_hint(self) -> None:
        props = [info.properties.get("num_inference_steps") for info in self._chosen_infos()]
        taken = [p for p in props if isinstance(p, dict)]
        if not taken:
            all_known = bool(props) and len(props) == len(self.models.value)
            self.steps.placeholder = "not used by these models" if all_known else "model default"
            return
        lows = [p["minimum"] for p in taken if isinstance(p.get("minimum"), int)]
        highs = [p["maximum"] for p in taken if isinstance(p.get("maximum"), int)]
        defaults = {p.get("default") for p in taken}
        hint = "model default"
        if lows or highs:
            lo = max(lows) if lows else 1
            hi = min(highs) if highs else 1000
            hint = f"{lo}–{hi}" if lo <= hi else "no value all chosen models allow"
            hint += "; empty: model default"
        if len(defaults) == 1 and None not in defaults:
            hint += f" ({defaults.pop()})"
        self.steps.placeholder = hint

    def _validate(self) -> None:
        """Fill `self._errors` and the messages; pure (no request is sent)."""
        errors: dict[str, str] = {}
        variables = self._user_ns()
        prompt = self.prompt.value
        if not prompt.strip():
            errors["prompt"] = "Write a prompt first."
        else:
            try:
                texts = options.split_prompts(prompt)
                if any(not t for t in texts):
                    raise UsageProblem("A prompt between --- lines is empty; write one or remove the ---.")
                for text in texts:
                    options.fill_template(text, variables)
            except UsageProblem as exc:
                errors["prompt"] = str(exc)
        if not self.models.value:
            errors["models"] = "Pick at least one model."
        if self.seeds.value.strip():
            try:
                options.parse_seeds(self.seeds.value)
            except UsageProblem as exc:
                errors["seeds"] = str(exc)
        if self.steps.value.strip():
            try:
                options.parse_ints(self.steps.value, "steps", lo=1, hi=1000)
            except UsageProblem as exc:
                errors["steps"] = str(exc)
        problem = _extra_problem(self.extra_options.value)
        if problem:
            errors["extra_options"] = problem
        if not errors:
            self._check_line(errors, variables)
        self._errors = errors
        for name, message in self.messages.items():
            if name in errors:
                message.value = _error(errors[name])
            elif name == "models" and self._models_notice():
                message.value = _note(self._models_notice())
            else:
                message.value = ""
        if "general" in errors:
            self._set_status(errors["general"], error=True)
        elif not self.running:
            self._set_status(self._summary, error=False)

    def _models_notice(self) -> str:
        """Why the list could not be read, or the chosen ids it does not hold (checked at Generate:
        a private or fine-tuned model may exist without being listed)."""
        if self._schemas is None:
            return self._models_note or ""
        unlisted = [m for m in self.models.value if m not in self._schemas]
        return " ".join(
            f"{suggest(m, list(self._schemas))} (not in the list; checked when you press Generate)"
            for m in unlisted
        )

    def _check_line(self, errors: dict[str, str], variables: Mapping[str, Any]) -> None:
        """The whole line through the grammar, then against the schemas read at open."""
        self._summary = ""
        try:
            spec = options.build_spec(
                self._line[len(PREFIX) :], self.prompt.value, variables, self._defaults()
            )
        except UsageProblem as exc:
            errors["general"] = str(exc)
            return
        schemas = self._schemas or {}
        try:
            plan = make_plan(spec, {m: schemas.get(m) for m in spec.models})
        except UsageProblem as exc:
            text = str(exc)
            where = {"aspect_ratio": "aspect_ratio", "num_inference_steps": "steps", "seed": "seeds"}.get(
                exc.field or "", "general"
            )
            if where == "general" and spec.params:
                where = "extra_options"
            errors[where] = text
            return
        count = len(plan.requests)
        bits = [f"Ready: {count} image{'s' if count != 1 else ''}"]
        cost = plan.cost_line()
        if cost:
            bits.append(cost)
        self._summary = " · ".join(bits) + "".join(f"<br>{html.escape(n)}" for n in plan.notes)

    def _defaults(self) -> options.Defaults:
        return self.magic.defaults()

    def _user_ns(self) -> dict[str, Any]:
        shell = getattr(self.magic, "shell", None)
        return shell.user_ns if shell is not None else {}

    # -- display state ----------------------------------------------------------------------------
    _summary = ""

    def _set_status(self, text: str, *, error: bool) -> None:
        if error:
            self.status.value = _error(text)
        else:
            self.status.value = f'<span class="oxen-status-text" style="font-size:12px">{text}</span>'

    def _buttons(self) -> None:
        running = self.running
        self.generate_button.disabled = running or bool(self._errors)
        self.stop_button.disabled = not running
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

    def _all_widgets(self) -> list[Any]:
        out = [
            self.prompt,
            self.models,
            self.seeds,
            self.aspect_ratio,
            self.steps,
            self.extra_options,
            self.magic_line,
            self.generate_button,
            self.stop_button,
            self.progress,
            self.status,
            self.output,
            self.history,
            *self.messages.values(),
        ]
        if isinstance(self.models, ModelsText):
            out.append(self.models.text)
        return out

    # -- the background run -----------------------------------------------------------------------
    def _work(
        self,
        spec: options.Spec,
        client: Any,
        cache: Any,
        cancel: threading.Event,
        state: dict[str, Any],
        line: str,
    ) -> None:
        """prepare → execute, in this thread; the grid redraws at most every runner.REDRAW_EVERY s."""
        from .pipeline import execute, prepare
        from .runner import Throttled

        results: Results | None = None
        problem: str | None = None
        try:
            try:
                results = prepare(spec, client, cache)
            except (UsageProblem, OxenError) as exc:
                problem = str(exc)
                return
            self.result = results
            self.output.value = grid_html(results)
            self._show_progress(results)
            self._set_status("Generating…", error=False)
            shown = results
            grid = Throttled(lambda: setattr(self.output, "value", grid_html(shown)))

            def redraw(item: Item | None) -> None:
                if item is not None:
                    self._show_progress(shown)
                grid(item)

            try:
                execute(results, spec, client, cache, on_update=redraw, cancel=cancel)
            except OxenError as exc:
                problem = str(exc)
            if spec.out:
                self._user_ns()[spec.out] = results
        except Exception as exc:  # a bug must not leave the panel stuck in "running"
            problem = client.scrub(f"Unexpected error: {type(exc).__name__}: {exc}")
        finally:
            self._finish(results, problem, state, line)

    def _finish(self, results: Results | None, problem: str | None, state: dict[str, Any], line: str) -> None:
        if results is not None:
            self.output.value = grid_html(results)
            self._show_progress(results)
            if results.done:
                self._remember(HistoryEntry(state=state, line=line, results=results))
        if problem:
            self._set_status(problem, error=True)
        elif results is not None:
            text = html.escape(results.summary())
            if results.interrupted:
                text = f"Stopped: kept {results.done} of {results.total} images ({text})."
            self._set_status(text, error=False)
        self._thread_done()

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
                    f"{html.escape(kept.line[len(PREFIX) :].strip())}</code>"
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


# -- helpers -----------------------------------------------------------------------------------------
def _error(text: str) -> str:
    return f'<span class="oxen-error-text" style="color:#c62828;font-size:12px">{html.escape(text)}</span>'


def _note(text: str) -> str:
    return f'<span class="oxen-note-text" style="opacity:.7;font-size:12px">{html.escape(text)}</span>'


def _option_words(initial: Mapping[str, Any]) -> list[str]:
    """`Panel(model=[...], seed=range(1, 5), size=128, no_cache=True)` → options-line words."""
    words: list[str] = []
    known = set(options.OPTION_NAMES)
    for key, value in initial.items():
        if value is None or key == "prompt":
            continue
        name = {"models": "model", "seeds": "seed", "aspect_ratios": "aspect_ratio", "params": "param"}.get(
            key, key
        )
        flag = "--" + name.replace("_", "-")
        if flag not in known or flag == "--list-models":
            raise TypeError(f"panel() got an unexpected keyword argument {key!r}")
        if isinstance(value, bool):
            if value:
                words.append(flag)
            continue
        if name == "param" and isinstance(value, Mapping):
            for k, v in value.items():
                words += [flag, f"{k}={v}"]
            continue
        if isinstance(value, range):
            last = value[-1] if len(value) else value.start
            text = f"{value.start}..{last}" + (f":{value.step}" if value.step != 1 else "")
        elif isinstance(value, (list, tuple, set, frozenset)):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        words += [flag, text]
    return words


def _initial_args(line: str, initial: Mapping[str, Any]) -> Any:
    """The `%oxenpanel` line and keyword arguments, read by the `%%oxenimage` grammar."""
    try:
        words = options.split_words(line) + _option_words(initial)
        args = options.parse_words(words)
    except UsageProblem as exc:
        raise UsageError(str(exc)) from None
    if args.list_models:
        raise UsageError("%oxenpanel does not list models; use %oxenimage --list-models.")
    prompt = initial.get("prompt")
    if prompt is not None:
        args.prompt = [str(prompt)]
    return args


#: The options that have a control of their own (everything else goes in "More options").
_CONTROLLED = ("model", "seed", "aspect_ratio", "steps", "list_models")


def _extra_words(args: Any) -> str:
    return shlex.join(options.to_words(args, skip=_CONTROLLED))


def _extra_problem(text: str) -> str | None:
    """A problem with the "More options" text, or None (the options with controls are refused)."""
    if not text.strip():
        return None
    try:
        words = options.split_words(text)
        args = options.parse_words(words)
    except UsageProblem as exc:
        return str(exc)
    for dest, label in (
        ("model", "Models"),
        ("seed", "Seeds"),
        ("aspect_ratio", "Aspect ratio"),
        ("steps", "Steps"),
    ):
        if getattr(args, dest):
            flag = "--" + dest.replace("_", "-")
            return f"Set {flag} with the {label} control above, not here."
    if args.list_models:
        return "--list-models is for %oxenimage; run it in a cell."
    if args.prompt:
        return f"Unexpected words {' '.join(args.prompt)!r}; the prompt goes in the Prompt box."
    return None


def _fetch_models(host: str | None) -> tuple[dict[str, ModelInfo] | None, str | None]:
    """The image models the API lists, by id; None (and why) when the list cannot be read.

    A short-lived client with one quick retry: opening the panel must not hang on a dead host.
    """
    from .client import OxenClient

    try:
        client = OxenClient(host, max_retries=1, max_wait=2.0, timeout=(3.0, 10.0))
    except ValueError as exc:
        return None, f"{exc} Type model ids, comma separated."
    try:
        listed = client.models()
    except OxenError as exc:
        return None, f"Could not fetch the model list, so type model ids, comma separated. {exc}"
    finally:
        client.close()
    return {m.id: m for m in listed}, None
