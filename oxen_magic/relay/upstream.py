"""The relay's side toward the real API: model reads and image requests with the instructor's key.

The key is sent only to the upstream's own origin (result URLs on another origin are fetched
without it, as the client does), and nothing read here is handed to a seat before the routes
scrub it (`redact`). Result files are downloaded at once and kept (upstream URLs expire).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from oxen_magic.core.errors import redact

#: Largest answer or result file read from upstream (bytes).
MAX_BODY = 64 * 1024 * 1024


@dataclass
class Answer:
    """An upstream answer: its status, content type and body (the key scrubbed out)."""

    status: int
    content_type: str
    body: bytes
    images: list[tuple[str, bytes]] = field(default_factory=list)
    #: Seconds the upstream asked to wait (a 429's or 503's Retry-After), if it said.
    retry_after: float | None = None


def sniff(data: bytes) -> str:
    """The image type from its first bytes (what the files route serves it as)."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class Upstream:
    """One pooled aiohttp session to `base`, with the key in every request to its origin."""

    def __init__(self, base: str, key: str | None, timeout: float = 300.0, connections: int = 0) -> None:
        self.base = base.rstrip("/")
        #: Most connections open upstream (0: no limit of the pool's own; the room's window
        #: is the limit). A pool capped below the window queued a room of 100 behind 64 sockets.
        self.connections = connections
        self.key = key
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=self.connections),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, url: str) -> dict[str, str]:
        if self.key and _origin(url) == _origin(self.base):
            return {"Authorization": f"Bearer {self.key}"}
        return {}

    def scrub(self, data: bytes) -> bytes:
        """`data` without the key (defence in depth: an upstream might echo it)."""
        if self.key and self.key.encode() in data:
            return redact(data.decode("utf-8", "replace"), self.key).encode()
        return data

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, text: bool = True
    ) -> Answer:
        assert self._session is not None, "start() first"
        async with self._session.request(method, url, json=body, headers=self._headers(url)) as resp:
            data = await resp.content.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                return Answer(502, "", b"")
            return Answer(
                resp.status, resp.headers.get("Content-Type", ""), self.scrub(data) if text else data
            )

    async def get(self, path_qs: str) -> Answer:
        """A read route as the seat asked it (path and query kept exactly)."""
        return await self._call("GET", self.base + path_qs)

    async def model(self, model_id: str) -> Answer:
        return await self._call("GET", f"{self.base}/api/ai/models/{quote(model_id, safe='')}")

    async def images(self, path: str, body: dict[str, Any]) -> Answer:
        """Generate (or edit); on a 200 every image is fetched into `images` (mime, bytes)."""
        sent = {k: v for k, v in body.items() if k != "response_format"}  # URLs: then fetched
        answer = await self._call("POST", self.base + path, sent)
        if answer.status != 200:
            return answer
        try:
            items = json.loads(answer.body)["images"]
            assert isinstance(items, list) and items
            for item in items:
                if isinstance(item.get("b64_json"), str):
                    data = base64.b64decode(item["b64_json"], validate=True)
                else:
                    data = await self._download(urljoin(self.base + "/", item["url"]))
                answer.images.append((sniff(data), data))
        except (ValueError, KeyError, TypeError, AttributeError, AssertionError, binascii.Error):
            return Answer(502, "", b"", [])
        return answer

    async def _download(self, url: str) -> bytes:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("not a web address")
        answer = await self._call("GET", url, text=False)
        if answer.status != 200 or not answer.body:
            raise ValueError(f"result file answered {answer.status}")
        return answer.body
