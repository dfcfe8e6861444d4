"""Input images resolved: the references a Spec holds (`image_refs.py`) into the `InputImage` values
a request sends. Layer: session (it reads files and decodes images, and draws header thumbnails).

`pipeline.prepare` calls `resolve_inputs` first, so a missing file, a file that is not an image or
an image that cannot be encoded is refused in one sentence before any model is read or any image
billed, in the same words the grammar used when it did this while parsing. A file is sent as its
own bytes inline (a `data:` URI) and keyed by their sha256; a result item passes on the URL the API
returned for it (or its bytes when it has none) and is keyed by its own request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from typing import TYPE_CHECKING, Any

from oxen_magic.core.errors import OxenError, UsageProblem
from oxen_magic.network.images import MIMES, data_uri
from oxen_magic.planning.image_refs import (
    BytesRef,
    FileRef,
    Group,
    ImageRef,
    InputImage,
    Refs,
    UrlRef,
    ValueRef,
    check_item,
)

if TYPE_CHECKING:
    from PIL import Image

    from oxen_magic.planning.options import Spec

#: Formats the option accepts from files and variables (Pillow's format names → MIME type).
#: A bigger input would make a request body the API (and the notebook's memory) should not see.
MAX_INPUT_BYTES = 20 * 1024 * 1024
#: Width of an input's thumbnail in a grid header.
HEAD_THUMB = 64


def resolve_inputs(spec: Spec) -> Spec:
    """The spec with every input reference read, checked and made ready to send (the same
    input twice, now known by its content, is one axis value)."""
    if all(refs is None for refs in spec.input_images):
        return spec
    out: list[Group] = []
    for refs in _whole_files(spec.input_images):
        assert refs is not None  # an axis of inputs holds no "no input" value
        group = tuple(resolve(ref) for ref in refs)
        if group and group not in out:
            out.append(group)
    return dataclasses.replace(spec, input_images=tuple(out))


def locate(spec: Spec) -> Spec:
    """What the panel checks on every keystroke: each file named on the line exists (stat only,
    nothing is read), in the sentences `resolve_inputs` would say."""
    groups = _whole_files(spec.input_images)
    for refs in groups:
        for ref in refs or ():
            if isinstance(ref, FileRef) and ref.typed:
                _exists(ref.path)
    return dataclasses.replace(spec, input_images=groups)


def _whole_files(axis: tuple[Refs | None, ...]) -> tuple[Refs | None, ...]:
    """A text the grammar split at ',' or '+' that is itself a file's name is that one file."""
    out: list[Refs | None] = []
    taken: set[str] = set()
    for refs in axis:
        whole = next((r.whole for r in refs or () if not isinstance(r, InputImage) and r.whole), None)
        if whole is None or not _is_file(whole):
            out.append(refs)
        elif whole not in taken:
            taken.add(whole)
            out.append((FileRef(whole),))
    return tuple(out)


def resolve(ref: ImageRef) -> InputImage:
    """One reference into the image sent."""
    if isinstance(ref, InputImage):
        return ref
    if isinstance(ref, UrlRef):
        return ref.sketch()
    if isinstance(ref, FileRef):
        return _from_file(ref)
    if isinstance(ref, BytesRef):
        return _from_bytes(ref.data, ref.label, ref.name)
    from PIL import Image

    if isinstance(ref.value, Image.Image):
        return _from_pil(ref.value, ref.name)
    return _from_item(ref)


def _is_file(text: str) -> bool:
    try:
        return os.path.isfile(os.path.expanduser(text))
    except (OSError, ValueError):
        return False


def _exists(text: str) -> None:
    """A path written on the line names a file, or one sentence says what it is not."""
    if _is_file(text):
        return
    if text.isidentifier():
        raise UsageProblem(
            f"--input-image {text}: no variable or file named '{text}'; run the cell that sets it, "
            "or give a file path or an https:// URL.",
            field="input_image",
        )
    raise UsageProblem(
        f"--input-image {text}: no such file; check the path, or give an https:// URL.", field="input_image"
    )


def _from_file(ref: FileRef) -> InputImage:
    text = ref.path
    if ref.typed:
        _exists(text)
    path = os.path.expanduser(text)
    try:
        if os.stat(path).st_size > MAX_INPUT_BYTES:
            raise UsageProblem(
                f"--input-image {text}: the file is over {MAX_INPUT_BYTES // 2**20} MB; shrink it first.",
                field="input_image",
            )
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageProblem(
            f"--input-image {text}: cannot read the file ({exc.strerror or exc}).", field="input_image"
        ) from None
    return _from_bytes(data, ref.label, text)


def _from_item(ref: ValueRef) -> InputImage:
    """A result item: the URL the API returned for it, else its bytes inline."""
    item: Any = ref.value
    check_item(item, ref.name)  # again: the line was read before the run was prepared
    key = getattr(item, "key", None)
    identity = f"request:{key}" if key else "sha256:" + hashlib.sha256(item.data).hexdigest()
    url = getattr(item, "url", None)
    if not url:
        url = data_uri(item.data, item.mime or "image/png")
    return InputImage(url=url, identity=identity, label=ref.label, thumb=_small(item.thumb or item.data))


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
    from oxen_magic.display.render import thumbnail
    from oxen_magic.network.images import decode_image

    if not data:
        return None
    try:
        return thumbnail(decode_image(data), HEAD_THUMB)
    except (OxenError, OSError, ValueError):
        return None
