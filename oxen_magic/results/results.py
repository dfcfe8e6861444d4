"""What a run gives back: a `Results` grid of `Item`s (`item.py`) that saves, exports and
displays itself, a page at a time when it is big.

A grid is a plain object: the session's runner fills it, and the session remembers it among the
grids made lately (`state.RecentGrids`, for `latest()` and the check cells); it registers itself
nowhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from oxen_magic.core.money import estimate
from oxen_magic.core.pace import Tally, progress_line
from oxen_magic.display.render import PAGE_CELLS
from oxen_magic.planning.plan import Plan
from oxen_magic.results.item import FullView, Item

if TYPE_CHECKING:
    from oxen_magic.exports.oxen_export import OxenExport


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
        """`12/16 images, 1 failed, 4.2 s, about 8 s left`: the progress line (`pace.progress_line`)."""
        return progress_line(Tally.of(self.items, self.elapsed, self.running, self.interrupted))

    def eta(self) -> float | None:
        """Seconds until the rest arrive at the pace so far (None when idle or nothing came yet)."""
        return Tally.of(self.items, self.elapsed, self.running).eta

    @property
    def pages(self) -> int:
        """How many `page()`s the grid's cells fill, `PAGE_CELLS` at most on each."""
        from oxen_magic.display.render import grid_pages

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
        cost = estimate((prices.get(i.model or ""), 1) for i in counted)
        return cost.text(len(counted) if len(counted) < self.total else None)

    def _repr_html_(self) -> str:
        from oxen_magic.display.render import grid_html

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
        from oxen_magic.exports.saving import save_pngs

        return save_pngs(self, folder).files

    def to_oxen(self, path: str | Path, message: str | None = None, push: bool = False) -> OxenExport:
        """Commit the images and one row each to the Oxen repository at `path` (made if absent);
        `push=True` then pushes to its remote. Needs `pip install "oxen_magic[oxen]"`."""
        from oxen_magic.exports.oxen_export import to_oxen

        return to_oxen(self, path, message, push)

    def to_html(self, path: str | Path) -> Path:
        """One standalone HTML file: the labelled grid, each image's parameters, click to enlarge."""
        from oxen_magic.exports.gallery import write_html

        return write_html(self, path)

    def contact_sheet(self, cell: int | None = None) -> Image.Image:
        """One labelled image of the whole grid, for slides and sharing."""
        from oxen_magic.display.contact import contact_sheet

        return contact_sheet(self, cell or self.size)


class GridPage:
    """One page of a big grid, displayed like the grid itself."""

    def __init__(self, results: Results, number: int, cells: int) -> None:
        self.results, self.number, self.cells = results, number, cells

    def _repr_html_(self) -> str:
        from oxen_magic.display.render import grid_html

        return grid_html(self.results, page=self.number, cells=self.cells)

    def __repr__(self) -> str:
        return f"<page {self.number} of {self.results!r}>"
