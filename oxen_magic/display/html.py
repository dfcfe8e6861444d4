"""What every view of a result shares: HTML text safe from MathJax, a placeholder's shape.

Kept apart from `render.py` so the contact sheet and the model table use the same escaping without
importing each other, and so `ModelTable` needs no Pillow.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oxen_magic.results.results import Item

#: Classes that tell MathJax (JupyterLab 4 and Notebook 7: `mathjax_ignore`; MathJax 2 in the
#: classic notebook and nbviewer: `tex2jax_ignore`) not to typeset `$0.025 + 8 × $0.002` as maths.
NO_MATH = "mathjax_ignore tex2jax_ignore"


def esc(text: object) -> str:
    """HTML-escape, and write `$` as `&#36;`: no renderer may read prices or prompts as maths."""
    return html.escape(str(text)).replace("$", "&#36;")


def _ratio(item: Item) -> float:
    """Height / width for a placeholder, from the requested aspect ratio when known."""
    if item.size:
        return item.size[1] / item.size[0]
    ratio = (item.params.get("aspect_ratio") or "1:1") if item.request else "1:1"
    try:
        w, h = (float(x) for x in str(ratio).split(":"))
        return h / w if w > 0 and h > 0 else 1.0
    except ValueError:
        return 1.0
