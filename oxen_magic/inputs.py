"""`--input-image` / `-i`: what the user wrote into `InputImage` values the planner can send.

No HTTP here: a URL passes as is, a file or a PIL image becomes a `data:` URI, and a result item
passes on the URL the API returned for it (or its bytes as a `data:` URI when it has none). Each
value carries an `identity` that the cache key uses instead of the URI itself (a content hash, or
for a result item its own request key), so the same input gives the same key however it is sent.

Grammar of the option's text: commas make an axis of the grid (one request per item, like
`--seed 1,2`); `+` joins images into one request (reference images: `-i a.png+b.png`). A variable
holding a list or a `Results` is an axis on its own and joins in when it is part of a `+` group;
a leading `+` joins all of one list (`-i +refs`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageProblem
from .images import MIMES, data_uri

if TYPE_CHECKING:
    from PIL import Image

    from .catalog import ModelInfo

#: Formats the option accepts from files and variables (Pillow's format names → MIME type).
#: A bigger input would make a request body the API (and the notebook's memory) should not see.
MAX_INPUT_BYTES = 20 * 1024 * 1024
#: Width of an input's thumbnail in a grid header.
HEAD_THUMB = 64
DATA_URI_NOTE = (
    "Sent {what} inline as a data: URI; the API documents input images as public URLs, so some "
    "models may refuse it (if one does, pass an https:// URL, or set %config "
    "OxenMagic.upload_repo to upload local inputs to an Oxen repository)."
)
FETCH_HELP = (
    "The server could not fetch the input image {label} ({detail}); if it is the result of an "
    "earlier cell its URL has probably expired: rerun that cell with --no-cache (for a fresh URL), "
    "or save the image to a file (item.image.save('input.png')) and pass --input-image input.png."
)
GRAMMAR = """\
Input images (--input-image / -i) for editing, reference images and upscaling: a file (PNG, JPEG,
WebP, GIF), an https:// URL, or a variable holding a PIL image, a result (best = grid["flux-2-dev",
3]), a Results or a list of those. Commas make an axis (-i a.png,b.png: one request each); +
joins reference images into one request (-i a.png+b.png; -i +refs joins a whole list)."""
INLINE_REFUSED = (
    "The server refused the input image {label} sent inline as a data: URI ({detail}); give it "
    "as a public https:// URL instead, or set %config OxenMagic.upload_repo = 'namespace/repo' "
    "to upload local inputs to an Oxen repository first."
)
_DATA_URI = re.compile(r"data:[\w/+.-]*;base64,[A-Za-z0-9+/=]+")
_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
#: A ',' or '+' right before another scheme: `-i https://a/1.png,https://a/2.png` is two URLs
#: (an axis), though a ',' or '+' elsewhere in a URL is part of it.
_NEXT_URL = re.compile(r"\s*([,+])\s*(?=https?://)", re.IGNORECASE)


@dataclass(frozen=True)
class InputImage:
    """One input image, ready to send: `url` (http(s) or `data:`), its identity, a label, a thumb."""

    url: str = field(repr=False)
    identity: str
    label: str
    thumb: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def inline(self) -> bool:
        """Sent as a `data:` URI (a file, a PIL image, or a result without a URL)."""
        return self.url.startswith("data:")

    @property
    def record(self) -> str:
        """What a saved PNG or a caption records: the URL, or the content hash, never a data URI."""
        return self.identity if self.inline else self.url

    @property
    def thumb_uri(self) -> str | None:
        if self.thumb is None:
            return None
        return data_uri(self.thumb)


#: One axis value: the images sent together in one request (several = reference images).
Group = tuple[InputImage, ...]


def parse(texts: Sequence[str], variables: Mapping[str, Any] | None = None) -> tuple[Group, ...]:
    """The option's values (repeatable) into the axis: one group of images per request."""
    variables = variables or {}
    # First the form of every value (a typo is named before any file is read), then the images.
    plan: list[tuple[str, ...]] = []  # a 1-tuple stands alone (a list is an axis); more: joined
    for text in texts:
        text = text.strip()
        if not text:
            raise UsageProblem(
                "--input-image is empty; give a file, a URL or a variable name.", field="input_image"
            )
        if _URL.match(text) and _NEXT_URL.search(text):  # several URLs: split before each scheme
            plan.extend(_url_list(text))
            continue
        if _is_file(text) or _URL.match(text):  # a path or URL holding ',' or '+' is one image
            plan.append((text,))
            continue
        for item in text.split(","):
            item = item.strip()
            if not item:
                raise UsageProblem(
                    f"Empty item in the --input-image list '{text}'; remove the comma.", field="input_image"
                )
            parts = tuple(p.strip() for p in item.split("+"))
            if any(not p for p in parts[1:-1]) or not any(parts):
                raise UsageProblem(
                    f"'{item}' has an empty part; join images like a.png+b.png.", field="input_image"
                )
            plan.append(parts if len(parts) == 1 else ("+", *(p for p in parts if p)))
    axis: list[Group] = []
    for parts in plan:
        if parts[0] != "+":
            axis.extend((image,) for image in resolve(parts[0], variables))
        else:
            axis.append(tuple(image for p in parts[1:] for image in resolve(p, variables)))
    out: list[Group] = []
    for group in axis:  # the same input twice would only repeat requests
        if group and group not in out:
            out.append(group)
    return tuple(out)


