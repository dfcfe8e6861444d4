"""The local hub's placeholder pictures: what a learner sees instead of a generated image.

A gradient and a few shapes whose colours come from (model, prompt, seed), fine grain so files
have a realistic size, and a card naming the model, the seed, the prompt and the size. Pure
drawing: the same `ImageSpec` (and inputs) always give the same bytes, whichever hub drew it.

A request with input images (edit, reference images, upscaling) gets a picture visibly derived
from them: the first input resized to fill the frame and tinted, any others as thumbnails along
the top, captioned "edit of …" at the bottom. It carries the sha256 hex of the input bytes (comma-joined for
several) so a test can trace a result to its input: a PNG text chunk `oxen-input-sha`, or for
JPEG and WebP the EXIF ImageDescription `oxen-input-sha=<hex>`. `input_sha_of(data)` reads either.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps, PngImagePlugin

from oxen_magic.network.model_info import properties_of

FORMATS: dict[str, tuple[str, str, str]] = {
    # request value -> (PIL format, file extension, Content-Type)
    "png": ("PNG", "png", "image/png"),
    "jpg": ("JPEG", "jpg", "image/jpeg"),
    "jpeg": ("JPEG", "jpg", "image/jpeg"),
    "webp": ("WEBP", "webp", "image/webp"),
}

_SIZE_WORDS: dict[str, str] = {
    "square": "1:1",
    "square_hd": "1:1",
    "portrait": "3:4",
    "portrait_4_3": "3:4",
    "portrait_16_9": "9:16",
    "landscape": "4:3",
    "landscape_4_3": "4:3",
    "landscape_16_9": "16:9",
}

_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*$")


def parse_ratio(text: Any) -> tuple[float, float] | None:
    """'16:9' -> (16.0, 9.0); '2.35:1' and '19.5:9' work too; anything else -> None."""
    if not isinstance(text, str):
        return None
    match = _RATIO.match(text)
    if not match:
        return None
    w, h = float(match.group(1)), float(match.group(2))
    return (w, h) if w > 0 and h > 0 else None


def image_dimensions(ratio: tuple[float, float], long_side: int) -> tuple[int, int]:
    """Width and height with the given long side, rounded to multiples of 8 (at least 8)."""
    w, h = ratio

    def round8(x: float) -> int:
        return max(8, int(x / 8.0 + 0.5) * 8)  # half up: 36 -> 40, not 32

    if w >= h:
        return round8(long_side), round8(long_side * h / w)
    return round8(long_side * w / h), round8(long_side)


def _default(schema: dict[str, Any] | None, name: str) -> Any:
    """A parameter's schema default, or None (also when the schema is malformed)."""
    spec = properties_of(schema).get(name)
    return spec.get("default") if isinstance(spec, dict) else None


def ratio_for(body: dict[str, Any], schema: dict[str, Any] | None) -> tuple[str, tuple[float, float]]:
    """The aspect ratio to draw: the request's, else the schema's default, else 1:1."""
    candidates = [
        body.get("aspect_ratio"),
        _default(schema, "aspect_ratio"),
        body.get("size"),
        _default(schema, "size"),
        body.get("image_size"),
        _default(schema, "image_size"),
    ]
    for value in candidates:
        if not isinstance(value, str):
            continue
        ratio = parse_ratio(value)
        if ratio:
            return value.strip(), ratio
        word = _SIZE_WORDS.get(value.strip().lower())
        if word:
            parsed = parse_ratio(word)
            assert parsed is not None
            return word, parsed
    return "1:1", (1.0, 1.0)


def format_for(body: dict[str, Any], schema: dict[str, Any] | None) -> str:
    requested = body.get("output_format")
    if isinstance(requested, str) and requested.lower() in FORMATS:
        return requested.lower()
    default = _default(schema, "output_format")
    if isinstance(default, str) and default.lower() in FORMATS:
        return default.lower()
    return "png"


NO_SEED = "model takes no seed"


@dataclass(frozen=True)
class ImageSpec:
    """Everything that decides a placeholder's bytes."""

    model: str
    prompt: str
    seed: int
    seed_note: str  # "" when the caller sent the seed, else why the hub picked it
    width: int
    height: int
    ratio_label: str
    fmt: str  # key of FORMATS
    extras: tuple[tuple[str, str], ...]  # other parameters, written on the picture
    input_sha: str = ""  # comma-joined sha256 hex of the input images; "" for text only


#: The PNG text chunk (and EXIF ImageDescription prefix) that names a result's input images.
INPUT_SHA_KEY = "oxen-input-sha"
_EXIF_DESCRIPTION = 0x010E


