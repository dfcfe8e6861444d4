"""The thumbnail path's fast decoder (`oxen_magic.network.fastdecode`, the optional `imagecodecs`) and its
Pillow fallback: the same picture either way, the same sentences for bad bytes and bombs.

The fast path is tested when `imagecodecs` is installed (the `test` extra installs it); the
fallback is tested by hiding the module (`sys.modules["imagecodecs"] = None`, as on a machine
without it) and by a stand-in module whose decoders fail or answer the wrong shape.
"""

from __future__ import annotations

import io
import struct
import sys
import types
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from oxen_magic.core.errors import BadResponseError
from oxen_magic.display.render import thumbnail, thumbnail_of
from oxen_magic.localhub.placeholder import ImageSpec, render_image
from oxen_magic.network import fastdecode
from oxen_magic.network.images import decode_image

PROMPT = "a red cube on a white background, studio light"


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def scene(mode: str, size: tuple[int, int] = (300, 200)) -> Image.Image:
    """Gradients and detail in every channel (alpha too), so a wrong channel or row shows."""
    r = Image.linear_gradient("L").resize(size)
    g = r.transpose(Image.Transpose.ROTATE_90).resize(size)
    b = Image.effect_noise(size, 60).convert("L")
    a = Image.radial_gradient("L").resize(size)
    bands = {"L": (b,), "RGB": (r, g, b), "RGBA": (r, g, b, a)}[mode]
    return Image.merge(mode, bands)


def hub_picture(fmt: str) -> bytes:
    """What the local hub sends (its renderer at 512 px): the benchmark's kind of picture."""
    return render_image(ImageSpec("flux-2-dev", PROMPT, 1, "", 512, 512, "1:1", fmt, ()))


