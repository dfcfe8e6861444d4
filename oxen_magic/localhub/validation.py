"""Checking a request body against a model's `request_schema`, as the API does.

`type`, `enum`, `minimum` and `maximum` of every parameter the schema describes (JSON Schema, see
`oxen-api.md`, "GET /api/ai/models"). Parameters the schema does not mention are accepted, as the
real API ignores them.
"""

from __future__ import annotations

from typing import Any

from oxen_magic.network.model_info import properties_of


class _BadRequest(Exception):
    """A 400 invalid_params answer, with the title the client will see."""


def _type_ok(value: Any, kind: Any) -> bool:
    if isinstance(kind, list):
        return any(_type_ok(value, k) for k in kind)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # unknown or absent type: accept


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def validate(body: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """Raise `_BadRequest` naming the first parameter the schema rejects.

    Checks `type`, `enum`, `minimum` and `maximum` of every parameter the schema describes.
    Parameters the schema does not mention are accepted (as the real API ignores them).
    """
    for name, spec in properties_of(schema).items():
        if name not in body or body[name] is None or not isinstance(spec, dict):
            continue
        value = body[name]
        kind = spec.get("type")
        if kind is not None and not _type_ok(value, kind):
            want = kind if isinstance(kind, str) else " or ".join(map(str, kind))
            raise _BadRequest(f"Invalid {name}: {value!r} is not {_article(want)} {want}")
        enum = spec.get("enum")
        if isinstance(enum, list) and value not in enum:
            choices = ", ".join(str(v) for v in enum)
            raise _BadRequest(f"Invalid {name}: {value!r} is not one of {choices}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = spec.get("minimum"), spec.get("maximum")
            if isinstance(low, (int, float)) and value < low:
                raise _BadRequest(f"Invalid {name}: {value} is less than the minimum {low}")
            if isinstance(high, (int, float)) and value > high:
                raise _BadRequest(f"Invalid {name}: {value} is greater than the maximum {high}")
