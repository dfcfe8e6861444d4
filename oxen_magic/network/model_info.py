"""What we know about a model: its id, what it takes (request_schema) and what it costs.

Plain data built from the API's model objects, so the planner can validate a sweep before anything
is sent, without knowing where the description came from (the live API, the local hub, or a test).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from oxen_magic.core.money import image_price, price_text

#: Schema names that ask for several images in one request (ideogram-v4's `num_images`; `n` as
#: OpenAI-style APIs name it): the answer's `images` then holds that many, each billed.
COUNT_NAMES = ("num_images", "n", "num_outputs", "number_of_images", "batch_size")


def image_count(schema: dict[str, Any] | None, given: Any) -> tuple[str | None, int]:
    """(the count's name, how many images one request asks for): the value given, else the
    schema's default, else 1. With no schema, a `num_images` given counts as asked."""
    props = properties_of(schema)
    values = given if isinstance(given, dict) else {}
    for name in COUNT_NAMES:
        prop = props.get(name)
        if isinstance(prop, dict) and prop.get("type", "integer") != "integer":
            continue  # an `n` that is not a whole number is not a count
        # With no schema only the documented name counts (an `n` may mean anything there).
        if prop is None and not (schema is None and name == COUNT_NAMES[0] and name in values):
            continue
        value = values.get(name, prop.get("default") if isinstance(prop, dict) else None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return name, value
        return name, 1
    return None, 1


#: Parameters the magic sets itself; `--param` may not override them.
RESERVED = frozenset({"model", "prompt", "response_format", "target_namespace"})


@dataclass(frozen=True)
class ModelInfo:
    """One model object from `GET /api/ai/models` (or `/models/:id`)."""

    id: str
    display_name: str = ""
    description: str = ""
    endpoint: str = ""
    outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    cost_per_image: float | None = None
    pricing: dict[str, Any] | None = field(default=None, compare=False)
    #: `pricing.method: time` (fine-tuned models): USD per second of generation, and the typical
    #: seconds per image when the pricing object gives one (the docs give none: then unknown).
    cost_per_second: float | None = None
    typical_seconds: float | None = None
    request_schema: dict[str, Any] | None = field(default=None, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    #: What was wrong with the description, as short clauses ("its price is unreadable, so
    #: the price is unknown"); the fields at fault are ignored, never trusted.
    notes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> ModelInfo:
        """Build from an API model object; every field is checked, a wrong one ignored (noted)."""
        notes: list[str] = []
        caps = obj.get("capabilities")
        if not isinstance(caps, dict):
            if caps is not None:
                notes.append("its capabilities are not an object, so they are read loosely")
            caps = {"output": caps} if isinstance(caps, list) else {}  # ["text", "image"]
        pricing = obj.get("pricing") if isinstance(obj.get("pricing"), dict) else None
        cost = _price(pricing.get("cost_per_image") if pricing else None, notes)
        timed = pricing is not None and pricing.get("method") == "time"
        per_second = _price(pricing.get("cost_per_second"), notes) if pricing and timed else None
        typical = _number(pricing.get("typical_seconds")) if pricing and timed else None
        schema = clean_schema(schema_of(obj), notes)
        return cls(
            id=_text(obj.get("id")),
            display_name=_text(obj.get("display_name")),
            description=_text(obj.get("description")),
            endpoint=_text(obj.get("endpoint")),
            outputs=_strings(caps.get("output")),
            inputs=_strings(caps.get("input")),
            cost_per_image=cost,
            pricing=pricing,
            cost_per_second=per_second,
            typical_seconds=typical if typical is not None and 0 < typical < 86400 else None,
            request_schema=schema,
            raw=obj,
            notes=tuple(notes),
        )

    @property
    def estimate(self) -> float | None:
        """USD for one image (`money.image_price`): the per-image price, else the per-second price
        times a typical duration when one is known; None when neither is."""
        return image_price(self.cost_per_image, self.cost_per_second, self.typical_seconds)

    @property
    def price_text(self) -> str:
        """`$0.025` (per image), `$0.0012/s` (per second), or `?` (`money.price_text`)."""
        return price_text(self.cost_per_image, self.cost_per_second)

    @property
    def makes_images(self) -> bool:
        return "image" in self.outputs

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        """The schema's `properties` (empty when the schema is unknown)."""
        return properties_of(self.request_schema)

    def takes(self, name: str) -> bool | None:
        """Whether the model accepts parameter `name`; None when its schema is unknown."""
        if self.request_schema is None:
            return None
        return name in self.properties


def schema_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A model object's request schema (`request_schema` or `json_request_schema`), or None."""
    schema = obj.get("request_schema") or obj.get("json_request_schema")
    if isinstance(schema, str):  # some APIs ship the schema as a JSON string
        try:
            schema = json.loads(schema)
        except (ValueError, RecursionError):
            return None
    return schema if isinstance(schema, dict) else None


def properties_of(schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A schema's `properties` (empty when the schema is unknown or malformed)."""
    props = (schema or {}).get("properties")
    return props if isinstance(props, dict) else {}


#: The most a single image may plausibly cost (USD); above it a price is taken as a mistake.
MAX_PRICE = 100.0
_SCALARS = (str, int, float, bool, type(None))


def clean_schema(schema: dict[str, Any] | None, notes: list[str]) -> dict[str, Any] | None:
    """A copy of `schema` that the planner and the panel can trust field by field.

    `properties` that is not an object makes the whole schema unknown (parameters unchecked);
    a property that is not an object, or a `type`, `enum`, `minimum`, `maximum` or `default` of
    the wrong kind, is dropped (that check is skipped) with a note.
    """
    if schema is None:
        return None
    props = schema.get("properties")
    if not isinstance(props, dict):
        notes.append("its schema's 'properties' is not an object, so its parameters are sent unchecked")
        return None
    bad: list[str] = []
    clean: dict[str, dict[str, Any]] = {}
    for name, prop in props.items():
        if not isinstance(name, str) or not isinstance(prop, dict):
            bad.append(str(name))
            continue
        kept = dict(prop)
        kind = kept.get("type")
        if kind is not None and not (
            isinstance(kind, str) or (isinstance(kind, list) and all(isinstance(k, str) for k in kind))
        ):
            del kept["type"]
            bad.append(name)
        enum = kept.get("enum")
        if enum is not None and not (isinstance(enum, list) and all(isinstance(v, _SCALARS) for v in enum)):
            del kept["enum"]
            bad.append(name)
        for bound in ("minimum", "maximum"):
            if bound in kept and kept[bound] is not None and _number(kept[bound]) is None:
                del kept[bound]
                bad.append(name)
        if "default" in kept and not _json_value(kept["default"]):
            del kept["default"]
            bad.append(name)
        clean[name] = kept
    required = schema.get("required")
    if required is not None and not (
        isinstance(required, list) and all(isinstance(r, str) for r in required)
    ):
        notes.append("its schema's 'required' is not a list of names, so it is ignored")
        required = None
    if bad:
        names = ", ".join(sorted(set(bad)))
        notes.append(f"the schema of {names} is malformed, so those values are partly unchecked")
    out = dict(schema)
    out["properties"] = clean
    if required is None:
        out.pop("required", None)
    else:
        out["required"] = list(required)
    return out


def _price(value: Any, notes: list[str]) -> float | None:
    if value is None:
        return None
    cost = _number(value)
    if cost is None or not 0 <= cost <= MAX_PRICE:
        notes.append("its price is not a usable number, so the price is unknown")
        return None
    return cost


def _number(value: Any) -> float | None:
    """A finite int or float (never a bool or a string), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return None
    return number if math.isfinite(number) else None


def _json_value(value: Any, depth: int = 0) -> bool:
    """A scalar, or a short flat list of scalars (what a default may sensibly be)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, list) and depth == 0 and all(_json_value(v, 1) for v in value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)[:200]


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@cache
def bundled_catalogue() -> tuple[dict[str, Any], ...]:
    """The 34 real image models (ids, schemas) shipped with the package, as API objects."""
    text = resources.files("oxen_magic").joinpath("data/oxen-image-models.json").read_text()
    return tuple(json.loads(text)["data"])
