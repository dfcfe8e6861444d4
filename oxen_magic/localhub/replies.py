"""What the local hub answers: the reply record and the documented error body shapes.

Two error shapes occur in the API (`oxen-api.md`, "Errors"): the typed one
(`{"error": {"type", "title"}, "status": "error", "status_message"}`) and the bare
`{"error": {"message"}}` that a missing model gets. Proxies in front of the API answer 5xx with an
nginx-style HTML page, reproduced here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_STATUS_TYPES = {
    400: ("invalid_params", "Invalid parameters"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("resource_not_found", "Resource not found"),
    413: ("invalid_params", "Request body too large"),
    429: ("rate_limited", "Rate limit exceeded"),
}

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


@dataclass
class RecordedRequest:
    """One request the hub served, as the server saw it."""

    method: str
    path: str  # including the query string
    headers: dict[str, str]
    body: dict[str, Any] | None  # the parsed JSON body, when it was a JSON object
    status: int
    authorization: str | None  # the raw Authorization header value


@dataclass
class _Reply:
    """One answer: `body`, then filler, then `tail`.

    When `pad_to` is larger than body + tail, `pad_byte` is repeated between them up to that many
    bytes while streaming, so an oversized answer is never built whole in memory. `drip` sends the
    whole body one byte at a time with that many seconds between bytes.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    tail: bytes = b""
    pad_to: int = 0
    pad_byte: bytes = b"\0"
    drip: float = 0.0

    @property
    def length(self) -> int:
        return max(len(self.body) + len(self.tail), self.pad_to)

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """The body in pieces of at most `size` bytes (filler made a piece at a time)."""
        for start in range(0, len(self.body), size):
            yield self.body[start : start + size]
        filler = self.length - len(self.body) - len(self.tail)
        if filler > 0:
            block = self.pad_byte * min(size, filler)
            while filler > 0:
                piece = block if filler >= len(block) else block[:filler]
                yield piece
                filler -= len(piece)
        if self.tail:
            yield self.tail


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _error_reply(status: int, title: str | None = None) -> _Reply:
    kind, default_title = _STATUS_TYPES.get(status, ("unknown_error", "Internal server error"))
    body = {
        "error": {"type": kind, "title": title or default_title},
        "status": "error",
        "status_message": kind,
    }
    return _Reply(status, _json_bytes(body))


def _not_found(message: str) -> _Reply:
    return _Reply(404, _json_bytes({"error": {"message": message}}))


def _html_reply(status: int, reason: str | None = None) -> _Reply:
    reason = reason or _REASONS.get(status, "Server Error")
    page = (
        "<!DOCTYPE html>\n<html>\n<head><title>"
        f"{status} {reason}</title></head>\n<body>\n<center><h1>{status} {reason}</h1></center>\n"
        "<hr><center>nginx</center>\n</body>\n</html>\n"
    )
    return _Reply(status, page.encode(), "text/html; charset=utf-8")
