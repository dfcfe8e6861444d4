"""The local hub's image routes: `POST /api/ai/images/generate` (`oxen-api.md`).

Checks a request as the API does (auth, prompt, model, response_format, the model's schema),
sleeps out the injected latency, draws the deterministic placeholder and answers a temporary URL
or `b64_json`. Failure knobs (`faults.py`) come first, before auth, as a gateway's would.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from oxen_magic.catalog import properties_of, schema_of
from oxen_magic.placeholder import (
    FORMATS,
    NO_SEED,
    ImageSpec,
    format_for,
    image_dimensions,
    ratio_for,
    render_image,
    short,
)

from .catalogue import _makes_images
from .faults import FaultQueue, failure_reply, garbage_reply
from .replies import _error_reply, _json_bytes, _not_found, _Reply
from .routes import _ModelRoutes
from .validation import _BadRequest, validate

#: Request fields that do not change the picture (or are handled on their own).
_NOT_DRAWN = frozenset(
    {
        "model",
        "prompt",
        "response_format",
        "target_namespace",
        "seed",
        "output_format",
        "aspect_ratio",
        "size",
        "input_image",
    }
)


class _GenerateRoutes(_ModelRoutes):
    """The POST routes (mixed into `LocalHub`)."""

    latency: float
    image_size: int | None
    in_flight: int
    peak_in_flight: int
    _faults: FaultQueue
    _seed_rng: random.Random
    _cache: OrderedDict[ImageSpec, bytes]
    _cache_size: int
    _stopping: threading.Event

    @property
    def garbage(self) -> str | None:
        raise NotImplementedError

    def _generate_counted(self, headers: Any, raw: bytes, body: dict[str, Any] | None) -> _Reply:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return self._generate(headers, raw, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _injected_failure(self) -> _Reply | None:
        with self._lock:
            failure = self._faults.take()
        return None if failure is None else failure_reply(failure)

    def _generate(self, headers: Any, raw: bytes, body: dict[str, Any] | None) -> _Reply:
        failure = self._injected_failure()
        if failure is not None:
            return failure
        if not self._authorised(headers):
            return _error_reply(401)
        if body is None:
            return _error_reply(400, "Request body must be a JSON object")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return _error_reply(400, "Prompt cannot be empty")
        name = body.get("model")
        if not isinstance(name, str) or not name.strip():
            return _error_reply(400, "Model is required")
        obj = self._find(name)
        if obj is None:
            return _not_found(f"Model not found: {name}")
        if not _makes_images(obj):
            return _error_reply(400, f"Model {name} does not generate images")
        response_format = body.get("response_format", "url")
        if response_format is None:
            response_format = "url"
        if response_format not in ("url", "b64_json"):
            return _error_reply(400, f"Invalid response_format: {response_format!r} (use url or b64_json)")
        schema = schema_of(obj)
        try:
            validate(body, schema)
        except _BadRequest as problem:
            return _error_reply(400, str(problem))
        output_format = body.get("output_format")
        if output_format is not None and (
            not isinstance(output_format, str) or output_format.lower() not in FORMATS
        ):
            return _error_reply(400, f"Invalid output_format: {output_format!r} is not one of png, jpg, webp")

        spec = self._spec(name, prompt, body, schema)
        if self.latency > 0:
            self._stopping.wait(self.latency)

        garbage = self.garbage
        if garbage is not None:
            return garbage_reply(
                garbage,
                name,
                lambda data: self._images_reply(name, response_format, body, data, "png", "image/png"),
                lambda: self._image(replace(spec, fmt="png")),
            )
        data = self._image(spec)
        _, ext, content_type = FORMATS[spec.fmt]
        return self._images_reply(name, response_format, body, data, ext, content_type)

    def _spec(self, name: str, prompt: str, body: dict[str, Any], schema: dict[str, Any] | None) -> ImageSpec:
        seed = body.get("seed")
        takes_seed = schema is None or "seed" in properties_of(schema)
        if isinstance(seed, int) and not isinstance(seed, bool) and takes_seed:
            note = ""
        else:
            with self._lock:
                seed_value = self._seed_rng.randrange(2**31)
            note = NO_SEED if not takes_seed else "random: none sent"
            seed = seed_value
        label, ratio = ratio_for(body, schema)
        width, height = image_dimensions(ratio, self.image_size or 1024)
        extras = tuple(
            (k, short(str(v), 16))
            for k, v in sorted(body.items())
            if k not in _NOT_DRAWN and not isinstance(v, (dict, list))
        )
        return ImageSpec(
            model=name,
            prompt=prompt,
            seed=int(seed),
            seed_note=note,
            width=width,
            height=height,
            ratio_label=label,
            fmt=format_for(body, schema),
            extras=extras,
        )

    def _image(self, spec: ImageSpec) -> bytes:
        with self._lock:
            data = self._cache.get(spec)
            if data is not None:
                self._cache.move_to_end(spec)
                return data
        data = render_image(spec)
        with self._lock:
            self._cache[spec] = data
            self._cache.move_to_end(spec)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return data

    def _images_reply(
        self,
        name: str,
        response_format: str,
        body: dict[str, Any],
        data: bytes,
        ext: str,
        content_type: str,
    ) -> _Reply:
        if response_format == "b64_json":
            image: dict[str, str] = {"b64_json": base64.b64encode(data).decode("ascii")}
        else:
            image = {"url": self._issue_url(body.get("target_namespace"), data, ext, content_type)}
        payload = {"model": name, "created": int(time.time()), "images": [image]}
        return _Reply(200, _json_bytes(payload))
