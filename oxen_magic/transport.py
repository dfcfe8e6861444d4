"""Sending one logical call to the API: retries, redirects, and bounded streamed reads.

Split from `client.py` so the rules about what a server can make us do live in one place:
* every body (JSON answers, result files, error pages) is streamed and cut at a byte cap, so a
  hostile or broken server can never make the kernel hold more than the cap; past a few MB it is
  spooled to a temporary file, so several oversized answers at once stay small in memory too;
* every call has an overall deadline, checked while headers and body arrive, so a server that
  drips a byte every few seconds is cut off instead of holding a worker (and Ctrl-C) forever;
* a POST is resent only when the server certainly did not take it (429, a 503 the API itself
  answered with a Retry-After or its JSON error, or a connection that failed before sending); a
  gateway's bare 503, a 502/504, or a timeout or drop after sending may have been billed, so it
  is reported as such (`OxenError.maybe_billed`) and never resent; a GET is safe to repeat;
* a slow model's call may wait longer (`timeout=` per call: the read timeout, with the deadline
  stretched to fit it);
* redirects are followed by hand, so the key never reaches another origin and an https API is
  never downgraded to plain http off loopback;
* certificates are checked against `REQUESTS_CA_BUNDLE`, else `SSL_CERT_FILE`, else the bundled
  roots (`ca_bundle`): a company network with its own certificate authority sets one of them.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.exceptions

from .certs import ca_bundle
from .errors import (
    BadResponseError,
    Cancelled,
    NetworkError,
    OxenError,
    ServerError,
    api_refusal,
    detail_of,
    gateway_sentence,
    http_error,
    not_json,
    sent_sentence,
    too_large,
)
from .origins import check_not_downgraded, join_url, origin, site_of

#: (connect, read) seconds. Generation is documented at 5-30 s; queues make it longer.
DEFAULT_TIMEOUT = (10.0, 180.0)
#: Seconds one logical call (every attempt, wait and byte of the answer) may take in all; a call
#: given a longer read timeout gets this much more than that timeout.
DEFAULT_DEADLINE = 300.0
#: Largest result body (an image file, or the decoded `b64_json`) accepted by default.
DEFAULT_MAX_BODY = 50 * 1024 * 1024
#: Largest JSON answer for the model routes (the whole catalogue with schemas is ~100 kB).
MAX_JSON = 16 * 1024 * 1024
#: Error bodies: only the start is read (enough for the message; an HTML page is cut).
MAX_ERROR_BODY = 64 * 1024
#: Bodies are kept in memory up to this size, then spooled to a temporary file.
SPOOL_BYTES = 4 * 1024 * 1024
CHUNK = 256 * 1024
#: A GET may be repeated after any of these; a POST only after 429 and 503 (not taken).
GET_RETRY = frozenset({429, 502, 503, 504})
POST_RETRY = frozenset({429, 503})
MAX_REDIRECTS = 5
BAD_REDIRECT = "The API redirected to an address that is not a web address."


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


class _Dropped(Exception):
    """The connection failed while the body was arriving (wraps the low-level cause)."""

    def __init__(self, cause: BaseException, timed_out: bool) -> None:
        super().__init__(str(cause))
        self.timed_out = timed_out


class _Deadline(Exception):
    """The call's overall deadline passed."""


