"""The panel's controls for people who do not code: how many pictures (and from which seed),
steps and guidance as sliders with a "model default" box, and the code behind "Show code".

The magic line stays the single source of truth. These controls only write the `seeds` and
`steps` texts (the command-line syntax, kept behind "Show code" with More options and the line
itself) and the guidance value; reading those texts back sets the controls, so a line from
`%oxenpanel`, a restored run or a hand-written range shows as it is. A text these controls
cannot show (`1,5,9`, `10,20`) is kept, and the note beside them says it is set in the code.

Guidance has a different name per model (`guidance` for flux and qwen, `guidance_scale` for
klein, none for most others). The magic line has one `--param` per name, so the panel writes one
per name among the chosen models (`--param guidance=3 --param guidance_scale=3`); the planner
sends each model only the parameter its schema takes, so every request gets its model's own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from oxen_magic.frontends.panel.base import _DESC, Quiet
from oxen_magic.frontends.panel.model_groups import GUIDANCE_WORDS, guidance_param, known, listed_infos
from oxen_magic.planning.ranges import MAX_RANGE, SEED_MAX

if TYPE_CHECKING:
    from oxen_magic.network.model_info import ModelInfo

SAME, NEW = "same", "new"
_RANGE = re.compile(r"\s*([0-9]{1,10})\s*(?:\.\.\s*([0-9]{1,10})\s*)?")
_RANDOM = re.compile(r"\s*random\s*:\s*([0-9]{1,6})\s*", re.IGNORECASE)
_INT = re.compile(r"\s*([0-9]{1,4})\s*")


def seeds_to_controls(text: str) -> tuple[str, int, int] | None:
    """(mode, how many, first seed) for a seeds text the controls can show, else None.

    "" is one new picture (the server picks its seed), `random:4` four new ones, `3` and `1..4`
    the same pictures on every run."""
    if not text.strip():
        return NEW, 1, 1
    found = _RANDOM.fullmatch(text)
    if found:
        count = int(found.group(1))
        return (NEW, count, 1) if 1 <= count <= MAX_RANGE else None
    found = _RANGE.fullmatch(text)
    if found:
        start = int(found.group(1))
        end = int(found.group(2)) if found.group(2) is not None else start
        if start <= end <= SEED_MAX and end - start < MAX_RANGE:
            return SAME, end - start + 1, start
    return None


def controls_to_seeds(mode: str, count: int, start: int) -> str:
    """The seeds text for the controls: the inverse of `seeds_to_controls`."""
    if mode == NEW:
        return "" if count <= 1 else f"random:{count}"
    return str(start) if count <= 1 else f"{start}..{start + count - 1}"


def _bounds(props: Sequence[Mapping[str, Any]], lo: float, hi: float) -> tuple[float, float]:
    """The range every schema allows (their bounds intersected), or the widest when they conflict."""
    lows = [p["minimum"] for p in props if isinstance(p.get("minimum"), (int, float))]
    highs = [p["maximum"] for p in props if isinstance(p.get("maximum"), (int, float))]
    low, high = (max(lows) if lows else lo), (min(highs) if highs else hi)
    if low > high:
        low, high = min(lows or [lo]), max(highs or [hi])
    return low, high


def _default(props: Sequence[Mapping[str, Any]]) -> float | None:
    """The chosen models' default when they agree on one, else None."""
    values = {p.get("default") for p in props}
    value = values.pop() if len(values) == 1 else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Knob(widgets.HBox):
    """A slider with a "model default" box: `number` is None (send nothing) or the slider's value.

    Moving the slider unticks the box; ticking it goes back to the model's default."""

    def __init__(self, description: str, slider: widgets.Widget, css: str) -> None:
        self.slider = slider
        self.slider.description = description
        self.slider.style = _DESC
        self.slider.continuous_update = False
        self.slider.layout = widgets.Layout(width="420px")
        self.auto = widgets.Checkbox(value=True, description="model default", indent=False)
        self.auto.layout = widgets.Layout(width="130px")
        self.note = widgets.HTML(value="")
        super().__init__([self.slider, self.auto, self.note], layout=widgets.Layout(align_items="center"))
        self.add_class(css)
        self.slider.add_class(f"{css}-slider")
        self.auto.add_class(f"{css}-default")

    @property
    def number(self) -> float | None:
        return None if self.auto.value else self.slider.value

    def parts(self) -> list[widgets.Widget]:
        return [self.slider, self.auto, self.note]


