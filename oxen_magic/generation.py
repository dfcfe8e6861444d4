"""`Generation`: one image the API answered, as the client hands it to the runner.

Split from `client.py`. The bytes are kept as sent and decoded once (to prove they are an
image, or only their header when the runner decodes later); an answer that carried several
images (`num_images`) gives the first, with the rest in `others`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .images import decode_image


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


_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
