"""What a model's schema requires of a line, and where a request with an input image goes.

Checked by the planner before anything is sent: a required field the line does not give
(`input_image` above all: the editing and upscaling models cannot work from text), an input image
for a text-only model, several images for a model that takes one. Each refusal is one sentence
naming the option to add or change.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import UsageProblem
from .inputs import is_list

if TYPE_CHECKING:
    from .catalog import ModelInfo
    from .options import Spec

GENERATE_PATH = "/api/ai/images/generate"
EDIT_PATH = "/api/ai/images/edit"
#: The option that sets each request field, for "add --x" messages.
FLAGS = {
    "seed": "--seed",
    "aspect_ratio": "--aspect-ratio",
    "num_inference_steps": "--steps",
    "input_image": "--input-image",
}


def request_path(info: ModelInfo | None) -> str:
    """Where a request with an input image goes: the model's `endpoint` under /api/ai."""
    endpoint = info.endpoint if info is not None else ""
    if re.fullmatch(r"/images/[a-z0-9_-]+", endpoint or ""):
        return "/api/ai" + endpoint
    return EDIT_PATH


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
