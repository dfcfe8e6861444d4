"""Stand-ins for the network, for tests of the logic above it (no sockets, no threads, no clock).

`FakeTransport` is a `oxen_magic.network.transport.Transport`: hand it to `OxenClient(transport=...)`
and script what the API answers. Replies are either fixed per route (`fake.on("GET",
"/api/ai/models", reply)`: every matching call gets it) or queued (`fake.queue(reply, ...)`: each
call with no route takes the next). A reply is an `Answer` (see `answer`, `json_answer`,
`image_answer`), an `OxenError` to raise, or a function of the `Call` returning either. Every
call is recorded in `fake.calls`, with the key it was given, so a test can assert what was
sent where. Like the real transport, `on_ok` is called before a successful answer is returned.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from oxen_magic.core.errors import OxenError, too_large
from oxen_magic.network.transport import DEFAULT_DEADLINE, DEFAULT_MAX_BODY, Answer


@dataclass
class Call:
    """One call the client made, as the transport was asked for it."""

    method: str
    url: str
    json_body: Any
    key: str | None
    limit: int
    what: str
    read_timeout: float | None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


Reply = Answer | OxenError | Callable[[Call], Answer | OxenError]


class FakeTransport:
    """A scripted `Transport` that records its calls (see the module doc)."""

    def __init__(
        self, *replies: Reply, max_body_bytes: int = DEFAULT_MAX_BODY, deadline: float = DEFAULT_DEADLINE
    ) -> None:
        self.deadline = deadline
        self.pool_size = 16
        self.max_body_bytes = max_body_bytes
        self.calls: list[Call] = []
        self.closed = False
        self._queue: deque[Reply] = deque(replies)
        self._routes: dict[tuple[str, str], Reply] = {}

    def on(self, method: str, path: str, reply: Reply) -> FakeTransport:
        """Answer every `method` call to `path` (the URL's path, query aside) with `reply`."""
        self._routes[(method, path)] = reply
        return self

    def queue(self, *replies: Reply) -> FakeTransport:
        """Answer the next calls that no route matches with `replies`, in order."""
        self._queue.extend(replies)
        return self

    def call(
        self,
        method: str,
        url: str,
        *,
        limit: int,
        json_body: Any = None,
        key: str | None = None,
        cancel: Any = None,
        what: str = "answer",
        on_throttle: Callable[[float], None] | None = None,
        on_ok: Callable[[], None] | None = None,
        read_timeout: float | None = None,
    ) -> Answer:
        body = json.loads(json.dumps(json_body)) if json_body is not None else None  # as sent
        made = Call(method, url, body, key, limit, what, read_timeout)
        self.calls.append(made)
        reply = self._routes.get((method, made.path))
        if reply is None:
            assert self._queue, f"the fake transport has no answer for {method} {url}"
            reply = self._queue.popleft()
        if callable(reply) and not isinstance(reply, (Answer, OxenError)):
            reply = reply(made)
        if isinstance(reply, OxenError):
            raise reply
        if len(reply.body) > limit:
            raise too_large(what, limit)
        if on_ok is not None:
            on_ok()
        return Answer(reply.status, reply.headers, reply.body, reply.url or url)

    def close(self) -> None:
        self.closed = True

    def paths(self, method: str | None = None) -> list[str]:
        """The paths called, in order (only `method`'s when given)."""
        return [c.path for c in self.calls if method is None or c.method == method]


def answer(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, dict(headers or {}), body, "")


def json_answer(obj: Any, status: int = 200) -> Answer:
    return answer(json.dumps(obj).encode(), status, {"Content-Type": "application/json"})


def png(size: tuple[int, int] = (8, 8), color: str = "red", fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def image_answer(data: bytes) -> Answer:
    """A result file, as a CDN or the API's own files route serves it."""
    return answer(data, 200, {"Content-Type": "image/png"})
