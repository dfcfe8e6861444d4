"""What a model's schema requires of a line, and where a request with an input image goes.

Checked by the planner before anything is sent: a required field the line does not give
(`input_image` above all: the editing and upscaling models cannot work from text), an input image
for a text-only model, several images for a model that takes one. Each refusal is one sentence
naming the option to add or change. Also what each model does with an input image (`role`,
the `--list-models` wording `role_text`, and whether `input_image` goes as a list, `is_list`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from oxen_magic.core.errors import UsageProblem
from oxen_magic.network.imageroutes import EDIT_PATH, GENERATE_PATH
from oxen_magic.network.model_info import image_count

if TYPE_CHECKING:
    from oxen_magic.network.model_info import ModelInfo
    from oxen_magic.planning.options import Spec

#: The option that sets each request field, for "add --x" messages.
FLAGS = {
    "seed": "--seed",
    "aspect_ratio": "--aspect-ratio",
    "num_inference_steps": "--steps",
    "input_image": "--input-image",
}


#: Read timeout (seconds) for requests that can run long: an input image to edit, upscale or
#: use as reference (the topazlabs upscalers above all). Text-to-image keeps the client's 180 s.
SLOW_READ = 600.0
#: Words in a model id that mark a slow model even without an input image in the request.
SLOW_WORDS = ("upscale", "topazlabs")


def takes_image(info: ModelInfo | None) -> bool | None:
    """Whether a model takes an input image: its schema, else its capabilities; None unknown."""
    if info is None:
        return None
    if info.request_schema is not None and "input_image" in info.properties:
        return True
    if "image" in info.inputs:
        return True
    return False if info.request_schema is not None or info.inputs else None


def request_path(info: ModelInfo | None, has_input: bool = True) -> str:
    """Where a request goes. One carrying an input image goes to `/api/ai/images/edit` (the
    documented route for input images) whatever the model's `endpoint` field says: the models
    reference documents only `/images/generate` there, so an edit model may read that. A
    text-only request keeps the generate route. (A 404/405 is tried once on the other route by
    the client, which remembers the one that worked.)"""
    if has_input and takes_image(info) is not False:
        return EDIT_PATH
    return GENERATE_PATH


def read_timeout(info: ModelInfo | None, model: str, has_input: bool) -> float | None:
    """A longer read timeout for slow requests (edits, upscalers); None: the client's default."""
    lowered = model.lower()
    if has_input or any(word in lowered for word in SLOW_WORDS):
        return SLOW_READ
    return None


def count_param(info: ModelInfo | None, params: Mapping[str, object]) -> tuple[str | None, int]:
    """The schema property that asks for several images, and how many one request asks for
    (`model_info.image_count`): the value given (`--param num_images=4`), else the schema's
    default, else 1."""
    return image_count(info.request_schema if info is not None else None, dict(params))


def _given(spec: Spec, name: str) -> bool:
    values = {"seed": spec.seeds, "aspect_ratio": spec.aspect_ratios, "num_inference_steps": spec.steps}
    return all(v is not None for v in values.get(name, (None,)))


def check_inputs(spec: Spec, info: ModelInfo | None, model: str) -> None:
    """Refuse, before anything is sent, what a model's schema says cannot work.

    A required field the line does not give (`input_image` above all, or a prompt), an input
    image for a text-only model, or several images for a model that takes one.
    """
    given = [g for g in spec.input_images if g]
    missing_input = any(g is None for g in spec.input_images)
    no_prompt = any(not p for p in spec.prompts)
    if info is None or info.request_schema is None:
        if no_prompt:
            raise UsageProblem(
                f"{model} needs a prompt as far as we know (its parameters are unknown); write "
                "one in the cell body.",
                field="prompt",
            )
        return
    props = info.properties
    if given and "input_image" not in props:
        raise UsageProblem(
            f"{model} does not take an input image; remove --input-image, or pick a model that "
            "does (%oxenimage --list-models shows them).",
            field="input_image",
        )
    if any(len(g) > 1 for g in given) and not is_list(info, 2):
        raise UsageProblem(
            f"{model} takes one input image per request; separate images with commas (one "
            "request each) instead of joining them with +.",
            field="input_image",
        )
    required = info.request_schema.get("required")
    for name in required if isinstance(required, list) else ():
        if name == "input_image" and missing_input:
            raise UsageProblem(
                f"{model} needs an input image; add --input-image with a file, an https:// URL "
                "or a variable holding an image or a result (best = grid[0]).",
                field="input_image",
            )
        if name == "prompt" and no_prompt:
            raise UsageProblem(
                f"{model} needs a prompt; write one in the cell body (or on the %oxenimage line).",
                field="prompt",
            )
        if name in ("model", "prompt", "input_image"):
            continue
        if name in FLAGS:
            if not _given(spec, name):
                raise UsageProblem(f"{model} requires {name}; add {FLAGS[name]}.", field=name)
            continue
        if name not in dict(spec.params) and name in props:
            raise UsageProblem(f"{model} requires {name}; add --param {name}=...", field=name)


# -- what the models do with an input image ----------------------------------------------------
def role(info: ModelInfo | None) -> str:
    """`required`, `one`, `several` (reference images), `none` (text only) or `unknown`."""
    if info is None or info.request_schema is None:
        return "unknown"
    prop = info.properties.get("input_image")
    if not isinstance(prop, dict):
        return "none"
    required = info.request_schema.get("required")
    if isinstance(required, list) and "input_image" in required:
        return "required"
    return "several" if prop.get("type") == "array" else "one"


def role_text(info: ModelInfo | None) -> str:
    """The `--list-models` / panel wording of `role`."""
    if info is not None and role(info) == "required":
        many = info.properties["input_image"].get("type") == "array"
        return "required (several)" if many else "required"
    return {"one": "optional", "several": "optional (several)", "none": "text only"}.get(role(info), "?")


def is_list(info: ModelInfo | None, count: int) -> bool:
    """Whether `input_image` goes as a JSON list: as the schema types it, else when several."""
    prop = info.properties.get("input_image") if info is not None else None
    if isinstance(prop, dict) and prop.get("type") in ("array", "string"):
        return prop.get("type") == "array"
    return count > 1
