"""A local stand-in for the Oxen.ai inference API: a real HTTP server on loopback.

`LocalHub` reproduces the contract in `oxen-api.md` (models list/detail/search, synchronous
`POST /api/ai/images/generate`, temporary result-file URLs, both error body shapes) closely enough
that the real client, notebooks, benchmarks and offline workshop rehearsals run against it unchanged.

Images are deterministic placeholders that explain themselves (drawn by `placeholder.py`): the
same request always gives the same bytes.

Failure injection for tests: `fail_next` (429 with Retry-After, or a proxy's 5xx HTML page),
`fail_rate` (random transient 503s from a seeded RNG), `garbage` (answers a client cannot use) and
`expire_urls`. Every request is recorded in `requests`.

Run it by hand with `python -m oxen_magic.localhub --port 8765 --latency 0.5 --key KEY`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import random
import secrets
import signal
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from oxen_magic.catalog import bundled_catalogue, properties_of, schema_of
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

GENERATE_PATH = "/api/ai/images/generate"
MODELS_PATH = "/api/ai/models"
FILES_PREFIX = "/api/repos/"

#: The fine-tuned model added to the default catalogue (its id needs URL-encoding in a path).
FINE_TUNED_ID = "oxen:tutorials/cyberpunkart-ft_img_gen_12345"

#: Per-image prices (USD) for the default catalogue; the first three are the documented ones.
_PRICES: dict[str, float] = {
    "flux-2-dev": 0.025,
    "black-forest-labs-flux-2-klein-4b": 0.003,
    "z-image-turbo": 0.002,
    "black-forest-labs-flux-2-klein-9b": 0.006,
    "bytedance-seedream-4-5": 0.04,
    "bytedance-seedream-4": 0.03,
    "bytedance-seedream-5-lite": 0.035,
    "bytedance-seedream-5-pro": 0.05,
    "flux-1-dev": 0.025,
    "flux-2-flex": 0.06,
    "flux-2-pro": 0.03,
    "flux-kontext-dev": 0.025,
    "google-nano-banana-pro": 0.15,
    "gpt-image-1-5": 0.04,
    "gpt-image-2": 0.05,
    "ideogram-v4": 0.06,
    "krea-v2-large-text-to-image": 0.03,
    "nano-banana-2-lite": 0.02,
    "nano-banana-2": 0.067,
    "nano-banana": 0.039,
    "qwen-image-2": 0.05,
    "qwen-image-2512": 0.02,
    "qwen-image-edit-2511": 0.03,
    "qwen-image-edit-plus": 0.03,
    "qwen-image-edit": 0.03,
    "qwen-image": 0.025,
    "sam-3-image": 0.01,
    "topazlabs-bloom-2-image": 0.1,
    "topazlabs-bloom-image": 0.08,
    "topazlabs-image-upscale": 0.08,
    "topazlabs-wonder-3-5-image": 0.1,
    "topazlabs-wonder-3-image": 0.08,
    "xai-grok-imagine-image-edit": 0.022,
    "xai-grok-imagine-image": 0.02,
    FINE_TUNED_ID: 0.03,
}
_DEFAULT_PRICE = 0.03

_OWNERS: tuple[tuple[str, str], ...] = (
    ("oxen:", "oxen"),
    ("black-forest-labs", "black-forest-labs"),
    ("flux", "black-forest-labs"),
    ("bytedance", "bytedance"),
    ("google", "google"),
    ("nano-banana", "google"),
    ("gpt-", "openai"),
    ("ideogram", "ideogram"),
    ("krea", "krea"),
    ("qwen", "alibaba"),
    ("z-image", "alibaba"),
    ("sam-", "meta"),
    ("topazlabs", "topazlabs"),
    ("xai", "xai"),
)

_NON_IMAGE_MODELS: tuple[dict[str, Any], ...] = (
    {
        "id": "gpt-oss-120b",
        "object": "model",
        "display_name": "GPT-OSS 120B",
        "description": "Open-weight chat model (text in, text out). Not an image model.",
        "owned_by": "openai",
        "model_type": "text_generation",
        "endpoint": "/chat/completions",
        "capabilities": {"input": ["text"], "output": ["text"]},
        "pricing": {
            "method": "token",
            "input_cost_per_million_tokens": 0.15,
            "output_cost_per_million_tokens": 0.6,
        },
        "request_schema": None,
    },
    {
        "id": "wan-2-2-text-to-video",
        "object": "model",
        "display_name": "Wan 2.2 Text to Video",
        "description": "Text-to-video model. Not an image model.",
        "owned_by": "alibaba",
        "model_type": "video_generation",
        "endpoint": "/videos/generate",
        "capabilities": {"input": ["text"], "output": ["video"]},
        "pricing": {"method": "time", "cost_per_second": 0.05},
        "request_schema": None,
    },
)

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


GARBAGE_KINDS = frozenset({"html", "non_json", "no_images", "bad_base64", "not_image", "truncated"})

_STATUS_TYPES = {
    400: ("invalid_params", "Invalid parameters"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("resource_not_found", "Resource not found"),
    429: ("rate_limited", "Rate limit exceeded"),
}


@dataclass
class RecordedRequest:
    """One request the hub served, as the server saw it."""

    method: str
    path: str  # including the query string
    headers: dict[str, str]
    body: dict[str, Any] | None  # the parsed JSON body, when it was a JSON object
    status: int
    authorization: str | None  # the raw Authorization header value


@dataclass
class _Failure:
    status: int
    retry_after: float | str | None


@dataclass
class _File:
    data: bytes
    content_type: str
    created: float  # time.monotonic()


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class _BadRequest(Exception):
    """A 400 invalid_params answer, with the title the client will see."""


# ---------------------------------------------------------------------------------------------
# The catalogue


def _owner(model_id: str) -> str:
    for prefix, owner in _OWNERS:
        if model_id.startswith(prefix):
            return owner
    return "oxen"


def _describe(obj: dict[str, Any]) -> str:
    name = obj.get("display_name") or obj.get("id")
    inputs = (obj.get("capabilities") or {}).get("input") or []
    kind = "Text-to-image and image editing" if "image" in inputs else "Text-to-image"
    return f"{name}: {kind} model."


def default_catalogue() -> list[dict[str, Any]]:
    """The models the hub serves by default: the 34 bundled image models with prices, one
    fine-tuned image model whose id contains ':' and '/', and two models that make no images."""
    models: list[dict[str, Any]] = []
    for source in bundled_catalogue():
        obj = copy.deepcopy(source)
        mid = str(obj["id"])
        obj.setdefault("object", "model")
        obj.setdefault("owned_by", _owner(mid))
        obj.setdefault("model_type", "image_generation")
        obj.setdefault("description", _describe(obj))
        obj["pricing"] = {"method": "per_image", "cost_per_image": _PRICES.get(mid, _DEFAULT_PRICE)}
        models.append(obj)
        if mid == "flux-1-dev":
            tuned = copy.deepcopy(obj)
            tuned.update(
                id=FINE_TUNED_ID,
                display_name="Cyberpunk Art (fine-tuned FLUX.1 [dev])",
                description="FLUX.1 [dev] fine-tuned on the tutorials/cyberpunkart dataset.",
                owned_by="tutorials",
                model_type="image_generation",
                pricing={"method": "per_image", "cost_per_image": _PRICES[FINE_TUNED_ID]},
            )
            models.append(tuned)
    models.extend(copy.deepcopy(m) for m in _NON_IMAGE_MODELS)
    return models


def _makes_images(obj: dict[str, Any]) -> bool:
    caps = obj.get("capabilities")
    if not isinstance(caps, dict):
        return True  # be lenient with hand-made catalogues
    return "image" in (caps.get("output") or [])


# ---------------------------------------------------------------------------------------------
# Validation against a request_schema


def _type_ok(value: Any, kind: Any) -> bool:
    if isinstance(kind, list):
        return any(_type_ok(value, k) for k in kind)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # unknown or absent type: accept


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def validate(body: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """Raise `_BadRequest` naming the first parameter the schema rejects.

    Checks `type`, `enum`, `minimum` and `maximum` of every parameter the schema describes.
    Parameters the schema does not mention are accepted (as the real API ignores them).
    """
    for name, spec in properties_of(schema).items():
        if name not in body or body[name] is None or not isinstance(spec, dict):
            continue
        value = body[name]
        kind = spec.get("type")
        if kind is not None and not _type_ok(value, kind):
            want = kind if isinstance(kind, str) else " or ".join(map(str, kind))
            raise _BadRequest(f"Invalid {name}: {value!r} is not {_article(want)} {want}")
        enum = spec.get("enum")
        if isinstance(enum, list) and value not in enum:
            choices = ", ".join(str(v) for v in enum)
            raise _BadRequest(f"Invalid {name}: {value!r} is not one of {choices}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = spec.get("minimum"), spec.get("maximum")
            if isinstance(low, (int, float)) and value < low:
                raise _BadRequest(f"Invalid {name}: {value} is less than the minimum {low}")
            if isinstance(high, (int, float)) and value > high:
                raise _BadRequest(f"Invalid {name}: {value} is greater than the maximum {high}")


# ---------------------------------------------------------------------------------------------
# The HTTP server


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _error_reply(status: int, title: str | None = None) -> _Reply:
    kind, default_title = _STATUS_TYPES.get(status, ("unknown_error", "Internal server error"))
    body = {
        "error": {"type": kind, "title": title or default_title},
        "status": "error",
        "status_message": kind,
    }
    return _Reply(status, _json_bytes(body))


def _not_found(message: str) -> _Reply:
    return _Reply(404, _json_bytes({"error": {"message": message}}))


def _html_reply(status: int, reason: str) -> _Reply:
    page = (
        "<!DOCTYPE html>\n<html>\n<head><title>"
        f"{status} {reason}</title></head>\n<body>\n<center><h1>{status} {reason}</h1></center>\n"
        "<hr><center>nginx</center>\n</body>\n</html>\n"
    )
    return _Reply(status, page.encode(), "text/html; charset=utf-8")


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when many clients connect at once, and the
    # kernel retries them only after a second: concurrency tests and benchmarks would see stalls.
    request_queue_size = 128
    hub: LocalHub

    def __init__(self, address: tuple[str, int], hub: LocalHub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on kept-alive clients so a stopped hub serves nothing more."""
        with self._conn_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.hub.verbose:
            super().handle_error(request, client_address)


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalOxenHub/1.0"
    timeout = 120  # an idle kept-alive connection is closed after this many seconds
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        hub = self.server.hub
        raw = self._read_body()
        body: dict[str, Any] | None = None
        if raw:
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except ValueError:
                body = None
        try:
            reply = hub._dispatch(self.command, self.path, self.headers, raw, body)
        except Exception:  # never hang a client: answer like a crashed upstream would
            if hub.verbose:
                import traceback

                traceback.print_exc()
            reply = _error_reply(500, "Internal server error")
        # Record before answering, so a client that has its answer always finds it recorded.
        hub._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers=dict(self.headers.items()),
                body=body,
                status=reply.status,
                authorization=self.headers.get("Authorization"),
            )
        )
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_HEAD = _handle
    do_OPTIONS = _handle


