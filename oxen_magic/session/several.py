"""Several images from one request: a count such as `num_images` asks the API for N images in one
answer, each billed.

The plan gives each image its own cell (an `image` axis): cell 0 sends the POST
(`Request.count` images), cells 1.. show the rest of its answer and are never sent on their
own. Here the runner finds those cells (`followers`, by the POST that fills them: `group`);
`job.Job` fills them when the answer arrives, and an answer with more images than asked gets new
cells past the grid's last column (`settle.extra_cell`: kept, saved and billed).
"""

from __future__ import annotations

import json

from oxen_magic.planning.plan import Request
from oxen_magic.results.item import Item


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
