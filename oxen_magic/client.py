"""The Oxen.ai HTTP client: host, key, models, generate, downloads, retries and errors.

Knows nothing of IPython. One `requests.Session` per client, its pool sized for the runner's
concurrency. The key is kept private, sent only to the API's own origin (redirects are followed
by hand to enforce that), and scrubbed from every message.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
import requests.adapters
import urllib3.exceptions
from PIL import Image

from .catalog import ModelInfo
from .images import decode_image

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import (
    AuthError,
    BadResponseError,
    Cancelled,
    InvalidParamsError,
    MissingKeyError,
    NetworkError,
    NotFoundError,
    OxenError,
    RateLimitError,
    ResultExpiredError,
    ServerError,
    redact,
)

DEFAULT_HOST = "https://hub.oxen.ai"
#: (connect, read) seconds. Generation is documented at 5-30 s; queues make it longer.
DEFAULT_TIMEOUT = (10.0, 180.0)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_REDIRECTS = 5
NO_KEY_HELP = (
    "No Oxen API key found; run oxen_magic.login(), or set the OXEN_API_KEY environment variable, "
    "or run `oxen config --auth hub.oxen.ai YOUR_KEY` (keys are on your oxen.ai profile settings page)."
)
BAD_KEY_HELP = (
    "The Oxen API key contains a space or a character a key cannot have; copy it again from your "
    "oxen.ai profile settings and run oxen_magic.login() or set OXEN_API_KEY."
)
_KEY_LOCK = threading.Lock()
_SESSION_KEYS: dict[str, str] = {}


def normalize_host(host: str) -> str:
    """`hub.oxen.ai` → `https://hub.oxen.ai`; a full URL is kept (without a trailing slash)."""
    text = host.strip()
    if not text.rstrip("/"):
        raise ValueError("The Oxen host is empty; set OXEN_HOST to e.g. hub.oxen.ai.")
    if "://" not in text:
        text = "https://" + text
    text = text.rstrip("/")  # after the scheme check, so "http://" is not read as host "http"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"The Oxen host '{host}' is not a web address; use e.g. hub.oxen.ai or http://127.0.0.1:8765."
        )
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError(f"The Oxen host '{host}' has a bad port; use e.g. 127.0.0.1:8765.") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in, for the same-origin rule."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)


def remember_key(host: str, key: str) -> None:
    """Keep a key for this process only (what `oxen_magic.login()` stores)."""
    with _KEY_LOCK:
        _SESSION_KEYS[urlsplit(normalize_host(host)).netloc] = key


def find_key(host: str, env: Mapping[str, str] | None = None) -> str | None:
    """The key for `host`: a login() of this session, `OXEN_API_KEY`, then the Oxen CLI config.

    `OXEN_API_KEY` belongs to the host the environment names (`OXEN_HOST`, else hub.oxen.ai):
    a `--host` pointing elsewhere (a typo, a notebook from someone else) never receives it.
    """
    env = os.environ if env is None else env
    netloc = urlsplit(normalize_host(host)).netloc
    with _KEY_LOCK:
        if netloc in _SESSION_KEYS:
            return _SESSION_KEYS[netloc]
    if env.get("OXEN_API_KEY", "").strip() and netloc == _env_netloc(env):
        return env["OXEN_API_KEY"].strip()
    folder = Path(env["OXEN_CONFIG_DIR"]) if env.get("OXEN_CONFIG_DIR") else None
    folder = folder or Path.home() / ".config" / "oxen"
    try:
        config = tomllib.loads((folder / "auth_config.toml").read_text())
    except (OSError, ValueError):
        return None
    for entry in config.get("host_configs") or ():
        if isinstance(entry, dict) and entry.get("host") == netloc and entry.get("auth_token"):
            return str(entry["auth_token"]).strip()
    return None


def _env_netloc(env: Mapping[str, str]) -> str | None:
    try:
        return urlsplit(normalize_host(env.get("OXEN_HOST") or DEFAULT_HOST)).netloc
    except ValueError:
        return None


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(eq=False)
class Generation:
    """One generated image: the bytes as sent, decoded once to prove they are an image."""

    data: bytes = field(repr=False)
    request: dict[str, Any]
    created: int | None
    elapsed: float
    mime: str
    size: tuple[int, int]
    #: The result URL the API returned, made absolute (None for b64_json): a later request
    #: can pass it on as an input image.
    url: str | None = None
    _image: Image.Image | None = field(default=None, repr=False)

    @property
    def image(self) -> Image.Image:
        """The full-resolution picture (decoded on demand; `release()` drops it)."""
        if self._image is None:
            self._image = decode_image(self.data)
        return self._image

    def release(self) -> None:
        """Forget the decoded pixels; the encoded bytes stay."""
        self._image = None


_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


class OxenClient:
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
    ) -> None:
        self.base = normalize_host(host or os.environ.get("OXEN_HOST") or DEFAULT_HOST)
        self._key = api_key.strip() if api_key else None
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff = backoff
        self._sleep = sleep
        self.pool_size = pool_size
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._model_cache: dict[str, ModelInfo] = {}

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
    def models(self) -> list[ModelInfo]:
        """The image-generation models the API lists ("image" in capabilities.output)."""
        body = self._json("GET", "/api/ai/models", auth=False)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BadResponseError("The model list from the API has no 'data' list.")
        out = [ModelInfo.from_api(m) for m in data if isinstance(m, dict)]
        return [m for m in out if m.makes_images]

    def model(self, model_id: str) -> ModelInfo:
        """One model with its request_schema; ids like `oxen:team/x` are URL-encoded."""
        if model_id not in self._model_cache:
            body = self._json("GET", "/api/ai/models/" + quote(model_id, safe=""), auth=False)
            if not isinstance(body, dict) or "id" not in body:
                raise BadResponseError(f"The API's description of {model_id} has no 'id'.")
            self._model_cache[model_id] = ModelInfo.from_api(body)
        return self._model_cache[model_id]

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
        path: str = "/api/ai/images/generate",
    ) -> Generation:
        """POST a ready JSON body and return the image, downloaded at once if it came as a URL.

        `decode=False` reads only the image's header here and leaves the pixels to
        `Generation.image` (which raises the same `BadResponseError` for a corrupt image): the
        runner decodes outside its network slots, so the next request need not wait for it.
        """
        started = time.monotonic()
        body = self._json("POST", path, json_body=dict(payload), auth=True, cancel=cancel)
        images = body.get("images") if isinstance(body, dict) else None
        if not isinstance(images, list) or not images or not isinstance(images[0], dict):
            raise BadResponseError("The API answered without an 'images' list; try again.")
        first = images[0]
        url = None
        if isinstance(first.get("b64_json"), str):
            try:
                data = base64.b64decode(first["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise BadResponseError("The API returned an image whose base64 is invalid.") from None
        elif isinstance(first.get("url"), str):
            url = _join(self.base + "/", first["url"], "returned a result URL")
            data = self.download(url)
        else:
            raise BadResponseError("The API's image has neither a 'url' nor 'b64_json'.")
        image = decode_image(data, load=decode)
        created = body.get("created")
        return Generation(
            data=data,
            request=dict(payload),
            created=created if isinstance(created, int) else None,
            elapsed=time.monotonic() - started,
            mime=_MIMES.get(image.format or "", "application/octet-stream"),
            size=image.size,
            url=url,
            _image=image if decode else None,
        )

    def download(self, url: str) -> bytes:
        """Fetch a result file. The token goes along only to the API's own origin."""
        full = _join(self.base + "/", url, "returned a result URL")
        try:
            response = self._send("GET", full, auth=True)
        except OxenError as exc:
            if exc.status not in (403, 404, 410):
                raise
            raise ResultExpiredError(
                f"The result URL had expired when it was fetched (HTTP {exc.status}); generate again.",
                exc.status,
            ) from None
        return response.content

    # -- transport ----------------------------------------------------------------------------
    def _json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        auth: bool,
        cancel: threading.Event | None = None,
    ) -> Any:
        response = self._send(method, self.base + path, json_body=json_body, auth=auth, cancel=cancel)
        try:
            return response.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested past the stack
            text = _not_json(response)
            raise BadResponseError(text[0].upper() + text[1:] + ".") from None

    def _send(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        auth: bool,
        cancel: threading.Event | None = None,
    ) -> requests.Response:
        """One logical call: retries (bounded in count and total wait), redirects origin-checked."""
        key = self._api_key() if auth and origin(url) == origin(self.base) else None
        waited = 0.0
        for attempt in range(1, self.max_retries + 2):
            try:
                response = self._follow(method, url, json_body, key)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                # A GET (models, result files) is safe to repeat; a POST is resent only if it
                # never reached the server, so a timeout or a dropped answer never bills twice.
                failure: OxenError = NetworkError(self._network_message(exc, url))
                if method != "GET" and not _never_sent(exc):
                    raise failure from None
                if _refused(exc) and attempt > 1:  # nothing listens there: say so after one retry
                    raise failure from None
                delay = self._delay(attempt, None)
            except requests.exceptions.RequestException as exc:
                raise NetworkError(self._network_message(exc, url)) from None
            else:
                if response.status_code < 400:
                    return response
                failure = self._error(response, attempt)
                if response.status_code not in RETRY_STATUSES:
                    raise failure
                delay = self._delay(attempt, response.headers.get("Retry-After"))
                response.close()
            if attempt > self.max_retries or waited + delay > self.max_wait:
                raise failure
            if cancel is not None:
                if cancel.wait(delay):
                    raise Cancelled("Stopped before this image was generated.")
            else:
                self._sleep(delay)
            waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def _follow(self, method: str, url: str, json_body: Any, key: str | None) -> requests.Response:
        """Send, following redirects by hand so the token never leaves the API's origin."""
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Accept": "application/json"}
            if key and origin(url) == origin(self.base):
                headers["Authorization"] = f"Bearer {key}"
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.exceptions.RequestException:
                raise
            except ValueError:  # requests parses a redirect's Location even when not following it
                raise BadResponseError(BAD_REDIRECT) from None
            if response.status_code not in (301, 302, 303, 307, 308) or not response.headers.get("Location"):
                return response
            url = _join(url, response.headers["Location"], "redirected to an address")
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, json_body = "GET", None
            response.close()
        raise BadResponseError(f"Too many redirects from {_where(url)}.")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After (seconds or an HTTP date) when given, else exponential backoff + jitter."""
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(retry_after)
                except (TypeError, ValueError):  # unreadable: back off as if it were absent
                    when = None
                if when is not None:
                    return max(0.0, when.timestamp() - time.time())
        return self.backoff * 2 ** (attempt - 1) * (0.5 + random.random())

    def _error(self, response: requests.Response, attempts: int = 1) -> OxenError:
        status = response.status_code
        detail = _detail(response)
        tries = f"{attempts} {'try' if attempts == 1 else 'tries'}"
        cls: type[OxenError]
        if status in (401, 403):
            cls = AuthError
            text = f"The API refused the key (HTTP {status}: {detail}); check OXEN_API_KEY."
        elif status == 404:
            cls, text = NotFoundError, detail
        elif status == 429:
            cls = RateLimitError
            text = f"Rate limit exceeded (HTTP 429) after {tries}; wait a minute and rerun."
        elif status >= 500:
            cls = ServerError
            text = f"The API failed (HTTP {status}: {detail}) after {tries}; try again later."
        elif status in (400, 422):
            cls, text = InvalidParamsError, f"The API rejected the request: {detail}."
        else:
            cls, text = OxenError, f"The API answered HTTP {status}: {detail}."
        text = text[:-1] if text.endswith("..") else text  # a detail ending in "." then our "."
        return cls(self.scrub(text), status)

    def _network_message(self, exc: Exception, url: str) -> str:
        text = str(exc)
        where = _where(url)
        if "timed out" in text.lower() or isinstance(exc, requests.exceptions.Timeout):
            return f"{where} did not answer in time (timeout); check your network and try again."
        if (
            "Name or service not known" in text
            or "nodename nor servname" in text
            or ("getaddrinfo" in text or "NameResolution" in text)
        ):
            return f"Cannot find the host {where} (DNS failed); check OXEN_HOST and your network."
        if "refused" in text.lower():
            return f"Cannot connect to {where} (connection refused); is the server running?"
        if isinstance(exc, requests.exceptions.SSLError):
            plain = "http://" + urlsplit(url).netloc
            return f"Cannot talk https to {where} (SSL failed); if it serves plain http, use {plain}."
        return f"Lost the connection to {where}; check your network and try again."

    def close(self) -> None:
        self.session.close()


def _join(base: str, ref: str, what: str) -> str:
    """`ref` resolved against `base`, or `BadResponseError` when it is no http(s) address."""
    try:
        url = urljoin(base, ref)
        ok = urlsplit(url).scheme in ("http", "https") and bool(origin(url)[1])
    except ValueError:  # a bad IPv6 literal or port: urllib raises while parsing
        ok = False
    if not ok:
        raise BadResponseError(f"The API {what} that is not a web address.")
    return url


BAD_REDIRECT = "The API redirected to an address that is not a web address."


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _never_sent(exc: Exception) -> bool:
    """True when the connection failed before the request went out (refused, DNS, connect)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _refused(exc: Exception) -> bool:
    """The host answered that nothing listens on that port (not a flaky network)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(getattr(reason, "__cause__", None), ConnectionRefusedError) or (
        isinstance(reason, urllib3.exceptions.NewConnectionError) and "refused" in str(reason).lower()
    )


def _detail(response: requests.Response) -> str:
    """The human part of an error body, for both documented shapes and for HTML pages."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return _not_json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        for name in ("title", "detail", "message"):
            if isinstance(error.get(name), str) and error[name].strip():
                text = error[name].strip()
                if name == "title" and isinstance(error.get("detail"), str):
                    text += f" ({error['detail'].strip()})"
                return text
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and isinstance(body.get("status_message"), str):
        return body["status_message"]
    return f"HTTP {response.status_code}"


def _not_json(response: requests.Response) -> str:
    kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
    if "html" in kind or response.text.lstrip()[:1] == "<":
        return f"the API answered with an HTML page (HTTP {response.status_code}), not JSON"
    if "json" in kind:
        return f"the API answered with invalid JSON (HTTP {response.status_code})"
    return f"the API answered with {kind} (HTTP {response.status_code}), not JSON"
