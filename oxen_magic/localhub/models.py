"""The model catalogue the local hub serves (`oxen-api.md`, "GET /api/ai/models").

The 34 bundled image models (their documented request schemas) with per-image prices, one
fine-tuned model whose id holds ':' and '/' (priced per second, as fine-tuned models are), and
two models that make no images, so the client's filtering is testable. `malformed_catalogue()`
gives models with wrong-typed fields for the client's hardening tests.
"""

from __future__ import annotations

import copy
from typing import Any

from oxen_magic.network.model_info import bundled_catalogue

#: The fine-tuned model added to the default catalogue (its id needs URL-encoding in a path).
FINE_TUNED_ID = "oxen:tutorials/cyberpunkart-ft_img_gen_12345"

#: Per-image prices (USD) for the default catalogue; the first three are the documented ones.
_PRICES: dict[str, float] = {
    "flux-2-dev": 0.025,
    "black-forest-labs-flux-2-klein-4b": 0.003,
    "z-image-turbo": 0.002,
    "black-forest-labs-flux-2-klein-9b": 0.006,
    "bytedance-seedream-4-5": 0.04,
    "bytedance-seedream-4": 0.03,
    "bytedance-seedream-5-lite": 0.035,
    "bytedance-seedream-5-pro": 0.05,
    "flux-1-dev": 0.025,
    "flux-2-flex": 0.06,
    "flux-2-pro": 0.03,
    "flux-kontext-dev": 0.025,
    "google-nano-banana-pro": 0.15,
    "gpt-image-1-5": 0.04,
    "gpt-image-2": 0.05,
    "ideogram-v4": 0.06,
    "krea-v2-large-text-to-image": 0.03,
    "nano-banana-2-lite": 0.02,
    "nano-banana-2": 0.067,
    "nano-banana": 0.039,
    "qwen-image-2": 0.05,
    "qwen-image-2512": 0.02,
    "qwen-image-edit-2511": 0.03,
    "qwen-image-edit-plus": 0.03,
    "qwen-image-edit": 0.03,
    "qwen-image": 0.025,
    "sam-3-image": 0.01,
    "topazlabs-bloom-2-image": 0.1,
    "topazlabs-bloom-image": 0.08,
    "topazlabs-image-upscale": 0.08,
    "topazlabs-wonder-3-5-image": 0.1,
    "topazlabs-wonder-3-image": 0.08,
    "xai-grok-imagine-image-edit": 0.022,
    "xai-grok-imagine-image": 0.02,
}
#: The fine-tuned model's price per second (USD).
FINE_TUNED_PER_SECOND = 0.0012
_DEFAULT_PRICE = 0.03
#: The prices above that Oxen documents; every other one is this hub's guess (notebooks/budget.py
#: marks those in the workshop's budget table).
DOCUMENTED_PRICES = frozenset({"flux-2-dev", "black-forest-labs-flux-2-klein-4b", "z-image-turbo"})

_OWNERS: tuple[tuple[str, str], ...] = (
    ("oxen:", "oxen"),
    ("black-forest-labs", "black-forest-labs"),
    ("flux", "black-forest-labs"),
    ("bytedance", "bytedance"),
    ("google", "google"),
    ("nano-banana", "google"),
    ("gpt-", "openai"),
    ("ideogram", "ideogram"),
    ("krea", "krea"),
    ("qwen", "alibaba"),
    ("z-image", "alibaba"),
    ("sam-", "meta"),
    ("topazlabs", "topazlabs"),
    ("xai", "xai"),
)

_NON_IMAGE_MODELS: tuple[dict[str, Any], ...] = (
    {
        "id": "gpt-oss-120b",
        "object": "model",
        "display_name": "GPT-OSS 120B",
        "description": "Open-weight chat model (text in, text out). Not an image model.",
        "owned_by": "openai",
        "model_type": "text_generation",
        "endpoint": "/chat/completions",
        "capabilities": {"input": ["text"], "output": ["text"]},
        "pricing": {
            "method": "token",
            "input_cost_per_million_tokens": 0.15,
            "output_cost_per_million_tokens": 0.6,
        },
        "request_schema": None,
    },
    {
        "id": "wan-2-2-text-to-video",
        "object": "model",
        "display_name": "Wan 2.2 Text to Video",
        "description": "Text-to-video model. Not an image model.",
        "owned_by": "alibaba",
        "model_type": "video_generation",
        "endpoint": "/videos/generate",
        "capabilities": {"input": ["text"], "output": ["video"]},
        "pricing": {"method": "time", "cost_per_second": 0.05},
        "request_schema": None,
    },
)


def _owner(model_id: str) -> str:
    for prefix, owner in _OWNERS:
        if model_id.startswith(prefix):
            return owner
    return "oxen"


