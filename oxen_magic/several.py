"""Several images from one request: a count such as `num_images` asks the API for N images in one
answer, each billed.

The plan gives each image its own cell (an `image` axis): cell 0 sends the POST
(`Request.count` images), cells 1.. show the rest of its answer and are never sent on their
own. Here the runner finds those cells (`followers`) and fills them when the answer arrives; an
answer with more images than asked gets new cells past the grid's last column (kept, saved and
billed), one with fewer fails the cells left. Split from the runner: `job.Job` mixes `Several`
into the job every worker of a run shares.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from .client import Generation
from .errors import OxenError
from .item import Item
from .plan import Request
from .results import Results

#: A cell whose request's first image came from the cache but not this one (a failed write).
UNCACHED = "This image is not in the cache although its request's first image is; rerun with --no-cache."


def group(request: Request) -> str:
    """The POST a cell's image comes from: its sender's body (a Request may hold lists)."""
    return json.dumps(request.sender().key_body(), sort_keys=True, default=str)


def followers(items: list[Item]) -> dict[str, list[Item]]:
    """The cells showing images 1.. of a request, by the POST that fills them (`group`)."""
    out: dict[str, list[Item]] = {}
    senders = {group(i.request) for i in items if i.request is not None and i.request.image == 0}
    for item in items:
        request = item.request
        if request is not None and request.image and group(request) in senders:
            out.setdefault(group(request), []).append(item)
    return out


class Several:
    """The part of the runner's job that spreads one answer over its cells."""

    followers: dict[str, list[Item]]
    results: Results | None
    size: int
    on_billed: Callable[[Item, int | None], None] | None
    frozen: Any  # settle.Frozen: `lock`, `done`
    _thumb: Callable[[Generation, int], bytes]

    def _run_in_cpu_pool(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        raise NotImplementedError

    def _outcome(self, item: Item, **fields: Any) -> Item:
        raise NotImplementedError

    def _keep(self, item: Item, body: dict[str, Any], generation: Generation, thumb: bytes) -> Item:
        raise NotImplementedError

    def _fill_others(self, item: Item, generation: Generation) -> None:
        """Images 1.. of the answer into their cells; more than asked get cells of their own
        (kept, saved and billed: a note says so); fewer than asked fail the cells left."""
        assert item.request is not None
        mine = self.followers.get(group(item.request), ())
        cells = {i.request.image: i for i in mine if i.request is not None}
        others = list(generation.others)
        for k, other in enumerate(others, start=1):
            member = cells.pop(k, None)
            if member is None:  # an image nobody asked for, billed all the same: keep and count it
                member = self._extra_cell(item, k)
            if self.on_billed is not None:
                self.on_billed(member, None)
            assert member.request is not None
            try:
                thumb = self._run_in_cpu_pool(self._thumb, other, self.size)
            except OxenError as exc:
                self._outcome(member, error=str(exc), status="failed")
                continue
            self._keep(member, member.request.key_body(), other, thumb)
        for member in (i for i in cells.values() if i.status != "done"):
            asked = item.request.count
            error = f"The API returned {generation.count} of the {asked} images asked."
            self._outcome(member, error=error, status="failed")

    def _extra_cell(self, item: Item, image: int) -> Item:
        return extra_cell(item, image, self.results, self.frozen)


def extra_cell(item: Item, image: int, results: Results | None, frozen: Any) -> Item:
    """A new item for image `image` of `item`'s answer, past the count asked (left out of the
    results once the run has returned: the ledger and the cache still get it). `frozen`:
    settle.Frozen."""
    assert item.request is not None
    with frozen.lock:
        # Past the grid's last column, so no view takes it for the cell of image 1.
        col = len(results.plan.col_labels) + image if results is not None else -1
        extra = Item(dataclasses.replace(item.request, image=image), item.row, col)
        if frozen.done or results is None:
            return extra
        extra.index = len(results.items)
        results.items.append(extra)
        note = (
            f"{item.request.model} returned more images than asked; the extra ones are kept "
            "at the end of the results, off the grid (grid[-1]; .save() and .to_oxen() include them)."
        )
        if note not in results.notes:
            results.notes.append(note)
    return extra
