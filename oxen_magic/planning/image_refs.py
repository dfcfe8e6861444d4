"""`--input-image` / `-i`: what the user wrote, as references the planner can count and lay out.

Pure, no I/O: a file is named here, never read; a variable's object is taken as it is, never
encoded. Turning the references into `InputImage` values to send (reading and checking files,
encoding PIL images, thumbnails) is `input_images.resolve_inputs`, which `pipeline.prepare` runs
before anything is billed. So a Spec can be rebuilt on every keystroke of the panel for free.

Grammar of the option's text: commas make an axis of the grid (one request per item, like
`--seed 1,2`); `+` joins images into one request (reference images: `-i a.png+b.png`). A variable
holding a list or a `Results` is an axis on its own and joins in when it is part of a `+` group;
a leading `+` joins all of one list (`-i +refs`). A path or URL holding ',' or '+' is one image:
for a URL the grammar sees that, for a file only the resolution can (it records the whole text).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oxen_magic.core.errors import UsageProblem
from oxen_magic.network.images import data_uri

if TYPE_CHECKING:
    from oxen_magic.network.cache import Noted

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


# -- references: what the line named, not yet read ---------------------------------------------
@runtime_checkable
class ResultItem(Protocol):
    """A result of an earlier cell (`results.Item`) as the grammar knows one: results sit above
    planning in the layers, so an item is recognised by its shape rather than its class."""

    request: Any
    status: str
    error: str | None
    url: str | None
    key: str | None

    @property
    def ok(self) -> bool: ...

    @property
    def model(self) -> str | None: ...

    @property
    def seed(self) -> int | None: ...


@runtime_checkable
class ResultGrid(Protocol):
    """A `Results` (a grid of items), recognised by its shape for the same reason."""

    items: Any
    plan: Any

    def __iter__(self) -> Iterator[Any]: ...


@dataclass(frozen=True)
class _Ref:
    """What every reference carries besides its own fields (each also has `label`, `inline` and
    `sketch()`: see `sketched`)."""

    #: The option's text this came from when the grammar split it at ',' or '+' (`a+b.png`): if
    #: that whole text names a file, the file is meant (only the resolution looks at the disk).
    whole: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class UrlRef(_Ref):
    """An http(s) URL, sent as written: the server fetches it, so nothing is left to resolve."""

    url: str

    @property
    def label(self) -> str:
        tail = self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or self.url
        return tail[:40]

    @property
    def inline(self) -> bool:
        return False

    def sketch(self) -> InputImage:
        return InputImage(url=self.url, identity="url:" + self.url, label=self.label)


@dataclass(frozen=True)
class FileRef(_Ref):
    """A local file, read and checked to be an image when the run is prepared."""

    path: str
    #: Named on the line (missing: "no such file", or "no variable or file named" for a bare
    #: name) rather than held by a string variable (missing: "cannot read the file").
    typed: bool = True

    @property
    def label(self) -> str:
        return Path(os.path.expanduser(self.path)).name[:40]

    @property
    def inline(self) -> bool:
        return True

    def sketch(self) -> InputImage:
        return InputImage(url="", identity="file:" + self.path, label=self.label)


@dataclass(frozen=True)
class BytesRef(_Ref):
    """Image bytes from a variable or a data: URI, checked to be an image when resolved."""

    data: bytes = field(repr=False)
    label: str
    #: How error sentences name it (the variable, or the start of the data: URI).
    name: str

    @property
    def inline(self) -> bool:
        return True

    def sketch(self) -> InputImage:
        return InputImage(
            url="", identity="sha256:" + hashlib.sha256(self.data).hexdigest(), label=self.label
        )


@dataclass(frozen=True)
class ValueRef(_Ref):
    """A PIL image or a result item from the user's variables (`name` is how the line named it:
    `photo`, `grid[2]`); the same name is the same object within one line."""

    name: str
    value: Any = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        item = self.value
        if isinstance(item, ResultItem):
            return f"{self.name}: {item.model}" + (f" seed {item.seed}" if item.seed is not None else "")
        return self.name[:40]

    @property
    def inline(self) -> bool:
        return not (isinstance(self.value, ResultItem) and self.value.url)

    def sketch(self) -> InputImage:
        key = getattr(self.value, "key", None)
        identity = f"request:{key}" if key else f"value:{self.name}"
        return InputImage(url="", identity=identity, label=self.label)


#: What a Spec holds per image: a reference, or (once resolved) the `InputImage` itself.
ImageRef = UrlRef | FileRef | BytesRef | ValueRef | InputImage
#: One axis value as written: the references sent together in one request.
Refs = tuple[ImageRef, ...]


def sketched(refs: Sequence[ImageRef]) -> Group:
    """What the planner lays out before the images are read: each reference's label and an
    identity; a URL is already what is sent, anything else has no URL yet (`url` "", which
    `Request.payload` refuses to send)."""
    return tuple(ref if isinstance(ref, InputImage) else ref.sketch() for ref in refs)


def parse(texts: Sequence[str], variables: Mapping[str, Any] | None = None) -> tuple[Refs, ...]:
    """The option's values (repeatable) into the axis: one group of references per request."""
    variables = variables or {}
    axis: list[Refs] = []
    for parts, whole in _entries(texts):
        if parts[0] != "+":
            axis.extend((ref,) for ref in refer(parts[0], variables, whole))
        else:
            axis.append(tuple(ref for p in parts[1:] for ref in refer(p, variables, whole)))
    out: list[Refs] = []
    for group in axis:  # the same input twice would only repeat requests
        if group and group not in out:
            out.append(group)
    return tuple(out)