def _describe(obj: dict[str, Any]) -> str:
    name = obj.get("display_name") or obj.get("id")
    inputs = (obj.get("capabilities") or {}).get("input") or []
    kind = "Text-to-image and image editing" if "image" in inputs else "Text-to-image"
    return f"{name}: {kind} model."


def default_catalogue() -> list[dict[str, Any]]:
    """The models the hub serves by default: the 34 bundled image models with prices, one
    fine-tuned image model whose id contains ':' and '/', and two models that make no images."""
    models: list[dict[str, Any]] = []
    for source in bundled_catalogue():
        obj = copy.deepcopy(source)
        mid = str(obj["id"])
        obj.setdefault("object", "model")
        obj.setdefault("owned_by", _owner(mid))
        obj.setdefault("model_type", "image_generation")
        obj.setdefault("description", _describe(obj))
        obj["pricing"] = {"method": "per_image", "cost_per_image": _PRICES.get(mid, _DEFAULT_PRICE)}
        models.append(obj)
        if mid == "flux-1-dev":
            tuned = copy.deepcopy(obj)
            tuned.update(
                id=FINE_TUNED_ID,
                display_name="Cyberpunk Art (fine-tuned FLUX.1 [dev])",
                description="FLUX.1 [dev] fine-tuned on the tutorials/cyberpunkart dataset.",
                owned_by="tutorials",
                model_type="image_generation",
                # Fine-tuned models are priced per second of generation (the docs'
                # `pricing.method: time`), with no typical duration given.
                pricing={"method": "time", "cost_per_second": FINE_TUNED_PER_SECOND},
            )
            models.append(tuned)
    models.extend(copy.deepcopy(m) for m in _NON_IMAGE_MODELS)
    return models


def _makes_images(obj: dict[str, Any]) -> bool:
    caps = obj.get("capabilities")
    if not isinstance(caps, dict):
        return True  # be lenient with hand-made catalogues
    return "image" in (caps.get("output") or [])


def malformed_catalogue() -> list[dict[str, Any]]:
    """Image models whose descriptions a careful client must survive: each has one field of the
    wrong type (its id says which). The hub still serves and generates for all of them; the
    client should degrade to "parameters unchecked" or "price unknown", never a traceback."""

    def model(mid: str, **fields: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": mid,
            "object": "model",
            "display_name": f"Malformed: {mid}",
            "description": "A model description with a field of the wrong type.",
            "owned_by": "oxen",
            "model_type": "image_generation",
            "endpoint": "/images/generate",
            "capabilities": {"input": ["text"], "output": ["image"]},
            "pricing": {"method": "per_image", "cost_per_image": 0.01},
            "request_schema": {
                "type": "object",
                "properties": {
                    "prompt": {"type": "string"},
                    "seed": {"type": "integer"},
                    "num_inference_steps": {"type": "integer", "default": 8, "minimum": 1, "maximum": 50},
                },
                "required": ["prompt"],
            },
        }
        obj.update(fields)
        return obj

    def schema(**changes: Any) -> dict[str, Any]:
        base = copy.deepcopy(model("x")["request_schema"])
        base.update(changes)
        return base

    def steps(**changes: Any) -> dict[str, Any]:
        props = copy.deepcopy(schema()["properties"])
        props["num_inference_steps"].update(changes)
        return schema(properties=props)

    return [
        model("malformed-properties-list", request_schema=schema(properties=["prompt", "seed"])),
        model("malformed-properties-string", request_schema=schema(properties="prompt, seed")),
        model("malformed-minimum-string", request_schema=steps(minimum="1", maximum="fifty")),
        model("malformed-default-wrong-type", request_schema=steps(default="eight", type=7)),
        model("malformed-enum-string", request_schema=steps(enum="1, 2, 3")),
        model("malformed-parameter-not-object", request_schema=schema(properties={"seed": "integer"})),
        model("malformed-required-string", request_schema=schema(required="prompt")),
        model("malformed-schema-string", request_schema="{not json"),
        model("malformed-schema-list", request_schema=[{"name": "prompt"}]),
        model("malformed-capabilities-list", capabilities=["text", "image"]),
        model("malformed-capabilities-output-string", capabilities={"input": "text", "output": "image"}),
        model("malformed-price-negative", pricing={"method": "per_image", "cost_per_image": -0.5}),
        model("malformed-price-text", pricing={"method": "per_image", "cost_per_image": "cheap"}),
        model("malformed-price-nan", pricing={"method": "per_image", "cost_per_image": "NaN"}),
        model("malformed-pricing-list", pricing=[0.01]),
        model("malformed-display-name-number", display_name=42, description=None),
    ]
