"""Fetching `input_image` for the edit route (`oxen-api.md`, "Image inputs").

The API downloads each input from its URL and fails when it cannot ("URLs that require
authentication or block automated access will fail"; the server's error reads like
`... 403 Client Error: Forbidden for url: ...`). The hub fetches, without any credentials:

* its own result URLs, from its store (as the API's presigned URLs need no token); an expired or
  evicted one answers 403, as an expired presigned URL does;
* other loopback `http(s)` URLs, over HTTP;
* `data:` URIs, which the docs leave undocumented: knob `data_uris` (on by default); when off,
  they fail with the message `requests` gives for a scheme it has no adapter for.

Anything else (another machine, a refused connection) is unfetchable: the 403 message. Tests and
workshops stay on loopback.

The hub must not become a way to probe the machine it runs on (server-side request forgery):

* a redirect is followed only to a URL the same rule allows (loopback, the hub's own results,
  a `data:` URI), checked again on every hop, at most `MAX_HOPS` of them;
* every failure of a fetch over HTTP (refused port, any status, a refused redirect, too large,
  not an image) gives the same sentence naming only the URL the request gave, so the answers
  do not tell which loopback ports and paths exist;
* an image's pixel count is checked from its header before anything decodes it (a 20 KB PNG can
  claim 13000 x 13000 pixels), and Pillow's decompression-bomb warning is an error.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import ipaddress
import ssl
import warnings
from collections.abc import Callable
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

from PIL import Image

from oxen_magic.network.images import _OPEN_LOCK

#: Most bytes one input may have (the docs are silent; a knob on the hub).
MAX_INPUT_BYTES = 50 * 1024 * 1024
#: Most pixels one input may claim (a 48-megapixel photo passes; a knob on the hub).
MAX_INPUT_PIXELS = 50_000_000
#: Redirects followed for one input, each checked like the first URL.
MAX_HOPS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InputProblem(Exception):
    """The input cannot be fetched or read; the message is the 400's title."""


class _Unfetchable(Exception):
    """A fetch over HTTP failed, for whatever reason (reported as the one generic sentence)."""


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


def _get(url: str, max_bytes: int) -> tuple[int, str | None, bytes]:
    """(status, Location, body up to max_bytes + 1) of one GET to an allowed loopback URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise _Unfetchable from None
    conn: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target, headers={"User-Agent": "LocalOxenHub/1.0", "Accept": "*/*"})
        answer = conn.getresponse()
        if answer.status in _REDIRECTS:
            return answer.status, answer.getheader("Location"), b""
        return answer.status, None, answer.read(max_bytes + 1) if answer.status == 200 else b""
    except (OSError, http.client.HTTPException, ValueError):
        raise _Unfetchable from None
    finally:
        conn.close()


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
    data, _ = _fetch(url, own, data_uris, max_bytes)
    return data


def _fetch(
    url: object, own: Callable[[str], bytes | None] | None, data_uris: bool, max_bytes: int
) -> tuple[bytes, bool]:
    """(bytes, whether they came over HTTP from a server other than the hub)."""
    if not isinstance(url, str) or not url.strip():
        raise InputProblem("Invalid input_image: expected a URL")
    given = url.strip()
    current = given
    for _ in range(MAX_HOPS + 1):
        if current[:5].lower() == "data:":
            if not data_uris:
                problem = f"No connection adapters were found for '{_shown(current)}'"
                raise InputProblem(f"Failed to download input image: {problem}")
            data = _data_uri(current)
            if len(data) > max_bytes:
                raise InputProblem(f"Failed to download input image: larger than {max_bytes} bytes")
            return data, False
        if own is not None:
            try:
                mine = own(current)
            except KeyError:
                pass
            else:
                if mine is None:
                    raise _forbidden(given)
                return mine, False
        parts = urlsplit(current)
        if parts.scheme.lower() not in ("http", "https") or not _loopback((parts.hostname or "").lower()):
            raise _forbidden(given)
        try:
            status, location, data = _get(current, max_bytes)
        except _Unfetchable:
            raise _forbidden(given) from None
        if status in _REDIRECTS and location:
            current = urljoin(current, location.strip())
            continue
        if status != 200 or len(data) > max_bytes:
            raise _forbidden(given)
        return data, True
    raise _forbidden(given)


def load(
    url: object,
    own: Callable[[str], bytes | None] | None,
    *,
    data_uris: bool = True,
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int | None = MAX_INPUT_PIXELS,
) -> bytes:
    """The bytes of one input image, fetched (`fetch`) and checked to be an image within
    `max_pixels` from its header, before anything decodes it; `InputProblem` otherwise. An
    input fetched over HTTP that fails a check fails with the same sentence as a failed fetch."""
    data, over_http = _fetch(url, own, data_uris, max_bytes)
    try:
        _check_image(data, max_pixels)
    except InputProblem:
        if over_http:
            raise _forbidden(str(url).strip()) from None
        raise
    return data


def _check_image(data: bytes, max_pixels: int | None) -> None:
    """Refuse what is not an image, or claims more than `max_pixels` (from the header alone;
    Pillow's decompression-bomb warning is an error too), then `verify()` the rest."""
    too_many = InputProblem(
        "Failed to load input image: it claims too many pixels to open safely; send a smaller image"
    )
    try:
        with _OPEN_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise too_many from None
    except Exception:
        raise InputProblem("Failed to load input image: cannot identify image file") from None
    with img:
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise InputProblem(
                f"Failed to load input image: {width} x {height} pixels is over the limit of "
                f"{max_pixels} pixels; send a smaller image"
            )
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            raise too_many
        try:
            img.verify()
        except Exception:
            raise InputProblem("Failed to load input image: cannot identify image file") from None
