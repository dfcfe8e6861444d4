"""The hub's record of requests served (`LocalHub.requests`), bounded so a hub serving a room
for hours does not grow with every request.

Tests read the record (`hub.requests`, `generate_calls()`, a call's `body`, `headers` and
`authorization`), so it keeps what they compare: the method and path, the headers, the parsed
JSON body. What is kept is bounded twice over:

* each record is clipped: a long string (an edit's `data:` URI, junk) keeps its first
  characters and is marked with its length and SHA-256, so equal bodies still compare equal;
  containers keep their first items, nesting its first levels, headers their first values;
* the log keeps the newest records up to a count and a total weight (about the characters
  held), dropping the oldest first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from oxen_magic.localhub.replies import RecordedRequest

#: A string longer than this is kept as its head plus a mark (an edit's data: URI, junk).
LONG_STRING = 4096
#: Characters of a long string's head kept before the mark.
HEAD = 64
#: Items kept per list or object, levels of nesting, and items in all per body.
MAX_ITEMS, MAX_DEPTH, MAX_TOTAL_ITEMS = 256, 16, 4096
#: Headers kept per request and characters per header value; characters of a path.
MAX_HEADERS, MAX_HEADER_VALUE, MAX_PATH = 64, 1024, 2048
#: The log's default bounds: records kept, and their total weight (about the characters held).
MAX_RECORDS, MAX_WEIGHT = 10_000, 16_000_000


def clip(text: str, limit: int = LONG_STRING) -> str:
    """`text`, or its head and a mark naming its length and hash when longer than `limit`."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:HEAD]}…[{len(text)} chars, sha256 {digest}]"


class _Clipper:
    """A bounded copy of a parsed JSON value, and about how many characters it holds."""

    def __init__(self) -> None:
        self.items = 0
        self.weight = 0

    def copy(self, value: Any, depth: int = 0) -> Any:
        self.items += 1
        self.weight += 8
        if isinstance(value, str):
            kept = clip(value)
            self.weight += len(kept)
            return kept
        if not isinstance(value, (dict, list)):
            return value
        if depth >= MAX_DEPTH or self.items >= MAX_TOTAL_ITEMS:
            return f"…[{type(value).__name__} of {len(value)} items not kept]"
        if isinstance(value, list):
            kept_list = [self.copy(v, depth + 1) for v in value[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                kept_list.append(f"…[{len(value) - MAX_ITEMS} more items]")
            return kept_list
        kept_dict: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                kept_dict["…"] = f"[{len(value) - MAX_ITEMS} more keys]"
                break
            kept_dict[clip(key, MAX_HEADER_VALUE)] = self.copy(item, depth + 1)
            self.weight += min(len(key), MAX_HEADER_VALUE)
        return kept_dict


def recorded(
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    body: dict[str, Any] | None,
    status: int,
) -> tuple[RecordedRequest, int]:
    """A bounded `RecordedRequest` for one request, and its weight."""
    clipper = _Clipper()
    kept_body = clipper.copy(body) if body is not None else None
    kept_headers: dict[str, str] = {}
    for name, value in headers:
        if len(kept_headers) >= MAX_HEADERS:
            break
        kept_headers[name[:MAX_HEADER_VALUE]] = clip(value, MAX_HEADER_VALUE)
    authorization = next((v for k, v in kept_headers.items() if k.lower() == "authorization"), None)
    kept_path = clip(path, MAX_PATH)
    # 1024: about what a record's objects take besides their text
    weight = 1024 + len(kept_path) + clipper.weight + sum(len(k) + len(v) for k, v in kept_headers.items())
    record = RecordedRequest(method, kept_path, kept_headers, kept_body, status, authorization)
    return record, weight


class RequestLog(Sequence[RecordedRequest]):
    """The newest requests, oldest first: a sequence (compares equal to a list of the same
    records) that drops its oldest records past `max_records` or `max_weight`. Thread-safe;
    iterating walks a snapshot, so a request arriving meanwhile cannot break a loop."""

    def __init__(self, max_records: int | None = MAX_RECORDS, max_weight: int | None = MAX_WEIGHT) -> None:
        self.max_records = max_records
        self.max_weight = max_weight
        self._items: deque[tuple[RecordedRequest, int]] = deque()
        self._weight = 0
        self._lock = threading.Lock()
        self.dropped = 0  # records let go to stay within the bounds

    def append(self, record: RecordedRequest, weight: int = 0) -> None:
        with self._lock:
            self._items.append((record, weight))
            self._weight += weight
            while len(self._items) > 1 and (
                (self.max_records is not None and len(self._items) > self.max_records)
                or (self.max_weight is not None and self._weight > self.max_weight)
            ):
                _, gone = self._items.popleft()
                self._weight -= gone
                self.dropped += 1

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0

    @property
    def weight(self) -> int:
        """About how many characters the kept records hold."""
        return self._weight

    def _snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return [record for record, _ in self._items]

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> RecordedRequest: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordedRequest]: ...

    def __getitem__(self, index: int | slice) -> RecordedRequest | list[RecordedRequest]:
        if isinstance(index, slice):
            return self._snapshot()[index]
        with self._lock:
            return self._items[index][0]

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self._snapshot())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RequestLog, list, tuple)):
            return self._snapshot() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RequestLog({self._snapshot()!r})"