def input_sha(inputs: Sequence[bytes]) -> str:
    """The mark a result made from `inputs` carries: sha256 hex of each, comma-joined."""
    return ",".join(hashlib.sha256(data).hexdigest() for data in inputs)


def input_sha_of(data: bytes) -> str | None:
    """The `oxen-input-sha` mark of a placeholder's bytes (PNG text chunk or EXIF), or None."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            text = img.info.get(INPUT_SHA_KEY)
            if isinstance(text, str):
                return text
            description = img.getexif().get(_EXIF_DESCRIPTION)
    except Exception:  # not an image, or a damaged one: no mark
        return None
    prefix = INPUT_SHA_KEY + "="
    if isinstance(description, str) and description.startswith(prefix):
        return description[len(prefix) :]
    return None


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()


def _colour(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(6, size))
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, size: int, width: float) -> tuple[Any, int]:
    """A font no larger than `size` at which `text` fits in `width` pixels."""
    font = _font(size)
    length = draw.textlength(text, font=font)
    if length > width and length > 0:
        size = max(6, int(size * width / length))
        font = _font(size)
    return font, size


def short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def render_image(spec: ImageSpec, inputs: Sequence[bytes] = ()) -> bytes:
    """Draw the placeholder for `spec` (derived from `inputs` when given) and encode it.

    Deterministic: same spec and inputs, same bytes. `spec.input_sha` must describe `inputs`.
    """
    digest = _digest(spec.model, spec.prompt, spec.seed)
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    img = _from_inputs(spec, inputs, digest) if inputs else _from_scratch(spec, digest, rng)
    _draw_caption(img, spec)
    return _encode(img, spec)


def _from_inputs(spec: ImageSpec, inputs: Sequence[bytes], digest: bytes) -> Image.Image:
    """The first input filling the frame, tinted by (model, prompt, seed); others as thumbnails
    along the top."""
    w, h = spec.width, spec.height
    with Image.open(io.BytesIO(inputs[0])) as first:
        first.draft("RGB", (w, h))
        base = ImageOps.fit(first.convert("RGB"), (w, h), Image.Resampling.BILINEAR)
    tint = _colour(digest[8] / 255.0, 0.7, 0.9)
    img = Image.blend(base, Image.new("RGB", (w, h), tint), 0.3)
    side = max(8, min(w, h) // 5)
    for index, data in enumerate(inputs[1:5]):
        with Image.open(io.BytesIO(data)) as other:
            other.draft("RGB", (side, side))
            thumb = ImageOps.fit(other.convert("RGB"), (side, side), Image.Resampling.BILINEAR)
        img.paste(thumb, (index * (side + 2), 0))
    return img


def _encode(img: Image.Image, spec: ImageSpec) -> bytes:
    pil_format = FORMATS[spec.fmt][0]
    out = io.BytesIO()
    mark: dict[str, Any] = {}
    if spec.input_sha:
        exif = Image.Exif()
        exif[_EXIF_DESCRIPTION] = f"{INPUT_SHA_KEY}={spec.input_sha}"
        mark["exif"] = exif
    if pil_format == "JPEG":
        img.save(out, "JPEG", quality=90, **mark)
    elif pil_format == "WEBP":
        img.save(out, "WEBP", quality=80, method=2, **mark)  # 2x faster than 4, ~same size
    else:
        info = PngImagePlugin.PngInfo()
        if spec.input_sha:
            info.add_text(INPUT_SHA_KEY, spec.input_sha)
        img.save(out, "PNG", pnginfo=info, compress_level=1)  # 3x faster than 6, same size
    return out.getvalue()


def _from_scratch(spec: ImageSpec, digest: bytes, rng: random.Random) -> Image.Image:
    """A gradient, a few shapes and fine grain, all from (model, prompt, seed)."""
    w, h = spec.width, spec.height

    # Two-colour diagonal gradient: hues from (model, prompt, seed).
    hue = digest[8] / 255.0
    first = _colour(hue, 0.55 + digest[9] / 255.0 * 0.3, 0.8 + digest[10] / 255.0 * 0.15)
    second = _colour(hue + 0.25 + digest[11] / 255.0 * 0.25, 0.6, 0.35 + digest[12] / 255.0 * 0.2)
    steps = 64
    ramp = Image.new("L", (steps, steps))
    ramp.putdata([int((x + y) * 255 / (2 * (steps - 1))) for y in range(steps) for x in range(steps)])
    ramp = ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if digest[13] & 1 else ramp
    ramp = ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if digest[13] & 2 else ramp
    mask = ramp.resize((w, h), Image.Resampling.BILINEAR)
    img = Image.composite(Image.new("RGB", (w, h), second), Image.new("RGB", (w, h), first), mask)

    # A few soft shapes, so different seeds visibly differ in "composition" too (drawn blended
    # straight onto the picture: a whole-image RGBA layer would cost more than the rest).
    shapes = ImageDraw.Draw(img, "RGBA")
    for _ in range(3 + rng.randrange(4)):
        r = int(min(w, h) * rng.uniform(0.08, 0.3))
        cx, cy = rng.randrange(w), rng.randrange(h)
        fill = (*_colour(hue + rng.uniform(-0.2, 0.6), 0.5, 0.95), rng.randrange(60, 130))
        if rng.random() < 0.5:
            shapes.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            shapes.rectangle((cx - r, cy - r // 2, cx + r, cy + r // 2), fill=fill)

    # Fine grain, so a PNG weighs about what a real generated image does (~1 MB at 1024x1024).
    return ImageChops.add(img, _grain(w, h), 1.0, -(_GRAIN // 2))


_GRAIN = 12  # amplitude of the grain, in levels


@functools.lru_cache(maxsize=4)
def _grain(w: int, h: int) -> Image.Image:
    """Noise for a w x h picture, made once per size (the same for every picture: it is only
    texture, and making it took a third of a drawing)."""
    noise = random.Random(w * 100_003 + h).randbytes(w * h)
    grain = Image.frombytes("L", (w, h), noise).point(lambda v: v * _GRAIN // 255)
    return Image.merge("RGB", (grain, grain, grain))


def _draw_caption(img: Image.Image, spec: ImageSpec) -> None:
    """Write what made this image onto a translucent card in the middle of it."""
    w, h = img.size
    if spec.seed_note == NO_SEED:
        seed_line = "no seed: this model takes none (random result)"
    else:
        seed_line = f"seed {spec.seed}" + (f" ({spec.seed_note})" if spec.seed_note else "")
    prompt_line = f"“{short(spec.prompt)}”" if spec.prompt else "(no prompt)"
    lines: list[tuple[str, float]] = [(spec.model, 1.0)]
    if spec.input_sha:
        shas = spec.input_sha.split(",")
        more = f" + {len(shas) - 1} more" if len(shas) > 1 else ""
        lines.append((f"edit of {shas[0][:12]}{more}", 0.85))
    lines += [(seed_line, 0.85), (prompt_line, 0.75)]
    if spec.extras:
        extra = " · ".join(f"{k} {v}" for k, v in spec.extras)
        lines.append((short(extra, 60), 0.6))
    footer = f"local hub placeholder · {w}x{h} · {spec.ratio_label} · {spec.fmt}"
    lines.append((footer, 0.5))

    margin = max(2, int(min(w, h) * 0.05))
    usable = w - 4 * margin
    base = max(6, int(min(w, h) / 16))
    probe = ImageDraw.Draw(img)
    fitted = [(text, *_fit(probe, text, int(base * scale), usable)) for text, scale in lines]
    gap = max(1, base // 4)
    total = sum(size for _, _, size in fitted) + gap * (len(fitted) - 1)
    while fitted and total + 2 * margin > h:  # tiny images: drop lines from the end
        fitted.pop()
        total = sum(size for _, _, size in fitted) + gap * max(0, len(fitted) - 1)
    if not fitted:
        return

    # An edit's card goes at the bottom, so the input's own card (if any) stays readable.
    top = h - total - 2 * margin if spec.input_sha else (h - total) // 2
    # Only the band holding the card is composited (a whole-image RGBA layer costs 3x more).
    band = (0, max(0, top - margin), w, min(h, top + total + 2 * margin))
    card = Image.new("RGBA", (w, band[3] - band[1]), (0, 0, 0, 0))
    draw = ImageDraw.Draw(card)
    shift = band[1]
    draw.rounded_rectangle(
        (margin, top - margin - shift, w - margin, top + total + margin - shift),
        radius=margin,
        fill=(0, 0, 0, 150),
    )
    y = top - shift
    for index, (text, font, size) in enumerate(fitted):
        colour = (255, 255, 255, 255) if index == 0 else (235, 235, 235, 255)
        draw.text((2 * margin, y), text, font=font, fill=colour)
        y += size + gap
    region = img.crop(band).convert("RGBA")
    img.paste(Image.alpha_composite(region, card).convert("RGB"), band[:2])
