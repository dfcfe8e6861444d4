"""The session's view of the cache: the embedded hub filed under "local", and a pack first.

Split from `session.py`: which host's entries answer a request is a question about the cache,
not about the session's defaults, clients and budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oxen_magic.network.cache import Cache, Noted

if TYPE_CHECKING:
    from oxen_magic.results.item import Item

#: `host = "local"` (or `--host local`): the embedded hub, started on first use; its results are
#: filed under this name (its port changes with each start).
LOCAL = "local"


class SessionCache(Cache):
    """The cache, filing the local hub's results under "local" instead of its (random) port, so
    a rerun after the hub restarted still answers from the cache.

    `first`: a real host whose entries answer before the local hub draws anything (set when the
    session fell back to the local hub for want of a key): an imported pack's images are used,
    online or offline, and only what they cannot answer becomes a placeholder. `answered_first`
    holds the keys (under `first`) that did answer, so the grid can tell real images apart.
    """

    def __init__(
        self,
        folder: str | Path | None,
        names: Mapping[str, str],
        first: str | None = None,
        noted: Noted | None = None,
    ) -> None:
        super().__init__(folder, noted)
        self.names = dict(names)
        self.first = first
        self.answered_first: set[str] = set()

    def _name(self, host: str) -> str:
        return self.names.get(host, host)

    def _first(self, host: str) -> str | None:
        """The real host to read from before the local hub's own entries, if any."""
        return self.first if self.first is not None and self._name(host) == LOCAL else None

    def get(self, host: str, body: dict[str, Any], thumb_size: int) -> Any:
        first = self._first(host)
        if first is not None:
            entry = super().get(first, body, thumb_size)
            if entry is not None:
                self.answered_first.add(self.key(first, body))
                return entry
        return super().get(self._name(host), body, thumb_size)

    def put(self, host: str, body: dict[str, Any], *args: Any, **meta: Any) -> None:
        super().put(self._name(host), body, *args, **meta)

    def put_thumb(self, host: str, body: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        first = self._first(host)
        if first is not None and self.key(first, body) in self.answered_first:
            host = first  # the thumbnail of a pack's image goes with that image
        super().put_thumb(self._name(host), body, *args, **kwargs)

    def get_model(self, host: str, model_id: str) -> dict[str, Any] | None:
        return super().get_model(self._name(host), model_id)

    def put_model(self, host: str, model_id: str, obj: dict[str, Any]) -> None:
        super().put_model(self._name(host), model_id, obj)

    def has(self, host: str, body: dict[str, Any]) -> bool:
        first = self._first(host)
        if first is not None and super().has(first, body):
            return True
        return super().has(self._name(host), body)

    def origin(self, item: Item) -> tuple[bool, str | None] | None:
        """After a local-hub run, for a finished item (else None): whether it is a placeholder
        (it is unless `first` answered it), and for one that `first` answered the key of its
        request there (its identity as a later cell's input image, so an edit of a pack's image
        is found in the pack too, whatever port the hub has). The run writes both into the item."""
        if item.status != "done" or item.request is None:
            return None
        key = self.key(self.first, item.request.key_body()) if self.first is not None else None
        placeholder = key is None or key not in self.answered_first
        return placeholder, None if placeholder else key
