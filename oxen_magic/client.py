"""The Oxen.ai HTTP client: host, key, models, generate, downloads, retries and errors.

Knows nothing of IPython. One `requests.Session` per client, its pool sized for the runner's
concurrency. The key is kept private, sent only to the API's own origin (redirects are followed
by hand to enforce that), and scrubbed from every message.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from PIL import Image

from .catalog import ModelInfo
from .errors import (
    AuthError,
    BadResponseError,
    MissingKeyError,
    OxenError,
    ResultExpiredError,
    TooLargeError,
    redact,
    too_large,
)
from .generation import _MIMES, Generation
from .images import decode_image
from .keys import BAD_KEY_HELP, DEFAULT_HOST, NO_KEY_HELP, _env_netloc, find_key, normalize_host, remember_key
from .origins import check_not_downgraded, is_loopback, join_url, origin
from .threads import DaemonPool
from .transport import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    MAX_JSON,
    Transport,
)

__all__ = ["DEFAULT_HOST", "Generation", "OxenClient", "find_key", "normalize_host", "origin", "remember_key"]

GENERATE_PATH = "/api/ai/images/generate"
EDIT_PATH = "/api/ai/images/edit"
#: The two documented image routes: a 404/405 from one (nothing billed) is tried once on the other.
OTHER_ROUTE = {GENERATE_PATH: EDIT_PATH, EDIT_PATH: GENERATE_PATH}
#: `OXEN_MAGIC_READ_TIMEOUT`: seconds every generate call may wait for its answer at least.
READ_TIMEOUT_ENV = "OXEN_MAGIC_READ_TIMEOUT"


class OxenClient(Transport):
    """A small, thread-safe client for the image routes of the Oxen inference API."""

    def __init__(
        self,
        host: str | None = None,
        api_key: str | None = None,
        *,
        pool_size: int = 16,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        max_wait: float = 60.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int | None = None,
        deadline: float = DEFAULT_DEADLINE,
        routes: dict[str, str] | None = None,
    ) -> None:
        self.base = normalize_host(host or os.environ.get("OXEN_HOST") or DEFAULT_HOST)
        self._key = api_key.strip() if api_key else None
        #: model id -> the image route that served its input images when the first one chosen
        #: answered 404/405 (the session owns this dict, so it outlives a replaced client).
        self.routes: dict[str, str] = routes if routes is not None else {}
        super().__init__(
            pool_size=pool_size,
            timeout=timeout,
            max_retries=max_retries,
            max_wait=max_wait,
            backoff=backoff,
            sleep=sleep,
            max_body_bytes=max_body_bytes or _env_max_body(),
            deadline=deadline,
        )

    def __repr__(self) -> str:
        return f"OxenClient(host={self.base!r})"

    # -- auth ---------------------------------------------------------------------------------
    @property
    def has_key(self) -> bool:
        return self._key is not None or find_key(self.base) is not None

    def _api_key(self) -> str:
        key = self._key or find_key(self.base)
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
                f"OXEN_API_KEY is for {_env_netloc(os.environ)}, not {netloc}; run "
                f"oxen_magic.login({self.base!r}), or set OXEN_HOST={self.base} if the key is for it."
            )
        return NO_KEY_HELP.replace("hub.oxen.ai", netloc, 1)

    def scrub(self, text: str) -> str:
        """`text` without this client's key (or anything shaped like a bearer token)."""
        return redact(text, self._key, find_key(self.base))

    # -- models -------------------------------------------------------------------------------
    def models(self, search: str | None = None, developer: str | None = None) -> list[ModelInfo]:
        """The image-generation models the API lists ("image" in capabilities.output).

        `search` goes to the search route (`/api/ai/models/search?search=...`), `developer` to
        the list's own `developer_name` filter (on either route): the server narrows the list.
        The list may carry no schemas (`request_schema: null`): `models_detailed` reads them.
        A malformed entry is skipped; it never costs the rest of the list.
        """
        query = {k: v for k, v in (("search", search), ("developer_name", developer)) if v}
        path = "/api/ai/models/search" if search else "/api/ai/models"
        body = self._model_read(path + ("?" + urlencode(query) if query else ""))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BadResponseError("The model list from the API has no 'data' list.")
        out = []
        for obj in data:
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
                continue
            try:
                info = ModelInfo.from_api(obj)
            except Exception:  # a field of a shape nobody foresaw: skip this model only
                continue
            if info.makes_images:
                out.append(info)
        return out

    def model(self, model_id: str) -> ModelInfo:
        """One model with its request_schema (the detail route); ids like `oxen:team/x` are
        URL-encoded. Kept per host for the process, so the panel and each cell read it once."""
        known = _remembered(self.base, model_id)
        if known is not None:
            return known
        body = self._model_read("/api/ai/models/" + quote(model_id, safe=""))
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise BadResponseError(f"The API's description of {model_id} has no 'id'.")
        try:
            info = ModelInfo.from_api(body)
        except Exception:  # pragma: no cover - from_api is tolerant; belt and braces
            raise BadResponseError(f"The API's description of {model_id} is unreadable.") from None
        _remember(self.base, model_id, info)
        return info

    def models_detailed(self, ids: Iterable[str], workers: int = 6) -> dict[str, ModelInfo | OxenError]:
        """Each model's detail (with its schema), read in parallel; a failure is returned, not
        raised, so one unreadable model never costs the others."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, ModelInfo | OxenError] = {}
        todo = []
        for model_id in wanted:
            known = _remembered(self.base, model_id)
            if known is None:
                todo.append(model_id)
            else:
                out[model_id] = known
        if len(todo) == 1:
            out[todo[0]] = self._detail_or_error(todo[0])
        elif todo:
            pool = DaemonPool(min(workers, len(todo)), "oxen-magic-models")
            try:
                futures = {m: pool.submit(self._detail_or_error, m) for m in todo}
                for model_id, future in futures.items():
                    out[model_id] = future.result()
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        return {m: out[m] for m in wanted}

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
            answer = self._call("GET", self.base + path, limit=MAX_JSON, key=key, what="model list")
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
        is remembered for that model (`self.routes`), so the next request goes there first.
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
        limit = max(MAX_JSON, self.max_body_bytes * 4 // 3 + 65536)  # room for b64_json
        model = payload.get("model")
        routed = "input_image" in payload and path in OTHER_ROUTE and isinstance(model, str)
        if routed:
            path = self.routes.get(str(model), path)
        timeout = self._read_timeout(read_timeout)
        key = self._api_key()

        def post(route: str) -> Any:
            return self._call(
                "POST", self.base + route, limit=limit, json_body=dict(payload), key=key, cancel=cancel,
                what="answer", on_throttle=on_throttle, timeout=timeout, on_ok=on_answered,
            )  # fmt: skip

        try:
            try:
                answer = post(path)
            except OxenError as exc:
                if not routed or exc.status not in (404, 405) or _names_model(exc):
                    raise
                other = OTHER_ROUTE[path]
                try:
                    answer = post(other)
                except OxenError as second:
                    if second.status in (404, 405):
                        raise exc from None  # neither route knows it: the first answer says why
                    raise
                self.routes[str(model)] = other
        except TooLargeError:  # a b64_json image past the cap: say it in the cap's terms
            raise too_large("image", self.max_body_bytes) from None
        body = answer.json()
        del answer
        images = body.get("images") if isinstance(body, dict) else None
        if not isinstance(images, list) or not images or not all(isinstance(i, dict) for i in images):
            raise BadResponseError("The API answered without an 'images' list; try again.")
        created = body.get("created")
        made = created if isinstance(created, int) and not isinstance(created, bool) else None
        del body
        found = [self._one_image(entry, decode) for entry in images]
        del images
        elapsed = time.monotonic() - started
        out = [
            Generation(
                data=data,
                request=dict(payload),
                created=made,
                elapsed=elapsed,
                mime=_MIMES.get(image.format or "", "application/octet-stream"),
                size=image.size,
                url=url,
                _image=image if decode else None,
            )
            for data, url, image in found
        ]
        out[0].others = tuple(out[1:])
        return out[0]

    def _one_image(self, entry: Mapping[str, Any], decode: bool) -> tuple[bytes, str | None, Image.Image]:
        """One entry of an answer's `images`: its bytes (downloaded if it is a URL), its URL."""
        url: str | None = None
        if isinstance(entry.get("b64_json"), str):
            text = entry["b64_json"]
            if len(text) // 4 * 3 > self.max_body_bytes + 2:
                raise too_large("image", self.max_body_bytes)
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise BadResponseError("The API returned an image whose base64 is invalid.") from None
            del text
        elif isinstance(entry.get("url"), str):
            url = join_url(self.base + "/", entry["url"], "returned a result URL")
            data = self.download(url)
        else:
            raise BadResponseError("The API's image has neither a 'url' nor 'b64_json'.")
        return data, url, decode_image(data, load=decode)

    def _read_timeout(self, seconds: float | None) -> tuple[float, float] | None:
        """(connect, read) for one generate call: the longest of the request's read timeout,
        `OXEN_MAGIC_READ_TIMEOUT` and the client's own; None when that is the client's own."""
        read = max(seconds or 0.0, _env_seconds(READ_TIMEOUT_ENV))
        if read <= self.timeout[1]:
            return None
        return (self.timeout[0], read)

    def download(self, url: str) -> bytes:
        """Fetch a result file (streamed, capped). The token goes only to the API's own origin."""
        full = join_url(self.base + "/", url, "returned a result URL")
        check_not_downgraded(self.base, full, "returned a result URL pointing")
        key = self._api_key() if origin(full) == origin(self.base) else None
        try:
            answer = self._call("GET", full, limit=self.max_body_bytes, key=key, what="image")
        except OxenError as exc:
            if exc.status not in (403, 404, 410):
                raise
            raise ResultExpiredError(
                f"The result URL had expired when it was fetched (HTTP {exc.status}); generate again.",
                exc.status,
            ) from None
        return answer.body


