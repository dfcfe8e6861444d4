"""`LocalHub`: the knobs, lifecycle and test controls of the local stand-in for the Oxen API.

The routes it serves are in `routes.py` (models, files) and `generate.py` (images); this module
holds what a test or a workshop sets: latency, image size, the key, URL lifetime, failure knobs.
"""

from __future__ import annotations

import copy
import random
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from .arrivals import CallWatch, posts_to
from .faults import GARBAGE_KINDS, FaultQueue
from .fetch_inputs import MAX_INPUT_PIXELS
from .generate import _GenerateRoutes
from .hosts import configured_names, host_allowed
from .models import default_catalogue
from .placeholder import ImageSpec
from .records import MAX_RECORDS, RequestLog
from .replies import RecordedRequest
from .routes import EDIT_PATH, GENERATE_PATH
from .server import _Server, _V6Server
from .storage import ResultStore


class LocalHub(_GenerateRoutes):
    """The Oxen inference API on loopback. Use as a context manager or call start()/stop().

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

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = "local-demo-key",
        latency: float = 0.0,
        image_size: int | None = None,
        url_ttl: float = 300.0,
        require_auth_for_files: bool = False,
        catalogue: list[dict[str, Any]] | None = None,
        fail_rate: float = 0.0,
        fail_seed: int = 0,
        verbose: bool = False,
        cache_size: int = 64,
        anonymous_reads: bool = False,
        list_schemas: bool = False,
        data_uris: bool = True,
        schema_field: str = "request_schema",
        private_models: Iterable[str] = (),
        bare_edit_route: bool = False,
        result_origin: str | None = None,
        oversize_bytes: int | None = None,
        drip: float | None = None,
        max_concurrent: int | None = None,
        retry_after: float | str | None = 1.0,
        result_ttl: float | None = None,
        max_results: int | None = 500,
        max_result_bytes: int | None = 128 * 1024 * 1024,
        max_records: int | None = MAX_RECORDS,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_input_pixels: int | None = MAX_INPUT_PIXELS,
        allowed_hosts: Iterable[str] = (),
        tls: ssl.SSLContext | None = None,
        public_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.latency = latency
        self.image_size = image_size
        self.require_auth_for_files = require_auth_for_files
        self.anonymous_reads = anonymous_reads
        self.list_schemas = list_schemas
        self.data_uris = data_uris
        if schema_field not in ("request_schema", "json_request_schema"):
            raise ValueError("schema_field must be 'request_schema' or 'json_request_schema'")
        self.schema_field = schema_field
        self.private_models = set(private_models)
        self.bare_edit_route = bare_edit_route
        self._allowed_hosts = tuple(allowed_hosts)
        self._result_origin: str | None = None
        self.result_origin = result_origin
        self.max_body_bytes = max_body_bytes
        self.max_input_pixels = max_input_pixels
        self.oversize_bytes, self.drip = oversize_bytes, drip
        self.max_concurrent, self.retry_after = max_concurrent, retry_after
        self.rejected = 0  # 429s sent because more than max_concurrent were in flight
        self.verbose = verbose
        self.billed = 0  # images made, whatever was answered afterwards
        self._garbage_kind: str | None = None
        self.requests = RequestLog(max_records)
        self._watch = CallWatch()  # counts at arrival and at answer: see wait_for_calls
        self.peak_in_flight = self.in_flight = 0
        self._models = copy.deepcopy(catalogue) if catalogue is not None else default_catalogue()
        self._lock = threading.Lock()
        self._faults = FaultQueue(fail_rate, fail_seed)
        self._seed_rng = random.Random()
        ttl = url_ttl if result_ttl is None else result_ttl
        self._store = ResultStore(ttl, max_results, max_result_bytes, clock)
        self._cache: OrderedDict[ImageSpec, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._url: str | None = None
        self.tls = tls
        self.public_url = public_url.rstrip("/") if public_url else None

    # -- knobs ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """'http://127.0.0.1:<port>' (or `public_url`), no trailing slash. Valid after start()."""
        if self._url is None:
            raise RuntimeError("LocalHub.url is only known after start()")
        return self._url

    @property
    def garbage(self) -> str | None:
        """When set, every generate call answers this kind of unusable response (see GARBAGE_KINDS)."""
        return self._garbage_kind

    @garbage.setter
    def garbage(self, kind: str | None) -> None:
        if kind is not None and kind not in GARBAGE_KINDS:
            raise ValueError(f"garbage must be None or one of {', '.join(sorted(GARBAGE_KINDS))}")
        self._garbage_kind = kind

    @property
    def result_origin(self) -> str | None:
        """The origin result URLs are issued on; None: the hub's own."""
        return self._result_origin

    @result_origin.setter
    def result_origin(self, origin: str | None) -> None:
        self._result_origin = origin.rstrip("/") if origin else None
        self._host_names = configured_names(self._allowed_hosts, (self._result_origin,))

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Host names answered besides loopback and IP addresses (see the class docstring)."""
        return self._allowed_hosts

    @allowed_hosts.setter
    def allowed_hosts(self, names: Iterable[str]) -> None:
        self._allowed_hosts = tuple(names)
        self._host_names = configured_names(self._allowed_hosts, (self._result_origin,))

    def _host_ok(self, values: list[str] | None) -> bool:
        """Whether a request carrying these `Host` header values is answered (`hosts.py`)."""
        return host_allowed(values, self.port, self._host_names)

    @property
    def url_ttl(self) -> float:
        """Seconds a result URL stays valid (the docs say only that URLs expire)."""
        return self._store.ttl

    @url_ttl.setter
    def url_ttl(self, seconds: float) -> None:
        self._store.ttl = seconds

    result_ttl = url_ttl

    @property
    def max_results(self) -> int | None:
        """Most result files kept (oldest evicted first); None: no cap."""
        return self._store.max_files

    @max_results.setter
    def max_results(self, count: int | None) -> None:
        self._store.max_files = count

    @property
    def max_result_bytes(self) -> int | None:
        """Most bytes of result files kept (oldest evicted first); None: no cap."""
        return self._store.max_bytes

    @max_result_bytes.setter
    def max_result_bytes(self, size: int | None) -> None:
        self._store.max_bytes = size

    @property
    def results_kept(self) -> tuple[int, int]:
        """(files, bytes) in the result store now."""
        return len(self._store), self._store.total_bytes

    @property
    def fail_rate(self) -> float:
        """Share of generate calls answered with a transient 503 (seeded by `fail_seed`)."""
        return self._faults.fail_rate

    @fail_rate.setter
    def fail_rate(self, rate: float) -> None:
        self._faults.fail_rate = rate

    @property
    def models(self) -> list[dict[str, Any]]:
        """The catalogue being served (live: edits show up in the next answer)."""
        return self._models

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalHub:
        """Bind the socket and serve in a daemon thread. Calling it again does nothing."""
        if self._server is not None:
            return self
        self._stopping.clear()
        v6 = ":" in self.host
        server_cls = _V6Server if v6 else _Server
        server = server_cls((self.host, self.port), self)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        port = server.server_address[1]
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if v6:
            shown = "::1" if self.host == "::" else self.host
            shown = f"[{shown}]"
        scheme = "https" if self.tls is not None else "http"
        self._url = self.public_url or f"{scheme}://{shown}:{port}"
        self.port = port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"LocalHub:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections. Safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping out `latency`
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"LocalHub({where}, models={len(self._models)}, latency={self.latency})"

    # -- test controls --------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        retry_after: float | str | None = None,
        after_billing: bool = False,
        gateway: bool | None = None,
    ) -> None:
        """Make the next `n` generate or edit calls answer `status` (before auth or validation).

        429 answers the rate-limit JSON (with Retry-After when given); 503 the API's JSON error
        (nothing processed); other 5xx an HTML page as a proxy would (`gateway=True`: a 503
        too, a gateway's bare page; `gateway=False`: any 5xx as the API's JSON); other codes
        answer the API's JSON error for that status.
        `after_billing=True`: the request is checked and its image made (counted in `billed`)
        first, then answered `status` (a gateway 504 after the backend billed, as the docs warn);
        a request the API would refuse gets its own refusal instead.
        """
        with self._lock:
            self._faults.add(n, status, retry_after, after_billing, gateway)

    def expire_urls(self) -> None:
        """Every result URL issued so far answers 404 from now on."""
        self._store.clear()

    def generate_calls(self) -> list[RecordedRequest]:
        """The recorded `POST /api/ai/images/generate` requests, in order (of those kept)."""
        return posts_to(self.requests, "generate")

    def edit_calls(self) -> list[RecordedRequest]:
        """The recorded `POST /api/ai/images/edit` requests, in order (of those kept)."""
        return posts_to(self.requests, "edit")

    def arrived_calls(self, route: str = "generate", answered: bool = False) -> int:
        """Requests to `route` that reached (or were answered by) the hub: see `arrivals.py`."""
        return self._watch.count(route, answered)

    def wait_for_calls(
        self, n: int, timeout: float = 10.0, route: str = "generate", answered: bool = False
    ) -> int:
        """Block until `n` requests to `route` arrived (or were answered); TimeoutError after `timeout`."""
        return self._watch.wait(n, route, answered, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `predicate()` holds (re-checked at each arrival, answer and in-flight change)."""
        self._watch.wait_until(predicate, timeout)

    def reset(self) -> None:
        """Forget recorded requests, pending failures, garbage mode, the in-flight peak and counters."""
        with self._lock:
            self.requests.clear()
            self._watch.clear()
            self._faults.clear()
            self._garbage_kind = None
            self.peak_in_flight = self.in_flight
            self.billed = 0
            self.rejected = 0


__all__ = ["EDIT_PATH", "GENERATE_PATH", "LocalHub"]