def _a(noun: str) -> str:
    """`an int`, `a dict`: the article a type name takes in a sentence."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _url_list(text: str) -> list[tuple[str, ...]]:
    """`u1,u2+u3` (each u a URL) into the plan's entries: (u1,), ("+", u2, u3)."""
    pieces = _NEXT_URL.split(text)  # url, separator, url, separator, url ...
    entries: list[list[str]] = [[pieces[0]]]
    for separator, url in zip(pieces[1::2], pieces[2::2], strict=True):
        if separator == "+":
            entries[-1].append(url)
        else:
            entries.append([url])
    return [(e[0],) if len(e) == 1 else ("+", *e) for e in entries]


def resolve(text: str, variables: Mapping[str, Any]) -> list[InputImage]:
    """One name, path or URL into its images (a list variable gives several)."""
    if _URL.match(text) or text.startswith("data:"):
        return [_from_text(text, text)]
    if text.isidentifier() and text in variables:
        return from_value(variables[text], text)
    if _is_file(text):
        return [_from_text(text, text)]
    if text.isidentifier():
        raise UsageProblem(
            f"--input-image {text}: no variable or file named '{text}'; run the cell that sets it, "
            "or give a file path or an https:// URL.",
            field="input_image",
        )
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:  # ftp://, file://, s3://: the API fetches only http(s)
        raise UsageProblem(
            f"--input-image {text}: the API fetches only http(s) URLs, not {scheme.group(1)}://; give "
            "an https:// URL, or download the image and pass the file.",
            field="input_image",
        )
    raise UsageProblem(
        f"--input-image {text}: no such file; check the path, or give an https:// URL.", field="input_image"
    )


def from_value(value: Any, name: str) -> list[InputImage]:
    """A Python value (PIL image, result item, Results, list, str, Path, bytes) into images."""
    from PIL import Image

    from .results import Item, Results

    if isinstance(value, Image.Image):
        return [_from_pil(value, name)]
    if isinstance(value, Item):
        return [from_item(value, name)]
    if isinstance(value, (str, Path)):
        return [_from_text(str(value), name)]
    if isinstance(value, (bytes, bytearray)):
        return [_from_bytes(bytes(value), name, name)]
    if isinstance(value, (Results, list, tuple)):
        items = [i for i in value if not isinstance(i, Item) or i.request is not None]
        if not items:
            raise UsageProblem(
                f"--input-image {name}: '{name}' is empty; give it at least one image.", field="input_image"
            )
        return [image for i, v in enumerate(items) for image in from_value(v, f"{name}[{i}]")]
    raise UsageProblem(
        f"--input-image {name}: '{name}' holds {_a(type(value).__name__)}, not an image; give a PIL "
        "image, a result (grid[0]), a list of those, a file path or a URL.",
        field="input_image",
    )


def from_item(item: Any, name: str) -> InputImage:
    """A result item: the URL the API returned for it, else its bytes inline."""
    if not item.ok:
        why = item.error or item.status
        raise UsageProblem(
            f"--input-image {name}: that result has no image ({why}); rerun its cell first.",
            field="input_image",
        )
    label = f"{name}: {item.model}" + (f" seed {item.seed}" if item.seed is not None else "")
    key = getattr(item, "key", None)
    identity = f"request:{key}" if key else "sha256:" + hashlib.sha256(item.data).hexdigest()
    url = getattr(item, "url", None)
    if not url:
        url = data_uri(item.data, item.mime or "image/png")
    return InputImage(url=url, identity=identity, label=label, thumb=_small(item.thumb or item.data))


def _is_file(text: str) -> bool:
    try:
        return os.path.isfile(os.path.expanduser(text))
    except (OSError, ValueError):
        return False


