"""The local hub's image routes: `POST /api/ai/images/generate` and `/api/ai/images/edit`
(`oxen-api.md`).

Checks a request as the API does (auth, prompt, model, response_format, the model's schema and
its top-level `required`), fetches `input_image` (`fetch_inputs.py`), sleeps out the injected latency,
draws the deterministic placeholder (derived from the inputs when there are any) and answers a
temporary URL or `b64_json`. Failure knobs (`faults.py`) come first, before auth, as a gateway's
would; one marked `after_billing` comes after the image was made.

Where the docs are silent: the edit route needs `input_image` and a model whose schema takes it
(a 400 otherwise); the generate route also uses `input_image` when the model's schema takes it
(gpt-image-1-5 does, its endpoint reading `/images/generate`) and ignores it otherwise; a prompt
is needed unless the model's schema has a `required` list without it (the topazlabs models).
"""

from __future__ import annotations

import base64
import io
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from PIL import Image

from oxen_magic.localhub.bodies import parse_json
from oxen_magic.localhub.faults import failure_reply, garbage_reply, retry_after_value
from oxen_magic.localhub.fetch_inputs import InputProblem, load
from oxen_magic.localhub.models import _makes_images
from oxen_magic.localhub.placeholder import (
    FORMATS,
    NO_SEED,
    ImageSpec,
    format_for,
    image_dimensions,
    input_sha,
    ratio_for,
    render_image,
    short,
)
from oxen_magic.localhub.replies import _error_reply, _json_bytes, _not_found, _Reply
from oxen_magic.localhub.routes import EDIT_PATH, GENERATE_PATH
from oxen_magic.localhub.validation import _BadRequest, validate
from oxen_magic.network.model_info import image_count, properties_of, schema_of

if TYPE_CHECKING:
    from oxen_magic.localhub.arrivals import CallWatch, Tally
    from oxen_magic.localhub.faults import FaultQueue
    from oxen_magic.localhub.knobs import Knobs
    from oxen_magic.localhub.routes import ModelRoutes

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


_DRAWING = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def _required(schema: dict[str, Any] | None, unknown: bool) -> set[str]:
    """The schema's top-level `required` names; `prompt` when there is no schema to say (the
    generate route's documented required fields are model and prompt)."""
    names = schema.get("required") if isinstance(schema, dict) else None
    if not isinstance(names, list):
        return {"prompt"}
    found = {n for n in names if isinstance(n, str)}
    return found | ({"prompt"} if unknown else set())


@dataclass
class _Checked:
    """A request the API would take: what drawing it needs."""

    name: str
    prompt: str
    schema: dict[str, Any] | None
    response_format: str
    inputs: list[bytes]