def pillow(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size and a.mode == b.mode
    x, y = a.tobytes(), b.tobytes()
    return sum(abs(p - q) for p, q in zip(x, y, strict=True)) / len(x)


@pytest.fixture
def no_imagecodecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without the `fast` extra: importing imagecodecs fails."""
    monkeypatch.setitem(sys.modules, "imagecodecs", None)


def stand_in(decode: Callable[..., Any]) -> types.SimpleNamespace:
    """An `imagecodecs` whose every decoder is `decode`."""
    available = types.SimpleNamespace(available=True)
    return types.SimpleNamespace(
        SPNG=available,
        PNG=available,
        WEBP=available,
        spng_decode=decode,
        png_decode=decode,
        webp_decode=decode,
    )


# The layouts the fast path takes: lossless ones must match Pillow exactly, lossy WebP closely
# (the same libwebp version can still round its YUV -> RGB step differently in the two bindings).
FAST_CASES = {
    "png-rgb": (lambda: encode(scene("RGB"), "PNG"), 0.0),
    "png-rgba": (lambda: encode(scene("RGBA"), "PNG"), 0.0),
    "png-grey": (lambda: encode(scene("L"), "PNG"), 0.0),
    "png-interlaced": (lambda: encode(scene("RGB"), "PNG", interlace=1), 0.0),
    "png-hub": (lambda: hub_picture("png"), 0.0),
    "webp-lossy": (lambda: encode(scene("RGB"), "WEBP", quality=80), 1.0),
    "webp-alpha": (lambda: encode(scene("RGBA"), "WEBP", quality=80), 1.0),
    "webp-lossless": (lambda: encode(scene("RGBA"), "WEBP", lossless=True), 0.0),
    "webp-hub": (lambda: hub_picture("webp"), 1.0),
}


@pytest.mark.parametrize("case", FAST_CASES)
def test_the_fast_decode_is_pillows_picture(case: str) -> None:
    pytest.importorskip("imagecodecs", reason="the fast path needs the `fast` extra")
    make, tolerance = FAST_CASES[case]
    data = make()
    reference = pillow(data)
    fast = fastdecode.decode(data, Image.open(io.BytesIO(data)))
    assert fast is not None, "this layout should take the fast path"
    assert fast.size == reference.size
    # the same mode, but for an RGB WebP: RGBX, its opaque alpha kept to spare a copy
    assert fast.mode == ("RGBX" if case.startswith("webp") and reference.mode == "RGB" else reference.mode)
    assert mean_difference(fast.convert(reference.mode), reference) <= tolerance
    # and so the thumbnail the notebook keeps is the same picture
    with (
        Image.open(io.BytesIO(thumbnail_of(data, 128))) as a,
        Image.open(io.BytesIO(thumbnail(reference, 128))) as b,
    ):
        assert mean_difference(a.convert("RGB"), b.convert("RGB")) <= 1.0 + tolerance


def palette_png() -> bytes:
    return encode(scene("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG")


def apng() -> bytes:
    frames = [scene("RGB"), scene("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:])


def animated_webp() -> bytes:
    frames = [scene("RGB"), scene("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])


PILLOW_CASES = {
    "png-palette": palette_png,
    "png-grey-alpha": lambda: encode(scene("RGBA").convert("LA"), "PNG"),
    "png-16-bit": lambda: encode(scene("L").convert("I;16"), "PNG"),
    "png-animated": apng,
    "webp-animated": animated_webp,
    "jpeg": lambda: encode(scene("RGB"), "JPEG"),  # Pillow's reduced DCT decode is already cheap
    "gif": lambda: encode(scene("RGB"), "GIF"),
}


@pytest.mark.parametrize("case", PILLOW_CASES)
def test_other_layouts_stay_with_pillow(case: str) -> None:
    data = PILLOW_CASES[case]()
    module = stand_in(lambda *a, **k: pytest.fail("the fast path must not decode this layout"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastdecode, "codecs", lambda: module)
        assert fastdecode.decode(data, Image.open(io.BytesIO(data))) is None
        with Image.open(io.BytesIO(thumbnail_of(data, 64))) as thumb:
            assert max(thumb.size) == 64


@pytest.mark.usefixtures("no_imagecodecs")
@pytest.mark.parametrize("case", ["png-rgb", "png-rgba", "png-hub", "webp-alpha", "webp-hub"])
def test_without_imagecodecs_pillow_decodes_as_before(case: str) -> None:
    data = FAST_CASES[case][0]()
    assert fastdecode.codecs() is None
    assert fastdecode.decode(data, Image.open(io.BytesIO(data))) is None
    assert decode_image(data, fit=128).size == pillow(data).size  # no reduced decode in Pillow
    assert thumbnail_of(data, 128) == thumbnail(pillow(data), 128)


def test_a_codec_that_fails_or_answers_another_shape_leaves_it_to_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(scene("RGB"), "PNG")
    expected = thumbnail(pillow(data), 64)

    def refuses(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("codec says no")

    for module in (
        stand_in(refuses),
        stand_in(lambda *a, **k: types.SimpleNamespace(shape=(10,), dtype="uint8")),
    ):
        monkeypatch.setattr(fastdecode, "codecs", lambda module=module: module)
        assert fastdecode.decode(data, Image.open(io.BytesIO(data))) is None
        assert thumbnail_of(data, 64) == expected


def damaged(data: bytes) -> dict[str, bytes]:
    """Truncations (mid-pixels, and just short of the end) and a flipped bit in the pixels."""
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    return {"half": data[: len(data) // 2], "short": data[:-20], "flipped": bytes(flipped)}


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_bad_bytes_give_the_same_outcome_on_both_paths(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged file fails with the sentence Pillow's path gives (the fast decoder's own error
    never reaches the cell), or, where Pillow accepts it, gives Pillow's thumbnail."""
    pytest.importorskip("imagecodecs", reason="the fast path needs the `fast` extra")
    for name, data in damaged(hub_picture(fmt)).items():
        fast = outcome(data)
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "imagecodecs", None)
            slow = outcome(data)
        assert fast == slow, name
    with pytest.raises(BadResponseError, match=r"^The image the API returned is truncated or corrupt \("):
        thumbnail_of(damaged(hub_picture(fmt))["half"], 64)


def outcome(data: bytes) -> str | bytes:
    try:
        return thumbnail_of(data, 64)
    except BadResponseError as error:
        return str(error)


def bomb_png(side: int) -> bytes:
    """A PNG header claiming side x side RGB pixels, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [10000, 30000])
def test_a_bomb_is_refused_before_the_fast_decoder_sees_it(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = stand_in(lambda *a, **k: pytest.fail("a bomb must be refused at the header"))
    monkeypatch.setattr(fastdecode, "codecs", lambda: module)
    data = bomb_png(side)
    with pytest.raises(BadResponseError) as refused:
        thumbnail_of(data, 256)
    assert str(refused.value).startswith("The image the API returned claims to be too large to open safely")
