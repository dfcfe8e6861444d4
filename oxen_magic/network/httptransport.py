"""The real transport: one pooled `requests.Session`, and each logical call bounded every way.

What a server can make us do is decided here and in the two modules it leans on:
* every body is streamed and cut at a byte cap, against the call's deadline (`bodies.py`);
* every call has an overall deadline, so a server that drips bytes cannot hold a worker forever;
  a slow model's call may wait longer (`read_timeout`, with the deadline stretched to fit it);
* a POST is resent only when the server certainly did not take it (`retries.py`); anything
  that may have been billed is reported as such (`OxenError.maybe_billed`) and never resent;
* redirects are followed by hand, so the key never reaches another origin and an https API is
  never downgraded to plain http off loopback (`origins.py`);
* certificates are checked against `REQUESTS_CA_BUNDLE`, else `SSL_CERT_FILE`, else the bundled
  roots (`certs.py`): a company network with its own certificate authority sets one of them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters

from oxen_magic.core.errors import (
    BadResponseError,
    Cancelled,
    NetworkError,
    OxenError,
    ServerError,
    api_refusal,
    detail_of,
    gateway_sentence,
    http_error,
    redact,
)
from oxen_magic.network.bodies import Dropped, PastDeadline, limit_wait, read_body
from oxen_magic.network.certs import ca_bundle
from oxen_magic.network.origins import check_not_downgraded, join_url, origin, site_of
from oxen_magic.network.retries import (
    backoff_delay,
    late_message,
    network_message,
    never_sent,
    refused,
    retry_after,
    retryable,
    sent_message,
)
from oxen_magic.network.transport import DEFAULT_DEADLINE, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, Answer

#: Error bodies: only the start is read (enough for the message; an HTML page is cut).
MAX_ERROR_BODY = 64 * 1024
MAX_REDIRECTS = 5
BAD_REDIRECT = "The API redirected to an address that is not a web address."
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What one attempt comes to when it may be tried again: the error, and the seconds to wait.
Again = tuple[OxenError, float]


@dataclass(frozen=True)
class _Call:
    """One logical call as `HttpTransport.call` was asked for it (its attempts share this)."""

    method: str
    url: str
    limit: int
    json_body: Any
    key: str | None = None
    what: str = "answer"
    on_ok: Callable[[], None] | None = None
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    stop_at: float = 0.0

    def __repr__(self) -> str:  # never the key
        return f"_Call({self.method} {self.url})"


class HttpTransport:
    """The `Transport` that speaks HTTP (see the module doc); its knobs may be changed live."""

    def __init__(
        self,
        *,
        pool_size: int = 16,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        max_wait: float = 60.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff = backoff
        self.sleep = sleep
        self.max_body_bytes = max_body_bytes or env_max_body()
        self.deadline = deadline
        self.pool_size = pool_size
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"HttpTransport(pool_size={self.pool_size}, deadline={self.deadline:g})"

    def close(self) -> None:
        self.session.close()

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
        """Send with bounded retries, read the body under `limit` bytes, all before the deadline
        (the contract is `transport.Transport.call`'s)."""
        timeout = self.timeout
        if read_timeout is not None and read_timeout > timeout[1]:
            timeout = (timeout[0], read_timeout)
        deadline = self.deadline + max(0.0, timeout[1] - self.timeout[1])
        stop_at = time.monotonic() + deadline
        one = _Call(method, url, limit, json_body, key, what, on_ok, timeout, deadline, stop_at)
        waited = 0.0
        for attempt in range(1, self.max_retries + 2):
            outcome = self._attempt(one, attempt, waited)
            if isinstance(outcome, Answer):
                return outcome
            failure, delay = outcome
            if attempt > self.max_retries or waited + delay > self.max_wait:
                raise failure
            if time.monotonic() + delay > stop_at:
                raise failure
            self._wait(failure, delay, on_throttle, cancel)
            waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, one: _Call, attempt: int, waited: float) -> Answer | Again:
        """Send once: the successful answer, or the failure and delay when it may be retried;
        a failure that must not be retried is raised."""
        try:
            response = self._follow(one)
            if response.status_code < 400:
                if one.on_ok is not None:
                    one.on_ok()
                with response:
                    body = self._read(response, one, one.limit)
                return Answer(response.status_code, response.headers, body, response.url)
            with response:
                body = self._read(response, one, MAX_ERROR_BODY, cut=True)
                error = Answer(response.status_code, response.headers, body, response.url)
        except PastDeadline:
            late = late_message(one.method, one.url, one.deadline)
            raise NetworkError(late, maybe_billed=one.method != "GET") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, Dropped) as exc:
            return self._lost(one, exc, attempt)
        except requests.exceptions.RequestException as exc:
            raise NetworkError(network_message(exc, one.url)) from None
        return self._refused(one, error, attempt, waited)

    def _lost(self, one: _Call, exc: Exception, attempt: int) -> Again:
        """The connection failed. A GET (models, result files) is safe to repeat; a POST is resent
        only if it never reached the server, so a timeout or a dropped answer never bills twice."""
        failure = NetworkError(network_message(exc, one.url))
        if isinstance(exc, requests.exceptions.SSLError):
            raise failure from None  # an untrusted certificate stays untrusted
        if one.method != "GET" and not never_sent(exc):
            raise NetworkError(sent_message(exc, one.url, one.timeout[1]), maybe_billed=True) from None
        if refused(exc) and attempt > 1:  # nothing there: say so after one retry
            raise failure from None
        return failure, backoff_delay(self.backoff, attempt)

    def _refused(self, one: _Call, error: Answer, attempt: int, waited: float) -> Again:
        """The server answered with an error: raised, or returned with its delay when the
        status may be retried and the wait it asks for fits our bounds."""
        if (
            one.method != "GET"
            and error.status == 503
            and not api_refusal(error.headers.get("Retry-After"), error.body)
        ):
            raise self._gateway(error, one)  # a gateway's bare 503: the backend may have taken it
        asked = retry_after(error.headers.get("Retry-After"))
        retry = retryable(one.method)
        if error.status in retry and asked is not None:
            budget = min(self.max_wait - waited, one.stop_at - time.monotonic())
            if asked > budget:  # waiting would break our bounds: say when to come back
                raise self._error(error, one, attempt, asked=asked)
        failure = self._error(error, one, attempt)
        if error.status not in retry:
            raise failure
        return failure, asked if asked is not None else backoff_delay(self.backoff, attempt)

    def _wait(
        self,
        failure: OxenError,
        delay: float,
        on_throttle: Callable[[float], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        """Wait `delay` before the next attempt: the caller's congestion window does it for a
        429/503 when it asked to; a Stop ends the wait (and the call)."""
        if on_throttle is not None and failure.status in (429, 503):
            on_throttle(delay)  # waits at least `delay` (or raises Cancelled)
        elif cancel is not None:
            if cancel.wait(delay):
                raise Cancelled("Stopped before this image was generated.")
        else:
            self.sleep(delay)

    def _follow(self, one: _Call) -> requests.Response:
        """Send, following redirects by hand so the key never leaves the origin it was given
        for, and an https call is never downgraded to plain http off loopback."""
        method, url, json_body = one.method, one.url, one.json_body
        home = origin(one.url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Accept": "application/json"}
            if one.key and origin(url) == home:
                headers["Authorization"] = f"Bearer {one.key}"
            left = one.stop_at - time.monotonic()
            if left <= 0:
                raise PastDeadline
            connect, read = one.timeout
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    timeout=(min(connect, left), min(read, left)),
                    allow_redirects=False,
                    stream=True,
                    verify=ca_bundle(),
                )
            except requests.exceptions.RequestException:
                raise
            except ValueError:  # requests parses a redirect's Location even when not following it
                raise BadResponseError(BAD_REDIRECT) from None
            if response.status_code not in REDIRECTS or not response.headers.get("Location"):
                return response
            target = join_url(url, response.headers["Location"], "redirected to an address")
            response.close()
            check_not_downgraded(url, target, "redirected")
            url = target
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, json_body = "GET", None
        raise BadResponseError(f"Too many redirects from {site_of(url)}.")

    def _read(self, response: requests.Response, one: _Call, limit: int, *, cut: bool = False) -> bytes:
        body = read_body(response, limit, one.stop_at, one.what, one.timeout[1], cut=cut)
        limit_wait(response, self.timeout[1])  # the connection may serve the next request
        return body

    def _error(self, answer: Answer, one: _Call, attempts: int, asked: float | None = None) -> OxenError:
        """The error an answer is, in one sentence (without the key, should a server echo it)."""
        content_type = answer.headers.get("Content-Type", "")
        cls, text = http_error(
            answer.status, content_type, answer.body, attempts=attempts, method=one.method, asked=asked
        )
        maybe = one.method != "GET" and answer.status in (502, 504)
        return cls(redact(text, one.key), answer.status, maybe_billed=maybe)

    def _gateway(self, answer: Answer, one: _Call) -> OxenError:
        """A gateway's error after a POST was sent (maybe billed, never resent)."""
        detail = detail_of(answer.status, answer.headers.get("Content-Type", ""), answer.body)
        return ServerError(
            redact(gateway_sentence(answer.status, detail), one.key), answer.status, maybe_billed=True
        )


def env_max_body() -> int:
    """`OXEN_MAGIC_MAX_BODY_MB` when it is a positive number, else the default cap."""
    try:
        megabytes = float(os.environ.get("OXEN_MAGIC_MAX_BODY_MB", ""))
    except ValueError:
        return DEFAULT_MAX_BODY
    if not 0 < megabytes < 1e6:  # also false for NaN
        return DEFAULT_MAX_BODY
    return int(megabytes * 1024 * 1024)