class ImageRoutes:
    """The POST routes. Handed the knobs (read on every request), the GET routes (the models
    served, the key check, result files an `input_image` may name), where a result is published
    (`issue_url`: the hub's, so a test's hub can change it), the fault injection, the counters,
    the arrivals watch (told when requests in flight change), the hub's stop event (a sleeping
    latency wakes on it) and how many placeholders to keep."""

    def __init__(
        self,
        knobs: Knobs,
        models: ModelRoutes,
        issue_url: Callable[[Any, bytes, str, str], str],
        faults: FaultQueue,
        tally: Tally,
        watch: CallWatch,
        stopping: threading.Event,
        cache_size: int,
    ) -> None:
        self.knobs, self.models, self.issue_url = knobs, models, issue_url
        self.faults, self.tally, self.watch, self.stopping = faults, tally, watch, stopping
        self._cache: OrderedDict[ImageSpec, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._seed_rng = random.Random()
        self._lock = threading.Lock()

    def counted(
        self, headers: Any, raw: bytes, body: dict[str, Any] | None, path: str = GENERATE_PATH
    ) -> _Reply:
        """Answer one image POST, counted in flight (429 over `max_concurrent`)."""
        if not self.tally.enter(self.knobs.max_concurrent):
            return self._rate_limited()
        self.watch.changed()  # a test holding requests in flight waits on this
        try:
            return self._generate(headers, raw, body, path)
        finally:
            self.tally.leave()
            self.watch.changed()

    def _rate_limited(self) -> _Reply:
        """429 in the documented shape; Retry-After (undocumented) only when the knob sets one."""
        reply = _error_reply(429)
        if self.knobs.retry_after is not None:
            reply.headers["Retry-After"] = retry_after_value(self.knobs.retry_after)
        return reply

    def _generate(
        self, headers: Any, raw: bytes, body: dict[str, Any] | None, path: str = GENERATE_PATH
    ) -> _Reply:
        failure = self.faults.take()
        if failure is not None and not failure.after_billing:
            return failure_reply(failure)
        reply = self._make(headers, body, path, raw)
        if failure is not None and reply.status == 200:
            return failure_reply(failure)  # the image was made (and billed) all the same
        return reply

    def _make(self, headers: Any, body: dict[str, Any] | None, path: str, raw: bytes = b"") -> _Reply:
        """Check the request as the API does, then draw and answer the image."""
        checked = self._check(headers, body, path, raw)
        if isinstance(checked, _Reply):
            return checked
        assert body is not None
        name, inputs, response_format = checked.name, checked.inputs, checked.response_format
        # Drawing happens within the injected latency, as a real server's work is in its time.
        started = time.monotonic()
        spec = self._spec(name, checked.prompt, body, checked.schema, inputs)
        garbage = self.faults.garbage
        spec = replace(spec, fmt="png") if garbage is not None else spec
        # A schema with a count (`num_images`): that many images, each billed (`oxen-api.md`).
        count = max(1, image_count(checked.schema, body)[1] + self.knobs.extra_images)
        data = self._image(spec, inputs)
        more = [self._image(_nth(spec, k), inputs) for k in range(1, count)]
        del inputs, checked  # an input's bytes are not kept while sleeping out the latency
        left = self.knobs.latency - (time.monotonic() - started)
        if left > 0:
            self.stopping.wait(left)
        self.tally.bill(count)

        if garbage is not None:
            return garbage_reply(
                garbage,
                name,
                lambda junk: self._images_reply(name, response_format, body, [junk], "png", "image/png"),
                lambda: data,
            )
        _, ext, content_type = FORMATS[spec.fmt]
        return self._images_reply(name, response_format, body, [data, *more], ext, content_type)

    def _check(self, headers: Any, body: dict[str, Any] | None, path: str, raw: bytes) -> _Reply | _Checked:
        """The API's refusal of this request, in the order it checks, or what drawing needs."""
        if not self.models.authorised(headers):
            return _error_reply(401)
        if body is None:
            return _error_reply(400, parse_json(raw)[1] or "Request body must be a JSON object")
        prompt = body.get("prompt")
        name = body.get("model")
        obj = self.models.find(name) if isinstance(name, str) else None
        schema = schema_of(obj) if obj is not None else None
        needs_prompt = prompt is not None or "prompt" in _required(schema, obj is None)
        if needs_prompt and (not isinstance(prompt, str) or not prompt.strip()):
            return _error_reply(400, "Prompt cannot be empty")
        if not isinstance(name, str) or not name.strip():
            return _error_reply(400, "Model is required")
        if obj is None:
            return _not_found(f"Model not found: {name}")
        if not _makes_images(obj):
            return _error_reply(400, f"Model {name} does not generate images")
        response_format = body.get("response_format", "url")
        if response_format is None:
            response_format = "url"
        if response_format not in ("url", "b64_json"):
            return _error_reply(400, f"Invalid response_format: {response_format!r} (use url or b64_json)")
        takes_input = schema is None or "input_image" in properties_of(schema)
        problem = _schema_problem(body, schema, path, name, takes_input)
        if problem is not None:
            return problem
        try:
            inputs = self._inputs(body.get("input_image")) if takes_input else []
        except InputProblem as exc:
            return _error_reply(400, str(exc))
        return _Checked(name, prompt if isinstance(prompt, str) else "", schema, response_format, inputs)

    def _inputs(self, value: Any) -> list[bytes]:
        """The bytes of each input image (none when the request gives none); each must be an
        image within `max_input_pixels` (checked from its header, before drawing decodes it)."""
        urls = value if isinstance(value, list) else [] if value in (None, "") else [value]
        pixels, data_uris = self.knobs.max_input_pixels, self.knobs.data_uris
        return [load(url, self.models.own_file, data_uris=data_uris, max_pixels=pixels) for url in urls]

    def _spec(
        self,
        name: str,
        prompt: str,
        body: dict[str, Any],
        schema: dict[str, Any] | None,
        inputs: Sequence[bytes] = (),
    ) -> ImageSpec:
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
        if inputs and body.get("aspect_ratio") == "match_input_image":
            with Image.open(io.BytesIO(inputs[0])) as first:
                label, ratio = "match_input_image", (float(first.width), float(first.height))
        width, height = image_dimensions(ratio, self.knobs.image_size or 1024)
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
            input_sha=input_sha(inputs),
        )

    def _image(self, spec: ImageSpec, inputs: Sequence[bytes] = ()) -> bytes:
        with self._lock:
            data = self._cache.get(spec)
            if data is not None:
                self._cache.move_to_end(spec)
                return data
        # At most one drawing per core at a time: more only queue for the CPU, and each holds
        # tens of MB of pixels while it draws (a room of 30 drawing at once is what grew the
        # hub to ~900 MB).
        with _DRAWING:
            data = render_image(spec, inputs)
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
        datas: Sequence[bytes],
        ext: str,
        content_type: str,
    ) -> _Reply:
        drip, oversize = self.knobs.drip or 0.0, self.knobs.oversize_bytes
        if response_format == "b64_json" and oversize:
            return _oversized_b64_reply(name, datas[0], oversize, drip)
        images: list[dict[str, str]] = [
            {"b64_json": base64.b64encode(data).decode("ascii")}
            if response_format == "b64_json"
            else {"url": self.issue_url(body.get("target_namespace"), data, ext, content_type)}
            for data in datas
        ]
        payload = {"model": name, "created": int(time.time()), "images": images}
        return _Reply(200, _json_bytes(payload), drip=drip)


