"""Errors a user can read in one sentence.

Two families: `UsageProblem` is raised by the pure stages (options, plan) for input that is wrong
before anything is sent; `OxenError` and its subclasses are raised by the HTTP client for what the
server or the network said. The magic turns both into a one-line `UsageError`, so IPython shows no
traceback.
"""

from __future__ import annotations

import re


class UsageProblem(ValueError):
    """Bad input, found before any request: the message names the problem and the fix.

    `field` names the request parameter at fault when there is one (`aspect_ratio`, `seed`, a
    `--param` name), so the panel can show the message next to the right control.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class OxenError(Exception):
    """Anything the Oxen API or the network did that stops one request.

    `status` is the HTTP status when there was one. The message never contains the API key.
    """

    status: int | None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class AuthError(OxenError):
    """401/403, or no key configured at all."""


class MissingKeyError(AuthError):
    """No API key was found in any of the places we look."""


class NotFoundError(OxenError):
    """404: an unknown model, route or result file."""


class InvalidParamsError(OxenError):
    """400: the server rejected a parameter."""


class RateLimitError(OxenError):
    """429 after every retry."""


class ServerError(OxenError):
    """5xx after every retry."""


class NetworkError(OxenError):
    """No HTTP answer at all: refused, DNS, reset, timeout."""


class Cancelled(OxenError):
    """The user stopped the run while this request was waiting to retry."""


class BadResponseError(OxenError):
    """An answer we cannot use: not JSON, missing images, bad base64, not an image."""


class ResultExpiredError(BadResponseError):
    """The temporary result URL answered 403/404/410 when we fetched it."""


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, *secrets: str | None) -> str:
    """Remove every secret (and anything shaped like a bearer token) from `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)
