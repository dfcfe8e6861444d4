"""One cell of a grid: its request and, once run, its image or its error.

Items keep a thumbnail in memory and the encoded bytes the API sent on disk (see `spool.py`),
reading and decoding the full picture only when asked, so a sweep of a thousand images costs
its thumbnails in memory, not a thousand images. Bytes set by hand (`item.data = ...`) stay in
memory. Split from `results.py`, which holds the grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from oxen_magic.network.images import data_uri, decode_image
from oxen_magic.planning.plan import Request
from oxen_magic.results.spool import Blob


@dataclass(eq=False)
class Item:
    """One cell of the grid: its request and, once run, its image or its error."""

    request: Request | None
    row: int
    col: int
    status: str = "pending"  # pending | done | failed | cancelled | skipped | planned (dry run)
    _data: bytes | None = field(default=None, repr=False)
    _blob: Blob | None = field(default=None, repr=False)
    mime: str | None = None
    thumb: bytes | None = field(default=None, repr=False)
    size: tuple[int, int] | None = None
    error: str | None = None
    elapsed: float | None = None
    created: int | None = None  # the API's `created` (Unix seconds), when it sent one
    cached: bool = False
    note: str | None = None
    #: The result URL the API returned (kept in the cache too): passed on when this item is
    #: the input image of a later cell. `key`: its cache key, its identity as an input.
    url: str | None = None
    key: str | None = None
    index: int = -1  # position in its Results (`grid[index]`), which is not the seed
    offline: bool = False  # failed for want of a network (the grid then says what to do)
    placeholder: bool = False  # drawn by the local hub, not a model's image (its caption says so)
    _uri: tuple[bytes, str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        what = f"{self.model}, seed {self.seed}" if self.request is not None else "empty cell"
        status = f"{self.status}, placeholder" if self.placeholder else self.status
        return f"<Item at position {self.index}: {what}, {status}>"

    def _repr_html_(self) -> str:
        from oxen_magic.display.render import item_html

        return item_html(self)

    def show(self) -> FullView:
        """This image at full size (put it last in a cell); the grid itself keeps thumbnails."""
        return FullView(self)

    @property
    def model(self) -> str | None:
        return self.request.model if self.request else None

    @property
    def seed(self) -> int | None:
        return self.request.seed if self.request else None

    @property
    def prompt(self) -> str | None:
        return self.request.prompt if self.request else None

    @property
    def params(self) -> dict[str, Any]:
        """The generation parameters sent (no key, no transport fields)."""
        return self.request.params if self.request else {}

    @property
    def data(self) -> bytes | None:
        """The image's bytes as the API sent them, read from the spool each time."""
        if self._data is not None:
            return self._data
        return self._blob.read() if self._blob is not None else None

    @data.setter
    def data(self, value: bytes | None) -> None:
        self._data, self._blob = value, None

    @property
    def image(self) -> Image.Image | None:
        """The full-resolution image, decoded from the kept bytes each time it is asked for."""
        data = self.data
        return None if data is None else decode_image(data)

    @property
    def thumb_uri(self) -> str | None:
        """The thumbnail as a data: URI, encoded once (a filling grid is redrawn many times)."""
        if self.thumb is None:
            return None
        if self._uri is None or self._uri[0] is not self.thumb:
            self._uri = (self.thumb, data_uri(self.thumb))
        return self._uri[1]

    @property
    def ok(self) -> bool:
        return self.status == "done" and (self._data is not None or self._blob is not None)

    def filename(self, prompt_number: int | None = None) -> str:
        """`flux-2-dev_seed-3` style names; other axes (and `p2` for a second prompt) appended."""
        params = self.params
        parts = [_slug(self.model or "image")]
        if prompt_number is not None:
            parts.append(f"p{prompt_number}")
        parts.append(f"seed-{self.seed}" if self.seed is not None else "noseed")
        if "num_inference_steps" in params:
            parts.append(f"steps-{params['num_inference_steps']}")
        if "aspect_ratio" in params:
            parts.append("ar-" + _slug(str(params["aspect_ratio"])))
        if self.request is not None and self.request.inputs:
            parts.append("in-" + _slug(self.request.inputs[0].label)[:24])
        if self.request is not None and self.request.image:  # image 2.. of one request's answer
            parts.append(f"image-{self.request.image + 1}")
        return "_".join(parts)


class FullView:
    """What `item.show()` returns: one image at full resolution, displayed on demand.

    Only images asked for this way are saved in the notebook at full size (clear that output
    to drop it again); the grid's cells stay small thumbnails.
    """

    def __init__(self, item: Item) -> None:
        self.item = item

    def _repr_html_(self) -> str:
        from oxen_magic.display.render import full_html

        return full_html(self.item)

    def __repr__(self) -> str:
        size = f"{self.item.size[0]}x{self.item.size[1]}" if self.item.size else "unknown size"
        return f"<full-size view of {self.item!r}, {size}>"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"
