"""A faster decode of PNG and WebP thumbnails, when the optional `imagecodecs` is installed.

Why: every image that arrives is decoded once for its thumbnail, and for PNG and WebP that
decode is most of the client's CPU per image. Pillow has no reduced decode for either (JPEG
already decodes at reduced scale, through `draft`), and it decodes WebP through libwebp's
animation decoder into an RGBA canvas. `imagecodecs` (`pip install oxen_magic[fast]`, which
needs numpy) binds the same kind of libraries more directly: libspng for PNG, and libwebp's
plain still-image decode for WebP. Pillow stays the only required decoder: without `imagecodecs`, or
for anything the fast path does not cover, nothing changes.

The fast path only ever runs after Pillow has read and checked the header (`images.decode_image`:
the decompression-bomb refusal comes first), only for the common still-image layouts whose
pixels it gives exactly as Pillow would (8-bit grey, RGB or RGBA PNG; still RGB or RGBA WebP),
and any failure of it is answered by returning None: Pillow then decodes the same bytes, so a
corrupt file fails with the very sentence it always had, and a file Pillow accepts is never
refused here. Full-size decodes (`Item.image`, `.save()`) stay with Pillow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

#: (format, Pillow's mode) -> the channels the decoder gives, and the mode that holds them as
#: they are. Pillow keeps RGB in 4 bytes a pixel, so an RGB array is copied once (`fromarray`);
#: 4-channel and grey arrays are wrapped without a copy (`frombuffer`), which on this kind of
#: machine also saves the page faults of a second 4 MB buffer (about 3 ms a WebP, measured).
#: An RGB WebP is decoded with its (opaque) alpha for that reason, and read as RGBX: one more
#: byte a pixel is cheaper than a copy, and the thumbnail is the same.
_OUTPUT: dict[tuple[str, str], tuple[tuple[int, ...], str]] = {
    ("PNG", "L"): ((), "L"),
    ("PNG", "RGB"): ((3,), "RGB"),
    ("PNG", "RGBA"): ((4,), "RGBA"),
    ("WEBP", "RGB"): ((4,), "RGBX"),
    ("WEBP", "RGBA"): ((4,), "RGBA"),
}
#: PNG colour types (IHDR byte 25) whose 8-bit pixels both libraries give alike: grey, RGB, RGBA.
_PNG_COLOUR = {0: "L", 2: "RGB", 6: "RGBA"}

Decoder = Callable[[bytes], Any]


def codecs() -> Any | None:
    """The `imagecodecs` module, or None when it is not installed (or cannot load: a broken
    binary wheel raises more than ImportError). Asked only for a PNG or WebP; when it is absent
    the failed import costs about 0.1 ms, next to a Pillow decode of 12 ms or more."""
    try:
        import imagecodecs
    except Exception:
        return None
    return imagecodecs


def decode(data: bytes, image: Image.Image) -> Image.Image | None:
    """`image`'s pixels decoded by `imagecodecs`, or None: not installed, a format or layout it
    does not cover, or bytes it refuses (the caller then decodes with Pillow as before).

    `image` is Pillow's opened, not yet loaded, image of `data`: its header is what decides.
    The result is read-only, and an RGB WebP comes back as RGBX (the same pixels).
    """
    key = (str(image.format), image.mode)
    if key not in _OUTPUT or getattr(image, "n_frames", 1) != 1:
        return None  # animations (APNG, animated WebP) and other layouts: Pillow's own decode
    if key[0] == "PNG" and _png_layout(data) != image.mode:
        return None
    module = codecs()
    decoder = None if module is None else _decoder(module, key[0])
    if decoder is None:
        return None
    try:
        pixels = decoder(data)
    except Exception:  # each codec has its own error class; Pillow will name what is wrong
        return None
    channels, mode = _OUTPUT[key]
    if tuple(pixels.shape) != (image.height, image.width, *channels) or pixels.dtype != "uint8":
        return None  # not the layout Pillow would give: let Pillow decode it
    if mode == "RGB":
        return Image.fromarray(pixels)
    return Image.frombuffer(mode, image.size, pixels, "raw", mode, 0, 1)


def _decoder(module: Any, kind: str) -> Decoder | None:
    """The `imagecodecs` function for a PNG (libspng when built in, else libpng) or a WebP
    (libwebp, into RGBA), or None when this build of imagecodecs lacks the codec."""
    if kind == "PNG":
        if _has(module, "SPNG"):
            return module.spng_decode
        return module.png_decode if _has(module, "PNG") else None
    if not _has(module, "WEBP"):
        return None
    return lambda data: module.webp_decode(data, hasalpha=True)


def _has(module: Any, codec: str) -> bool:
    return bool(getattr(getattr(module, codec, None), "available", False))


def _png_layout(data: bytes) -> str | None:
    """Pillow's mode for an 8-bit grey, RGB or RGBA PNG (read from IHDR), else None: 16-bit,
    palette and grey-alpha files decode differently in the two libraries, so Pillow keeps them."""
    if len(data) < 29 or data[12:16] != b"IHDR" or data[24] != 8:
        return None
    return _PNG_COLOUR.get(data[25])