class Transport:
    """The HTTP half of `OxenClient`: one pooled `requests.Session`, bounded calls."""

    base: str

    def __init__(
        self,
        *,
        pool_size: int,
        timeout: tuple[float, float],
        max_retries: int,
        max_wait: float,
        backoff: float,
        sleep: Callable[[float], None],
        max_body_bytes: int,
        deadline: float,
    ) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff = backoff
        self._sleep = sleep
        self.max_body_bytes = max_body_bytes
        self.deadline = deadline
        self.pool_size = pool_size
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def scrub(self, text: str) -> str:
        """Overridden by the client: `text` without the key."""
        return text

    def close(self) -> None:
        self.session.close()

    # -- one logical call ---------------------------------------------------------------------
    def _call(
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
        timeout: tuple[float, float] | None = None,
    ) -> Answer:
        """Send with bounded retries, read the body under `limit` bytes, all before the deadline.

        `on_throttle(delay)`, when given, is called instead of sleeping before a 429/503 is
        retried: the runner's congestion window learns of it, then does the waiting. `on_ok()`
        is called once the server answered with success, before its body is read (for a POST
        that is when the API bills, whatever becomes of the body). `timeout` (connect, read)
        replaces the client's for this call (a slow model); the deadline then leaves room for the
        whole read timeout and the usual margin besides."""
        timeout = timeout or self.timeout
        deadline = self.deadline + max(0.0, timeout[1] - self.timeout[1])
        stop_at = time.monotonic() + deadline
        retry = GET_RETRY if method == "GET" else POST_RETRY
        waited = 0.0
        for attempt in range(1, self.max_retries + 2):
            asked: float | None = None
            try:
                response = self._follow(method, url, json_body, key, stop_at, timeout)
                if response.status_code < 400:
                    if on_ok is not None:
                        on_ok()
                    with response:
                        body = self._read(response, limit, stop_at, what, timeout[1])
                    return Answer(response.status_code, response.headers, body, response.url)
                with response:
                    error = Answer(
                        response.status_code,
                        response.headers,
                        self._read(response, MAX_ERROR_BODY, stop_at, what, timeout[1], cut=True),
                        response.url,
                    )
            except _Deadline:
                late = self._late_message(method, url, deadline)
                raise NetworkError(late, maybe_billed=method != "GET") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, _Dropped) as exc:
                # A GET (models, result files) is safe to repeat; a POST is resent only if it
                # never reached the server, so a timeout or a dropped answer never bills twice.
                failure: OxenError = NetworkError(self._network_message(exc, url))
                if isinstance(exc, requests.exceptions.SSLError):
                    raise failure from None  # an untrusted certificate stays untrusted
                if method != "GET" and not _never_sent(exc):
                    raise NetworkError(self._sent_message(exc, url, timeout[1]), maybe_billed=True) from None
                if _refused(exc) and attempt > 1:  # nothing there: say so after one retry
                    raise failure from None
                delay = self._delay(attempt, None)
            except requests.exceptions.RequestException as exc:
                raise NetworkError(self._network_message(exc, url)) from None
            else:
                if (
                    method != "GET"
                    and error.status == 503
                    and not api_refusal(error.headers.get("Retry-After"), error.body)
                ):  # a gateway's bare 503: the backend may have taken it, as after a 504
                    raise self._gateway(error)
                asked = _retry_after(error.headers.get("Retry-After"))
                if error.status in retry and asked is not None:
                    budget = min(self.max_wait - waited, stop_at - time.monotonic())
                    if asked > budget:  # waiting would break our bounds: say when to come back
                        raise self._error(error, attempt, method, asked=asked)
                failure = self._error(error, attempt, method)
                if error.status not in retry:
                    raise failure
                delay = asked if asked is not None else self._delay(attempt, None)
            if attempt > self.max_retries or waited + delay > self.max_wait:
                raise failure
            if time.monotonic() + delay > stop_at:
                raise failure
            if on_throttle is not None and failure.status in (429, 503):
                on_throttle(delay)  # waits at least `delay` (or raises Cancelled)
            elif cancel is not None:
                if cancel.wait(delay):
                    raise Cancelled("Stopped before this image was generated.")
            else:
                self._sleep(delay)
            waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def _follow(
        self,
        method: str,
        url: str,
        json_body: Any,
        key: str | None,
        stop_at: float,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send, following redirects by hand so the token never leaves the API's origin."""
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Accept": "application/json"}
            if key and origin(url) == origin(self.base):
                headers["Authorization"] = f"Bearer {key}"
            left = stop_at - time.monotonic()
            if left <= 0:
                raise _Deadline
            connect, read = timeout or self.timeout
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
            if response.status_code not in (301, 302, 303, 307, 308) or not response.headers.get("Location"):
                return response
            target = join_url(url, response.headers["Location"], "redirected to an address")
            response.close()
            check_not_downgraded(url, target, "redirected")
            url = target
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, json_body = "GET", None
        raise BadResponseError(f"Too many redirects from {site_of(url)}.")

    def _read(
        self,
        response: requests.Response,
        limit: int,
        stop_at: float,
        what: str,
        read_timeout: float | None = None,
        *,
        cut: bool = False,
    ) -> bytes:
        """The body, streamed: refused past `limit` bytes (or, with `cut`, its first `limit`
        bytes), abandoned at the deadline. Past SPOOL_BYTES it waits in a temporary file."""
        length = response.headers.get("Content-Length", "")
        if not cut and length.isdigit() and int(length) > limit:
            raise too_large(what, limit)
        raw = response.raw
        # read1 returns what has arrived (a drip cannot stall a full-size read); decode_content
        # undoes a gzip/deflate Content-Encoding, and the cap counts the decoded bytes.
        read = getattr(raw, "read1", None) or raw.read
        total = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
            while True:
                left = stop_at - time.monotonic()
                if left <= 0:
                    raise _Deadline
                _limit_wait(response, min(read_timeout or self.timeout[1], left))
                try:
                    chunk = read(CHUNK, decode_content=True)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    timed_out = isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError))
                    if timed_out and stop_at - time.monotonic() <= 0.05:
                        raise _Deadline from None
                    raise _Dropped(exc, timed_out) from None
                if not chunk:
                    break
                if total + len(chunk) > limit:
                    if cut:
                        buffer.write(chunk[: limit - total])
                        break
                    raise too_large(what, limit)
                total += len(chunk)
                buffer.write(chunk)
            _limit_wait(response, self.timeout[1])  # the connection may serve the next request
            buffer.seek(0)
            return buffer.read()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After (seconds or an HTTP date) when given, else exponential backoff + jitter."""
        asked = _retry_after(retry_after)
        if asked is not None:
            return asked
        return self.backoff * 2 ** (attempt - 1) * (0.5 + random.random())

    def _error(
        self, answer: Answer, attempts: int = 1, method: str = "GET", asked: float | None = None
    ) -> OxenError:
        cls, text = http_error(
            answer.status,
            answer.headers.get("Content-Type", ""),
            answer.body,
            attempts=attempts,
            method=method,
            asked=asked,
        )
        maybe = method != "GET" and answer.status in (502, 504)
        return cls(self.scrub(text), answer.status, maybe_billed=maybe)

    def _gateway(self, answer: Answer) -> OxenError:
        """A gateway's error after a POST was sent (maybe billed, never resent)."""
        detail = detail_of(answer.status, answer.headers.get("Content-Type", ""), answer.body)
        text = self.scrub(gateway_sentence(answer.status, detail))
        return ServerError(text, answer.status, maybe_billed=True)

    def _late_message(self, method: str, url: str, deadline: float) -> str:
        where = site_of(url)
        if method == "GET":
            return f"{where} did not finish answering within {deadline:g} s; try again later."
        return (
            f"{where} did not finish answering within {deadline:g} s, so the image may have "
            "been billed; it was not resent, and a rerun asks again."
        )

    def _sent_message(self, exc: Exception, url: str, read_timeout: float) -> str:
        """A POST that was sent but never answered: it may have been billed."""
        timed_out = isinstance(exc, _Dropped) and exc.timed_out
        timed_out = (
            timed_out or isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower()
        )
        return sent_sentence(site_of(url), read_timeout if timed_out else None)

    def _network_message(self, exc: Exception, url: str) -> str:
        text = str(exc)
        where = site_of(url)
        timed_out = isinstance(exc, _Dropped) and exc.timed_out
        if timed_out or "timed out" in text.lower() or isinstance(exc, requests.exceptions.Timeout):
            return f"{where} did not answer in time (timeout); check your network and try again."
        if (
            "Name or service not known" in text
            or "nodename nor servname" in text
            or ("getaddrinfo" in text or "NameResolution" in text)
        ):
            named = " and OXEN_HOST" if os.environ.get("OXEN_HOST") else ""
            return f"Cannot find the host {where} (DNS failed); check your network{named}."
        if "refused" in text.lower():
            return f"Cannot connect to {where} (connection refused); is the server running?"
        if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in text:
            return (
                f"Cannot trust the certificate of {where} (SSL verification failed); on a network with "
                "its own certificate authority, set REQUESTS_CA_BUNDLE to its bundle (a .pem file)."
            )
        if isinstance(exc, requests.exceptions.SSLError):
            plain = "http://" + urlsplit(url).netloc
            return f"Cannot talk https to {where} (SSL failed); if it serves plain http, use {plain}."
        return f"Lost the connection to {where}; check your network and try again."


# -- helpers ------------------------------------------------------------------------------------


def _limit_wait(response: requests.Response, seconds: float) -> None:
    """Bound the next socket read by what is left of the deadline (best effort)."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(0.01, seconds))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (from seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):  # unreadable: back off as if it were absent
            return None
        if when is None:
            return None
        try:
            seconds = when.timestamp() - time.time()
        except (OverflowError, ValueError, OSError):
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _never_sent(exc: Exception) -> bool:
    """True when the connection failed before the request went out (refused, DNS, connect)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _refused(exc: Exception) -> bool:
    """Nothing listens on that port, or the name does not resolve (no network, a typo): waiting
    minutes of backoff would not change it, so one retry, then the sentence."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return (
        isinstance(getattr(reason, "__cause__", None), ConnectionRefusedError)
        or isinstance(reason, urllib3.exceptions.NameResolutionError)
        or (isinstance(reason, urllib3.exceptions.NewConnectionError) and "refused" in str(reason).lower())
    )