def _from_text(text: str, name: str) -> InputImage:
    if _URL.match(text):
        if "@" in re.split(r"[/?#]", text.split("://", 1)[1], maxsplit=1)[0]:
            raise UsageProblem(  # never echoed: it would be saved with the notebook, as for --host
                "An --input-image URL has a user name or password in it (before an @); the API "
                "fetches public URLs, so give one without them (or download the image and pass the file).",
                field="input_image",
            )
        tail = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or text
        return InputImage(url=text, identity="url:" + text, label=tail[:40])
    if text.startswith("data:"):
        head, _, payload = text.partition(",")
        try:
            data = base64.b64decode(payload, validate=True) if head.endswith(";base64") else b""
        except ValueError:
            data = b""
        if not data:
            raise UsageProblem(
                f"--input-image {name[:30]}…: not a base64 data: URI of an image.", field="input_image"
            )
        return _from_bytes(data, "inline image", name[:30])
    path = Path(os.path.expanduser(text))
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise UsageProblem(
                f"--input-image {text}: the file is over {MAX_INPUT_BYTES // 2**20} MB; shrink it first.",
                field="input_image",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise UsageProblem(
            f"--input-image {text}: cannot read the file ({exc.strerror or exc}).", field="input_image"
        ) from None
    return _from_bytes(data, path.name, text)


def _from_bytes(data: bytes, label: str, name: str) -> InputImage:
    """Image bytes sent verbatim (so their sha256 is what the server receives)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
    except Exception:  # Pillow raises many types on junk
        kind = ""
    if kind not in MIMES:
        raise UsageProblem(f"--input-image {name}: not a PNG, JPEG, WebP or GIF image.", field="input_image")
    sha = hashlib.sha256(data).hexdigest()
    return InputImage(data_uri(data, MIMES[kind]), "sha256:" + sha, label[:40], _small(data))


def _from_pil(image: Image.Image, name: str) -> InputImage:
    out = io.BytesIO()
    try:
        image.save(out, format="PNG")
    except Exception as exc:  # an image mode PNG cannot hold
        raise UsageProblem(
            f"--input-image {name}: cannot encode that image as PNG ({exc}).", field="input_image"
        ) from None
    return _from_bytes(out.getvalue(), name, name)


def _small(data: bytes | None) -> bytes | None:
    """A header thumbnail (JPEG, `HEAD_THUMB` px); None if the bytes will not decode."""
    from .errors import OxenError
    from .images import decode_image
    from .render import thumbnail

    if not data:
        return None
    try:
        return thumbnail(decode_image(data), HEAD_THUMB)
    except (OxenError, OSError, ValueError):
        return None


# -- what the models do with an input image ----------------------------------------------------
def role(info: ModelInfo | None) -> str:
    """`required`, `one`, `several` (reference images), `none` (text only) or `unknown`."""
    if info is None or info.request_schema is None:
        return "unknown"
    prop = info.properties.get("input_image")
    if not isinstance(prop, dict):
        return "none"
    required = info.request_schema.get("required")
    if isinstance(required, list) and "input_image" in required:
        return "required"
    return "several" if prop.get("type") == "array" else "one"


def role_text(info: ModelInfo | None) -> str:
    """The `--list-models` / panel wording of `role`."""
    if info is not None and role(info) == "required":
        many = info.properties["input_image"].get("type") == "array"
        return "required (several)" if many else "required"
    return {"one": "optional", "several": "optional (several)", "none": "text only"}.get(role(info), "?")


def is_list(info: ModelInfo | None, count: int) -> bool:
    """Whether `input_image` goes as a JSON list: as the schema types it, else when several."""
    prop = info.properties.get("input_image") if info is not None else None
    if isinstance(prop, dict) and prop.get("type") in ("array", "string"):
        return prop.get("type") == "array"
    return count > 1


def inline_note(groups: Sequence[Group | None], noted: set[str]) -> str | None:
    """The data: URI note, once per process (`noted` remembers); None when nothing is inline."""
    inline = [i.label for g in groups if g for i in g if i.inline]
    if not inline or "inline" in noted:
        return None
    noted.add("inline")
    what = inline[0] if len(inline) == 1 else f"{len(inline)} input images"
    return DATA_URI_NOTE.format(what=what)


def fetch_failure(message: str, status: int | None, group: Sequence[InputImage]) -> str | None:
    """The cell's error when the server could not take an input: an expired result URL, or a
    `data:` URI it refuses (the docs promise only public URLs); None for any other error."""
    if not group or status not in (400, 403, 404, 410, 422):
        return None
    if not re.search(r"for url|input_image|input image|fetch|download|adapter", message, re.IGNORECASE):
        return None
    detail = _DATA_URI.sub("data:…", message).rstrip(". ")
    inline = [i.label for i in group if i.inline]
    if inline and re.search(r"data:|adapter|scheme", message, re.IGNORECASE):
        return INLINE_REFUSED.format(label=", ".join(inline), detail=detail)
    return FETCH_HELP.format(label=", ".join(i.label for i in group), detail=detail)
