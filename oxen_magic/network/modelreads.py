"""Reading what the API says about its models: the list, one model's detail, several at once.

Split from the client, which sends: these say which route a read goes to, what of its answer is
kept (a malformed entry costs only itself), and how details are remembered. `ModelDetails` is
that memory: the session owns one and hands it to each of its clients (so the panel and every
cell read a model's detail once, and a new session starts with none); a client made on its own
has its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from oxen_magic.core.errors import BadResponseError, OxenError
from oxen_magic.core.threads import DaemonPool
from oxen_magic.network.model_info import ModelInfo

#: Seconds a model's detail is trusted before it is read again (a workshop may run for hours).
DETAIL_TTL = 600.0


class ModelDetails:
    """Model details already read, per host and model id, each trusted for `ttl` seconds."""

    def __init__(self, ttl: float = DETAIL_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], tuple[float, ModelInfo]] = {}

    def get(self, base: str, model_id: str) -> ModelInfo | None:
        """The detail read from `base` for `model_id` within `ttl`, else None."""
        with self._lock:
            hit = self._known.get((base, model_id))
        if hit is None or self._clock() - hit[0] > self.ttl:
            return None
        return hit[1]

    def put(self, base: str, model_id: str, info: ModelInfo) -> None:
        with self._lock:
            self._known[(base, model_id)] = (self._clock(), info)

    def clear(self) -> None:
        """Forget every detail (a restarted hub on a reused port describes its models anew)."""
        with self._lock:
            self._known.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)

    def __repr__(self) -> str:
        return f"ModelDetails({len(self)} known)"


def list_path(search: str | None, developer: str | None) -> str:
    """The route (and query) that lists models: `search` goes to the search route, `developer` to
    the list's own `developer_name` filter (on either route), so the server narrows the list."""
    query = {k: v for k, v in (("search", search), ("developer_name", developer)) if v}
    path = "/api/ai/models/search" if search else "/api/ai/models"
    return path + ("?" + urlencode(query) if query else "")


def detail_path(model_id: str) -> str:
    """The detail route of one model; ids like `oxen:team/x` are URL-encoded."""
    return "/api/ai/models/" + quote(model_id, safe="")


def image_models(body: Any) -> list[ModelInfo]:
    """The image-generation models of a list answer ("image" in capabilities.output). A
    malformed entry is skipped; it never costs the rest of the list."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise BadResponseError("The model list from the API has no 'data' list.")
    out = []
    for obj in data:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
            continue
        try:
            info = ModelInfo.from_api(obj)
        except Exception:  # a field of a shape nobody foresaw: skip this model only
            continue
        if info.makes_images:
            out.append(info)
    return out


def model_detail(model_id: str, body: Any) -> ModelInfo:
    """One model from its detail answer, or `BadResponseError` saying it is unreadable."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise BadResponseError(f"The API's description of {model_id} has no 'id'.")
    try:
        return ModelInfo.from_api(body)
    except Exception:  # pragma: no cover - from_api is tolerant; belt and braces
        raise BadResponseError(f"The API's description of {model_id} is unreadable.") from None


def read_several(
    ids: Iterable[str],
    known: Callable[[str], ModelInfo | None],
    read: Callable[[str], ModelInfo | OxenError],
    workers: int,
) -> dict[str, ModelInfo | OxenError]:
    """Each id's detail, in the order given: what `known` holds, else `read` in parallel
    (`read` returns a failure instead of raising it, so one model never costs the others)."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, ModelInfo | OxenError] = {}
    todo = []
    for model_id in wanted:
        hit = known(model_id)
        if hit is None:
            todo.append(model_id)
        else:
            out[model_id] = hit
    if len(todo) == 1:
        out[todo[0]] = read(todo[0])
    elif todo:
        pool = DaemonPool(min(workers, len(todo)), "oxen-magic-models")
        try:
            futures = {m: pool.submit(read, m) for m in todo}
            for model_id, future in futures.items():
                out[model_id] = future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return {m: out[m] for m in wanted}
