"""What a run gives back: `Item`s in a `Results` grid that saves, exports and displays itself.

Items keep a thumbnail in memory and the encoded bytes the API sent on disk (see `spool.py`),
reading and decoding the full picture only when asked, so a sweep of a thousand images costs
its thumbnails in memory, not a thousand images. Bytes set by hand (`item.data = ...`) stay in
memory.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .images import data_uri, decode_image
from .plan import Plan, Request
from .spool import Blob

#: A grid shows at most this many cells at once (about 12 KB each in a saved notebook); the
#: rest are a `page()` away.
PAGE_CELLS = 64

if TYPE_CHECKING:
    from .oxen_repo import OxenExport


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
    billed: bool = False  # counted in the session's spend ledger
    placeholder: bool = False  # drawn by the local hub, not a model's image (its caption says so)
    _uri: tuple[bytes, str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        what = f"{self.model}, seed {self.seed}" if self.request is not None else "empty cell"
        status = f"{self.status}, placeholder" if self.placeholder else self.status
        return f"<Item at position {self.index}: {what}, {status}>"

    def _repr_html_(self) -> str:
        from .render import item_html

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
        from .render import full_html

        return full_html(self.item)

    def __repr__(self) -> str:
        size = f"{self.item.size[0]}x{self.item.size[1]}" if self.item.size else "unknown size"
        return f"<full-size view of {self.item!r}, {size}>"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"


#: Grids made in this process, newest last (`latest()`): the newest is held (a cell without
#: --out keeps nothing else), older ones only while something else holds them, so a grid's
#: spooled images go when its last user does.
_RECENT: deque[weakref.ref[Results]] = deque(maxlen=16)
_NEWEST: list[Results] = []
_RECENT_LOCK = threading.Lock()


def _register(results: Results) -> None:
    with _RECENT_LOCK:
        _RECENT.append(weakref.ref(results))
        _NEWEST[:] = [results]


def latest(**fields: Any) -> Results:
    """The most recent grid made in this process (by the magic, the panel or Python), or the most
    recent holding an image whose fields match, e.g. `latest(prompt="a paper boat on a pond")`.

    A workshop's check cells use it, so they work whatever the student named their result.
    """
    with _RECENT_LOCK:
        recent = [r for r in (ref() for ref in _RECENT) if r is not None]
    for results in reversed(recent):
        if results.done and (not fields or results.select(**fields)):
            return results
    wanted = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    raise LookupError(
        f"No grid{' with ' + wanted if wanted else ''} has been made in this notebook yet; "
        "run your cell above first."
    )


class Results(Sequence[Item]):
    """A sized, indexable grid of items.

    `results["flux-2-dev", 3]` finds by (model, seed); `results[4]` is by position, the fifth
    item in reading order (row by row), which is seed 5 in a `--seed 1..8` sweep.
    """

    def __init__(self, plan: Plan, *, size: int = 256, cols: int = 8) -> None:
        self.plan = plan
        self.size = size
        self.cols = cols
        self.items: list[Item] = [
            Item(c.request, c.row, c.col, note=c.note, index=n) for n, c in enumerate(plan.cells)
        ]
        for item in self.items:
            if item.request is None:
                item.status = "skipped"
        self.elapsed = 0.0
        self.running = False  # set by the runner while requests are out: the progress line's ETA
        self.interrupted = False
        #: Set by `exports.export`: one sentence per failed --save/--to-oxen/--to-html (the CLI
        #: exits 1), and whether Ctrl-C came while files were written (it exits 130).
        self.export_failures: list[str] = []
        self.export_interrupted = False
        self.notes: list[str] = list(plan.notes)
        self.host: str | None = None  # the API base the images came from
        self.prices: dict[str, float] = {}  # model id -> price per image, where the API gave one
        _register(self)
        #: The items the cache could not answer when the run was planned (None: not looked at).
        self.to_send: list[Item] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.items[key]
        if isinstance(key, tuple) and len(key) == 2:
            for item in self.items:
                if item.request is not None and (item.model, item.seed) == key:
                    return item
            raise KeyError(f"No image for model {key[0]!r} with seed {key[1]!r} in these results.")
        raise TypeError("Index results by position or by (model, seed).")

    def show(self, *key: Any) -> FullView:
        """One image at full size: `grid.show("flux-2-dev", 3)` by (model, seed), `grid.show(4)`
        by position (the fifth image, which is not seed 4 unless the seeds start at 0)."""
        if len(key) == 1 and isinstance(key[0], int):
            item = self.items[key[0]]
        elif len(key) == 2:
            item = self[key[0], key[1]]
        else:
            raise TypeError("show(model, seed) or show(position).")
        return item.show()

    def select(self, **fields: Any) -> list[Item]:
        """Items whose attributes match, e.g. `select(model="flux-2-dev", prompt=...)`."""
        return [
            item
            for item in self.items
            if item.request is not None and all(getattr(item, k) == v for k, v in fields.items())
        ]

    @property
    def done(self) -> int:
        return sum(1 for i in self.items if i.status == "done")

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if i.status == "failed")

    @property
    def total(self) -> int:
        return sum(1 for i in self.items if i.request is not None)

    @property
    def images(self) -> list[Image.Image]:
        return [im for im in (i.image for i in self.items) if im is not None]

    def summary(self) -> str:
        """`12/16 images, 1 failed, 4.2 s` — the progress line."""
        text = f"{self.done}/{self.total} images"
        if self.failed:
            text += f", {self.failed} failed"
        cached = sum(1 for i in self.items if i.cached)
        if cached:
            text += f", {cached} from cache"
        drawn = sum(1 for i in self.items if i.placeholder)  # a PNG does not say it: this line does
        if drawn:
            text += f", {drawn} placeholder{'s' if drawn > 1 else ''} (the local hub's, not a model's)"
        text += f", {self.elapsed:.1f} s"
        eta = self.eta()
        if eta is not None:
            text += f", about {_duration(eta)} left"
        if self.interrupted:
            text += " (interrupted)"
        return text

    def eta(self) -> float | None:
        """Seconds until the rest arrive at the pace so far (None when idle or nothing came yet)."""
        if not self.running or self.elapsed <= 0:
            return None
        fetched = sum(1 for i in self.items if i.status in ("done", "failed") and not i.cached)
        left = sum(1 for i in self.items if i.status == "pending")
        if not fetched or not left:
            return None
        return left * self.elapsed / fetched

    @property
    def pages(self) -> int:
        """How many `page()`s the grid's cells fill, `PAGE_CELLS` at most on each."""
        from .render import grid_pages

        return len(grid_pages(self, PAGE_CELLS))

    def page(self, number: int = 1, cells: int = PAGE_CELLS) -> GridPage:
        """Rows of the grid holding about `cells` images: `results.page(2)` shows the next ones."""
        return GridPage(self, number, cells)

    def cost_line(self) -> str | None:
        """What the images still to be sent will cost: "est. $0.003 for 1 new" once some come from
        the cache (they are free), "est. $0.012" when all are new; None when no price is known."""
        prices = self.plan.prices
        if not any(p is not None for p in prices.values()):
            return None
        if self.to_send is not None:
            counted = [i for i in self.to_send if not i.cached]
        else:
            counted = [i for i in self.items if i.request is not None and not i.cached]
        known = [prices.get(i.model or "") for i in counted]
        cost = sum(p for p in known if p is not None)
        unpriced = sum(1 for p in known if p is None)
        text = f"est. ${cost:.3f}" if cost < 1 else f"est. ${cost:.2f}"
        if len(counted) < self.total:
            text += f" for {len(counted)} new"
        if unpriced:
            text += f" + {unpriced} image(s) of unknown price"
        return text

    def _repr_html_(self) -> str:
        from .render import grid_html

        return grid_html(self)

    def __repr__(self) -> str:
        return f"<Results {self.summary()}>"

    def plain(self, errors: int = 5) -> str:
        """What a terminal shows (it has no HTML): the summary, then once the run is over the
        notes and the first failed cells' errors, which a notebook shows in the grid."""
        lines = [repr(self)]
        if not self.running:
            lines += self.notes
            failed = [i for i in self.items if i.status == "failed"]
            for item in failed[:errors]:
                seed = f" seed {item.seed}" if item.seed is not None else ""
                lines.append(f"[{item.index}] {item.model}{seed}: {item.error}")
            if len(failed) > errors:
                lines.append(f"... and {len(failed) - errors} more failed (grid.select(status='failed')).")
        return "\n".join(lines)

    def save(self, folder: str | Path) -> list[Path]:
        """Write each image as PNG, its generation parameters in the `parameters` text chunk.

        Each file is written whole, and no file already in `folder` is replaced: a name holding
        another image keeps it, and the new one gets a number (`flux-2-dev_seed-3_2.png`)."""
        return [path for _, path in self.save_items(folder)]

    def save_items(self, folder: str | Path) -> list[tuple[Item, Path]]:
        """`save`, saying which item each file holds (for tables that describe the files)."""
        from .saving import save_pngs

        return save_pngs(self, folder).files

    def to_oxen(self, path: str | Path, message: str | None = None, push: bool = False) -> OxenExport:
        """Commit the images and one row each to the Oxen repository at `path` (made if absent);
        `push=True` then pushes to its remote. Needs `pip install "oxen_magic[oxen]"`."""
        from .oxen_repo import to_oxen

        return to_oxen(self, path, message, push)

    def to_html(self, path: str | Path) -> Path:
        """One standalone HTML file: the labelled grid, each image's parameters, click to enlarge."""
        from .gallery import write_html

        return write_html(self, path)

    def contact_sheet(self, cell: int | None = None) -> Image.Image:
        """One labelled image of the whole grid, for slides and sharing."""
        from .render import contact_sheet

        return contact_sheet(self, cell or self.size)


class GridPage:
    """One page of a big grid, displayed like the grid itself."""

    def __init__(self, results: Results, number: int, cells: int) -> None:
        self.results, self.number, self.cells = results, number, cells

    def _repr_html_(self) -> str:
        from .render import grid_html

        return grid_html(self.results, page=self.number, cells=self.cells)

    def __repr__(self) -> str:
        return f"<page {self.number} of {self.results!r}>"


def _duration(seconds: float) -> str:
    """`8 s`, `3 min`, `1 h 20 min`: an ETA, rounded the way people say it."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
