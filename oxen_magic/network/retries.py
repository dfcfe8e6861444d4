"""The retry policy: which failures may be sent again, after how long, and what the rest say.

Split from the transport so the rule that keeps a user from being billed twice reads in one
place: a GET (models, result files) is safe to repeat; a POST is resent only when the server
certainly did not take it (429, a 503 the API itself answered, or a connection that failed
before anything was sent). Anything else after a POST went out (a gateway's bare 503, a
502/504, a timeout or a drop) may have been billed: it is reported as such and never resent.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import time
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from oxen_magic.core.errors import sent_sentence
from oxen_magic.network.bodies import Dropped
from oxen_magic.network.origins import site_of

#: A GET may be repeated after any of these; a POST only after 429 and 503 (not taken).
GET_RETRY = frozenset({429, 502, 503, 504})
POST_RETRY = frozenset({429, 503})


def backoff_delay(backoff: float, attempt: int) -> float:
    """Exponential backoff from `backoff` seconds, with jitter, for a failure that named no
    Retry-After (so many clients refused at once do not all come back together)."""
    return backoff * 2 ** (attempt - 1) * (0.5 + random.random())


def retryable(method: str) -> frozenset[int]:
    """The statuses after which `method` may be sent again."""
    return GET_RETRY if method == "GET" else POST_RETRY


def retry_after(value: str | None) -> float | None:
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


def never_sent(exc: Exception) -> bool:
    """True when the connection failed before the request went out (refused, DNS, connect)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def refused(exc: Exception) -> bool:
    """Nothing listens on that port, or the name does not resolve (no network, a typo): waiting
    minutes of backoff would not change it, so one retry, then the sentence."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return (
        isinstance(getattr(reason, "__cause__", None), ConnectionRefusedError)
        or isinstance(reason, urllib3.exceptions.NameResolutionError)
        or (isinstance(reason, urllib3.exceptions.NewConnectionError) and "refused" in str(reason).lower())
    )


# -- what a failed connection says -------------------------------------------------------------


def late_message(method: str, url: str, deadline: float) -> str:
    """The call's deadline passed (a POST may have been billed by then)."""
    where = site_of(url)
    if method == "GET":
        return f"{where} did not finish answering within {deadline:g} s; try again later."
    return (
        f"{where} did not finish answering within {deadline:g} s, so the image may have "
        "been billed; it was not resent, and a rerun asks again."
    )


def sent_message(exc: Exception, url: str, read_timeout: float) -> str:
    """A POST that was sent but never answered: it may have been billed."""
    timed_out = isinstance(exc, Dropped) and exc.timed_out
    timed_out = timed_out or isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower()
    return sent_sentence(site_of(url), read_timeout if timed_out else None)


def network_message(exc: Exception, url: str) -> str:
    """One sentence for a connection that failed: timeout, DNS, refused, certificate, TLS, drop."""
    text = str(exc)
    where = site_of(url)
    timed_out = isinstance(exc, Dropped) and exc.timed_out
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
