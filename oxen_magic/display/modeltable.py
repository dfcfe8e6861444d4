"""`%oxenimage --list-models` and `oxen_magic.models()`: the image models as a table.

Split from `render.py` because it shows the catalogue, not results; it needs no Pillow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from oxen_magic.display.html import NO_MATH, esc

if TYPE_CHECKING:
    from oxen_magic.network.model_info import ModelInfo


class ModelTable:
    """`%oxenimage --list-models`: image models, their parameters (default, range) and price."""

    def __init__(self, models: Sequence[ModelInfo], notes: Sequence[str] = ()) -> None:
        self.models = sorted(models, key=lambda m: m.id)
        self.notes = list(notes)  # e.g. models whose details could not be read

    # list-like, so `oxen_magic.models()` can be filtered and indexed as well as shown
    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models)

    def __getitem__(self, index: int) -> ModelInfo:
        return self.models[index]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.models]

    @staticmethod
    def describe(prop: dict[str, Any]) -> str:
        """`1:1|16:9 (16:9)` or `int 1-50 (28)`: a parameter's allowed values and default."""
        if isinstance(prop.get("enum"), list):
            text = "|".join(str(v) for v in prop["enum"])
        else:
            text = {"integer": "int", "number": "float", "boolean": "bool", "array": "list"}.get(
                str(prop.get("type")), str(prop.get("type") or "any")
            )
            if prop.get("minimum") is not None or prop.get("maximum") is not None:
                text += f" {prop.get('minimum', '')}-{prop.get('maximum', '')}"
        if "default" in prop:
            text += f" ({prop['default']})"
        return text

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(id, price, input image, parameters); input image: required, optional or text only."""
        from oxen_magic.planning.required import role_text

        out = []
        for m in self.models:
            price = m.price_text
            params = [
                f"{name}: {self.describe(prop)}"
                for name, prop in m.properties.items()
                if name not in ("prompt", "input_image") and isinstance(prop, dict)
            ]
            empty = "(parameters unknown)" if m.request_schema is None else "(no parameters listed)"
            out.append((m.id, price, role_text(m), "; ".join(params) or empty))
        return out

    def __repr__(self) -> str:
        rows = self.rows()
        width = max((len(r[0]) for r in rows), default=5)
        price = max((len(r[1]) for r in rows), default=5)  # `$0.0012/s` is wider than `$0.025`
        lines = [f"{'model':<{width}}  {'price':>{price}}  {'input image':<19}  parameters"]
        lines += [f"{a:<{width}}  {b:>{price}}  {c:<19}  {d}" for a, b, c, d in rows]
        return "\n".join(lines + self.notes)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td><code>{esc(a)}</code></td><td>{esc(b)}</td>"
            f"<td>{esc(c)}</td>"
            f'<td style="text-align:left">{esc(d)}</td></tr>'
            for a, b, c, d in self.rows()
        )
        return (
            f'<table class="oxen-models {NO_MATH}"><tr><th>model</th><th>price (per image, or /s)</th>'
            '<th title="--input-image: required, optional (several = reference images) or text only">'
            "input image</th>"
            f'<th style="text-align:left">parameters (allowed, default)</th></tr>{cells}</table>'
        ) + "".join(f'<p class="oxen-note">{esc(n)}</p>' for n in self.notes)
