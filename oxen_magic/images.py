"""Image bytes into a PIL image, or one clear error: the one decoder every stage uses.

The client checks what the API sent, the runner remakes thumbnails from the cache, and results
decode on demand for `.image`, `.save()` and `.contact_sheet()`: a corrupt or hostile file gives
a `BadResponseError` sentence in each of them, never a Pillow traceback.
"""

from __future__ import annotations

import io

from PIL import Image

from .errors import BadResponseError


def decode_image(data: bytes, *, load: bool = True) -> Image.Image:
    """Fully decode `data`, or raise `BadResponseError` (never a Pillow traceback).

    With `load=False` only the header is read (format and size; the pixels decode on first use).
    """
    try:
        image = Image.open(io.BytesIO(data))
        if load:
            image.load()
    except Image.DecompressionBombError:
        raise BadResponseError(
            f"The image the API returned claims to be too large to open safely ({len(data)} bytes)."
        ) from None
    # Pillow's decoders raise more than OSError on malformed files (EOFError, struct.error, ...).
    except Exception as exc:
        known = data.startswith((b"\x89PNG", b"RIFF", b"\xff\xd8\xff", b"GIF8"))
        kind = "truncated or corrupt" if known else "not an image"
        raise BadResponseError(
            f"The image the API returned is {kind} ({len(data)} bytes: {type(exc).__name__})."
        ) from None
    return image
