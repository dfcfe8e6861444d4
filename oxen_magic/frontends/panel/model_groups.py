"""The panel's model list for people who do not code: grouped by what a model does, with its
price per image, and models that need an input image offered only once one is given.

Plain functions of the model descriptions the panel read when it opened, so they can be tested
without widgets. The groups come from what the API's schemas say (a required `input_image`, an
upscale factor), not from a hand-kept list of ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from oxen_magic.core.money import dollars, left_of
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue

TEXT, EDIT, UPSCALE = "Text to image", "Edit or reference", "Upscale"
KINDS = (TEXT, EDIT, UPSCALE)
#: Parameters only an upscaler or enhancer takes.
_UPSCALE_PARAMS = frozenset({"upscale_factor", "scale", "enhancement_strength", "enhance_model"})


def needs_input(info: ModelInfo) -> bool:
    """Whether the model cannot run without an input image (its schema requires one)."""
    required = (info.request_schema or {}).get("required")
    return isinstance(required, list) and "input_image" in required


def kind_of(info: ModelInfo) -> str:
    """Text to image, edit or reference, or upscale: what a learner would pick the model for.

    A model that requires an input image and takes an upscale-like parameter (or says so in its
    id) upscales; one that otherwise requires an input image, or is named an edit model, edits;
    the rest start from text (many of them take an optional reference image too).
    """
    props = set(info.properties)
    if needs_input(info) and (props & _UPSCALE_PARAMS or "upscale" in info.id or "topaz" in info.id):
        return UPSCALE
    if needs_input(info) or "edit" in info.id or "kontext" in info.id:
        return EDIT
    return TEXT


def price_words(info: ModelInfo) -> str:
    """`$0.025 per image`, `$0.0012/s` for a model priced by time (a fine-tuned one), or
    `price unknown` when the API lists none."""
    if info.cost_per_image is not None:
        return f"{dollars(info.cost_per_image)} per image"
    return info.price_text if info.cost_per_second is not None else "price unknown"


def default_steps(info: ModelInfo) -> int | None:
    """The model's default `num_inference_steps` (its schema's default), or None."""
    value = info.properties.get("num_inference_steps", {}).get("default")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


#: At or below this many default steps a model is called quick: a picture's time grows with
#: its steps (z-image-turbo's 8 against flux's 28-30 in the catalogue).
QUICK_STEPS = 10


def speed_words(info: ModelInfo) -> str:
    """`quick (8 steps)`, `30 steps`, or "" when the schema gives no default step count.

    Only what the schema says: no model lists a time per image, so its default number of steps
    (what a picture's time grows with) stands in for speed."""
    steps = default_steps(info)
    if steps is None:
        return ""
    return f"quick ({steps} steps)" if steps <= QUICK_STEPS else f"{steps} steps"


def use_words(info: ModelInfo) -> str:
    """What a learner would pick the model for, from its group and what it does with an image."""
    kind = kind_of(info)
    if kind == UPSCALE:
        return "enlarges an image"
    if kind == EDIT:
        return "changes an input image" if needs_input(info) else "edits, or follows reference images"
    return "from text or reference images" if "input_image" in info.properties else "from text"


def label(info: ModelInfo) -> str:
    """`flux-2-dev · from text or reference images · 30 steps · $0.025 per image`: the list's
    plain words beside the id (what it is for, its speed, its price), all from the catalogue."""
    words = [info.id, use_words(info), speed_words(info), price_words(info)]
    return " · ".join(w for w in words if w)


@cache
def _bundled() -> dict[str, ModelInfo]:
    return {str(obj.get("id")): ModelInfo.from_api(dict(obj)) for obj in bundled_catalogue()}


def known(model_id: str, schemas: Mapping[str, ModelInfo] | None) -> ModelInfo | None:
    """What the panel knows of a model: the API's description, its schema filled in from the
    bundled catalogue when the API gave none (or the list could not be read); None if neither
    knows it. The API's words and price always win; the bundled data has no price."""
    live = (schemas or {}).get(model_id)
    if live is not None and live.request_schema is not None:
        return live
    bundled = _bundled().get(model_id)
    if bundled is None:
        return live
    return dataclasses.replace(live, request_schema=bundled.request_schema) if live else bundled


def listed_infos(model_ids: Sequence[str], schemas: Mapping[str, ModelInfo] | None) -> list[ModelInfo]:
    """The chosen models whose schema the API's list gave, in the order chosen (the controls'
    choices follow only what the API said, not the bundled data `known` falls back to)."""
    found = ((schemas or {}).get(m) for m in model_ids)
    return [info for info in found if info is not None and info.request_schema is not None]


def about(info: ModelInfo | None, model_id: str) -> str:
    """One plain sentence on a chosen model for the note under the list (text, to be escaped):
    its display name, what it is for, its default steps and price, and the API's description."""
    if info is None:
        return (
            f"{model_id}: in neither the model list nor the bundled catalogue, so nothing is known about it."
        )
    name = f" ({info.display_name})" if info.display_name and info.display_name != info.id else ""
    steps = default_steps(info)
    bits = [use_words(info)]
    if steps is not None:
        bits.append(f"{steps} steps by default" + (", quick" if steps <= QUICK_STEPS else ""))
    bits.append(price_words(info))
    text = f"{info.id}{name}: " + "; ".join(bits) + "."
    if info.description:
        text += " " + info.description.strip()
    return text


#: Parameter names that mean "how closely to follow the prompt" (the catalogue has `guidance` for
#: flux and qwen, `guidance_scale` for klein); other APIs call it cfg.
GUIDANCE_WORDS = ("guidance", "cfg")


def guidance_param(info: ModelInfo | None) -> tuple[str, dict[str, Any]] | None:
    """The model's guidance parameter (its name and schema), or None when it has none."""
    if info is None:
        return None
    for name, prop in info.properties.items():
        lowered = name.lower()
        if any(w in lowered for w in GUIDANCE_WORDS) and prop.get("type") in ("number", "integer"):
            return name, prop
    return None


def model_options(
    schemas: Mapping[str, ModelInfo], kind: str, has_input: bool, chosen: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(label, id) pairs of one group, in the API's order; models that need an input image only
    when one is given. Models already chosen stay listed (so a selection is never lost)."""
    out: list[tuple[str, str]] = []
    for model_id, info in schemas.items():
        if not info.makes_images and info.outputs:
            continue
        own = kind_of(info)
        # with an input image, a text-to-image model that takes one optionally is a reference model
        reference = kind == EDIT and own == TEXT and has_input and "input_image" in info.properties
        if (own == kind and (has_input or not needs_input(info))) or reference:
            out.append((label(info), model_id))
    listed = {v for _l, v in out}
    for model_id in chosen:
        if model_id not in listed:
            known = schemas.get(model_id)
            out.append((label(known) if known else f"{model_id} · not listed", model_id))
    return out


def spend_line(
    images: int, cost: float, unpriced: int, budget: float = 0.0, left: float | None = None
) -> str:
    """`This session: 12 image(s) generated, est. $0.084 · $0.416 left of $0.500` for the panel's
    spend label (the budget part only when one is set; `left` defaults to budget minus cost)."""
    text = f"This session: {images} image(s) generated, est. {dollars(cost)}"
    if unpriced:
        text += f" + {unpriced} of unknown price"
    if budget > 0:
        remaining = max(0.0, budget - cost if left is None else left)
        text += f" · {left_of(remaining, budget)}"
    return text
