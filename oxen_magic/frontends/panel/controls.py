"""The panel's controls: the model list (or its free-text fallback), the choices each control
offers for the chosen models, and the two-way mapping between the controls and the magic line."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from IPython.core.error import UsageError
from ipywidgets.widgets.trait_types import TypedTuple
from traitlets import Unicode

from oxen_magic.core.errors import OxenError, UsageProblem
from oxen_magic.frontends.panel.base import _DESC, PREFIX
from oxen_magic.frontends.panel.model_groups import listed_infos, model_options
from oxen_magic.frontends.python_api import option_words
from oxen_magic.network.model_info import ModelInfo
from oxen_magic.planning import options

#: Offered when no chosen model lists its aspect ratios but one takes the parameter.
COMMON_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
#: The options that have a control of their own (everything else goes in "More options").
CONTROLLED = ("model", "seed", "aspect_ratio", "steps", "input_image", "list_models")


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


class Controls:
    """The option controls (`prompt`, `models`, `seeds`, `aspect_ratio`, `steps`, `extra_options`,
    `magic_line`) → the magic line, and the choices the chosen models allow.

    `input_image` is the input control's text (it goes into the line like any option); `schemas`
    are the models read when the panel opened (None when the list could not be read)."""

    def __init__(
        self,
        args: Any,
        chosen: Sequence[str],
        ratios: Sequence[str],
        *,
        schemas: dict[str, ModelInfo] | None,
        kind: str,
        input_image: widgets.Text,
    ) -> None:
        self.schemas = schemas
        self.input_image = input_image
        self.prompt = widgets.Textarea(
            value=" ".join(args.prompt).strip(),
            description="Prompt",
            placeholder="a red cube on a white background (--- on its own line separates prompts)",
            style=_DESC,
            layout=widgets.Layout(width="560px", height="80px"),
        )
        self.models = _models_control(schemas, chosen, kind, bool(args.input_image))
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

    def owned(self) -> list[Any]:
        """Every widget this part made (to close them with the panel)."""
        out = [self.prompt, self.models, self.seeds, self.aspect_ratio, self.steps]
        out += [self.extra_options, self.magic_line]
        if isinstance(self.models, ModelsText):
            out.append(self.models.text)
        return out

    def select_models(self, ids: Sequence[str]) -> None:
        """Choose `ids`, adding any the list does not hold (a restored run's private model)."""
        if isinstance(self.models, widgets.SelectMultiple):
            known = [o[1] if isinstance(o, tuple) else o for o in self.models.options]
            missing = [m for m in ids if m not in known]
            if missing:
                self.models.options = [*self.models.options, *((f"{m} · not listed", m) for m in missing)]
        self.models.value = tuple(ids)

    def make_line(self, guidance_words: Sequence[str]) -> str:
        """The `%%oxenimage ...` first line the controls stand for (only the options set)."""
        words = [PREFIX]
        chosen = tuple(self.models.value)
        if chosen:
            words += ["--model", shlex.quote(",".join(chosen))]
        for flag, text in (
            ("--seed", self.seeds.value),
            ("--aspect-ratio", self.aspect_ratio.value or ""),
            ("--steps", self.steps.value),
            ("--input-image", self.input_image.value),
        ):
            if text.strip():
                words += [flag, shlex.quote(text.strip())]
        words += guidance_words
        extra = self.extra_options.value.strip()
        if extra:
            words.append(extra)
        return " ".join(words)

    def chosen_infos(self) -> list[ModelInfo]:
        """The chosen models whose schema is known, in the order chosen."""
        return listed_infos(self.models.value, self.schemas)

    def set_ratio_choices(self, keep: str) -> None:
        """Only the ratios every chosen model allows; a value already chosen stays (flagged)."""
        enums: list[list[str]] = []
        free = not self.schemas  # unknown schemas: offer the common ratios
        for info in self.chosen_infos():
            prop = info.properties.get("aspect_ratio")
            if prop is None:
                continue
            enum = prop.get("enum")
            if isinstance(enum, list) and enum:  # match_input_image needs an input image: not here
                enums.append([str(v) for v in enum if v != "match_input_image"])
            else:
                free = True
        if self.schemas and any(
            m not in self.schemas or self.schemas[m].request_schema is None for m in self.models.value
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

    def set_steps_hint(self) -> None:
        """The Steps text's placeholder: the range every chosen model allows, and its default."""
        props = [info.properties.get("num_inference_steps") for info in self.chosen_infos()]
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


def _models_control(
    schemas: dict[str, ModelInfo] | None, chosen: Sequence[str], kind: str, has_input: bool
) -> Any:
    """The model list of the chosen group, or typed ids when no list could be read."""
    if schemas is None:
        return ModelsText(value=chosen, description="Models")
    offered = model_options(schemas, kind, has_input, chosen)
    return widgets.SelectMultiple(
        options=offered,
        value=tuple(chosen),
        description="Models",
        rows=min(8, max(3, len(offered))),
        style=_DESC,
        layout=widgets.Layout(width="760px"),
    )


def initial_args(line: str, initial: Mapping[str, Any]) -> Any:
    """The `%oxenpanel` line and keyword arguments, read by the `%%oxenimage` grammar."""
    try:
        words = options.split_words(line) + option_words(initial, caller="panel")
        args = options.parse_words(words)
    except UsageProblem as exc:
        raise UsageError(str(exc)) from None
    if args.list_models:
        raise UsageError("%oxenpanel does not list models; use %oxenimage --list-models.")
    prompt = initial.get("prompt")
    if prompt is not None:
        args.prompt = [str(prompt)]
    return args


def _extra_words(args: Any) -> str:
    return shlex.join(options.to_words(args, skip=CONTROLLED))


def fetch_models(session: Any, host: str | None) -> tuple[dict[str, ModelInfo] | None, str | None]:
    """The image models the API lists, by id; None (and why) when the list cannot be read.

    A short-lived client with one quick retry: opening the panel must not hang on a dead host.
    """
    from oxen_magic.network.client import OxenClient
    from oxen_magic.session.pipeline import list_models

    try:
        client = OxenClient(
            session.base_url(host),
            max_retries=1,
            max_wait=2.0,
            timeout=(3.0, 10.0),
            deadline=30.0,
            keys=session.keys,
        )
    except (ValueError, UsageProblem) as exc:
        return None, f"{exc} Type model ids, comma separated."
    try:
        listed, _ = list_models(client)  # details filled in: the list may carry no schemas
    except OxenError as exc:
        return None, f"Could not fetch the model list, so type model ids, comma separated. {exc}"
    finally:
        client.close()
    return {m.id: m for m in listed}, None
