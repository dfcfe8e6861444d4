"""What we know about a model: its id, what it takes (request_schema) and what it costs.

Plain data built from the API's model objects, so the planner can validate a sweep before anything
is sent, without knowing where the description came from (the live API, the local hub, or a test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

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
    request_schema: dict[str, Any] | None = field(default=None, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> ModelInfo:
        """Build from an API model object; tolerant of missing or oddly typed fields."""
        caps = obj.get("capabilities") or {}
        pricing = obj.get("pricing") if isinstance(obj.get("pricing"), dict) else None
        cost = pricing.get("cost_per_image") if pricing else None
        schema = schema_of(obj)
        return cls(
            id=str(obj.get("id", "")),
            display_name=str(obj.get("display_name") or ""),
            description=str(obj.get("description") or ""),
            endpoint=str(obj.get("endpoint") or ""),
            outputs=tuple(str(x) for x in caps.get("output") or ()),
            inputs=tuple(str(x) for x in caps.get("input") or ()),
            cost_per_image=float(cost) if isinstance(cost, (int, float)) else None,
            pricing=pricing,
            request_schema=schema,
            raw=obj,
        )

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
        except ValueError:
            return None
    return schema if isinstance(schema, dict) else None


def properties_of(schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A schema's `properties` (empty when the schema is unknown or malformed)."""
    props = (schema or {}).get("properties")
    return props if isinstance(props, dict) else {}


@cache
def bundled_catalogue() -> tuple[dict[str, Any], ...]:
    """The 34 real image models (ids, schemas) shipped with the package, as API objects."""
    text = resources.files("oxen_magic").joinpath("data/oxen-image-models.json").read_text()
    return tuple(json.loads(text)["data"])
