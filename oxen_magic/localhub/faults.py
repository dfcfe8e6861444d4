"""Failure injection: what a flaky gateway or a broken server would answer, for tests.

* `fail_next` queues statuses: 429 answers the rate-limit JSON (`oxen-api.md`, "Errors"; with
  Retry-After when given, which the docs leave undocumented), 503 the API's own JSON error (it
  took nothing: a client may resend), other 5xx a proxy's HTML page, other codes the API's JSON
  error. `gateway=True` makes a 503 a proxy's bare page too (no Retry-After unless given: as
  ambiguous as a 504), `gateway=False` any 5xx the API's JSON. `after_billing` makes the image
  first (a gateway 504 that arrives after the backend billed, as the docs warn).
* `fail_rate` answers a seeded share of calls with a transient 503 (the API's JSON).
* `garbage` answers each generate call with something a client cannot use (`GARBAGE_KINDS`).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from oxen_magic.localhub.replies import _error_reply, _html_reply, _json_bytes, _Reply

GARBAGE_KINDS = frozenset({"html", "non_json", "no_images", "bad_base64", "not_image", "truncated"})


@dataclass
class _Failure:
    status: int
    retry_after: float | str | None
    after_billing: bool = False
    gateway: bool | None = None  # None: a proxy's page for 5xx but 503, the API's JSON otherwise


class FaultQueue:
    """Pending injected failures, the random transient-503 rate and the garbage mode: the hub's
    fault injection, taken by the image routes before each request."""

    def __init__(self, fail_rate: float = 0.0, seed: int = 0) -> None:
        self.fail_rate = fail_rate
        self._pending: deque[_Failure] = deque()
        self._rng = random.Random(seed)
        self._garbage: str | None = None
        self._lock = threading.Lock()

    @property
    def garbage(self) -> str | None:
        """When set, every generate call answers this kind of unusable response (`GARBAGE_KINDS`)."""
        return self._garbage

    @garbage.setter
    def garbage(self, kind: str | None) -> None:
        if kind is not None and kind not in GARBAGE_KINDS:
            raise ValueError(f"garbage must be None or one of {', '.join(sorted(GARBAGE_KINDS))}")
        self._garbage = kind

    def add(
        self,
        n: int,
        status: int,
        retry_after: float | str | None,
        after_billing: bool,
        gateway: bool | None = None,
    ) -> None:
        with self._lock:
            self._pending.extend(_Failure(status, retry_after, after_billing, gateway) for _ in range(n))

    def clear(self) -> None:
        """Forget pending failures and the garbage mode (the rate stays)."""
        with self._lock:
            self._pending.clear()
            self._garbage = None

    def take(self) -> _Failure | None:
        """The failure the next request gets, or None."""
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
                return _Failure(503, None)
            return None


_TITLES = {503: "Service temporarily unavailable; the request was not processed"}


def retry_after_value(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def failure_reply(failure: _Failure) -> _Reply:
    status = failure.status
    gateway = failure.gateway if failure.gateway is not None else status >= 500 and status != 503
    reply = _html_reply(status) if gateway else _error_reply(status, _TITLES.get(status))
    if failure.retry_after is not None:
        reply.headers["Retry-After"] = retry_after_value(failure.retry_after)
    return reply


def garbage_reply(
    kind: str,
    name: str,
    images_reply: Callable[[bytes], _Reply],
    png: Callable[[], bytes],
) -> _Reply:
    """The unusable answer of `kind`. `images_reply(data)` wraps bytes as the hub would answer
    them (URL or b64_json, as requested); `png()` draws the request's picture as PNG."""
    if kind == "html":
        page = "<!DOCTYPE html><html><body><h1>Welcome to Oxen.ai</h1></body></html>"
        return _Reply(200, page.encode(), "text/html; charset=utf-8")
    if kind == "non_json":
        return _Reply(200, b'{"model": "oops", "images": [', "application/json")
    if kind == "no_images":
        return _Reply(200, _json_bytes({"model": name, "created": int(time.time())}))
    if kind == "bad_base64":
        images = [{"b64_json": "this is *not* base64 at all!"}]
        return _Reply(200, _json_bytes({"model": name, "created": int(time.time()), "images": images}))
    if kind == "not_image":
        return images_reply(b"These bytes are not an image. " * 8)
    if kind == "truncated":
        data = png()
        return images_reply(data[: len(data) // 2])
    return _error_reply(500, f"Unknown garbage kind: {kind}")
