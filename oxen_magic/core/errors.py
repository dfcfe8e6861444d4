"""Errors a user can read in one sentence.

Two families: `UsageProblem` is raised by the pure stages (options, plan) for input that is wrong
before anything is sent; `OxenError` and its subclasses are raised by the HTTP client for what the
server or the network said. The magic turns both into a one-line `UsageError`, so IPython shows no
traceback.
"""

from __future__ import annotations

import json
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
    #: The POST may have been made (and billed) although no image came back: a gateway's
    #: 502/504 or bare 503, or a read timeout or missed deadline after the request was sent.
    #: Never resent; the runner reports it to the ledger as "possibly billed" (`billed_marker`).
    maybe_billed: bool = False

    def __init__(self, message: str, status: int | None = None, *, maybe_billed: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.maybe_billed = maybe_billed

    @property
    def billed_marker(self) -> int:
        """What `on_billed(item, gateway)` is told for a possibly billed answer: the gateway's
        status (502, 503, 504), or `TIMED_OUT` when no answer came after the request was sent."""
        return self.status if self.status is not None else TIMED_OUT

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


#: The ledger's marker for a POST sent but never answered (a read timeout or a missed deadline):
#: 598 is the status some proxies use for "network read timeout", so it never collides with an
#: answer the API gives.
TIMED_OUT = 598


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


class TooLargeError(BadResponseError):
    """An answer past the byte cap: cut off while streaming, never held whole."""


class ResultExpiredError(BadResponseError):
    """The temporary result URL answered 403/404/410 when we fetched it."""


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, *secrets: str | None) -> str:
    """Remove every secret (and anything shaped like a bearer token) from `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


# -- messages for what a server answered ----------------------------------------------------------


def api_refusal(headers_retry_after: str | None, body: bytes) -> bool:
    """Whether a 503 says the API itself refused the request unprocessed: a Retry-After, or the
    API's own JSON error body (`{"error": ...}`). A gateway's bare 503 (an HTML page, no
    Retry-After) is as ambiguous as a 504: the backend may have made the image."""
    if headers_retry_after:
        return True
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and "error" in parsed


def gateway_sentence(status: int, detail: str) -> str:
    """A gateway error after a POST was sent: maybe billed, not resent."""
    return (
        f"The API's gateway failed (HTTP {status}: {detail}) after the request was sent, so "
        "the image may have been made and billed; it was not resent, and a rerun asks again."
    )


def sent_sentence(where: str, read_timeout: float | None) -> str:
    """A POST sent and never answered (`read_timeout` seconds passed, or None: the connection
    dropped): the backend may have made and billed the image."""
    if read_timeout is not None:
        return (
            f"{where} did not answer in time ({read_timeout:g} s) after the request was sent, so "
            "the image may have been made and billed; it was not resent, and a rerun asks again "
            "(a slow model may need a longer read timeout: see OXEN_MAGIC_READ_TIMEOUT)."
        )
    return (
        f"Lost the connection to {where} after the request was sent, so the image may have been "
        "made and billed; it was not resent, and a rerun asks again."
    )


def http_error(
    status: int, content_type: str, body: bytes, *, attempts: int, method: str, asked: float | None
) -> tuple[type[OxenError], str]:
    """The error class and one sentence for an HTTP error answer (not yet scrubbed of the key).

    `asked`: the Retry-After seconds when they were longer than we may wait.
    """
    detail = detail_of(status, content_type, body)
    tries = f"{attempts} {'try' if attempts == 1 else 'tries'}"
    wait = f"the API asked to wait {_seconds(asked)}, so try again then" if asked is not None else ""
    cls: type[OxenError]
    if status in (401, 403):
        cls = AuthError
        text = (
            f"The API refused the key (HTTP {status}: {detail}); run oxen_magic.login() to enter it "
            "again, or check OXEN_API_KEY."
        )
    elif status == 404:
        cls, text = NotFoundError, detail
    elif status == 429:
        cls = RateLimitError
        text = f"Rate limit exceeded (HTTP 429) after {tries}; {wait or 'wait a minute and rerun'}."
    elif status in (502, 504) and method != "GET":
        cls, text = ServerError, gateway_sentence(status, detail)
    elif status >= 500:
        cls = ServerError
        text = f"The API failed (HTTP {status}: {detail}) after {tries}; {wait or 'try again later'}."
    elif status in (400, 422):
        cls, text = InvalidParamsError, f"The API rejected the request: {detail}."
    else:
        cls, text = OxenError, f"The API answered HTTP {status}: {detail}."
    text = text[:-1] if text.endswith("..") else text  # a detail ending in "." then our "."
    return cls, text


def too_large(what: str, limit: int) -> TooLargeError:
    """The error for an answer past the byte cap."""
    size = f"{limit / 1024 / 1024:g} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return TooLargeError(
        f"The API's {what} is larger than the {size} limit, so it was cut off unread; raise "
        "max_body_bytes (or OXEN_MAGIC_MAX_BODY_MB) if this model really makes files that big."
    )


def _seconds(value: float | None) -> str:
    if value is None or value > 86400:
        return "more than a day"
    if value >= 600:
        return f"{value / 60:.0f} min"
    return f"{value:.0f} s"


def detail_of(status: int, content_type: str, body: bytes) -> str:
    """The human part of an error body, for both documented shapes and for HTML pages."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return not_json(status, content_type, body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        for name in ("title", "detail", "message"):
            if isinstance(error.get(name), str) and error[name].strip():
                text = _short(error[name])
                if name == "title" and isinstance(error.get("detail"), str) and error["detail"].strip():
                    text += f" ({_short(error['detail'])})"
                return text
    if isinstance(error, str) and error.strip():
        return _short(error)
    if isinstance(parsed, dict):
        for name in ("message", "status_message", "detail"):
            if isinstance(parsed.get(name), str) and parsed[name].strip():
                return _short(parsed[name])
    return f"HTTP {status}"


def _short(text: str, most: int = 300) -> str:
    """One line of server text, of bounded length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= most else flat[: most - 3] + "..."


def not_json(status: int, content_type: str, body: bytes) -> str:
    """What an answer that should have been JSON was instead (lower case, no full stop)."""
    kind = content_type.split(";")[0].strip() or "no content type"
    if "html" in kind or body.lstrip()[:1] == b"<":
        return f"the API answered with an HTML page (HTTP {status}), not JSON"
    if "json" in kind:
        return f"the API answered with invalid JSON (HTTP {status})"
    return f"the API answered with {_short(kind, 60)} (HTTP {status}), not JSON"
