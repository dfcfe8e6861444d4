"""Checks on what a user types that must hold before anything is sent.

Each check raises `UsageProblem` with one sentence naming the problem and the fix. They live
apart from the grammar (`options.py`) so each front end (magic, panel, `generate()`) reuses them,
and so a value that would only fail after the images were billed (a `--save` folder that cannot
exist, a cache folder with a file in the way) is refused while nothing has been sent.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import keyword
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oxen_magic.core.errors import UsageProblem

#: The longest prompt we send. The API documents no limit (models truncate to their text
#: encoder's window, a few hundred tokens); this only stops a pasted file or a runaway template.
MAX_PROMPT = 4000

#: Names IPython keeps in the user namespace (history, output cache, the shell itself).
IPYTHON_NAMES = frozenset(
    {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii", "_oh", "_ih", "_dh"}
)
_HISTORY = re.compile(r"_i?\d+")  # _i3 (input 3), _3 (output 3)


def out_name(text: str) -> str:
    """`--out NAME`: a plain identifier that overwrites nothing Python or IPython relies on.

    Returned NFKC-normalised, as Python reads identifiers in code: `ｇｒｉｄ` is stored as `grid`, so
    the variable can be reached, and `ｐｒｉｎｔ` is refused like `print`.
    """
    quoted = shown(text)
    name = unicodedata.normalize("NFKC", text)
    if not name.isidentifier():
        raise UsageProblem(f"--out {quoted} is not a Python variable name; use letters, digits, _.", "out")
    if keyword.iskeyword(name):
        raise UsageProblem(f"--out {quoted} is a Python keyword; choose another name, like grid.", "out")
    if name in IPYTHON_NAMES or _HISTORY.fullmatch(name):
        raise UsageProblem(f"--out {quoted} is a name IPython uses; choose another, like grid.", "out")
    if name.startswith("__") and name.endswith("__"):
        raise UsageProblem(
            f"--out {quoted} is a name Python keeps for itself; use another, like grid.", "out"
        )
    if hasattr(builtins, name):
        raise UsageProblem(
            f"--out {quoted} would hide Python's built-in {name}; choose another name, like grid.", "out"
        )
    return name


# -- numbers ---------------------------------------------------------------------------------------


def non_ascii_digits(text: str) -> bool:
    """True when `text` holds a digit that is not 0-9 (fullwidth ３, Arabic-Indic ٣, superscript ³)."""
    return any(not c.isascii() and (c.isdigit() or unicodedata.numeric(c, None) is not None) for c in text)


def ascii_digits_only(text: str, what: str, field: str | None = None) -> None:
    if non_ascii_digits(text):
        raise UsageProblem(
            f"The {what} {shown(text)} uses a digit that is not 0-9; type it with the plain digits 0-9.",
            field,
        )


def whole_number(text: str, flag: str) -> int:
    """An option's whole number (`--cols 4`): ASCII digits only, 1 or more (callers cap it)."""
    word = text.strip()
    ascii_digits_only(word, flag, flag.lstrip("-").replace("-", "_"))
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", word):
        raise UsageProblem(f"{flag} takes a whole number like 4; got {shown(text)}.")
    value = int(word)
    if value < 1:
        raise UsageProblem(f"{flag} must be 1 or more (got {value}).")
    return value


# -- hosts -----------------------------------------------------------------------------------------


def host_without_credentials(text: str) -> None:
    """Refuse `https://user:password@host` without ever echoing what was typed.

    A password in the host would be printed in every error that names the host, saved with the
    notebook, and sent wherever the host points; the API key comes from login() or the environment.
    """
    rest = text.strip().split("://", 1)[-1]
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in netloc:
        raise UsageProblem(
            "The Oxen host has a user name or password in it (before an @); remove it and give "
            "the API key with oxen_magic.login() or OXEN_API_KEY instead.",
            "host",
        )


# -- prompts ---------------------------------------------------------------------------------------


def prompt_length(prompt: str) -> str:
    if len(prompt) > MAX_PROMPT:
        raise UsageProblem(
            f"The prompt is {len(prompt):,} characters long, more than the limit of {MAX_PROMPT:,}; "
            "shorten it (models read only the first few hundred words anyway).",
            "prompt",
        )
    return prompt


def template_value(name: str, variables: Mapping[str, Any]) -> str:
    """The text for `{name}` in a prompt: a plain variable, never a dunder, attribute or index."""
    if re.fullmatch(r"[A-Za-z_]\w*\s*(\.|\[).*", name, flags=re.DOTALL):
        raise UsageProblem(
            f"'{{{_clip(name)}}}' in the prompt reaches into a variable; only plain names are filled, "
            "so put the value in a variable first (or write {{ and }} for literal braces).",
            "prompt",
        )
    if not name.isidentifier():
        raise UsageProblem(
            f"'{{{_clip(name)}}}' in the prompt is not a variable name; "
            "write {{ and }} for literal braces.",
            "prompt",
        )
    if name.startswith("__") and name.endswith("__"):
        raise UsageProblem(
            f"{{{name}}} in the prompt is one of Python's own names, not a variable of yours; "
            f"write {{{{{name}}}}} for literal braces.",
            "prompt",
        )
    if name not in variables:
        raise UsageProblem(
            f"The prompt uses {{{name}}} but no variable '{name}' is defined; set it in a cell "
            f"above, or write {{{{{name}}}}} for literal braces.",
            "prompt",
        )
    value = variables[name]
    try:
        text = str(value)
    except Exception as exc:  # any str() may raise anything; the user sees one sentence
        raise UsageProblem(
            f"The variable '{name}' used in the prompt cannot be turned into text (str() raised "
            f"{type(exc).__name__}); set it to a string.",
            "prompt",
        ) from None
    if not isinstance(text, str):  # a str subclass whose __str__ misbehaves
        raise UsageProblem(f"The variable '{name}' in the prompt is not text; set it to a string.", "prompt")
    if len(text) > MAX_PROMPT:
        raise UsageProblem(
            f"The variable '{name}' used in the prompt is {len(text):,} characters as text, more than "
            f"the prompt limit of {MAX_PROMPT:,}; set it to something shorter.",
            "prompt",
        )
    return text