class LocalHub:
    """The Oxen inference API on loopback. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = "local-demo-key",
        latency: float = 0.0,
        image_size: int | None = None,
        url_ttl: float = 300.0,
        require_auth_for_files: bool = True,
        catalogue: list[dict[str, Any]] | None = None,
        fail_rate: float = 0.0,
        fail_seed: int = 0,
        verbose: bool = False,
        cache_size: int = 64,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.latency = latency
        self.image_size = image_size
        self.url_ttl = url_ttl
        self.require_auth_for_files = require_auth_for_files
        self.fail_rate = fail_rate
        self.verbose = verbose
        self._garbage_kind: str | None = None
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight = 0
        self.in_flight = 0
        self._models: list[dict[str, Any]] = (
            copy.deepcopy(catalogue) if catalogue is not None else default_catalogue()
        )
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._fail_rng = random.Random(fail_seed)
        self._seed_rng = random.Random()
        self._files: dict[str, _File] = {}
        self._cache: OrderedDict[ImageSpec, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._url: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """'http://127.0.0.1:<port>', no trailing slash. Valid after start()."""
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
    def models(self) -> list[dict[str, Any]]:
        """The catalogue being served (live: edits show up in the next answer)."""
        return self._models

    def start(self) -> LocalHub:
        """Bind the socket and serve in a daemon thread. Calling it again does nothing."""
        if self._server is not None:
            return self
        self._stopping.clear()
        v6 = ":" in self.host
        server_cls = _V6Server if v6 else _Server
        server = server_cls((self.host, self.port), self)
        port = server.server_address[1]
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if v6:
            shown = "::1" if self.host == "::" else self.host
            shown = f"[{shown}]"
        self._url = f"http://{shown}:{port}"
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

    def fail_next(self, n: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """Make the next `n` generate calls answer `status` (before auth or validation).

        429 answers the rate-limit JSON (with Retry-After when given); 5xx answers an HTML page
        as a proxy would; other codes answer the API's JSON error for that status.
        """
        with self._lock:
            self._failures.extend(_Failure(status, retry_after) for _ in range(n))

    def expire_urls(self) -> None:
        """Every result URL issued so far answers 404 from now on."""
        with self._lock:
            self._files.clear()

    def generate_calls(self) -> list[RecordedRequest]:
        """The recorded `POST /api/ai/images/generate` requests, in order."""
        with self._lock:
            records = list(self.requests)
        return [r for r in records if r.method == "POST" and r.path.split("?")[0] == GENERATE_PATH]

    def reset(self) -> None:
        """Forget recorded requests, pending failures, garbage mode and the in-flight peak."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._garbage_kind = None
            self.peak_in_flight = self.in_flight

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    # -- routing --------------------------------------------------------------------------

    def _dispatch(
        self, method: str, target: str, headers: Any, raw: bytes, body: dict[str, Any] | None
    ) -> _Reply:
        path, _, query = target.partition("?")
        if method in ("GET", "HEAD"):
            if path in (MODELS_PATH, MODELS_PATH + "/"):
                return self._list(self._models)
            if path == MODELS_PATH + "/search":
                terms = parse_qs(query).get("search") or parse_qs(query).get("q") or [""]
                return self._search(terms[0])
            if path.startswith(MODELS_PATH + "/"):
                return self._model(unquote(path[len(MODELS_PATH) + 1 :]))
            if path.startswith(FILES_PREFIX) and "/files/results/" in path:
                return self._file(path, headers)
        if method == "POST" and path == GENERATE_PATH:
            return self._generate_counted(headers, raw, body)
        return _not_found(f"Not found: {path}")

    def _list(self, models: Sequence[dict[str, Any]]) -> _Reply:
        return _Reply(200, _json_bytes({"object": "list", "data": list(models)}))

    def _search(self, term: str) -> _Reply:
        needle = term.strip().lower()
        found = [
            m
            for m in self._models
            if needle in str(m.get("id", "")).lower() or needle in str(m.get("display_name", "")).lower()
        ]
        return self._list(found)

    def _find(self, model_id: str) -> dict[str, Any] | None:
        for obj in self._models:
            if obj.get("id") == model_id:
                return obj
        return None

    def _model(self, model_id: str) -> _Reply:
        obj = self._find(model_id)
        if obj is None:
            return _not_found(f"Model not found: {model_id}")
        return _Reply(200, _json_bytes(obj))

    def _authorised(self, headers: Any) -> bool:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self.api_key is None or secrets.compare_digest(token, self.api_key)

    def _file(self, path: str, headers: Any) -> _Reply:
        if self.require_auth_for_files and not self._authorised(headers):
            return _error_reply(401)
        token = path.rsplit("/", 1)[-1]
        now = time.monotonic()
        with self._lock:
            entry = self._files.get(token)
            if entry is not None and now - entry.created > self.url_ttl:
                del self._files[token]
                entry = None
        if entry is None:
            return _error_reply(404, "File not found or expired")
        return _Reply(200, entry.data, entry.content_type, {"Cache-Control": "private, no-store"})

    def _issue_url(self, namespace: Any, data: bytes, ext: str, content_type: str) -> str:
        token = f"{secrets.token_hex(12)}.{ext}"
        now = time.monotonic()
        with self._lock:
            for key in [k for k, f in self._files.items() if now - f.created > self.url_ttl]:
                del self._files[key]
            self._files[token] = _File(data, content_type, now)
        owner = namespace if isinstance(namespace, str) and namespace.strip() else "local"
        return f"{self.url}{FILES_PREFIX}{quote(owner, safe='')}/files/results/{token}"

    # -- generate -------------------------------------------------------------------------

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
            failure = self._failures.popleft() if self._failures else None
            if failure is None and self.fail_rate > 0 and self._fail_rng.random() < self.fail_rate:
                failure = _Failure(503, None)
        if failure is None:
            return None
        status = failure.status
        if status >= 500:
            reply = _html_reply(status, _REASONS.get(status, "Server Error"))
        else:
            reply = _error_reply(status)
        if failure.retry_after is not None:
            value = failure.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            reply.headers["Retry-After"] = str(value)
        return reply

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
            return self._garbage_reply(garbage, name, response_format, body, spec)
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

    def _garbage_reply(
        self, kind: str, name: str, response_format: str, body: dict[str, Any], spec: ImageSpec
    ) -> _Reply:
        if kind == "html":
            page = "<!DOCTYPE html><html><body><h1>Welcome to Oxen.ai</h1></body></html>"
            return _Reply(200, page.encode(), "text/html; charset=utf-8")
        if kind == "non_json":
            return _Reply(200, b'{"model": "oops", "images": [', "application/json")
        if kind == "no_images":
            return _Reply(200, _json_bytes({"model": name, "created": int(time.time())}))
        if kind == "bad_base64":
            images = [{"b64_json": "this is *not* base64 at all!"}]
            payload = {"model": name, "created": int(time.time()), "images": images}
            return _Reply(200, _json_bytes(payload))
        if kind == "not_image":
            data = b"These bytes are not an image. " * 8
            return self._images_reply(name, response_format, body, data, "png", "image/png")
        if kind == "truncated":
            png = self._image(replace(spec, fmt="png"))
            data = png[: len(png) // 2]
            return self._images_reply(name, response_format, body, data, "png", "image/png")
        return _error_reply(500, f"Unknown garbage kind: {kind}")


# ---------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic.localhub",
        description="Serve a local stand-in for the Oxen.ai inference API (for offline demos).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--key", default="local-demo-key", help="the bearer token to accept")
    parser.add_argument("--any-key", action="store_true", help="accept any non-empty token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per image")
    parser.add_argument("--image-size", type=int, default=None, help="long side in pixels")
    parser.add_argument("--url-ttl", type=float, default=300.0, help="result URL lifetime (s)")
    parser.add_argument("--public-files", action="store_true", help="no token for result files")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of transient 503s")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the hub in the foreground until Ctrl-C (or SIGTERM)."""
    args = _parser().parse_args(argv)
    hub = LocalHub(
        args.host,
        args.port,
        api_key=None if args.any_key else args.key,
        latency=args.latency,
        image_size=args.image_size,
        url_ttl=args.url_ttl,
        require_auth_for_files=not args.public_files,
        fail_rate=args.fail_rate,
        verbose=args.verbose,
    )
    done = threading.Event()
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, lambda *_: done.set())
    hub.start()
    shown_key = "any non-empty token" if hub.api_key is None else hub.api_key
    print(f"Local Oxen hub on {hub.url} (key: {shown_key})", flush=True)
    print(f"  export OXEN_API_KEY={hub.api_key or 'anything'}", flush=True)
    print("  Press Ctrl-C to stop.", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
        print("Local Oxen hub stopped.", flush=True)


if __name__ == "__main__":
    main()
