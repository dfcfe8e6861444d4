"""The `Panel` widget: builds its parts, lays them out and wires their events.

Each part is a small class with one job, handed the widgets it reads and the calls it makes:
`Controls` (the option controls ↔ the magic line), `SimpleControls` (how many pictures, the
steps and guidance sliders, Show code), `InputControl` (the input image), `Classroom` (model
groups, Save, spend), `Checks` (live validation), `StatusDisplay` (status, buttons, progress),
`GridView` (the grid) and `Runs` (the background run and its history). The panel holds the
state they share (the magic line, the problems, the latest results) and the calls between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.core.error import UsageError
from traitlets import Any as AnyTrait

from oxen_magic.core.errors import UsageProblem
from oxen_magic.frontends.panel.base import PREFIX, Quiet
from oxen_magic.frontends.panel.checks import Checks, waiting
from oxen_magic.frontends.panel.classroom import Classroom
from oxen_magic.frontends.panel.controls import Controls, fetch_models, initial_args
from oxen_magic.frontends.panel.display import StatusDisplay, _note, static_copy
from oxen_magic.frontends.panel.gridview import GridView
from oxen_magic.frontends.panel.input_control import InputControl
from oxen_magic.frontends.panel.layout import arrange, mark
from oxen_magic.frontends.panel.model_groups import guidance_param, known
from oxen_magic.frontends.panel.run import HistoryEntry, Runs
from oxen_magic.frontends.panel.simple import SimpleControls, guidance_from
from oxen_magic.planning import options

if TYPE_CHECKING:
    from oxen_magic.results.results import Results
    from oxen_magic.session.session import Session

#: The controls that have a message beside them, by name (also the keys of `errors`).
MESSAGES = ("prompt", "models", "seeds", "aspect_ratio", "steps", "input_image", "extra_options")


class Panel(widgets.VBox):
    """The image-grid panel. See the module docstring; the public widgets are listed below.

    `prompt`, `models` (`.value`: tuple of ids), `seeds`, `aspect_ratio`, `steps`,
    `input_image` (the `--input-image` text; `input_upload` and `input_pick` fill it in),
    `extra_options` (any other `%%oxenimage` options, e.g. `--size 128 --no-cache`),
    `generate_button`, `stop_button`, `progress`, `status`, `output`, `magic_line`, `history`,
    `messages` (name → the message widget next to that control), and the trait `result`;
    for people who do not code, `kind` (what the models do: text to image, edit or reference,
    upscale), `about_models` (plain words on the chosen models), `seed_mode`, `seed_count` and
    `seed_start` (how many pictures, from which seed: they write `seeds`), `steps_knob` and
    `guidance_knob` (a slider and a "model default" box; guidance is sent under each chosen
    model's own parameter name), `show_code` (shows `seeds`, `steps`, `extra_options` and
    `magic_line`), `save_folder` and `save_button` (PNGs and a contact sheet), `spend`.
    """

    result = AnyTrait(None, allow_none=True, help="The latest Results (what %%oxenimage returns)")
    code_box: widgets.VBox  # made by layout.arrange

    def __init__(
        self,
        shell: Any = None,
        line: str = "",
        *,
        session: Session | None = None,
        magic: Any = None,
        **initial: Any,
    ) -> None:
        """`shell`: the IPython shell whose variables fill `{name}` and receive `--out` (default:
        the running one). `session`: where defaults, clients, cache and spend live (default: the
        process's). `magic=` is accepted for older callers and only lends its shell."""
        from oxen_magic.session.session import current_session

        self.shell = _shell(shell, magic)
        self.session = session or current_session()
        self.quiet = Quiet()
        self._line = PREFIX
        self._errors: dict[str, str] = {}
        args, chosen, ratios = _read_line(line, initial, self.session)
        schemas, models_note = fetch_models(self.session, args.host or self.session.defaults().host)
        self._build_parts(args, chosen, ratios, schemas, models_note)
        super().__init__(children=arrange(self))
        mark(self)
        self._wire()
        self._refresh(models_changed=True)
        self._show_spend()  # what is spent (and left of a budget) before any run

    def _build_parts(
        self, args: Any, chosen: tuple[str, ...], ratios: tuple[str, ...], schemas: Any, note: str | None
    ) -> None:
        """Build the parts, each handed what it reads and the calls it makes, and name their
        widgets on the panel (the public names listed in the class docstring)."""
        self.messages = {name: widgets.HTML(value="") for name in MESSAGES}
        if note:
            self.messages["models"].value = _note(note)
        self.display = StatusDisplay()
        self.classroom = Classroom(
            self.session, schemas, chosen, quiet=self.quiet, set_status=self._set_status
        )
        self.inputs = InputControl(
            ",".join(args.input_image or ()),
            user_ns=self._user_ns,
            message=self.messages["input_image"],
            result=lambda: self.result,
        )
        kind = self.classroom.kind.value
        # --param guidance=3 goes to the Guidance slider when a chosen model takes guidance (taken
        # out of the words before the controls read them)
        takes = any(guidance_param(known(m, schemas)) for m in chosen)
        guidance = guidance_from(args) if takes else None
        self.controls = Controls(
            args, chosen, ratios, schemas=schemas, kind=kind, input_image=self.inputs.input_image
        )
        c = self.controls
        self.simple = SimpleControls(
            guidance,
            seeds=c.seeds,
            steps=c.steps,
            models=c.models,
            schemas=schemas,
            quiet=self.quiet,
            refresh=self._refresh,
        )
        self.checks = Checks(
            self.session,
            c,
            self.messages,
            guidance=self.simple,
            user_ns=self._user_ns,
            no_models_reason=lambda: self.classroom.no_models_reason(c.models.value, self.inputs.given()),
            models_note=note,
        )
        self.output = GridView()
        self.runs = Runs(
            self, self.session, prompt=c.prompt, output=self.output, progress=self.display.progress
        )
        self._name_widgets()

    def _name_widgets(self) -> None:
        """The parts' widgets under the panel's public names (tests and notebooks use them)."""
        c, s, i, k, d = self.controls, self.simple, self.inputs, self.classroom, self.display
        self.prompt, self.models, self.seeds, self.aspect_ratio = c.prompt, c.models, c.seeds, c.aspect_ratio
        self.steps, self.extra_options, self.magic_line = c.steps, c.extra_options, c.magic_line
        self.input_image, self.input_upload, self.input_pick = i.input_image, i.input_upload, i.input_pick
        self.seed_mode, self.seed_count, self.seed_start = s.seed_mode, s.seed_count, s.seed_start
        self.seed_note, self.steps_knob, self.guidance_knob = s.seed_note, s.steps_knob, s.guidance_knob
        self.show_code = s.show_code
        self.kind, self.save_folder, self.save_button, self.spend = (
            k.kind,
            k.save_folder,
            k.save_button,
            k.spend,
        )
        self.generate_button, self.stop_button = d.generate_button, d.stop_button
        self.progress, self.status = d.progress, d.status
        self.about_models = self.checks.about_models
        self.history, self.entries = self.runs.history, self.runs.entries

    def _wire(self) -> None:
        """The events: a control changed, the group switched, Save, Generate, Stop."""
        for control in (
            self.prompt,
            self.models,
            self.seeds,
            self.aspect_ratio,
            self.steps,
            self.input_image,
        ):
            control.observe(self._changed, names="value")
        self.observe(lambda _change: self._refresh_picks(), names="result")  # restore() sets it
        self.extra_options.observe(self._changed, names="value")
        self.kind.observe(self._kind_changed, names="value")
        self.save_button.on_click(lambda _b: self.save())
        self.magic_line.observe(self._keep_line, names="value")
        self.generate_button.on_click(lambda _b: self.generate())
        self.stop_button.on_click(lambda _b: self.stop())
        self.show_code.observe(self._code_toggled, names="value")

    # -- public -----------------------------------------------------------------------------------
    @property
    def errors(self) -> dict[str, str]:
        """The current problems, by control name (`prompt`, `seeds`, ..., `general`)."""
        return dict(self._errors)

    @property
    def cell_text(self) -> str:
        """The whole equivalent cell: the magic line, then the prompt."""
        return f"{self._line}\n{self.prompt.value}"

    @property
    def running(self) -> bool:
        """True while a run (plan check + requests) is going in the background."""
        return self.runs.running

    def generate(self) -> bool:
        """What the Generate button does; returns whether a run started (see `Runs.generate`)."""
        return self.runs.generate()

    def stop(self) -> None:
        """What the Stop button does: cancel what has not started and keep what arrived."""
        self.runs.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run ends; False if it is still going after `timeout` s."""
        return self.runs.wait(timeout)

    def restore(self, index: int) -> None:
        """Set the controls (and the grid) back to history entry `index` (0 = the newest)."""
        self.runs.restore(index)

    def save(self, folder: str | Path | None = None) -> list[Path]:
        """What the Save button does: the latest grid's PNGs and `contact-sheet.png` into a folder."""
        return self.classroom.save(self.result, folder)

    def make_line(self) -> str:
        """The `%%oxenimage ...` first line the controls stand for (only the options set)."""
        return self.controls.make_line(self.simple.guidance_words())

    def close(self) -> None:
        """Stop any run, then close the widgets."""
        if hasattr(self, "runs"):  # not a panel whose __init__ failed
            self.runs.stop()
            self.wait(5)
            for child in self._all_widgets():
                child.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget view, plus a plain-HTML copy for front ends that cannot show widgets."""
        data = super()._repr_mimebundle_(**kwargs)
        if data is None:
            return None
        data["text/html"] = static_copy(self.result, self._line)
        return data

    # -- events -----------------------------------------------------------------------------------
    def _changed(self, change: Mapping[str, Any]) -> None:
        if not self.quiet.active:
            owner = change.get("owner")
            if owner in (self.input_image, self.extra_options):  # an input image given or taken away
                self.classroom.set_model_choices(self.models, self.inputs.given())
            self._refresh(models_changed=owner in (self.models, self.input_image, self.extra_options))

    def _kind_changed(self, change: Mapping[str, Any]) -> None:
        if not self.quiet.active:
            self.classroom.set_model_choices(self.models, self.inputs.given(), kind_changed=True)
            self._refresh(models_changed=True)

    def _keep_line(self, change: Mapping[str, Any]) -> None:
        """`magic_line` is read-only: an edit in the browser is put back (copying still works)."""
        if change["new"] != self._line:
            self.magic_line.value = self._line

    def _code_toggled(self, change: Mapping[str, Any]) -> None:
        self.code_box.layout.display = "" if change["new"] else "none"

    # -- the calls the parts make (see run.RunHost) -----------------------------------------------
    def _refresh(self, models_changed: bool = False) -> None:
        """Recompute the choices, the line and the problems after a control changed."""
        if self.quiet.active:
            return
        with self.quiet:
            if models_changed:
                self.controls.set_ratio_choices(keep=self.aspect_ratio.value)
                self.controls.set_steps_hint()
            self.simple.sync()
            self._line = self.make_line()
            self.magic_line.value = self._line
            self._validate()
        self._buttons()

    def _validate(self) -> None:
        """The problems of the controls (pure: no request is sent), and the status they give."""
        self._errors = self.checks.validate(self._line)
        if "general" in self._errors:
            self._set_status(self._errors["general"], error=True)
        elif not self.running:
            self._set_status(self._waiting() or self.checks.summary, error=False)

    def _state(self) -> dict[str, Any]:
        """The control values that make a run (kept with it in the history)."""
        return {
            "prompt": self.prompt.value,
            "models": tuple(self.models.value),
            "seeds": self.seeds.value,
            "aspect_ratio": self.aspect_ratio.value,
            "steps": self.steps.value,
            "input_image": self.input_image.value,
            "extra_options": self.extra_options.value,
            "guidance": self.guidance_knob.number,
        }

    def _apply_state(self, state: Mapping[str, Any]) -> None:
        """Set the controls back to a history entry's values."""
        with self.quiet:
            self.prompt.value = state["prompt"]
            self.controls.select_models(state["models"])
            self.seeds.value = state["seeds"]
            self.steps.value = state["steps"]
            self.input_image.value = state.get("input_image", "")
            self.extra_options.value = state["extra_options"]
            guidance = state.get("guidance")
            self.guidance_knob.auto.value = guidance is None
            if guidance is not None:
                self.guidance_knob.slider.value = guidance
            self.controls.set_ratio_choices(keep=state["aspect_ratio"])
        self._refresh(models_changed=True)

    def _set_status(self, text: str, *, error: bool) -> None:
        self.display.set_status(text, error=error)

    def _buttons(self) -> None:
        saveable = self.result is not None and self.result.done
        self.display.buttons(
            running=self.running,
            blocked=bool(self._errors),
            saveable=saveable,
            save=self.save_button,
            history=self.history,
        )

    def _show_progress(self, results: Results) -> None:
        self.display.show_progress(results)

    def _refresh_picks(self) -> None:
        self.inputs.refresh_picks()

    def _show_spend(self) -> None:
        self.classroom.show_spend()

    def _waiting(self) -> str:
        return waiting(self._errors)

    def _fitted(self, spec: options.Spec, line: str) -> options.Spec:
        return self.classroom.fitted(spec, line)

    def _user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _all_widgets(self) -> list[Any]:
        return [
            *self.controls.owned(),
            *self.display.owned(),
            self.output,
            self.history,
            *self.classroom.owned(),
            *self.messages.values(),
            *self.inputs.owned(),
            *self.simple.owned(),
            self.about_models,
            self.code_box,
        ]


def _shell(shell: Any, magic: Any) -> Any:
    """The shell given, else the magic's, else the running one."""
    if shell is None and magic is not None:
        shell = magic.shell
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    return shell


def _read_line(
    line: str, initial: Mapping[str, Any], session: Session
) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """The `%oxenpanel` line read: its parsed words, the models chosen and the aspect ratios."""
    args = initial_args(line, initial)
    try:
        chosen = options.split_list(args.model, "model") if args.model else (session.defaults().model,)
        ratios = options.split_list(args.aspect_ratio, "aspect ratio") if args.aspect_ratio else ()
    except UsageProblem as exc:
        raise UsageError(str(exc)) from None
    return args, tuple(chosen), tuple(ratios)


__all__ = ["HistoryEntry", "Panel"]
