"""Result files behind the temporary URLs the hub hands out (`oxen-api.md`: "URLs are temporary:
they expire").

A file lives `ttl` seconds from when it was made. The store is also capped by count and by total
bytes (the docs are silent on server-side limits: these are the hub's knobs, `max_results` and
`max_result_bytes`), evicting the oldest first, so a hub serving a room for hours stays bounded.
An evicted or expired file answers 404, like an expired URL.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _File:
    data: bytes
    content_type: str
    created: float  # the store's clock (time.monotonic unless a test gives its own)


class ResultStore:
    """Thread-safe token → file map with expiry and caps (None: no cap).

    `clock` (seconds, monotonic) is injectable so a test can move time past `ttl` instead of
    sleeping it out."""

    def __init__(
        self,
        ttl: float = 300.0,
        max_files: int | None = None,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evicted = 0  # files dropped by a cap (not by expiry)

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def _drop(self, token: str) -> None:
        entry = self._files.pop(token)
        self._bytes -= len(entry.data)

    def _purge_expired(self, now: float) -> None:
        # Files are kept in creation order, so expired ones are at the front.
        while self._files:
            token, entry = next(iter(self._files.items()))
            if now - entry.created <= self.ttl:
                break
            self._drop(token)

    def put(self, data: bytes, ext: str, content_type: str) -> str:
        """Keep `data` and return its new token (the last part of its URL)."""
        token = f"{secrets.token_hex(12)}.{ext}"
        now = self.clock()
        with self._lock:
            self._purge_expired(now)
            self._files[token] = _File(data, content_type, now)
            self._bytes += len(data)
            while len(self._files) > 1 and (
                (self.max_files is not None and len(self._files) > self.max_files)
                or (self.max_bytes is not None and self._bytes > self.max_bytes)
            ):
                self._drop(next(iter(self._files)))
                self.evicted += 1
        return token

    def get(self, token: str) -> _File | None:
        """The file for `token`, or None when unknown, expired or evicted."""
        now = self.clock()
        with self._lock:
            entry = self._files.get(token)
            if entry is not None and now - entry.created > self.ttl:
                self._drop(token)
                entry = None
            return entry

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._bytes = 0
