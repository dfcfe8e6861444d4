"""What the client needs from the network: one bounded HTTP call, and the answer it gives.

`OxenClient` *has* a transport (composition, not inheritance), so the client's own logic (which
route, which key, what an answer means) can be tested over a fake that answers scripted
responses (`tests/fakes.py`), and the HTTP rules stay in one place. The real transport is
`httptransport.HttpTransport`: retries (`retries.py`), redirects followed by hand, bodies
streamed under a byte cap (`bodies.py`), an overall deadline, and the certificate bundle
(`certs.py`).

Whatever the transport, a call obeys one contract: the key goes only to the origin of the URL it
was given for (a redirect elsewhere drops it), a POST that may have been billed is never resent
(it raises an `OxenError` with `maybe_billed`), and errors are `OxenError`s whose text never
holds the key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from oxen_magic.core.errors import BadResponseError, not_json

#: (connect, read) seconds. Generation is documented at 5-30 s; queues make it longer.
DEFAULT_TIMEOUT = (10.0, 180.0)
#: Seconds one logical call (every attempt, wait and byte of the answer) may take in all; a call
#: given a longer read timeout gets this much more than that timeout.
DEFAULT_DEADLINE = 300.0
#: Largest result body (an image file, or the decoded `b64_json`) accepted by default.
DEFAULT_MAX_BODY = 50 * 1024 * 1024
#: Largest JSON answer for the model routes (the whole catalogue with schemas is ~100 kB).
MAX_JSON = 16 * 1024 * 1024


@dataclass
class Answer:
    """A finished HTTP exchange whose body is already read (and bounded)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        """The body as JSON, or `BadResponseError` saying what it was instead."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested past the stack
            text = not_json(self.status, self.headers.get("Content-Type", ""), self.body)
            raise BadResponseError(text[0].upper() + text[1:] + ".") from None


class Transport(Protocol):
    """The one HTTP call the client makes, and the limits it reads (see the module doc)."""

    #: Seconds one call may take in all (the session holds a run's budget that long after Stop).
    deadline: float
    #: Connections kept per host: the session replaces a client whose pool is too small.
    pool_size: int
    #: The largest image (file or decoded base64) an answer may carry.
    max_body_bytes: int

    def call(
        self,
        method: str,
        url: str,
        *,
        limit: int,
        json_body: Any = None,
        key: str | None = None,
        cancel: threading.Event | None = None,
        what: str = "answer",
        on_throttle: Callable[[float], None] | None = None,
        on_ok: Callable[[], None] | None = None,
        read_timeout: float | None = None,
    ) -> Answer:
        """Send `method url` (with `json_body`), retrying what may be retried, and return the
        successful answer with its body read under `limit` bytes; else raise an `OxenError`.

        `key` is sent as a bearer token to `url`'s origin only. `on_throttle(delay)`, when given,
        waits instead of the transport before a 429/503 is retried; `on_ok()` is called once the
        server answered with success, before the body is read (a POST is billed then);
        `read_timeout` lets a slow model answer later than the transport's own read timeout."""
        ...

    def close(self) -> None:
        """Release the connections (the transport is not used afterwards)."""
        ...
