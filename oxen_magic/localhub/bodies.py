"""Request bodies, read within a cap decided before the first byte is read.

The framing is checked from the headers alone: a `Content-Length` over the cap is refused with
413 at once (nothing read); a length that is not one plain decimal number (negative, signed,
hexadecimal, several different values), a `Transfer-Encoding` other than `chunked`, or both
headers at once, is a 400. A chunked body is read chunk by chunk, each size line checked (hex
digits only: `-1` does not read to the end of the stream) and the total held to the cap.

A body the route does not need (an unknown path, a request without a valid key) is read and
thrown away in small pieces, so the connection stays usable and nothing is held.

The JSON is then parsed as the API's own parser would: UTF-8 only, no `NaN` or `Infinity`, and no
string holding a lone surrogate (`"\\ud800"`), which cannot be encoded again and which strict
parsers refuse.
"""

from __future__ import annotations

import json
import re
from io import BufferedIOBase
from typing import Any

_PIECE = 64 * 1024
_DECIMAL = re.compile(r"[0-9]{1,40}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_MAX_TRAILERS = 64


class BodyProblem(Exception):
    """The request cannot be read: answer `status` with `title` and hang up."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


def too_large(cap: int) -> BodyProblem:
    return BodyProblem(413, f"Request body too large: the limit is {cap} bytes")


def framing(headers: Any, cap: int) -> int | None:
    """The body's length from the headers alone (0 when there is none), None when chunked.

    Raises `BodyProblem`: 413 for a declared length over `cap`, 400 for a framing that is not
    one plain length or plain chunked."""
    encodings = headers.get_all("Transfer-Encoding") or []
    lengths = headers.get_all("Content-Length") or []
    if encodings:
        if lengths:
            raise BodyProblem(400, "Invalid request: both Content-Length and Transfer-Encoding")
        codings = [c.strip().lower() for value in encodings for c in value.split(",") if c.strip()]
        if codings != ["chunked"]:
            raise BodyProblem(400, "Invalid request: only Transfer-Encoding: chunked is accepted")
        return None
    values = {v.strip() for value in lengths for v in value.split(",")}
    if not values:
        return 0
    value = values.pop()
    if values or not _DECIMAL.fullmatch(value):
        raise BodyProblem(400, "Invalid request: Content-Length must be one whole number of bytes")
    length = int(value)
    if length > cap:
        raise too_large(cap)
    return length


def read_body(rfile: BufferedIOBase, length: int | None, cap: int, keep: bool = True) -> bytes:
    """The body (`length` from `framing`), or b"" with `keep=False` after reading it away.

    Raises `BodyProblem` for a body that ends early, a bad chunk or one over `cap`."""
    if length is not None:
        return _read_exact(rfile, length, keep)
    out = bytearray()
    total = 0
    while True:
        line = rfile.readline(1026)
        if not line.endswith(b"\n"):
            raise BodyProblem(400, "Invalid request: a chunk size line is malformed")
        size_text = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise BodyProblem(400, "Invalid request: a chunk size is not a hexadecimal number")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > cap:
            raise too_large(cap)
        piece = _read_exact(rfile, size, keep)
        if keep:
            out += piece
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BodyProblem(400, "Invalid request: a chunk is longer than its size")
    for _ in range(_MAX_TRAILERS):
        trailer = rfile.readline(8192)
        if trailer in (b"\r\n", b"\n"):
            return bytes(out)
        if not trailer.endswith(b"\n"):
            break
    raise BodyProblem(400, "Invalid request: the chunked body does not end properly")


def _read_exact(rfile: BufferedIOBase, length: int, keep: bool) -> bytes:
    if keep:
        data = rfile.read(length) if length > 0 else b""
        if len(data) < length:
            raise BodyProblem(400, "Invalid request: the body ended before its Content-Length")
        return data
    left = length
    while left > 0:
        piece = rfile.read(min(_PIECE, left))
        if not piece:
            raise BodyProblem(400, "Invalid request: the body ended before its Content-Length")
        left -= len(piece)
    return b""


def parse_json(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(the body when it is a JSON object, else None; why it cannot be used, else None)."""
    if not raw:
        return None, None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "Request body must be JSON in UTF-8"
    try:
        parsed = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None, None
    if _has_lone_surrogate(parsed):
        return None, "Request body must be JSON in UTF-8 (a string holds a lone surrogate)"
    return (parsed, None) if isinstance(parsed, dict) else (None, None)


def _not_json(name: str) -> Any:
    """`NaN`, `Infinity`: Python's parser takes them, JSON (and the API's parser) does not."""
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
