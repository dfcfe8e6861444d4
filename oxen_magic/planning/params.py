"""`--param KEY=VALUE`: read from the line (`parse_params`, the grammar's part), typed by each
model's schema, and every value checked against it.

Split from `plan.py`: text from the line becomes the JSON value the schema asks for (a whole
number, a number, true/false, a list), or one sentence naming the parameter, the model and what
is allowed. Pure: nothing here is sent anywhere.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oxen_magic.core.errors import UsageProblem
from oxen_magic.core.validate import non_ascii_digits
from oxen_magic.network.model_info import COUNT_NAMES, RESERVED, ModelInfo


def parse_params(items: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """`key=value` pairs, kept as text: the planner types them by the model's schema."""
    out: dict[str, str] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageProblem(f"--param '{item}' needs the form key=value, like guidance=3.5.")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageProblem(f"--param name '{key}' is not a parameter name; use letters and _.")
        if key in out:
            raise UsageProblem(f"--param {key} is given twice; give it once.", key)
        if key in RESERVED:
            raise UsageProblem(f"--param {key}=... is set by its own option; use that instead.")
        if key == "seed" or key == "aspect_ratio" or key == "num_inference_steps":
            flag = {"seed": "--seed", "aspect_ratio": "--aspect-ratio"}.get(key, "--steps")
            raise UsageProblem(f"Use {flag} for {key} (it can sweep), not --param.")
        out[key] = value.strip()
    return tuple(out.items())


def check_value(model: str, name: str, value: Any, prop: Mapping[str, Any]) -> None:
    """Raise a one-sentence `UsageProblem` if `value` breaks the schema property `prop`."""
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and value not in enum:
        allowed = ", ".join(str(e) for e in enum)
        raise UsageProblem(f"{name}={value} is not allowed for {model}; choose one of {allowed}.", field=name)
    kind = prop.get("type")
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise UsageProblem(f"{name}={value!r} must be a whole number for {model}.", field=name)
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UsageProblem(f"{name}={value!r} must be a number for {model}.", field=name)
    if kind == "boolean" and not isinstance(value, bool):
        raise UsageProblem(f"{name}={value!r} must be true or false for {model}.", field=name)
    if name in COUNT_NAMES and kind == "integer" and value < 1:  # the estimate would count 1
        raise UsageProblem(f"{name}={value} asks {model} for no image; give 1 or more.", field=name)
    lo, hi = prop.get("minimum"), prop.get("maximum")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        bounds = f"{lo if lo is not None else '…'} to {hi if hi is not None else '…'}"
        raise UsageProblem(f"{name}={value} is out of range for {model}; allowed {bounds}.", field=name)


def typed_params(
    params: Sequence[tuple[str, str]], models: Mapping[str, ModelInfo | None], ids: Sequence[str]
) -> tuple[dict[str, tuple[tuple[str, Any], ...]], list[str]]:
    """Type `--param` text by each model's schema (JSON-ish when unknown) and validate it.

    In a comparison a parameter may suit only some models (flux's `guidance` vs klein's
    `guidance_scale`): it goes to those that take it, with a note; no taker at all is an error.
    """
    extras: dict[str, list[tuple[str, Any]]] = {m: [] for m in ids}
    notes: list[str] = []
    for name, text in params:
        skipped: list[ModelInfo] = []
        for model_id in ids:
            info = models.get(model_id)
            if info is None or info.request_schema is None:
                extras[model_id].append((name, _jsonish(text)))
                continue
            prop = info.properties.get(name)
            if prop is None:
                skipped.append(info)
                continue
            value = _coerce(text, prop, info.id, name)
            check_value(info.id, name, value, prop)
            extras[model_id].append((name, value))
        if skipped and len(skipped) == len(ids):
            info = skipped[0]
            flags = {"seed": "--seed", "aspect_ratio": "--aspect-ratio", "num_inference_steps": "--steps"}
            takes = ", ".join(
                f"{p} ({flags[p]})" if p in flags else p for p in sorted(info.properties) if p != "prompt"
            )
            raise UsageProblem(
                f"{info.id} has no parameter '{name}'; it takes: {takes or 'no extra parameters'}."
            )
        notes += [f"{info.id} takes no {name}; sent without it." for info in skipped]
    return {m: tuple(v) for m, v in extras.items()}, notes


def _coerce(text: str, prop: Mapping[str, Any], model: str, name: str) -> Any:
    kind = prop.get("type")
    if kind in ("integer", "number") and non_ascii_digits(text):  # int("３") would read 3
        raise UsageProblem(f"{name}={text} must be written with the digits 0-9 for {model}.", field=name)
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
    except ValueError:
        noun = "a whole number" if kind == "integer" else "a number"
        raise UsageProblem(f"{name}={text} must be {noun} for {model}.", field=name) from None
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UsageProblem(f"{name}={text} must be true or false for {model}.", field=name)
    if kind == "array":
        value = _jsonish(text)
        return value if isinstance(value, list) else [s.strip() for s in text.split(",")]
    return text


def _jsonish(text: str) -> Any:
    """`3` → 3, `2.5` → 2.5, `true` → True, `[1,2]` → [1, 2]; anything else stays text."""
    try:
        # NaN and Infinity are not JSON the API can read: keep them as text.
        return json.loads(text, parse_constant=lambda _: text)
    except ValueError:
        return text