class SimpleControls:
    """How many pictures, steps and guidance without command-line syntax, and "Show code".

    Handed the texts it writes (`seeds`, `steps`), the model list it reads, the schemas, the
    panel's `quiet` flag (its own writes are not the user's) and `refresh` (the guidance value
    is in no text: a change to it asks the panel to rebuild the line)."""

    def __init__(
        self,
        guidance: float | None,
        *,
        seeds: widgets.Text,
        steps: widgets.Text,
        models: Any,
        schemas: dict[str, ModelInfo] | None,
        quiet: Quiet,
        refresh: Callable[[], None],
    ) -> None:
        self.seeds, self.steps, self.models, self.schemas = seeds, steps, models, schemas
        self.quiet, self.refresh = quiet, refresh
        self._syncing = False
        self._make_seed_controls()
        self.steps_knob = Knob("Steps", widgets.IntSlider(min=1, max=50, value=28), "oxen-steps-knob")
        self.guidance_knob = Knob(
            "Guidance", widgets.FloatSlider(min=0.0, max=10.0, step=0.1, value=2.0), "oxen-guidance-knob"
        )
        if guidance is not None:
            self.guidance_knob.auto.value = False
            self.guidance_knob.slider.value = guidance
        self.show_code = widgets.ToggleButton(
            value=False,
            description="Show code",
            icon="code",
            tooltip="The same settings as a %%oxenimage line",
        )
        self.show_code.add_class("oxen-show-code")
        self._wire()
        self.box = widgets.VBox(
            [
                self.seed_mode,
                widgets.HBox(
                    [self.seed_count, self.seed_start, self.seed_note],
                    layout=widgets.Layout(align_items="center"),
                ),
                self.steps_knob,
                self.guidance_knob,
            ]
        )

    def _make_seed_controls(self) -> None:
        self.seed_mode = widgets.ToggleButtons(
            options=[("Same pictures each run", SAME), ("New pictures each run", NEW)],
            value=NEW,
            description="Pictures",
            tooltips=[
                "Numbered seeds: the same pictures (and free from the cache) on every run",
                "Seeds picked at random",
            ],
            style={**_DESC, "button_width": "190px"},
        )
        self.seed_count = widgets.BoundedIntText(
            value=1,
            min=1,
            max=MAX_RANGE,
            description="How many",
            style=_DESC,
            layout=widgets.Layout(width="200px"),
        )
        self.seed_start = widgets.BoundedIntText(
            value=1,
            min=0,
            max=SEED_MAX,
            description="starting at seed",
            style={"description_width": "110px"},
            layout=widgets.Layout(width="240px"),
        )
        self.seed_note = widgets.HTML(value="")
        for widget, css in (
            (self.seed_mode, "oxen-seed-mode"),
            (self.seed_count, "oxen-seed-count"),
            (self.seed_start, "oxen-seed-start"),
        ):
            widget.add_class(css)

    def _wire(self) -> None:
        for widget in (self.seed_mode, self.seed_count, self.seed_start):
            widget.observe(self._seed_controls_changed, names="value")
        self.steps_knob.slider.observe(self._knob_moved, names="value")
        self.steps_knob.auto.observe(self._knob_changed, names="value")
        self.guidance_knob.slider.observe(self._knob_moved, names="value")
        self.guidance_knob.auto.observe(self._knob_changed, names="value")

    def owned(self) -> list[Any]:
        """Every widget this part made (to close them with the panel)."""
        return [
            self.seed_mode,
            self.seed_count,
            self.seed_start,
            self.seed_note,
            *self.steps_knob.parts(),
            self.steps_knob,
            *self.guidance_knob.parts(),
            self.guidance_knob,
            self.show_code,
        ]

    def _quiet(self) -> bool:
        return self._syncing or self.quiet.active

    # -- events --------------------------------------------------------------------------------------
    def _seed_controls_changed(self, _change: Mapping[str, Any]) -> None:
        if self._quiet():
            return
        self.seed_start.disabled = self.seed_mode.value == NEW
        self.seeds.value = controls_to_seeds(
            self.seed_mode.value, self.seed_count.value, self.seed_start.value
        )

    def _knob_moved(self, change: Mapping[str, Any]) -> None:
        if self._quiet():
            return
        knob = self.steps_knob if change.get("owner") is self.steps_knob.slider else self.guidance_knob
        if knob.auto.value:
            knob.auto.value = False  # moving the slider means "this value"; _knob_changed writes
        else:
            self._knob_changed({"owner": knob.auto})

    def _knob_changed(self, change: Mapping[str, Any]) -> None:
        if self._quiet():
            return
        if change.get("owner") is self.steps_knob.auto:
            number = self.steps_knob.number
            self.steps.value = "" if number is None else str(int(number))
        else:
            self.refresh()

    # -- reading the texts back ------------------------------------------------------------------------
    def sync(self) -> None:
        """Set the controls from the seeds and steps texts and the chosen models' schemas."""
        self._syncing = True
        try:
            shown = seeds_to_controls(self.seeds.value)
            if shown is not None:
                mode, count, start = shown
                self.seed_mode.value = mode
                self.seed_count.value = min(count, self.seed_count.max)
                self.seed_start.value = start if mode == SAME else self.seed_start.value
                self.seed_note.value = ""
            else:
                self.seed_note.value = _code_note(f"seeds {self.seeds.value.strip()}")
            self.seed_start.disabled = self.seed_mode.value == NEW
            self._sync_steps()
            self._sync_guidance()
        finally:
            self._syncing = False

    def _sync_steps(self) -> None:
        knob = self.steps_knob
        infos = listed_infos(self.models.value, self.schemas)
        pairs = [(i.id, i.properties.get("num_inference_steps")) for i in infos]
        props = [p for _m, p in pairs if p]
        known = len(infos) == len(self.models.value) and bool(self.models.value)
        knob.layout.display = "none" if known and not props and not self.steps.value.strip() else ""
        low, high = _bounds(props, 1, 100)
        _set_range(knob.slider, int(low), int(high))
        text = self.steps.value
        found = _INT.fullmatch(text)
        if not text.strip():
            knob.auto.value = True
            default = _default(props)
            if default is not None:
                knob.slider.value = int(default)
            knob.note.value = _plain_note(_defaults_differ(pairs)) if default is None and props else ""
        elif found:
            knob.auto.value = False
            knob.slider.value = int(found.group(1))
            knob.note.value = ""
        else:
            knob.note.value = _code_note(f"steps {text.strip()}")

    def _chosen_guidance(self) -> list[tuple[str, Mapping[str, Any]]]:
        """(parameter name, schema) of each chosen model that takes guidance, in model order."""
        found = (guidance_param(known(m, self.schemas)) for m in self.models.value)
        return [g for g in found if g is not None]

    def _sync_guidance(self) -> None:
        knob = self.guidance_knob
        taken = self._chosen_guidance()
        knob.layout.display = "" if taken else "none"  # no chosen model takes guidance: hidden
        if not taken:
            knob.note.value = ""
            return
        props = [p for _n, p in taken]
        low, high = _bounds(props, 0.0, 10.0)
        _set_range(knob.slider, float(low), float(high))
        default = _default(props)
        if knob.auto.value and default is not None:
            knob.slider.value = float(default)
        names = sorted({n for n, _p in taken})
        text = "how closely the picture follows the prompt" + (
            "" if names == ["guidance"] else f" (sent as {' and '.join(names)})"
        )
        if knob.auto.value and default is None:
            text += "; " + _defaults_differ(
                [(m, (guidance_param(known(m, self.schemas)) or ("", None))[1]) for m in self.models.value]
            )
        knob.note.value = _plain_note(text)

    def guidance_words(self) -> list[str]:
        """`--param NAME=VALUE` for each guidance name among the chosen models (none by default)."""
        number = self.guidance_knob.number
        if number is None:
            return []
        names = sorted({n for n, _p in self._chosen_guidance()})
        value = f"{number:g}"
        return [w for name in names for w in ("--param", f"{name}={value}")]

    def guidance_names(self) -> set[str]:
        """The guidance parameter names the chosen models take."""
        return {n for n, _p in self._chosen_guidance()}


