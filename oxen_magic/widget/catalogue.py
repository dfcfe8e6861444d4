"""The panel's model list for people who do not code: grouped by what a model does, with its
price per image, and models that need an input image offered only once one is given.

Plain functions of the model descriptions the panel read when it opened, so they can be tested
without widgets. The groups come from what the API's schemas say (a required `input_image`, an
upscale factor), not from a hand-kept list of ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..catalog import ModelInfo

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


def label(info: ModelInfo) -> str:
    """`flux-2-dev · $0.025 per image` (or `price unknown`): what the list shows."""
    price = f"${info.cost_per_image:.3f} per image" if info.cost_per_image is not None else "price unknown"
    if info.cost_per_image is None and info.cost_per_second is not None:
        price = info.price_text  # `$0.0012/s`: a fine-tuned model, priced by time
    return f"{info.id} · {price}"


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


def spend_line(images: int, cost: float, unpriced: int) -> str:
    """`This session: 12 images, est. $0.084` for the panel's spend label."""
    text = f"This session: {images} image(s) generated, est. ${cost:.3f}"
    if unpriced:
        text += f" + {unpriced} of unknown price"
    return text
