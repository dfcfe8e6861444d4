"""One sentence for every problem a user can cause or meet, shared by the magic and the command line.

Bad options, an unknown model, no key or a refused one, no network, a budget: each is an
exception whose message is already the sentence to show (`UsageProblem`, `OxenError`). The front
ends differ only in how they show it: the magic raises IPython's `UsageError` (one line, no
traceback), the command line prints it on stderr and exits with a status. `explain` is the one
mapping; `as_usage_error` is the magic's way of using it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from oxen_magic.core.errors import AuthError, OxenError, UsageProblem

#: Ctrl-C while the models are being read (the magic): nothing was generated, so one line says so.
STOPPED_LOOKUP = "Stopped while looking up the models; nothing was sent. Run the cell again when ready."
#: Ctrl-C before the run started (the command line).
STOPPED_BEFORE = "Interrupted before any image was requested; nothing was billed."


@dataclass(frozen=True)
class Problem:
    """What to say, and the command line's exit status (2: bad usage or key, 1: the API or the
    network failed, 130: interrupted)."""

    sentence: str
    exit_code: int


def explain(
    exc: BaseException, *, stopped: str = STOPPED_LOOKUP, program: str | None = None
) -> Problem | None:
    """The sentence and exit status for `exc`, or None when it is no problem of the user's (a
    bug keeps its traceback). `stopped`: what Ctrl-C means at this point. `program`: the command
    line's name, which then stands for the magic's help (`%%oxenimage?`)."""
    if isinstance(exc, KeyboardInterrupt):
        return Problem(stopped, 130)
    if isinstance(exc, UsageProblem):
        text = str(exc)
        if program is not None:
            text = text.replace("%%oxenimage?", program + " --help")
        return Problem(text, 2)
    if isinstance(exc, AuthError):
        return Problem(str(exc), 2)
    if isinstance(exc, OxenError):
        return Problem(str(exc), 1)
    return None


@contextlib.contextmanager
def as_usage_error(stopped: str | None = None) -> Iterator[None]:
    """The magic: a problem of the user's becomes IPython's `UsageError` (one line, no
    traceback). `stopped`: Ctrl-C becomes that sentence too (else it goes on as Ctrl-C, as while
    images arrive, where the run keeps what came and says so itself)."""
    from IPython.core.error import UsageError

    try:
        yield
    except (UsageProblem, OxenError) as exc:
        problem = explain(exc)
        assert problem is not None
        raise UsageError(problem.sentence) from None
    except KeyboardInterrupt:
        if stopped is None:
            raise
        raise UsageError(stopped) from None
