"""Reading a response body the server may make huge or slow: streamed, capped, against a deadline.

Split from the transport so the one rule a hostile or broken server meets here stays in one
place: the kernel never holds more than the cap (past a few MB the body waits in a temporary
file, so several large answers at once stay small in memory), and a server that drips a byte
every few seconds is cut off at the call's deadline instead of holding a worker (and Ctrl-C).
"""

from __future__ import annotations

import contextlib
import tempfile
import time

import requests
import urllib3.exceptions

from oxen_magic.core.errors import too_large

#: Bodies are kept in memory up to this size, then spooled to a temporary file.
SPOOL_BYTES = 4 * 1024 * 1024
CHUNK = 256 * 1024


class Dropped(Exception):
    """The connection failed while the body was arriving (wraps the low-level cause)."""

    def __init__(self, cause: BaseException, timed_out: bool) -> None:
        super().__init__(str(cause))
        self.timed_out = timed_out


class PastDeadline(Exception):
    """The call's overall deadline passed."""


def read_body(
    response: requests.Response,
    limit: int,
    stop_at: float,
    what: str,
    read_timeout: float,
    *,
    cut: bool = False,
) -> bytes:
    """The body, streamed: refused past `limit` bytes (or, with `cut`, its first `limit`
    bytes), abandoned at `stop_at` (a `time.monotonic()`); each read waits `read_timeout` at most.
    Past SPOOL_BYTES it waits in a temporary file."""
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
                raise PastDeadline
            limit_wait(response, min(read_timeout, left))
            try:
                chunk = read(CHUNK, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                timed_out = isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError))
                if timed_out and stop_at - time.monotonic() <= 0.05:
                    raise PastDeadline from None
                raise Dropped(exc, timed_out) from None
            if not chunk:
                break
            if total + len(chunk) > limit:
                if cut:
                    buffer.write(chunk[: limit - total])
                    break
                raise too_large(what, limit)
            total += len(chunk)
            buffer.write(chunk)
        buffer.seek(0)
        return buffer.read()


def limit_wait(response: requests.Response, seconds: float) -> None:
    """Bound the next socket read by `seconds` (best effort)."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(0.01, seconds))
