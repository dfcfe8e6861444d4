"""The plain-Python front end: `generate()`, `models()`, `spend()`, in any Python process.

`generate` takes every option the magic takes, as keyword arguments: the same strings
(`seed="1..4"`), or Python values (`seed=range(1, 5)`, `model=["a", "b"]`, `steps=8`,
`no_cache=True`, `param={"guidance": 3.5}`). They are written back into the magic's words and
parsed by `options.build_spec`, so there is one grammar, one set of checks and one set of
messages. Bad input raises `UsageProblem` (a `ValueError`) whose message is one sentence.
"""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oxen_magic.core.errors import UsageProblem
from oxen_magic.display.notebook import in_notebook, showing
from oxen_magic.frontends.progress import Progress
from oxen_magic.planning import options
from oxen_magic.session.session import current_session

if TYPE_CHECKING:
    from oxen_magic.display.modeltable import ModelTable
    from oxen_magic.results.results import Results
    from oxen_magic.session.ledger import Spend

#: Plural keyword spellings accepted for an option.
ALIASES = {"models": "model", "seeds": "seed", "aspect_ratios": "aspect_ratio", "params": "param"}


def option_words(values: Mapping[str, Any], *, caller: str = "generate") -> list[str]:
    """Keyword arguments → the magic's option words: `seed=range(1, 5)` → `--seed 1..4`.

    `None` and `False` leave an option out; `True` sets a flag; a range becomes `a..b[:step]`;
    lists and tuples become comma lists; `param` takes a mapping or `key=value` strings.
    """
    words: list[str] = []
    known = set(options.OPTION_NAMES)
    for key, value in values.items():
        if value is None or key == "prompt":
            continue
        name = ALIASES.get(key, key)
        flag = "--" + name.replace("_", "-")
        if flag not in known or flag == "--list-models":
            if any(word in name.lower() for word in options.KEY_WORDS):
                options.parse_words([flag])  # the one sentence on where keys go instead
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
        if isinstance(value, bool):
            if value:
                words.append(flag)
            continue
        if name == "param" and isinstance(value, Mapping):
            for k, v in value.items():
                words += [flag, f"{k}={v}"]
            continue
        if name == "param" and isinstance(value, (list, tuple)):
            for item in value:
                words += [flag, str(item)]
            continue
        words += [flag, _text(value, name)]
    return words


def _text(value: Any, name: str) -> str:
    if isinstance(value, range):
        if len(value) == 0:
            raise UsageProblem(
                f"The {name.replace('_', ' ')} range {value!r} is empty; give at least one value."
            )
        return f"{value[0]}..{value[-1]}" + (f":{value.step}" if value.step != 1 else "")
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            raise UsageProblem(f"The {name.replace('_', ' ')} list is empty; give at least one value.")
        return ",".join(_text(v, name) if isinstance(v, range) else str(v) for v in items)
    return str(value)


def generate(
    prompt: str | Sequence[str],
    *,
    show: bool | None = None,
    variables: Mapping[str, Any] | None = None,
    cancel: threading.Event | None = None,
    **opts: Any,
) -> Results:
    """Generate a grid, as `%%oxenimage` does, and return its `Results`.

    `prompt`: one prompt, or several (a list, or text with `---` lines between them).
    Keyword options are the magic's (`model`, `seed`, `aspect_ratio`, `steps`, `param`, `size`,
    `cols`, `save`, `no_cache`, `dry_run`, `host`, `namespace`, ...). `{name}` in a prompt is
    filled from `variables` when given (else braces are literal: use an f-string).
    `show`: draw the grid as it fills in (default: in a notebook yes, in a plain process no;
    `show=True` there prints a progress line on stderr). Ctrl-C keeps what arrived.
    In a notebook, assign the result (`grid = generate(...)`): as a cell's last bare expression
    it would be drawn a second time.
    """
    if "out" in opts:
        raise TypeError("generate() returns the results; out= is only for the magic")
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise UsageProblem("The prompt must be a string or a list of strings, like 'a red cube'.")
    if variables is None:
        texts = [t.replace("{", "{{").replace("}", "}}") for t in texts]
    body = "\n---\n".join(texts)
    line = shlex.join(option_words(opts))
    session = current_session()
    spec = session.spec(line, body, variables or {})
    notebook = in_notebook()
    show = notebook if show is None else show
    run = session.prepare(spec)
    if show and notebook:
        with showing(run.results, planned=spec.dry_run) as redraw:
            return run.execute(on_update=redraw, cancel=cancel)
    progress = Progress(run.results, stream=sys.stderr) if show else None
    try:
        return run.execute(on_update=progress, cancel=cancel)
    finally:
        if progress is not None:
            progress.close()


def models(host: str | None = None, search: str | None = None, developer: str | None = None) -> ModelTable:
    """The image models the API lists, with their parameters and price per image.

    `search` (a word: the API's search route) and `developer` (its `developer_name` filter,
    e.g. "black-forest-labs") narrow the list on the server. A list-like table (`len`, indexing,
    iteration give `ModelInfo`s) that prints as text and shows as HTML in a notebook.
    """
    from oxen_magic.display.modeltable import ModelTable
    from oxen_magic.session.pipeline import list_models

    client = current_session().client(host)
    found, notes = list_models(client, search=search, developer=developer)  # details filled in
    return ModelTable(found, notes)


def spend() -> Spend:
    """What was billed: this kernel's `.total` (USD, known prices), `.images` and per-model table;
    every notebook and process of yours (`.user_total`, `.user_images`: the ledger in the cache
    folder); the budget and what is `.left` of it (`.left_text()`: "$X left of $Y");
    `.reset()` starts the ledger again."""
    return current_session().spend()
