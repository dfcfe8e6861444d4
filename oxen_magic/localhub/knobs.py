"""What a `LocalHub` is made with: `Knobs`, read by the routes on every request (a test may change
any of them through the hub at any time: `hub.latency = 1.0`), and `Setup`, the sizes of the parts
made once. `LocalHub` takes the fields of both as keywords, their defaults taken from here.

Knobs for readings of the docs (`oxen-api.md`) that are not settled:

* `anonymous_reads`: whether the model routes answer without a bearer token. The docs send
  the token on every request and list 401 for them, but do not confirm a keyless read is
  refused. False (the default, the documented reading): a missing or wrong token gets the
  documented 401 `unauthenticated`.
* `list_schemas`: whether the list's items carry their `request_schema`. False (the
  default): `"request_schema": null`, as the documented example has; the detail route
  always has it.
* `data_uris`: whether `input_image` may be a `data:` URI (undocumented either way).
* `schema_field`: the schema's name in model objects, `request_schema` or (as the docs say
  it is sometimes named) `json_request_schema`.
* `private_models`: ids that generate and edit serve but the list, search and detail routes
  do not (404), like a fine-tuned or private model another account cannot read.
* `bare_edit_route`: also serve `POST /api/images/edit`, the path the editing reference
  page's examples write (the catalogue's endpoint is under `/api/ai`).
* `require_auth_for_files`: whether result URLs need the token. False (the default): the
  async-queue page calls them presigned and downloads them with no header; True keeps the
  strict reading (a keyless download gets 401).
* `input_route` (set on the hub): where a request carrying `input_image` is served. "both"
  (the default: `/images/edit`, and `/images/generate` for a model whose schema takes it);
  "generate" (the docs' other reading: `/images/edit` is not served, `missing_route_status`);
  "edit" (`/images/generate` answers `missing_route_status` to a request with an input).
* `extra_images` (set on the hub): answer this many images more than asked (negative:
  fewer, at least one).
* `result_origin`: the origin result URLs are issued on (default: the hub's own). The docs
  call result URLs presigned and say nothing of their host; give e.g.
  `http://localhost:<port>` to serve them from this hub under another origin, which must
  never receive the key.

Standing in for the real host (tests of the default configuration, `tests/realday_support.py`):

* `tls`: a server-side `ssl.SSLContext`; the listening socket is wrapped with it, so the hub
  speaks HTTPS (the handshake happens in each connection's thread, not in the accept loop);
* `public_url`: the base URL the hub calls itself, e.g. `https://hub.oxen.ai` (its `url` and
  the result URLs it issues); the name must then resolve to this loopback port in the client,
  which is the test's business. Default: `http(s)://127.0.0.1:<port>`.

Load (the docs say only that 429 means "Rate limit exceeded" and that Retry-After is not
documented):

* `max_concurrent`: at most this many generate/edit requests in flight at once; one more is
  answered 429 at once (counted in `rejected`), with `Retry-After: <retry_after>` unless
  `retry_after` is None.

Memory (a hub serving a room for hours must stay bounded; the docs say only that result
URLs are temporary):

* `result_ttl` (alias of `url_ttl`): seconds (of `clock`, e.g. a test's fake) a result is kept;
* `max_results` and `max_result_bytes`: caps on the files kept, the oldest evicted first (an
  evicted file's URL answers 404 like an expired one); None for no cap;
* `cache_size`: placeholders kept to answer repeated requests without drawing again;
* `max_records`: requests kept in `requests` (the newest; each record clipped, see
  `records.py`), None for no count cap (a cap on the characters held still applies);
* `max_body_bytes`: a request body declared longer is refused 413 before a byte of it is
  read (an `input_image` data URI counts; the docs are silent on a limit);
* `max_input_pixels`: an input image claiming more pixels is refused 400 from its header,
  before it is decoded (None: only Pillow's own decompression-bomb limit).

Safety (a hub on a laptop in a room must not become a way into that laptop):

* `allowed_hosts`: names answered in the `Host` header besides loopback ones and IP
  addresses on the hub's port (DNS rebinding: a web page whose name resolves to 127.0.0.1
  still sends its own name); e.g. `["hub.oxen.ai"]` when the hub stands in for the real one
  behind TLS, `["*"]` for any. The host of `result_origin` is always allowed. Others: 403.

Knobs for a misbehaving server (the client must stay bounded whatever a server does):

* `oversize_bytes`: result bodies (URL downloads and `b64_json`) padded with zeros to this
  many bytes after a real image's header, streamed without being built in memory;
* `drip`: seconds between bytes of a result body and of the generate/edit JSON answer;
* `catalogue=malformed_catalogue()` (or added to the default one): models with wrong-typed
  fields.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from oxen_magic.localhub.fetch_inputs import MAX_INPUT_PIXELS
from oxen_magic.localhub.records import MAX_RECORDS


@dataclass
class Knobs:
    """What the routes read on every request (see the module docstring for each)."""

    api_key: str | None = "local-demo-key"
    latency: float = 0.0
    image_size: int | None = None
    require_auth_for_files: bool = False
    anonymous_reads: bool = False
    list_schemas: bool = False
    data_uris: bool = True
    schema_field: str = "request_schema"
    private_models: Iterable[str] = ()
    bare_edit_route: bool = False
    result_origin: str | None = None
    oversize_bytes: int | None = None
    drip: float | None = None
    max_concurrent: int | None = None
    retry_after: float | str | None = 1.0
    max_body_bytes: int = 64 * 1024 * 1024
    max_input_pixels: int | None = MAX_INPUT_PIXELS
    verbose: bool = False
    #: Where a request carrying `input_image` is served: "both", "generate" (the edit route is
    #: not served) or "edit" (generate refuses input images).
    input_route: str = "both"
    #: What a route not served answers: 404 (an unknown path) or 405 (method not allowed).
    missing_route_status: int = 404
    #: Images answered beyond those asked (a server that returns more than the count), or
    #: fewer when negative (never fewer than one).
    extra_images: int = 0

    def __post_init__(self) -> None:
        if self.schema_field not in ("request_schema", "json_request_schema"):
            raise ValueError("schema_field must be 'request_schema' or 'json_request_schema'")
        self.private_models = set(self.private_models)
        self.result_origin = self.result_origin.rstrip("/") if self.result_origin else None


@dataclass
class Setup:
    """How the hub's parts are made: the catalogue, the failure RNG, the placeholder cache, the
    result store's lifetime and caps, the request record's cap, the Host names, TLS, the public
    URL and the clock (see the module docstring for each)."""

    catalogue: list[dict[str, Any]] | None = None
    fail_rate: float = 0.0
    fail_seed: int = 0
    cache_size: int = 64
    url_ttl: float = 300.0
    result_ttl: float | None = None
    max_results: int | None = 500
    max_result_bytes: int | None = 128 * 1024 * 1024
    max_records: int | None = MAX_RECORDS
    allowed_hosts: Iterable[str] = ()
    tls: ssl.SSLContext | None = None
    public_url: str | None = None
    clock: Callable[[], float] = time.monotonic


def split_options(options: dict[str, Any]) -> tuple[Knobs, Setup]:
    """`LocalHub`'s keywords as its knobs and its setup."""
    live = {f.name for f in fields(Knobs)}
    knobs = Knobs(**{k: v for k, v in options.items() if k in live})
    return knobs, Setup(**{k: v for k, v in options.items() if k not in live})


class Forward:
    """A hub attribute that lives in one of its parts (`Forward("knobs")`: `hub.latency` is
    `hub.knobs.latency`), so the parts holding that object see a change at once."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, hub: object, owner: type | None = None) -> Any:
        if hub is None:
            return self
        return getattr(getattr(hub, self.part), self.name)

    def __set__(self, hub: object, value: Any) -> None:
        setattr(getattr(hub, self.part), self.name, value)
