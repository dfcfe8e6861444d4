"""Hints for a line that would otherwise just be refused: which option was meant.

`--guidance 3` suggests `--param guidance=3` when a chosen model takes that parameter, and a line
with no prompt for a model that needs an input image says so. Split from `options.py` (the grammar)
because these read the bundled catalogue; `options` imports the two it calls (`needs_an_image`,
`param_hint`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from oxen_magic.network.model_info import RESERVED, bundled_catalogue, properties_of, schema_of


def _chosen_models(words: Sequence[str], default: str | None) -> list[str]:
    """The model ids the line names (`--model a,b`, `-m a`, `--model=a`), else the default."""
    chosen: list[str] = []
    for i, word in enumerate(words):
        value = None
        if word in ("--model", "-m") and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--model="):
            value = word.split("=", 1)[1]
        if value:
            chosen += [m.strip() for m in value.split(",") if m.strip()]
    return chosen or ([default] if default else [])


def needs_an_image(model_words: Sequence[str] | None) -> str | None:
    """The sentence for a line with neither prompt nor input image, for a model that needs one.

    `%oxenimage -m topazlabs-image-upscale` alone would otherwise be told its prompt is empty,
    and once a prompt is typed, that an image is missing: an upscaler takes no prompt at all.
    The bundled catalogue says which models require `input_image` (ids only from the line).
    """
    chosen = [m.strip() for word in model_words or () for m in word.split(",") if m.strip()]
    for model in bundled_catalogue():
        required = (schema_of(model) or {}).get("required")
        if model.get("id") in chosen and isinstance(required, list) and "input_image" in required:
            both = "prompt" in required
            return (
                f"{model['id']} needs an input image{' and a prompt' if both else ''}; add "
                "--input-image with a file, an https:// URL or a variable holding an image or a "
                f"result (best = grid[0]){', and write the prompt' if both else ''}."
            )
    return None


#: Parameters with an option of their own (or set by one): never suggested as `--param`.
_OWN_OPTION = frozenset({"seed", "aspect_ratio", "num_inference_steps", "input_image"})


def param_hint(words: Sequence[str], index: int, name: str, default_model: str | None) -> str | None:
    """`did you mean --param guidance=3?` when a chosen model takes `name` as a parameter.

    Learners type a model parameter as if it were an option (`--guidance 3`); the bundled
    catalogue says which models take what, without asking the network.
    """
    param = name.replace("-", "_")
    if param in RESERVED or param in _OWN_OPTION or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", param):
        return None
    catalogue = {str(m.get("id")): properties_of(schema_of(m)) for m in bundled_catalogue()}
    chosen = [catalogue[m] for m in _chosen_models(words, default_model) if m in catalogue]
    names = {n for props in (chosen or catalogue.values()) for n in props} - RESERVED - _OWN_OPTION
    if param not in names:  # `--guidance` for a model whose parameter is `guidance_scale`
        close = difflib.get_close_matches(param, sorted(names), n=1, cutoff=0.7)
        if not close:
            return None
        param = close[0]
    word = words[index]
    if "=" in word:
        value = word.split("=", 1)[1]
    elif index + 1 < len(words) and not words[index + 1].startswith("-"):
        value = words[index + 1]
    else:
        value = "VALUE"
    return f"did you mean --param {param}={value}?"