def _entries(texts: Sequence[str]) -> list[tuple[tuple[str, ...], str | None]]:
    """The form of every value, checked before anything else: a 1-tuple stands alone (a list
    is an axis), ("+", a, b) joins; each with the whole text when it was split (see `_Ref`)."""
    entries: list[tuple[tuple[str, ...], str | None]] = []
    for text in texts:
        text = text.strip()
        if not text:
            raise UsageProblem(
                "--input-image is empty; give a file, a URL or a variable name.", field="input_image"
            )
        if _URL.match(text) and _NEXT_URL.search(text):  # several URLs: split before each scheme
            entries.extend((entry, None) for entry in _url_list(text))
            continue
        if _URL.match(text) or not re.search(r"[,+]", text):  # a URL holding ',' or '+' is one image
            entries.append(((text,), None))
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
            entries.append((parts if len(parts) == 1 else ("+", *(p for p in parts if p)), text))
    return entries


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


def refer(text: str, variables: Mapping[str, Any], whole: str | None = None) -> list[ImageRef]:
    """One name, path or URL into its references (a list variable gives several)."""
    if _URL.match(text) or text.startswith("data:"):
        return [_text_ref(text, text, whole)]
    if text.isidentifier() and text in variables:
        return from_value(variables[text], text, whole)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:  # ftp://, file://, s3://: the API fetches only http(s)
        raise UsageProblem(
            f"--input-image {text}: the API fetches only http(s) URLs, not {scheme.group(1)}://; give "
            "an https:// URL, or download the image and pass the file.",
            field="input_image",
        )
    return [FileRef(text, whole=whole)]


def from_value(value: Any, name: str, whole: str | None = None) -> list[ImageRef]:
    """A Python value (PIL image, result item, Results, list, str, Path, bytes) into references."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return [ValueRef(name, value, whole=whole)]
    if isinstance(value, ResultItem):
        check_item(value, name)
        return [ValueRef(name, value, whole=whole)]
    if isinstance(value, (str, Path)):
        return [_text_ref(str(value), name, whole)]
    if isinstance(value, (bytes, bytearray)):
        return [BytesRef(bytes(value), name[:40], name, whole=whole)]
    if isinstance(value, (list, tuple, ResultGrid)):
        items = [i for i in value if not isinstance(i, ResultItem) or i.request is not None]
        if not items:
            raise UsageProblem(
                f"--input-image {name}: '{name}' is empty; give it at least one image.", field="input_image"
            )
        return [ref for i, v in enumerate(items) for ref in from_value(v, f"{name}[{i}]", whole)]
    raise UsageProblem(
        f"--input-image {name}: '{name}' holds {_a(type(value).__name__)}, not an image; give a PIL "
        "image, a result (grid[0]), a list of those, a file path or a URL.",
        field="input_image",
    )


def check_item(item: ResultItem, name: str) -> None:
    """A result without an image (failed, not run yet) cannot be an input."""
    if not item.ok:
        why = item.error or item.status
        raise UsageProblem(
            f"--input-image {name}: that result has no image ({why}); rerun its cell first.",
            field="input_image",
        )


def _text_ref(text: str, name: str, whole: str | None) -> ImageRef:
    """A URL, a data: URI or (from a string variable) a path, as written."""
    if _URL.match(text):
        if "@" in re.split(r"[/?#]", text.split("://", 1)[1], maxsplit=1)[0]:
            raise UsageProblem(  # never echoed: it would be saved with the notebook, as for --host
                "An --input-image URL has a user name or password in it (before an @); the API "
                "fetches public URLs, so give one without them (or download the image and pass the file).",
                field="input_image",
            )
        return UrlRef(text, whole=whole)
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
        return BytesRef(data, "inline image", name[:30], whole=whole)
    return FileRef(text, typed=False, whole=whole)


def inline_note(groups: Sequence[Sequence[ImageRef] | None], noted: Noted) -> str | None:
    """The data: URI note, once per process (`noted` remembers); None when nothing is inline."""
    inline = [i.label for g in groups if g for i in g if i.inline]
    if not inline or not noted.first("the data: URI caveat"):
        return None
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
