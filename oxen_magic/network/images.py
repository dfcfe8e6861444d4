"""Image bytes into a PIL image, or one clear error: the one decoder every stage uses.

The client checks what the API sent, the runner remakes thumbnails from the cache, and results
decode on demand for `.image`, `.save()` and `.contact_sheet()`: a corrupt or hostile file gives
a `BadResponseError` sentence in each of them, never a Pillow traceback.

A thumbnail needs no full decode: `fit` decodes a JPEG at the smallest of its DCT scales (1/2,
1/4, 1/8) that still covers the thumbnail, a quarter to a sixtieth of the work; PNG and WebP have
no reduced decode in Pillow and decode whole. Full-size pixels are decoded only when asked
(`Item.image`, `.save()`, `.show()`).

A decompression bomb (a small file claiming a huge pixel count) is refused at the header, before
any pixels are allocated: Pillow's `DecompressionBombWarning` (which names file paths inside
Pillow) is caught and turned into the same one-sentence error, so it never reaches the cell.
"""

from __future__ import annotations

import base64
import io
import threading
import warnings

from PIL import Image

from oxen_magic.core.errors import BadResponseError
from oxen_magic.network import fastdecode

#: The MIME type of each image format the API may send and an input image may be (Pillow's names).
MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}

#: `warnings.catch_warnings` swaps process-wide state: one opener at a time (opening reads only
#: the header, so this costs nothing next to decoding, which runs outside the lock).
_OPEN_LOCK = threading.Lock()


def decode_image(data: bytes, *, load: bool = True, fit: int | None = None) -> Image.Image:
    """Decode `data`, or raise `BadResponseError` (never a Pillow traceback or warning).

    With `load=False` only the header is read (format and size; the pixels decode on first use).
    With `fit`, the picture may come out smaller, down to what a `fit` px thumbnail needs (JPEG
    only; every byte of the file is still decoded, so a corrupt one fails here all the same).
    """
    try:
        image = _open(data)
        if fit:
            _draft(image, fit)
        if fit and load:  # a thumbnail's PNG or WebP: imagecodecs when installed, else Pillow
            image = fastdecode.decode(data, image) or image
        if load:
            image.load()
    except Image.DecompressionBombError:
        raise _bomb(data, None) from None
    except BadResponseError:
        raise
    # Pillow's decoders raise more than OSError on malformed files (EOFError, struct.error, ...).
    except Exception as exc:
        known = data.startswith((b"\x89PNG", b"RIFF", b"\xff\xd8\xff", b"GIF8"))
        kind = "truncated or corrupt" if known else "not an image"
        raise BadResponseError(
            f"The image the API returned is {kind} ({len(data)} bytes: {type(exc).__name__})."
        ) from None
    return image


def mime_of(image: Image.Image) -> str:
    """The MIME type of a decoded image's format (a generic one for a format not in MIMES)."""
    return MIMES.get(image.format or "", "application/octet-stream")


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    """`data` as a `data:` URI (thumbnails are JPEG; an input image keeps its own type)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _draft(image: Image.Image, fit: int) -> None:
    """Ask a JPEG for its cheapest DCT scale that still covers the `fit` px box (a no-op for
    other formats): each side at least what `Image.thumbnail` will make of it."""
    if image.format != "JPEG":
        return
    width, height = image.size
    longest = max(width, height)
    if longest <= fit:
        return
    image.draft(None, (max(1, -(-width * fit // longest)), max(1, -(-height * fit // longest))))


def _open(data: bytes) -> Image.Image:
    """`Image.open`, with a decompression-bomb warning raised as our error instead of shown."""
    with _OPEN_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
        raise _bomb(data, image.size)
    return image


def _bomb(data: bytes, size: tuple[int, int] | None) -> BadResponseError:
    pixels = f"{size[0]} x {size[1]} pixels, " if size else ""
    return BadResponseError(
        f"The image the API returned claims to be too large to open safely ({pixels}{len(data)} bytes)."
    )