# -- the process-wide memory of model details ----------------------------------------------------

#: Seconds a model's detail is trusted before it is read again (a workshop may run for hours).
DETAIL_TTL = 600.0
_DETAILS: dict[tuple[str, str], tuple[float, ModelInfo]] = {}
_DETAILS_LOCK = threading.Lock()


def _remembered(base: str, model_id: str) -> ModelInfo | None:
    with _DETAILS_LOCK:
        hit = _DETAILS.get((base, model_id))
    if hit is None or time.monotonic() - hit[0] > DETAIL_TTL:
        return None
    return hit[1]


def _remember(base: str, model_id: str, info: ModelInfo) -> None:
    with _DETAILS_LOCK:
        _DETAILS[(base, model_id)] = (time.monotonic(), info)


def forget_models() -> None:
    """Drop every remembered model detail (a test with a new local hub on a reused port)."""
    with _DETAILS_LOCK:
        _DETAILS.clear()


def _names_model(exc: OxenError) -> bool:
    """A 404 about the model ("Model not found: x"), not about the route: no other route helps."""
    return exc.status == 404 and "model not found" in exc.message.lower()


def _env_seconds(name: str) -> float:
    """A positive number of seconds from the environment variable `name`, else 0."""
    try:
        seconds = float(os.environ.get(name, ""))
    except ValueError:
        return 0.0
    return seconds if 0 < seconds < 1e6 else 0.0


def _env_max_body() -> int:
    """`OXEN_MAGIC_MAX_BODY_MB` when it is a positive number, else the default cap."""
    try:
        megabytes = float(os.environ.get("OXEN_MAGIC_MAX_BODY_MB", ""))
    except ValueError:
        return DEFAULT_MAX_BODY
    if not 0 < megabytes < 1e6:  # also false for NaN
        return DEFAULT_MAX_BODY
    return int(megabytes * 1024 * 1024)
