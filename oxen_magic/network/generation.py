"""`Generation`: one image the API answered, as the client hands it to the runner, and how an
answer's JSON becomes one.

Split from `client.py`. The bytes are kept as sent and decoded once (to prove they are an
image, or only their header when the runner decodes later); an answer that carried several
images (`num_images`) gives the first, with the rest in `others`. Reading an answer needs no
network of its own: an image sent as a URL is fetched through the `fetch` the client passes.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from oxen_magic.core.errors import BadResponseError, too_large
from oxen_magic.network.images import decode_image, mime_of

#: Reads one entry of an answer's `images`: its bytes, and its absolute URL (None when inline).
Fetch = Callable[[Mapping[str, Any]], tuple[bytes, "str | None"]]


@dataclass(eq=False)
class Generation:
    """One generated image: the bytes as sent, decoded once to prove they are an image."""

    data: bytes = field(repr=False)
    request: dict[str, Any]
    created: int | None
    elapsed: float
    mime: str
    size: tuple[int, int]
    #: The result URL the API returned, made absolute (None for b64_json): a later request
    #: can pass it on as an input image.
    url: str | None = None
    _image: Image.Image | None = field(default=None, repr=False)
    #: The answer's other images (a count such as `num_images` asks for several, each billed):
    #: this one is `images[0]`, these `images[1:]`, in the API's order.
    others: tuple[Generation, ...] = field(default=(), repr=False)

    @property
    def count(self) -> int:
        """How many images the answer carried (this one and its others)."""
        return 1 + len(self.others)

    @property
    def image(self) -> Image.Image:
        """The full-resolution picture (decoded on demand; `release()` drops it)."""
        if self._image is None:
            self._image = decode_image(self.data)
        return self._image

    def release(self) -> None:
        """Forget the decoded pixels; the encoded bytes stay."""
        self._image = None


def from_answer(
    body: Any, request: Mapping[str, Any], *, started: float, decode: bool, fetch: Fetch
) -> Generation:
    """The images of a generate answer's JSON (`{"images": [...], "created": ...}`): the first,
    with every other in `others`. `fetch` gives each entry's bytes (`inline_image` for a
    `b64_json`, a download for a URL); `decode=False` reads only each image's header."""
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list) or not images or not all(isinstance(i, dict) for i in images):
        raise BadResponseError("The API answered without an 'images' list; try again.")
    created = body.get("created")
    made = created if isinstance(created, int) and not isinstance(created, bool) else None
    del body  # the answer's JSON (inline images in base64) need not outlive this point
    found = []
    for entry in images:
        data, url = fetch(entry)
        found.append((data, url, decode_image(data, load=decode)))
    del images
    elapsed = time.monotonic() - started
    out = [
        Generation(
            data=data,
            request=dict(request),
            created=made,
            elapsed=elapsed,
            mime=mime_of(image),
            size=image.size,
            url=url,
            _image=image if decode else None,
        )
        for data, url, image in found
    ]
    out[0].others = tuple(out[1:])
    return out[0]


def inline_image(text: str, cap: int) -> bytes:
    """A `b64_json` image's bytes: refused past `cap` bytes before decoding, or if not base64."""
    if len(text) // 4 * 3 > cap + 2:
        raise too_large("image", cap)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadResponseError("The API returned an image whose base64 is invalid.") from None
