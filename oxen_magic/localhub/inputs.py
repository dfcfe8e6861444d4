"""Fetching `input_image` for the edit route (`oxen-api.md`, "Image inputs").

The API downloads each input from its URL and fails when it cannot ("URLs that require
authentication or block automated access will fail"; the server's error reads like
`... 403 Client Error: Forbidden for url: ...`). The hub fetches, without any credentials:

* its own result URLs, from its store (as the API's presigned URLs need no token); an expired or
  evicted one answers 403, as an expired presigned URL does;
* other loopback `http(s)` URLs, over HTTP (an HTTP error keeps its status in the message);
* `data:` URIs, which the docs leave undocumented: knob `data_uris` (on by default); when off,
  they fail with the message `requests` gives for a scheme it has no adapter for.

Anything else (another machine, a refused connection) is unfetchable: the 403 message. Tests and
workshops stay on loopback.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import unquote_to_bytes, urlsplit

#: Most bytes one input may have (the docs are silent; a knob on the hub).
MAX_INPUT_BYTES = 50 * 1024 * 1024


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InputProblem(Exception):
    """The input cannot be fetched or read; the message is the 400's title."""


def _forbidden(url: str) -> InputProblem:
    return InputProblem(f"Failed to download input image: 403 Client Error: Forbidden for url: {url}")


def _shown(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def _data_uri(url: str) -> bytes:
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise InputProblem(f"Failed to download input image: invalid data URI {_shown(url)}")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InputProblem("Failed to download input image: invalid base64 in data URI") from None
    return unquote_to_bytes(payload)


def _http(url: str, max_bytes: int) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": "LocalOxenHub/1.0"})
    try:
        with opener.open(request, timeout=10) as answer:
            data: bytes = answer.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        kind = "Client" if error.code < 500 else "Server"
        raise InputProblem(
            f"Failed to download input image: {error.code} {kind} Error: {error.reason} for url: {url}"
        ) from None
    except (OSError, ValueError):
        raise _forbidden(url) from None
    if len(data) > max_bytes:
        raise InputProblem(f"Failed to download input image: larger than {max_bytes} bytes: {url}")
    return data


def fetch(
    url: object,
    own: Callable[[str], bytes | None] | None,
    *,
    data_uris: bool = True,
    max_bytes: int = MAX_INPUT_BYTES,
) -> bytes:
    """The bytes behind one `input_image` value, or `InputProblem` saying why not.

    `own(url)` answers the hub's own result URLs: their bytes, None when expired, or raises
    `KeyError` when the URL is not one of the hub's.
    """
    if not isinstance(url, str) or not url.strip():
        raise InputProblem("Invalid input_image: expected a URL")
    url = url.strip()
    if url[:5].lower() == "data:":
        if not data_uris:
            raise InputProblem(
                f"Failed to download input image: No connection adapters were found for '{_shown(url)}'"
            )
        data = _data_uri(url)
        if len(data) > max_bytes:
            raise InputProblem(f"Failed to download input image: larger than {max_bytes} bytes")
        return data
    if own is not None:
        try:
            mine = own(url)
        except KeyError:
            pass
        else:
            if mine is None:
                raise _forbidden(url)
            return mine
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not _loopback(host):
        raise _forbidden(url)
    return _http(url, max_bytes)
