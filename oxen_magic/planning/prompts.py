"""The cell body into prompts: `---` separators, `{name}` templates, the empty-prompt sentences.

Split from `options.py` (the grammar), which uses them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from oxen_magic.core import validate
from oxen_magic.core.errors import UsageProblem

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def fill_template(prompt: str, variables: Mapping[str, Any]) -> str:
    """Fill `{name}` from the user's variables; `{{` and `}}` are literal braces."""

    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = m.group(1)
        if name is None:
            raise UsageProblem(
                f"The prompt has an unmatched '{token}'; write {token * 2} for a literal brace."
            )
        return validate.template_value(name.strip(), variables)

    return _PLACEHOLDER.sub(sub, prompt)


def split_prompts(body: str) -> list[str]:
    """Prompts separated by lines holding only `---`."""
    prompts: list[list[str]] = [[]]
    for line in body.splitlines():
        if line.strip() == "---":
            prompts.append([])
        else:
            prompts[-1].append(line)
    return ["\n".join(lines).strip() for lines in prompts]


EMPTY_PROMPT = "Prompt cannot be empty: write the prompt in the cell body below the %%oxenimage line."
EMPTY_LINE_PROMPT = (
    "Prompt cannot be empty: give it on the line after the options, like "
    "%oxenimage --seed 3 a lighthouse at dusk (or use %%oxenimage with the prompt in the cell body)."
)
