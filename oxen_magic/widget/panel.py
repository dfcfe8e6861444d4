"""The `Panel` widget: lays out the controls and wires their events; the parts do the work."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.core.error import UsageError
from traitlets import Any as AnyTrait

from .. import options
from ..errors import UsageProblem
from .base import _DESC, PREFIX
from .checks import Checks
from .classroom import KINDS, Classroom
from .controls import Controls, ModelsText, _extra_words, _fetch_models, _initial_args
from .display import Display, _note
from .gridview import GridView
from .input_control import InputControls
from .model_groups import guidance_param, known, model_options
from .run import HistoryEntry, Runs
from .simple import SimpleControls, guidance_from

if TYPE_CHECKING:
    from ..session import Session


class Panel(Runs, Checks, Controls, SimpleControls, InputControls, Classroom, Display, widgets.VBox):
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
        from ..session import current_session

        if shell is None and magic is not None:
            shell = magic.shell
        if shell is None:
            from IPython import get_ipython

            shell = get_ipython()
        self.shell = shell
        self.session = session or current_session()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._cancel = threading.Event()
        self._refreshing = False
        self._line = PREFIX
        self._errors: dict[str, str] = {}
        self.entries: list[HistoryEntry] = []

        args = _initial_args(line, initial)
        defaults = self.session.defaults()
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
        self._schemas, models_note = _fetch_models(self.session, host)
        # --param guidance=3 goes to the Guidance slider when a chosen model takes guidance
        takes = any(guidance_param(known(m, self._schemas)) for m in chosen)
        guidance = guidance_from(args) if takes else None
        self.kind = widgets.ToggleButtons(
            options=KINDS,
            value=self._initial_kind(chosen),
            description="What",
            tooltips=["Make a picture from a prompt", "Change or follow an input image", "Enlarge an image"],
            style=_DESC,
        )
        self.models: Any
        if self._schemas is None:
            self.models = ModelsText(value=chosen, description="Models")
            self.kind.disabled = True
            self.kind.layout.display = "none"  # no list to group: model ids are typed
        else:
            offered = model_options(self._schemas, self.kind.value, bool(args.input_image), chosen)
            self.models = widgets.SelectMultiple(
                options=offered,
                value=tuple(chosen),
                description="Models",
                rows=min(8, max(3, len(offered))),
                style=_DESC,
                layout=widgets.Layout(width="760px"),
            )
        self.about_models = widgets.HTML(
            value="", layout=widgets.Layout(margin="0 0 0 114px", max_width="760px")
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
        input_helpers = self._make_input_controls(",".join(args.input_image or ()))
        simple = self._make_simple_controls(guidance)
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
        self.output = GridView()
        self.history = widgets.HBox([])
        self._make_save_and_spend()

        names = ("prompt", "models", "seeds", "aspect_ratio", "steps", "input_image", "extra_options")
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
            (self.kind, "oxen-kind"),
            (self.save_folder, "oxen-save-folder"),
            (self.save_button, "oxen-save"),
            (self.spend, "oxen-spend"),
            (self.about_models, "oxen-about-models"),
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

        # the command-line syntax, shown on request ("Show code")
        self.code_box = widgets.VBox(
            [
                row(self.seeds, "seeds"),
                row(self.steps, "steps"),
                row(self.extra_options, "extra_options"),
                self.magic_line,
            ],
            layout=widgets.Layout(display="none"),
        )
        self.code_box.add_class("oxen-code")
        super().__init__(
            children=[
                row(self.prompt, "prompt"),
                self.kind,
                row(self.models, "models"),
                self.about_models,
                simple,
                row(self.aspect_ratio, "aspect_ratio"),
                row(self.input_image, "input_image"),
                input_helpers,
                self.show_code,
                self.code_box,
                widgets.HBox(
                    [self.generate_button, self.stop_button, self.progress, self.status],
                    layout=widgets.Layout(align_items="center"),
                ),
                # the grid is fitted to about this width; anything wider scrolls inside the panel
                widgets.Box([self.output], layout=widgets.Layout(width="100%", overflow="auto")),
                widgets.HBox(
                    [self.save_folder, self.save_button, self.spend],
                    layout=widgets.Layout(align_items="center"),
                ),
                self.history,
            ]
        )
        self.add_class("oxen-panel")

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
        self._refresh(models_changed=True)
        self._show_spend()  # what is spent (and left of a budget) before any run

    # -- public -----------------------------------------------------------------------------------
    @property
    def errors(self) -> dict[str, str]:
        """The current problems, by control name (`prompt`, `seeds`, ..., `general`)."""
        return dict(self._errors)

    @property
    def cell_text(self) -> str:
        """The whole equivalent cell: the magic line, then the prompt."""
        return f"{self._line}\n{self.prompt.value}"

    def close(self) -> None:
        """Stop any run, then close the widgets."""
        if hasattr(self, "messages"):  # not a panel whose __init__ failed
            self._cancel.set()
            self.wait(5)
            for child in self._all_widgets():
                child.close()
        super().close()

    def _changed(self, change: Mapping[str, Any]) -> None:
        if not self._refreshing:
            owner = change.get("owner")
            if owner in (self.input_image, self.extra_options):  # an input image given or taken away
                self._set_model_choices()
            self._refresh(models_changed=owner in (self.models, self.input_image, self.extra_options))

    def _kind_changed(self, change: Mapping[str, Any]) -> None:
        if not self._refreshing:
            self._set_model_choices(kind_changed=True)
            self._refresh(models_changed=True)

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
            self._sync_simple()
            self._line = self.make_line()
            self.magic_line.value = self._line
            self._validate()
        finally:
            self._refreshing = False
        self._buttons()

    def _defaults(self) -> options.Defaults:
        return self.session.defaults()

    def _user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

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
            self.kind,
            self.save_folder,
            self.save_button,
            self.spend,
            *self.messages.values(),
            *self._input_widgets(),
            *self._simple_widgets(),
            self.about_models,
            self.code_box,
        ]
        if isinstance(self.models, ModelsText):
            out.append(self.models.text)
        return out
