"""What a request will cost, read before it goes upstream, and which requests the room shares.

The price is the one the client shows (`model_info.ModelInfo.from_api`: the model's
`pricing.cost_per_image`, checked field by field) times the images the body asks for
(`num_images`, documented for ideogram-v4; one otherwise). A model whose price cannot be read is
refused rather than guessed: the relay could not keep the seat's budget.

The sharing key is the client's cache key (`cache.Cache.key`: host and exact JSON body) with the
route in the host part and `response_format` left out (the relay stores bytes and answers either
format), so only a seeded request is ever shared, and only with an identical one.
"""

from __future__ import annotations

import time
from typing import Any

from oxen_magic.core.money import estimate
from oxen_magic.network.cache import Cache
from oxen_magic.network.model_info import ModelInfo, image_count

#: Seconds a model's price is trusted before it is read from upstream again.
PRICE_TTL = 600.0


def price_of(model: dict[str, Any], body: dict[str, Any]) -> float | None:
    """The request's price in USD from the upstream model object; None when it cannot be read."""
    info = ModelInfo.from_api(model)
    if info.cost_per_image is None:
        return None
    # the count as the client reads it with no schema: only the documented `num_images`
    return estimate([(info.cost_per_image, image_count(None, body)[1])]).cost


def share_key(upstream: str, path: str, body: dict[str, Any]) -> str | None:
    """The key identical requests share, or None for an unseeded request (never shared)."""
    if not Cache.cacheable(body):
        return None
    same = {k: v for k, v in body.items() if k != "response_format"}
    return Cache.key(upstream + path, same)


class ModelMemory:
    """Model objects read from upstream, kept for `PRICE_TTL` seconds (per process)."""

    def __init__(self, ttl: float = PRICE_TTL) -> None:
        self.ttl = ttl
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, model_id: str) -> dict[str, Any] | None:
        held = self._known.get(model_id)
        if held is None or time.monotonic() - held[0] > self.ttl:
            return None
        return held[1]

    def put(self, model_id: str, obj: dict[str, Any]) -> None:
        self._known[model_id] = (time.monotonic(), obj)
