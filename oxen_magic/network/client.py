"""The Oxen.ai API client: host, key, models, generate, downloads, and what their answers mean.

Knows nothing of IPython, nor of HTTP: it *has* a transport (`transport.Transport`; the real one
is `httptransport.HttpTransport`, with its pool sized for the runner's concurrency) that makes
each call, so a test can hand it a fake. The client decides what is sent where: which image
route (`imageroutes.py`), which key, and that the key goes only to the API's own origin (never to
a result URL elsewhere), never over plain http off loopback, and never into a message.

What it remembers lives with its owner, the session: the route that served each model's input
images (`routes`), the model details already read (`details`, a `ModelDetails`) and the keys
`login()` gave (`keys`, a `KeyStore`). A client made on its own starts with empty ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from oxen_magic.core.errors import (
    AuthError,
    BadResponseError,
    MissingKeyError,
    OxenError,
    ResultExpiredError,
    TooLargeError,
    redact,
    too_large,
)
from oxen_magic.network.generation import Generation, from_answer, inline_image
from oxen_magic.network.httptransport import HttpTransport
from oxen_magic.network.imageroutes import GENERATE_PATH, send_routed
from oxen_magic.network.keys import (
    BAD_KEY_HELP,
    DEFAULT_HOST,
    NO_KEY_HELP,
    KeyStore,
    env_netloc,
    find_key,
    normalize_host,
)
from oxen_magic.network.model_info import ModelInfo
from oxen_magic.network.modelreads import (
    ModelDetails,
    detail_path,
    image_models,
    list_path,
    model_detail,
    read_several,
)
from oxen_magic.network.origins import check_not_downgraded, is_loopback, join_url, origin
from oxen_magic.network.transport import MAX_JSON, Answer, Transport

__all__ = ["DEFAULT_HOST", "Generation", "OxenClient", "find_key", "normalize_host", "origin"]

#: `OXEN_MAGIC_READ_TIMEOUT`: seconds every generate call may wait for its answer at least.
READ_TIMEOUT_ENV = "OXEN_MAGIC_READ_TIMEOUT"


class OxenClient:
    """A small, thread-safe client for the image routes of the Oxen inference API."""

    def __init__(
        self,
        host: str | None = None,
        api_key: str | None = None,
        *,
        transport: Transport | None = None,
        routes: dict[str, str] | None = None,
        details: ModelDetails | None = None,
        keys: KeyStore | None = None,
        **http: Any,
    ) -> None:
        """`http` (pool_size, timeout, max_retries, max_wait, backoff, sleep, max_body_bytes,
        deadline) configures the `HttpTransport` made when no `transport` is given."""
        self.base = normalize_host(host or os.environ.get("OXEN_HOST") or DEFAULT_HOST)
        self._key = api_key.strip() if api_key else None
        #: model id -> the image route that served its input images when the first one chosen
        #: answered 404/405 (the session owns this dict, so it outlives a replaced client).
        self.routes: dict[str, str] = routes if routes is not None else {}
        #: Model details already read (the session's, shared by its clients).
        self.details = details if details is not None else ModelDetails()
        #: The keys `login()` gave (the session's); None: only OXEN_API_KEY and the Oxen CLI's.
        self.keys = keys
        if transport is not None and http:
            raise TypeError(f"OxenClient: {', '.join(http)} configure the HTTP transport; give them to it.")
        self.transport: Transport = transport if transport is not None else HttpTransport(**http)

    def __repr__(self) -> str:
        return f"OxenClient(host={self.base!r})"

    @property
    def deadline(self) -> float:
        """Seconds one call may take in all (the transport's)."""
        return self.transport.deadline

    @property
    def pool_size(self) -> int:
        return self.transport.pool_size

    @property
    def max_body_bytes(self) -> int:
        """The largest image an answer may carry (the transport's cap)."""
        return self.transport.max_body_bytes

    def close(self) -> None:
        self.transport.close()

    # -- auth ---------------------------------------------------------------------------------
    def _found_key(self) -> str | None:
        return find_key(self.base, keys=self.keys)

    @property
    def has_key(self) -> bool:
        return self._key is not None or self._found_key() is not None

    def _api_key(self) -> str:
        key = self._key or self._found_key()
        if not key:
            raise MissingKeyError(self.missing_key_message())
        if not all("!" <= ch <= "~" for ch in key):  # else http.client fails with a raw error
            raise AuthError(BAD_KEY_HELP)
        if urlsplit(self.base).scheme == "http" and not is_loopback(self.base):
            raise AuthError(
                f"Refusing to send your API key over plain http to {self.base}; use https:// "
                "(plain http is only for a local hub on 127.0.0.1)."
            )
        return key

    def _read_key(self) -> str | None:
        """The key for a model read when one can be sent; None means "try without"."""
        try:
            return self._api_key()
        except AuthError:
            return None

    def check_key(self) -> None:
        """Raise `MissingKeyError` (no key anywhere) or `AuthError` (a key that cannot be sent)."""
        self._api_key()

    def missing_key_message(self) -> str:
        netloc = urlsplit(self.base).netloc
        if os.environ.get("OXEN_API_KEY", "").strip():
            return (
                f"OXEN_API_KEY is for {env_netloc(os.environ)}, not {netloc}; run "
                f"oxen_magic.login({self.base!r}), or set OXEN_HOST={self.base} if the key is for it."
            )
        return NO_KEY_HELP.replace("hub.oxen.ai", netloc, 1)

    def scrub(self, text: str) -> str:
        """`text` without this client's key (or anything shaped like a bearer token)."""
        return redact(text, self._key, self._found_key())

    # -- models -------------------------------------------------------------------------------
    def models(self, search: str | None = None, developer: str | None = None) -> list[ModelInfo]:
        """The image-generation models the API lists, narrowed by the server to `search` and
        `developer` (see `modelreads.list_path`). The list may carry no schemas
        (`request_schema: null`): `models_detailed` reads them."""
        return image_models(self._model_read(list_path(search, developer)))

    def model(self, model_id: str) -> ModelInfo:
        """One model with its request_schema (the detail route). Kept per host in `details`, so
        the panel and each cell read it once."""
        known = self.details.get(self.base, model_id)
        if known is not None:
            return known
        info = model_detail(model_id, self._model_read(detail_path(model_id)))
        self.details.put(self.base, model_id, info)
        return info

    def models_detailed(self, ids: Iterable[str], workers: int = 6) -> dict[str, ModelInfo | OxenError]:
        """Each model's detail (with its schema), read in parallel; a failure is returned, not
        raised, so one unreadable model never costs the others."""
        known = self.details.get
        return read_several(ids, lambda m: known(self.base, m), self._detail_or_error, workers)

    def _detail_or_error(self, model_id: str) -> ModelInfo | OxenError:
        try:
            return self.model(model_id)
        except OxenError as exc:
            return exc
        except Exception as exc:  # a bug must not cost the listing
            return BadResponseError(self.scrub(f"Could not read {model_id}: {type(exc).__name__}."))

    def _model_read(self, path: str) -> Any:
        """GET a model route with the key when there is one; without, say how to give one."""
        key = self._read_key()
        try:
            answer = self.transport.call("GET", self.base + path, limit=MAX_JSON, key=key, what="model list")
        except AuthError as exc:
            if key is not None or exc.status not in (401, 403):
                raise
            raise AuthError(
                f"The API refused to read its models without a key (HTTP {exc.status}); run "
                "oxen_magic.login(), or set OXEN_API_KEY, or use the local hub "
                "(python -m oxen_magic.localhub).",
                exc.status,
            ) from None
        return answer.json()

    # -- generate -----------------------------------------------------------------------------
    def generate(self, model: str, prompt: str, **params: Any) -> Generation:
        """Generate one image; params are sent as given (aspect_ratio, seed, ...)."""
        return self.generate_payload({"model": model, "prompt": prompt, **params})

    def generate_payload(
        self,
        payload: Mapping[str, Any],
        cancel: threading.Event | None = None,
        *,
        decode: bool = True,
        path: str = GENERATE_PATH,
        on_throttle: Callable[[float], None] | None = None,
        on_answered: Callable[[], None] | None = None,
        read_timeout: float | None = None,
    ) -> Generation:
        """POST a ready JSON body to `path` (generate, or `/api/ai/images/edit` for an input
        image) and return the image, downloaded at once if it came as a URL; every other image
        of the answer (a `num_images` count) comes in `Generation.others`.

        A request with an input image that `path` answers 404 or 405 (nothing made, nothing
        billed) is sent once to the other documented image route, and the route that served it
        is remembered for that model (`self.routes`, see `imageroutes.py`).
        `read_timeout` (seconds) lets a slow model (an upscaler, an edit) answer late; at least
        `OXEN_MAGIC_READ_TIMEOUT` when that is set.

        `decode=False` reads only the image's header here and leaves the pixels to
        `Generation.image` (which raises the same `BadResponseError` for a corrupt image): the
        runner decodes outside its network slots, so the next request need not wait for it.
        `on_throttle(delay)`, when given, is called instead of sleeping before a 429/503 is retried:
        the runner's congestion window learns from it, then waits (at least `delay`).
        `on_answered()` is called as soon as the API answers the POST with success: the image is
        billed then, whatever happens to its body or download afterwards (the spend ledger).
        """
        started = time.monotonic()
        boxed = self._send(payload, cancel, path, on_throttle, on_answered, read_timeout)
        return from_answer(boxed.pop(), payload, started=started, decode=decode, fetch=self._image_bytes)

    def _send(
        self,
        payload: Mapping[str, Any],
        cancel: threading.Event | None,
        path: str,
        on_throttle: Callable[[float], None] | None,
        on_answered: Callable[[], None] | None,
        read_timeout: float | None,
    ) -> list[Any]:
        """POST `payload` on its image route (see `generate_payload`); the answer's JSON, in a
        list the caller empties, so the raw body and the JSON are each let go as soon as done."""
        limit = max(MAX_JSON, self.max_body_bytes * 4 // 3 + 65536)  # room for b64_json
        read = max(read_timeout or 0.0, _env_seconds(READ_TIMEOUT_ENV)) or None
        key = self._api_key()

        def post(route: str) -> Answer:
            return self.transport.call(
                "POST", self.base + route, limit=limit, json_body=dict(payload), key=key, cancel=cancel,
                what="answer", on_throttle=on_throttle, on_ok=on_answered, read_timeout=read,
            )  # fmt: skip

        try:
            answer = send_routed(post, payload, path, self.routes)
        except TooLargeError:  # a b64_json image past the cap: say it in the cap's terms
            raise too_large("image", self.max_body_bytes) from None
        return [answer.json()]

    def _image_bytes(self, entry: Mapping[str, Any]) -> tuple[bytes, str | None]:
        """One entry of an answer's `images`: its bytes (downloaded if it is a URL), its URL."""
        if isinstance(entry.get("b64_json"), str):
            return inline_image(entry["b64_json"], self.max_body_bytes), None
        if isinstance(entry.get("url"), str):
            url = join_url(self.base + "/", entry["url"], "returned a result URL")
            return self.download(url), url
        raise BadResponseError("The API's image has neither a 'url' nor 'b64_json'.")

    def download(self, url: str) -> bytes:
        """Fetch a result file (streamed, capped). The token goes only to the API's own origin."""
        full = join_url(self.base + "/", url, "returned a result URL")
        check_not_downgraded(self.base, full, "returned a result URL pointing")
        key = self._api_key() if origin(full) == origin(self.base) else None
        try:
            answer = self.transport.call("GET", full, limit=self.max_body_bytes, key=key, what="image")
        except OxenError as exc:
            if exc.status not in (403, 404, 410):
                raise
            raise ResultExpiredError(
                f"The result URL had expired when it was fetched (HTTP {exc.status}); generate again.",
                exc.status,
            ) from None
        return answer.body


def _env_seconds(name: str) -> float:
    """A positive number of seconds from the environment variable `name`, else 0."""
    try:
        seconds = float(os.environ.get(name, ""))
    except ValueError:
        return 0.0
    return seconds if 0 < seconds < 1e6 else 0.0
