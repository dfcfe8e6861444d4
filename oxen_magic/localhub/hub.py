"""`LocalHub`: the knobs, lifecycle and test controls of the local stand-in for the Oxen API.

The hub has its parts rather than being them: the knobs (`knobs.py`), the result store, fault
injection, the request record and counters, the GET routes (`routes.py`: models, files), the
image routes (`generate.py`), the router, the Host check; this module builds and starts them and
holds what a test or a workshop calls: lifecycle, failures to inject, waits on requests.
"""

from __future__ import annotations

import copy
import ssl
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from oxen_magic.localhub.arrivals import CallWatch, Tally, posts_to
from oxen_magic.localhub.faults import FaultQueue
from oxen_magic.localhub.generate import ImageRoutes
from oxen_magic.localhub.hosts import HostCheck
from oxen_magic.localhub.knobs import Forward, Knobs, Setup, split_options
from oxen_magic.localhub.models import default_catalogue
from oxen_magic.localhub.records import RequestLog, recorded
from oxen_magic.localhub.replies import RecordedRequest, _Reply
from oxen_magic.localhub.router import Router
from oxen_magic.localhub.routes import EDIT_PATH, GENERATE_PATH, ModelRoutes
from oxen_magic.localhub.server import _Server, _V6Server
from oxen_magic.localhub.storage import ResultStore