def _schema_problem(
    body: dict[str, Any], schema: dict[str, Any] | None, path: str, name: str, takes_input: bool
) -> _Reply | None:
    """The 400 for a body its model's schema refuses (a field, an input image the edit route
    needs or the model does not take, a required field missing, an unknown output format)."""
    try:
        validate(body, schema)
        if path == EDIT_PATH and not takes_input:
            raise _BadRequest(f"Model {name} does not accept input_image")
        required = _required(schema, False) | ({"input_image"} if path == EDIT_PATH else set())
        for field in sorted(required - {"prompt"}):
            if body.get(field) in (None, "", []):
                raise _BadRequest(f"{field} is required")
    except _BadRequest as problem:
        return _error_reply(400, str(problem))
    output_format = body.get("output_format")
    if output_format is not None and (
        not isinstance(output_format, str) or output_format.lower() not in FORMATS
    ):
        return _error_reply(400, f"Invalid output_format: {output_format!r} is not one of png, jpg, webp")
    return None


def _nth(spec: ImageSpec, k: int) -> ImageSpec:
    """Image k (from 0) of one answer: the same request, visibly its own picture."""
    return replace(spec, seed=spec.seed + k, extras=(*spec.extras, ("image", f"{k + 1}")))


_B64_SLOT = "@@b64@@"


def _oversized_b64_reply(name: str, data: bytes, size: int, drip: float) -> _Reply:
    """A `b64_json` answer whose image decodes to `size` bytes: the real image's bytes (a valid
    header) followed by zeros, streamed as base64 'A's so the answer is never built whole."""
    data += b"\0" * (-len(data) % 3)  # base64 of the head then ends on a whole group
    decoded = max(size, len(data))
    padding = b"=" * (-decoded % 3)
    payload = {"model": name, "created": int(time.time()), "images": [{"b64_json": _B64_SLOT}]}
    head, tail = _json_bytes(payload).split(_B64_SLOT.encode())
    total = len(head) + (decoded + 2) // 3 * 4 + len(tail)
    return _Reply(
        200, head + base64.b64encode(data), tail=padding + tail, pad_to=total, pad_byte=b"A", drip=drip
    )