def is_guidance(name: str) -> bool:
    """Whether a parameter name means guidance (`guidance`, `guidance_scale`, `cfg_scale`...)."""
    return any(w in name.lower() for w in GUIDANCE_WORDS)


def guidance_from(args: Any) -> float | None:
    """Take `--param guidance=3` (any guidance name) out of a parsed line for the Guidance
    slider; a value that is not a number stays in the line, to be flagged there."""
    kept: list[str] = []
    value: float | None = None
    for item in getattr(args, "param", None) or []:
        name, _eq, text = str(item).partition("=")
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if is_guidance(name.strip()) and math.isfinite(number):
            value = number if value is None else value
        else:
            kept.append(item)
    if getattr(args, "param", None):
        args.param = kept or None
    return value


def _defaults_differ(pairs: Sequence[tuple[str, Mapping[str, Any] | None]]) -> str:
    """`each model's own default: klein 28, z-image-turbo 8` when the chosen models' differ."""
    bits = [f"{m} {p.get('default')}" for m, p in pairs if p and p.get("default") is not None]
    return "each model's own default: " + ", ".join(bits) if bits else "each model's own default"


def _set_range(slider: Any, low: float, high: float) -> None:
    """Change a slider's bounds in an order ipywidgets accepts (min never above max)."""
    if low > slider.max:
        slider.max = high
        slider.min = low
    else:
        slider.min = low
        slider.max = high


def _code_note(what: str) -> str:
    from oxen_magic.frontends.panel.display import _note

    return _note(f"Set in the code ({what}): Show code to change it, or use these controls.")


def _plain_note(text: str) -> str:
    from oxen_magic.frontends.panel.display import _note

    return _note(text)