class LocalHub:
    """The Oxen inference API on loopback. Use as a context manager or call start()/stop().

    Built from parts: `knobs` (`knobs.Knobs`: what the routes read on every request; each is also
    an attribute here, `hub.latency = 1.0`), `store` (result files, expiry and caps), `faults`
    (`fail_next`, `fail_rate`, `garbage`), `requests` and `watch` (the bounded record, and
    requests counted as they arrive and are answered), `tally` (billed, in flight, rejected),
    `model_routes` and `image_routes` (the GET and POST routes), `router` (which answers),
    `host_check` (the Host header) and the body caps the server applies (`max_body_bytes`).

    Keywords: the fields of `knobs.Knobs` and `knobs.Setup`; the module docstring of `knobs.py`
    says what each reading of the docs or each cap does. `host` and `port` are where to listen
    (port 0: a free one, known after `start()`).
    """

    api_key = Forward("knobs")
    latency = Forward("knobs")
    image_size = Forward("knobs")
    require_auth_for_files = Forward("knobs")
    anonymous_reads = Forward("knobs")
    list_schemas = Forward("knobs")
    data_uris = Forward("knobs")
    schema_field = Forward("knobs")
    private_models = Forward("knobs")
    bare_edit_route = Forward("knobs")
    oversize_bytes = Forward("knobs")
    drip = Forward("knobs")
    max_concurrent = Forward("knobs")
    retry_after = Forward("knobs")
    max_body_bytes = Forward("knobs")
    max_input_pixels = Forward("knobs")
    verbose = Forward("knobs")
    input_route = Forward("knobs")
    missing_route_status = Forward("knobs")
    extra_images = Forward("knobs")
    billed = Forward("tally")  # images made, whatever was answered afterwards
    rejected = Forward("tally")  # 429s sent because more than max_concurrent were in flight
    in_flight = Forward("tally")
    peak_in_flight = Forward("tally")
    garbage = Forward("faults")  # every generate call answers this kind of unusable response
    fail_rate = Forward("faults")  # share of generate calls answered with a transient 503

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = Knobs.api_key,
        latency: float = Knobs.latency,
        image_size: int | None = Knobs.image_size,
        require_auth_for_files: bool = Knobs.require_auth_for_files,
        anonymous_reads: bool = Knobs.anonymous_reads,
        list_schemas: bool = Knobs.list_schemas,
        data_uris: bool = Knobs.data_uris,
        schema_field: str = Knobs.schema_field,
        private_models: Iterable[str] = Knobs.private_models,
        bare_edit_route: bool = Knobs.bare_edit_route,
        result_origin: str | None = Knobs.result_origin,
        oversize_bytes: int | None = Knobs.oversize_bytes,
        drip: float | None = Knobs.drip,
        max_concurrent: int | None = Knobs.max_concurrent,
        retry_after: float | str | None = Knobs.retry_after,
        max_body_bytes: int = Knobs.max_body_bytes,
        max_input_pixels: int | None = Knobs.max_input_pixels,
        verbose: bool = Knobs.verbose,
        input_route: str = Knobs.input_route,
        missing_route_status: int = Knobs.missing_route_status,
        extra_images: int = Knobs.extra_images,
        catalogue: list[dict[str, Any]] | None = Setup.catalogue,
        fail_rate: float = Setup.fail_rate,
        fail_seed: int = Setup.fail_seed,
        cache_size: int = Setup.cache_size,
        url_ttl: float = Setup.url_ttl,
        result_ttl: float | None = Setup.result_ttl,
        max_results: int | None = Setup.max_results,
        max_result_bytes: int | None = Setup.max_result_bytes,
        max_records: int | None = Setup.max_records,
        allowed_hosts: Iterable[str] = Setup.allowed_hosts,
        tls: ssl.SSLContext | None = Setup.tls,
        public_url: str | None = Setup.public_url,
        clock: Callable[[], float] = Setup.clock,
    ) -> None:
        """Each keyword is a field of `knobs.Knobs` (read on every request) or `knobs.Setup` (how
        the parts are made), its default taken from there; `knobs.py` says what each does."""
        options = {k: v for k, v in locals().items() if k not in ("self", "host", "port")}
        self.host, self.port = host, port
        self.knobs, setup = split_options(options)
        self._build(setup)

    def _build(self, setup: Setup) -> None:
        """Make the parts and hand each the others it calls."""
        ttl = setup.url_ttl if setup.result_ttl is None else setup.result_ttl
        self.store = ResultStore(ttl, setup.max_results, setup.max_result_bytes, setup.clock)
        self.faults = FaultQueue(setup.fail_rate, setup.fail_seed)
        self.requests = RequestLog(setup.max_records)
        self.watch = CallWatch()  # counts at arrival and at answer: see wait_for_calls
        self.tally = Tally()
        self.host_check = HostCheck(setup.allowed_hosts, lambda: self.knobs.result_origin)
        catalogue = setup.catalogue
        served = copy.deepcopy(catalogue) if catalogue is not None else default_catalogue()
        self.model_routes = ModelRoutes(self.knobs, served, self.store, lambda: self.url)
        self._stopping = threading.Event()
        self.image_routes = ImageRoutes(
            self.knobs,
            self.model_routes,
            self._issue_url,
            self.faults,
            self.tally,
            self.watch,
            self._stopping,
            setup.cache_size,
        )
        self.router = Router(self.knobs, self.model_routes, self.image_routes.counted)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self.tls = setup.tls
        self.public_url = setup.public_url.rstrip("/") if setup.public_url else None

    # -- knobs ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """'http://127.0.0.1:<port>' (or `public_url`), no trailing slash. Valid after start()."""
        if self._url is None:
            raise RuntimeError("LocalHub.url is only known after start()")
        return self._url

    @property
    def result_origin(self) -> str | None:
        """The origin result URLs are issued on; None: the hub's own."""
        return self.knobs.result_origin

    @result_origin.setter
    def result_origin(self, origin: str | None) -> None:
        self.knobs.result_origin = origin.rstrip("/") if origin else None

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Host names answered besides loopback and IP addresses (see `knobs.py`)."""
        return self.host_check.allowed

    @allowed_hosts.setter
    def allowed_hosts(self, names: Iterable[str]) -> None:
        self.host_check.allowed = tuple(names)

    @property
    def url_ttl(self) -> float:
        """Seconds a result URL stays valid (the docs say only that URLs expire)."""
        return self.store.ttl

    @url_ttl.setter
    def url_ttl(self, seconds: float) -> None:
        self.store.ttl = seconds

    result_ttl = url_ttl

    @property
    def max_results(self) -> int | None:
        """Most result files kept (oldest evicted first); None: no cap."""
        return self.store.max_files

    @max_results.setter
    def max_results(self, count: int | None) -> None:
        self.store.max_files = count

    @property
    def max_result_bytes(self) -> int | None:
        """Most bytes of result files kept (oldest evicted first); None: no cap."""
        return self.store.max_bytes

    @max_result_bytes.setter
    def max_result_bytes(self, size: int | None) -> None:
        self.store.max_bytes = size

    @property
    def results_kept(self) -> tuple[int, int]:
        """(files, bytes) in the result store now."""
        return len(self.store), self.store.total_bytes

    @property
    def models(self) -> list[dict[str, Any]]:
        """The catalogue being served (live: edits show up in the next answer)."""
        return self.model_routes.models

    # -- what the server calls (server.py) ------------------------------------------------

    def _host_ok(self, values: list[str] | None) -> bool:
        """Whether a request carrying these `Host` header values is answered (`hosts.py`)."""
        return self.host_check.ok(values, self.port)

    def _takes_body(self, method: str, target: str, headers: Any) -> bool:
        """Whether the answer can depend on the body (else it is read away unkept: `router.py`)."""
        return self.router.takes_body(method, target, headers)

    def _dispatch(
        self, method: str, target: str, headers: Any, raw: bytes, body: dict[str, Any] | None
    ) -> _Reply:
        """The answer to one request (`router.py`); a test's hub may answer some itself first."""
        return self.router.dispatch(method, target, headers, raw, body)

    def _record(
        self, method: str, target: str, headers: Any, body: dict[str, Any] | None, status: int
    ) -> None:
        """Keep a bounded record of one request (see `records.py`) and count it answered."""
        record, weight = recorded(method, target, headers.items(), body, status)
        self.requests.append(record, weight)
        self.watch.note(method, target, answered=True)

    def _issue_url(self, namespace: Any, data: bytes, ext: str, content_type: str) -> str:
        """Publish a result and give its URL (`routes.py`); a test's hub may hand out another."""
        return self.model_routes.issue_url(namespace, data, ext, content_type)

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
        return f"LocalHub({where}, models={len(self.models)}, latency={self.latency})"

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
        self.faults.add(n, status, retry_after, after_billing, gateway)

    def expire_urls(self) -> None:
        """Every result URL issued so far answers 404 from now on."""
        self.store.clear()

    def generate_calls(self) -> list[RecordedRequest]:
        """The recorded `POST /api/ai/images/generate` requests, in order (of those kept)."""
        return posts_to(self.requests, "generate")

    def edit_calls(self) -> list[RecordedRequest]:
        """The recorded `POST /api/ai/images/edit` requests, in order (of those kept)."""
        return posts_to(self.requests, "edit")

    def arrived_calls(self, route: str = "generate", answered: bool = False) -> int:
        """Requests to `route` that reached (or were answered by) the hub: see `arrivals.py`."""
        return self.watch.count(route, answered)

    def wait_for_calls(
        self, n: int, timeout: float = 10.0, route: str = "generate", answered: bool = False
    ) -> int:
        """Block until `n` requests to `route` arrived (or were answered); TimeoutError after `timeout`."""
        return self.watch.wait(n, route, answered, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `predicate()` holds (re-checked at each arrival, answer and in-flight change)."""
        self.watch.wait_until(predicate, timeout)

    def reset(self) -> None:
        """Forget recorded requests, pending failures, garbage mode, the in-flight peak and counters."""
        self.requests.clear()
        self.watch.clear()
        self.faults.clear()
        self.tally.reset()


__all__ = ["EDIT_PATH", "GENERATE_PATH", "LocalHub"]