# -- folders ---------------------------------------------------------------------------------------

#: Errors that mean the folder can never exist as written (refused); others (permissions, a
#: read-only or full disk) may be the machine's state rather than a typo.
_SHAPE_ERRORS = {errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EINVAL, errno.ELOOP}
_ANOTHER = "choose another path"


def folder_text(path: str, what: str, fix: str = _ANOTHER, noun: str = "folder") -> str:
    """Pure checks on a path as typed: not empty, no NUL, encodable, no absurd length."""
    if not path.strip():
        raise UsageProblem(f"{what} needs a {noun} name, like {_example(what)}.")
    if "\x00" in path:
        raise UsageProblem(f"The {what} {noun} {shown(path)} contains a NUL character; {fix}.")
    try:
        parts = [os.fsencode(p) for p in Path(os.path.expanduser(path)).parts if p not in ("/", "\\")]
        whole = os.fsencode(path)
    except UnicodeError:  # a lone surrogate: no file system can store that name
        raise UsageProblem(
            f"The {what} {noun} {shown(path)} has a character no path can have; {fix}."
        ) from None
    if len(whole) > 4000 or any(len(p) > 255 for p in parts):
        raise UsageProblem(f"The {what} {noun} {shown(path)} is too long a path; {fix}.")
    return path


def folder_problem(path: str | Path, what: str, *, keep: bool, fix: str = _ANOTHER) -> str | None:
    """Whether files can be written in folder `path`, found by trying (the only sure test).

    Missing folders are made for the test; with `keep=False` those made are removed again. A path
    that cannot be a folder (a file in the way, a name too long) raises `UsageProblem`; a folder
    that merely cannot be written now (permissions, a read-only disk) gives the reason as text.
    """
    folder_text(str(path), what, fix)
    folder = Path(os.path.expanduser(path))
    made: list[Path] = []
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:  # made meanwhile by another thread or process: fine if a folder
                if p.is_dir():
                    continue
                raise
            made.append(p)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".oxen-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        if exc.errno in _SHAPE_ERRORS or _is_file(folder):
            reason = _shape_reason(folder, exc)
            raise UsageProblem(f"The {what} folder {shown(str(path))} {reason}; {fix}.") from None
        return exc.strerror or type(exc).__name__
    finally:
        if not keep:
            for p in reversed(made):
                with contextlib.suppress(OSError):
                    p.rmdir()
    return None


def save_folder(path: str) -> None:
    """`--save DIR`: refused unless PNGs can be written there (checked before anything is billed)."""
    reason = folder_problem(path, "--save", keep=False)
    if reason:
        raise UsageProblem(f"Cannot write to the --save folder {shown(path)} ({reason}); choose another.")


def html_file(path: str) -> Path:
    """`--to-html FILE`: the file the gallery would go to, refused unless it can be written there
    (checked before anything is billed). A folder gets `gallery.html`; a symbolic link is refused,
    as every file we write is (see `atomic.py`)."""
    folder_text(path, "--to-html", noun="file")
    target = Path(os.path.expanduser(path))
    if target.is_dir():
        target = target / "gallery.html"
    if target.is_symlink():
        raise UsageProblem(
            f"The --to-html file {shown(str(target))} is a symbolic link, and oxen_magic never writes "
            "through one; give another file name."
        )
    if target.is_dir():
        raise UsageProblem(f"The --to-html file {shown(str(target))} is a folder; give a file name.")
    reason = folder_problem(target.parent, "--to-html", keep=False)
    if reason:
        raise UsageProblem(f"Cannot write the --to-html file {shown(path)} ({reason}); choose another.")
    return target


def oxen_folder(path: str) -> None:
    """`--to-oxen DIR`: refused unless files can be written in that folder (before any billing)."""
    reason = folder_problem(path, "--to-oxen", keep=False)
    if reason:
        raise UsageProblem(f"Cannot write to the --to-oxen folder {shown(path)} ({reason}); choose another.")


def _is_file(path: Path) -> bool:
    try:
        return path.exists() and not path.is_dir()
    except (OSError, ValueError):
        return False


def _shape_reason(folder: Path, exc: OSError) -> str:
    if _is_file(folder):
        return "is a file, not a folder"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "is inside a file, not a folder"
    if exc.errno == errno.ENAMETOOLONG:
        return "is too long a path"
    return f"cannot be made ({exc.strerror or type(exc).__name__})"


def _example(what: str) -> str:
    examples = {
        "--save": "--save images",
        "--to-oxen": "--to-oxen my-repo",
        "--to-html": "--to-html grid.html",
    }
    return examples.get(what, "~/.cache/oxen_magic")


def _clip(text: str, limit: int = 40) -> str:
    """A short piece of the user's text for a one-line message: control characters escaped."""
    text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(text: str, limit: int = 72) -> str:
    """A user's text for a message: quoted, control characters escaped, long text clipped in the
    middle (a path's end is what tells folders apart)."""
    inner = repr(text)[1:-1]
    if len(inner) > limit:
        inner = inner[: limit // 3] + "…" + inner[-(limit - limit // 3 - 1) :]
    return "'" + inner + "'"
