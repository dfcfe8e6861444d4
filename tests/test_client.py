"""`OxenClient` tested for real: HTTP over loopback against `LocalHub` (and a second, plain
HTTP server standing in for another origin). Nothing in `requests` is mocked; only `sleep` is
injected so retry waits are recorded instead of slept.

Every test runs with HOME and OXEN_CONFIG_DIR pointed at empty temporary folders, OXEN_API_KEY
and OXEN_HOST unset and the process-wide login() keys cleared, so the developer's real Oxen
configuration is never read.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import io
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import pytest
import requests
from PIL import Image

import oxen_magic.network.httptransport as transport_module
from oxen_magic.core.errors import (
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
)
from oxen_magic.localhub import (
    FINE_TUNED_ID,
    GENERATE_PATH,
    MODELS_PATH,
    LocalHub,
    RecordedRequest,
    _Reply,
    malformed_catalogue,
)
from oxen_magic.network.client import (
    DEFAULT_HOST,
    Generation,
    OxenClient,
    find_key,
    normalize_host,
)
from oxen_magic.network.images import decode_image
from oxen_magic.network.keys import KeyStore
from oxen_magic.network.model_info import ModelInfo
from oxen_magic.network.modelreads import ModelDetails

KEY = "sk-oxen-test-7Hq2ZpX9fLw3"
WRONG_KEY = "sk-oxen-wrong-0000aaaa"
PROMPT = "a lighthouse at dusk, watercolour"
MODEL = "z-image-turbo"

# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty HOME and OXEN_CONFIG_DIR, no key or host in the environment, no login() keys."""
    home = tmp_path / "home"
    config = tmp_path / "oxen-config"
    home.mkdir()
    config.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(config))
    for name in ("OXEN_API_KEY", "OXEN_HOST", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return config


class TestHub(LocalHub):
    """LocalHub plus three test-only behaviours the stock hub has no knob for.

    * `result_url`: generate answers with this URL (e.g. on another origin) instead of its own.
    * `redirect_to`: generate answers with a URL on the hub's origin that 302-redirects here.
    * `echo_auth`: generate answers 400 with the Authorization header quoted in the title, like
      a careless server would (the client must scrub it).
    * `broken_details`: model ids whose detail route answers a proxy's HTML 502.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.result_url: str | None = None
        self.redirect_to: str | None = None
        self.echo_auth = False
        self.broken_details: set[str] = set()

    def _issue_url(self, namespace: Any, data: bytes, ext: str, content_type: str) -> str:
        url = super()._issue_url(namespace, data, ext, content_type)
        if self.result_url is not None:
            return self.result_url
        if self.redirect_to is not None:
            return f"{self.url}/redirect/{url.rsplit('/', 1)[-1]}"
        return url

    def _dispatch(
        self, method: str, target: str, headers: Any, raw: bytes, body: dict[str, Any] | None
    ) -> _Reply:
        path = target.split("?")[0]
        detail = unquote(path[len(MODELS_PATH) + 1 :]) if path.startswith(MODELS_PATH + "/") else None
        if method == "GET" and detail in self.broken_details:
            return _Reply(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if target.startswith("/redirect/") and self.redirect_to is not None:
            return _Reply(302, b"", "text/plain", {"Location": self.redirect_to})
        if method == "POST" and target.startswith(GENERATE_PATH) and self.echo_auth:
            title = f"Token not accepted: {headers.get('Authorization')}"
            payload = {"error": {"type": "invalid_params", "title": title}, "status": "error"}
            return _Reply(400, json.dumps(payload).encode())
        return super()._dispatch(method, target, headers, raw, body)


@pytest.fixture
def hub() -> Iterator[TestHub]:
    # The lenient reading of the docs (keyless model reads, schemas in the list); the tests that
    # need the documented one switch `anonymous_reads` / `list_schemas` off.
    running = TestHub(api_key=KEY, image_size=64, anonymous_reads=True, list_schemas=True)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Sleeps(list[float]):
    """An injectable `sleep` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(hub: TestHub, sleeps: Sleeps) -> Iterator[Callable[..., OxenClient]]:
    made: list[OxenClient] = []

    def make(**kwargs: Any) -> OxenClient:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("sleep", sleeps)
        kwargs.setdefault("timeout", (2.0, 10.0))
        client = OxenClient(kwargs.pop("host", hub.url), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., OxenClient]) -> OxenClient:
    return make_client()


def png_bytes(size: tuple[int, int] = (24, 16), colour: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


class OtherOrigin:
    """A plain http.server on another port (so another origin) that records every request.

    `/img.png` serves a small PNG; `/gone` answers 410; anything else 404.
    """

    def __init__(self) -> None:
        self.image = png_bytes()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(("GET", self.path, dict(self.headers.items())))
                if self.path == "/img.png":
                    status, body, kind = 200, owner.image, "image/png"
                elif self.path == "/gone":
                    status, body, kind = 410, b"gone", "text/plain"
                else:
                    status, body, kind = 404, b"not here", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def other() -> Iterator[OtherOrigin]:
    server = OtherOrigin()
    yield server
    server.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_clean(exc: BaseException, client: OxenClient, *keys: str) -> None:
    """No key in the message, its repr, the printed traceback or the client's repr; one line."""
    text = str(exc)
    shown = "".join(traceback.format_exception(exc))
    for key in (KEY, *keys):
        for where in (text, repr(exc), shown, repr(client)):
            assert key not in where
    assert text and "\n" not in text
    assert "Traceback" not in text


def posts(hub: LocalHub) -> list[RecordedRequest]:
    return hub.generate_calls()


def gets(hub: LocalHub, prefix: str) -> list[RecordedRequest]:
    return [r for r in hub.requests if r.method == "GET" and r.path.startswith(prefix)]


# -- host -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("hub.oxen.ai", "https://hub.oxen.ai"),
        ("  hub.oxen.ai/ ", "https://hub.oxen.ai"),
        ("https://hub.oxen.ai", "https://hub.oxen.ai"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
        ("127.0.0.1:8765", "https://127.0.0.1:8765"),
        ("https://example.com/oxen", "https://example.com/oxen"),
    ],
)
def test_normalize_host(given: str, expected: str) -> None:
    assert normalize_host(given) == expected
    assert OxenClient(given).base == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("   ", "is empty; set OXEN_HOST to e.g. hub.oxen.ai."),
        ("/", "is empty"),
        ("ftp://hub.oxen.ai", "'ftp://hub.oxen.ai' is not a web address; use e.g. hub.oxen.ai"),
        ("http://", "is not a web address"),
        ("://hub.oxen.ai", "is not a web address"),
        ("127.0.0.1:99999", "'127.0.0.1:99999' has a bad port; use e.g. 127.0.0.1:8765."),
        ("http://hub.oxen.ai:http", "has a bad port"),
    ],
)
def test_bad_host_is_a_clear_value_error(given: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        OxenClient(given, api_key=KEY)
    with pytest.raises(ValueError):
        normalize_host(given)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_oxen_host_env(hub: TestHub, monkeypatch: pytest.MonkeyPatch) -> None:
    assert OxenClient().base == DEFAULT_HOST == "https://hub.oxen.ai"
    assert OxenClient("").base == DEFAULT_HOST  # an empty argument means "not given"
    monkeypatch.setenv("OXEN_HOST", hub.url + "/")
    client = OxenClient(api_key=KEY)
    assert client.base == hub.url
    assert any(m.id == MODEL for m in client.models())
    assert OxenClient("hub.oxen.ai").base == "https://hub.oxen.ai"  # an explicit host wins
    monkeypatch.setenv("OXEN_HOST", "ftp://nowhere")
    with pytest.raises(ValueError, match="not a web address"):
        OxenClient()


# -- the API key ----------------------------------------------------------------------------


def test_key_from_the_argument(hub: TestHub, client: OxenClient) -> None:
    gen = client.generate(MODEL, PROMPT, seed=1)
    assert gen.size == (64, 64)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


def test_key_argument_is_stripped_and_beats_the_environment(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_API_KEY", WRONG_KEY)
    make_client(api_key=f"  {KEY}\n").generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


def test_key_from_oxen_api_key_env(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_API_KEY", f" {KEY}\n")
    monkeypatch.setenv("OXEN_HOST", hub.url)  # the env key belongs to the env's host
    client = make_client(api_key=None)
    assert client.has_key
    client.generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


def test_env_key_is_not_sent_to_another_host(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_API_KEY", KEY)  # for hub.oxen.ai (no OXEN_HOST)
    client = make_client(api_key=None)
    assert not client.has_key
    with pytest.raises(MissingKeyError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == (
        f"OXEN_API_KEY is for hub.oxen.ai, not 127.0.0.1:{hub.port}; run "
        f"oxen_magic.login('{hub.url}'), or set OXEN_HOST={hub.url} if the key is for it."
    )
    assert posts(hub) == []


def test_key_is_never_sent_over_plain_http_to_a_remote_host() -> None:
    client = OxenClient("http://example.invalid", api_key=KEY)
    with pytest.raises(AuthError, match="Refusing to send your API key over plain http"):
        client.generate(MODEL, PROMPT, seed=1)


def write_auth_config(folder: Path, entries: list[tuple[str, str]]) -> None:
    lines = ['default_host = "hub.oxen.ai"', ""]
    for host, token in entries:
        lines += ["[[host_configs]]", f'host = "{host}"', f'auth_token = "{token}"', ""]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "auth_config.toml").write_text("\n".join(lines))


def test_key_from_the_oxen_cli_config(
    hub: TestHub, make_client: Callable[..., OxenClient], isolated_env: Path
) -> None:
    netloc = f"127.0.0.1:{hub.port}"
    write_auth_config(
        isolated_env,
        [
            ("hub.oxen.ai", WRONG_KEY),  # another host
            ("127.0.0.1", WRONG_KEY),  # same host name, no port: not the same host string
            (f"127.0.0.1:{hub.port + 1}", WRONG_KEY),  # another port
            (f"http://{netloc}", WRONG_KEY),  # the CLI stores no scheme; exact match only
            (netloc, KEY),
        ],
    )
    assert find_key(hub.url) == KEY
    client = make_client(api_key=None)
    client.generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


def test_cli_config_defaults_to_home_dot_config_oxen(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OXEN_CONFIG_DIR")
    write_auth_config(tmp_path / "home" / ".config" / "oxen", [(f"127.0.0.1:{hub.port}", KEY)])
    make_client(api_key=None).generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


def test_environment_beats_the_cli_config(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    write_auth_config(isolated_env, [(f"127.0.0.1:{hub.port}", WRONG_KEY)])
    monkeypatch.setenv("OXEN_API_KEY", KEY)
    monkeypatch.setenv("OXEN_HOST", hub.url)
    make_client(api_key=None).generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


@pytest.mark.parametrize("form", ["url", "netloc"])
def test_key_from_a_login_key_store(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setenv("OXEN_API_KEY", WRONG_KEY)  # a login() of this session wins
    keys = KeyStore()
    keys.remember(hub.url if form == "url" else f"127.0.0.1:{hub.port}", KEY)
    make_client(api_key=None, keys=keys).generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]
    # keys are per host: another host does not get it; the store never shows one
    assert find_key("hub.oxen.ai", env={}, keys=keys) is None
    assert KEY not in repr(keys) and KEY not in str(keys)


def test_login_stores_the_key_for_this_session(
    hub: TestHub, make_client: Callable[..., OxenClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    import oxen_magic

    monkeypatch.setattr(getpass, "getpass", lambda prompt="": f"  {KEY} ")
    oxen_magic.login(hub.url)
    make_client(api_key=None, keys=oxen_magic.current_session().keys).generate(MODEL, PROMPT, seed=1)
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]


@pytest.mark.parametrize("config", ["none", "other-host", "broken-toml"])
def test_no_key_anywhere(
    hub: TestHub, make_client: Callable[..., OxenClient], isolated_env: Path, config: str
) -> None:
    if config == "other-host":
        write_auth_config(isolated_env, [("hub.oxen.ai", WRONG_KEY)])
    elif config == "broken-toml":
        (isolated_env / "auth_config.toml").write_text("[[host_configs]\nhost = ")
    hub.anonymous_reads = True  # the reading where keyless model reads are answered
    client = make_client(api_key=None)  # constructing works
    assert not client.has_key
    assert repr(client) == f"OxenClient(host={client.base!r})"
    assert len(client.models()) == 35  # listing works without a key
    assert client.model("flux-2-dev").id == "flux-2-dev"
    assert [r.authorization for r in gets(hub, MODELS_PATH)] == [None, None]  # tried without
    with pytest.raises(MissingKeyError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert isinstance(info.value, AuthError)
    message = str(info.value)
    assert message.startswith("No Oxen API key found; run oxen_magic.login(), or set the OXEN_API_KEY")
    assert f"`oxen config --auth 127.0.0.1:{hub.port} YOUR_KEY`" in message
    assert "profile settings page" in message
    assert posts(hub) == []  # nothing was sent
    assert_clean(info.value, client, WRONG_KEY)


# -- models ---------------------------------------------------------------------------------


def test_models_lists_only_image_models(hub: TestHub, client: OxenClient) -> None:
    hub.list_schemas = True  # the reading where the list carries schemas
    models = client.models()
    ids = {m.id for m in models}
    assert all(isinstance(m, ModelInfo) and m.makes_images for m in models)
    assert {"flux-2-dev", "black-forest-labs-flux-2-klein-4b", MODEL, FINE_TUNED_ID} <= ids
    assert "gpt-oss-120b" not in ids and "wan-2-2-text-to-video" not in ids
    assert len(models) == 35
    flux = next(m for m in models if m.id == "flux-2-dev")
    assert flux.cost_per_image == 0.025
    assert flux.request_schema is not None
    assert flux.properties["output_format"]["default"] == "webp"
    assert flux.takes("aspect_ratio") is True and flux.takes("no_such_param") is False
    assert next(m for m in models if m.id == "z-image-turbo").cost_per_image == 0.002
    listing = gets(hub, "/api/ai/models")
    assert len(listing) == 1 and listing[0].authorization == f"Bearer {KEY}"  # sent when found


def test_model_detail_with_url_encoded_fine_tuned_id(hub: TestHub, client: OxenClient) -> None:
    info = client.model(FINE_TUNED_ID)
    assert info.id == FINE_TUNED_ID
    assert info.cost_per_image is None and info.cost_per_second == 0.0012  # priced per second
    assert info.takes("aspect_ratio")
    assert [r.path for r in hub.requests] == ["/api/ai/models/" + quote(FINE_TUNED_ID, safe="")]
    assert "%3A" in hub.requests[0].path and "%2F" in hub.requests[0].path
    assert client.model(FINE_TUNED_ID) is info  # cached
    assert len(hub.requests) == 1


def test_unknown_model_id(hub: TestHub, client: OxenClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.model("x")
    assert str(info.value) == "Model not found: x"
    assert info.value.status == 404
    assert_clean(info.value, client)


def detail_gets(hub: LocalHub) -> list[RecordedRequest]:
    return gets(hub, MODELS_PATH + "/")


def test_model_reads_send_the_key_when_one_is_found(hub: TestHub, client: OxenClient) -> None:
    client.models()
    client.model("flux-2-dev")
    reads = gets(hub, MODELS_PATH)
    assert len(reads) == 2 and all(r.authorization == f"Bearer {KEY}" for r in reads)


@pytest.mark.parametrize("refuse_anonymous", [False, True])
def test_model_reads_with_a_key_work_whether_or_not_the_api_needs_it(
    hub: TestHub, client: OxenClient, refuse_anonymous: bool
) -> None:
    hub.anonymous_reads = not refuse_anonymous
    assert len(client.models()) == 35
    assert client.model(FINE_TUNED_ID).takes("aspect_ratio")


def test_a_model_read_refused_without_a_key_says_how_to_give_one(
    hub: TestHub, make_client: Callable[..., OxenClient]
) -> None:
    hub.anonymous_reads = False
    client = make_client(api_key=None)
    for read in (client.models, lambda: client.model("flux-2-dev")):
        with pytest.raises(AuthError) as info:
            read()
        message = str(info.value)
        assert "without a key (HTTP 401)" in message
        assert "oxen_magic.login()" in message and "OXEN_API_KEY" in message and "local hub" in message
        assert info.value.status == 401
        assert_clean(info.value, client)
    assert all(r.authorization is None for r in gets(hub, MODELS_PATH))  # tried without


def test_a_key_that_cannot_be_sent_is_left_off_model_reads(
    hub: TestHub, make_client: Callable[..., OxenClient]
) -> None:
    hub.anonymous_reads = True  # the reading where keyless model reads are answered
    client = make_client(api_key="two words")
    assert len(client.models()) == 35  # read without it rather than fail in http.client
    assert gets(hub, MODELS_PATH)[0].authorization is None


def test_schemas_come_from_the_detail_route(hub: TestHub, client: OxenClient) -> None:
    hub.list_schemas = False
    listed = client.models()
    assert listed and all(m.request_schema is None for m in listed)  # the list may carry none
    ids = ["flux-2-dev", MODEL, FINE_TUNED_ID, "flux-2-dev"]
    details = client.models_detailed(ids)
    assert list(details) == ["flux-2-dev", MODEL, FINE_TUNED_ID]
    assert all(isinstance(d, ModelInfo) and d.request_schema is not None for d in details.values())
    assert len(detail_gets(hub)) == 3


def test_details_are_kept_per_host_by_their_owner(
    hub: TestHub, make_client: Callable[..., OxenClient], other: OtherOrigin
) -> None:
    details = ModelDetails()  # what a session hands each of its clients
    first = make_client(details=details).models_detailed(["flux-2-dev", MODEL])
    again = make_client(details=details).models_detailed([MODEL, "flux-2-dev"])  # a new client
    assert again[MODEL] is first[MODEL]
    assert len(detail_gets(hub)) == 2
    make_client().model(MODEL)  # a client of its own remembers nothing yet
    assert len(detail_gets(hub)) == 3
    details.clear()
    make_client(details=details).model(MODEL)
    assert len(detail_gets(hub)) == 4


def test_models_detailed_reads_in_parallel(hub: TestHub, client: OxenClient) -> None:
    hub.latency = 0.0
    seen: list[str] = []
    original = client.model

    def slow(model_id: str) -> ModelInfo:
        seen.append(threading.current_thread().name)
        return original(model_id)

    client.model = slow  # type: ignore[method-assign]
    ids = [m["id"] for m in hub.models][:8]
    client.models_detailed(ids)
    assert len(set(seen)) > 1 and all(name.startswith("oxen-magic-models") for name in seen)


def test_one_failing_detail_is_returned_not_raised(hub: TestHub, client: OxenClient) -> None:
    hub.broken_details = {"flux-2-dev"}
    details = client.models_detailed(["flux-2-dev", "no-such-model", MODEL])
    assert isinstance(details["flux-2-dev"], OxenError) and details["flux-2-dev"].status == 502
    assert isinstance(details["no-such-model"], NotFoundError)
    assert isinstance(details[MODEL], ModelInfo)


def test_listing_fills_in_details_and_survives_a_failing_one(
    hub: TestHub, make_client: Callable[..., OxenClient]
) -> None:
    from oxen_magic.session.pipeline import list_models

    hub.list_schemas = False
    hub.broken_details = {"flux-2-dev"}
    client = make_client(max_retries=0)
    models, notes = list_models(client)
    by_id = {m.id: m for m in models}
    assert len(models) == 35
    assert by_id["flux-2-dev"].request_schema is None  # shown with what the list knows
    assert by_id[MODEL].takes("num_inference_steps")  # filled in from its detail
    assert notes == ["Could not read the parameters of flux-2-dev; they are sent unchecked."]


def test_a_fine_tuned_id_without_a_description_is_planned_unchecked(hub: TestHub, client: OxenClient) -> None:
    from oxen_magic.session.pipeline import resolve_models

    tuned = "oxen:someone/private-ft_img_gen_1"
    found, notes = resolve_models(client, [tuned, MODEL])
    assert found[tuned] is None and isinstance(found[MODEL], ModelInfo)
    assert notes == [
        f"{tuned} has no public description (a fine-tuned or private model?), so its parameters "
        "are sent unchecked."
    ]


def test_a_plain_unknown_id_still_gets_did_you_mean(hub: TestHub, client: OxenClient) -> None:
    from oxen_magic.core.errors import UsageProblem
    from oxen_magic.session.pipeline import resolve_models

    with pytest.raises(UsageProblem) as info:
        resolve_models(client, ["flux-2-devv"])
    assert "flux-2-dev" in str(info.value)


# -- descriptions of every shape ----------------------------------------------------------------

GOOD_SCHEMA = {"properties": {"prompt": {"type": "string"}, "seed": {"type": "integer", "minimum": 0}}}


@pytest.mark.parametrize(
    ("fields", "note", "unchecked"),
    [
        ({"capabilities": ["image"]}, "capabilities are not an object", False),
        ({"capabilities": 3}, "capabilities are not an object", False),
        ({"request_schema": {"properties": ["seed"]}}, "'properties' is not an object", True),
        ({"request_schema": {"properties": "seed"}}, "'properties' is not an object", True),
        (
            {"request_schema": {"properties": {"seed": {"minimum": "0"}}}},
            "schema of seed is malformed",
            False,
        ),
        (
            {"request_schema": {"properties": {"seed": {"maximum": float("nan")}}}},
            "of seed is malformed",
            False,
        ),
        ({"request_schema": {"properties": {"seed": 5}}}, "schema of seed is malformed", False),
        ({"request_schema": {"properties": {"s": {"enum": "a|b"}}}}, "schema of s is malformed", False),
        ({"request_schema": {"properties": {"s": {"type": 3}}}}, "schema of s is malformed", False),
        ({"request_schema": {**GOOD_SCHEMA, "required": "prompt"}}, "'required' is not a list", False),
        ({"pricing": {"cost_per_image": -1}}, "price is not a usable number", False),
        ({"pricing": {"cost_per_image": "0.02"}}, "price is not a usable number", False),
        ({"pricing": {"cost_per_image": float("nan")}}, "price is not a usable number", False),
        ({"pricing": {"cost_per_image": 1e12}}, "price is not a usable number", False),
        ({"pricing": {"cost_per_image": 10**400}}, "price is not a usable number", False),
        ({"pricing": {"cost_per_image": True}}, "price is not a usable number", False),
    ],
)
def test_a_malformed_description_degrades_with_a_note(
    fields: dict[str, Any], note: str, unchecked: bool
) -> None:
    obj = {"id": "m", "capabilities": {"output": ["image"]}, "request_schema": GOOD_SCHEMA, **fields}
    info = ModelInfo.from_api(obj)
    assert any(note in n for n in info.notes), info.notes
    assert (info.request_schema is None) is unchecked
    if "pricing" in fields:
        assert info.cost_per_image is None
    for prop in info.properties.values():  # what is kept can be trusted
        assert isinstance(prop, dict)
        for bound in ("minimum", "maximum"):
            assert bound not in prop or isinstance(prop[bound], (int, float))


def test_one_malformed_model_never_breaks_the_listing(hub: TestHub, client: OxenClient) -> None:
    from oxen_magic.display.modeltable import ModelTable
    from oxen_magic.session.pipeline import list_models

    malformed = malformed_catalogue()
    hub.models[:0] = malformed
    models, notes = list_models(client)
    ids = {m.id for m in models}
    assert {m["id"] for m in malformed} <= ids and MODEL in ids
    by_id = {m.id: m for m in models}
    assert by_id["malformed-properties-list"].request_schema is None
    assert by_id["malformed-price-text"].cost_per_image is None
    assert (
        "malformed-properties-list: its schema's 'properties' is not an object, so its parameters "
        "are sent unchecked." in notes
    )
    assert "malformed-price-negative: its price is not a usable number, so the price is unknown." in notes
    table = ModelTable(models, notes)
    assert "malformed-minimum-string" in repr(table) and "malformed-enum-string" in table._repr_html_()


# -- generate -------------------------------------------------------------------------------


def test_generate_url(hub: TestHub, client: OxenClient) -> None:
    before = int(time.time())
    gen = client.generate(MODEL, PROMPT, seed=7, output_format="png")
    assert isinstance(gen, Generation)
    assert gen.request == {"model": MODEL, "prompt": PROMPT, "seed": 7, "output_format": "png"}
    assert gen.created is not None and before - 1 <= gen.created <= time.time() + 1
    assert 0 < gen.elapsed < 10
    assert gen.mime == "image/png" and gen.data.startswith(b"\x89PNG")
    assert gen.size == (64, 64) and gen.image.size == (64, 64)
    (post,) = posts(hub)
    assert post.body == gen.request
    assert post.authorization == f"Bearer {KEY}"
    (download,) = gets(hub, "/api/repos/")
    assert download.authorization == f"Bearer {KEY}"  # same origin: the token goes along
    assert download.status == 200
    assert gen.url is not None and gen.url.endswith(download.path)  # kept, for a later edit


def test_generate_b64_json(hub: TestHub, client: OxenClient) -> None:
    gen = client.generate(MODEL, PROMPT, seed=7, response_format="b64_json")
    assert gen.mime == "image/webp" and gen.size == (64, 64)  # z-image-turbo defaults to webp
    assert gen.request["response_format"] == "b64_json"
    assert len(hub.requests) == 1  # nothing to download
    assert gen.url is None
    # the same request as a URL gives the same bytes (the hub is deterministic)
    assert client.generate(MODEL, PROMPT, seed=7).data == gen.data


def test_generate_payload_posts_to_the_given_route(hub: TestHub, client: OxenClient) -> None:
    edit = "/api/ai/images/edit"
    source = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    gen = client.generate_payload(
        {"model": "flux-kontext-dev", "prompt": PROMPT, "input_image": source}, path=edit
    )
    assert gen.data and gen.url is not None
    assert [r.path for r in hub.requests if r.method == "POST"] == [edit]
    assert hub.requests[0].authorization == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("fmt", "mime", "magic"),
    [
        ("png", "image/png", b"\x89PNG"),
        ("jpg", "image/jpeg", b"\xff\xd8\xff"),
        ("webp", "image/webp", b"RIFF"),
    ],
)
@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_output_formats(client: OxenClient, fmt: str, mime: str, magic: bytes, response_format: str) -> None:
    gen = client.generate(
        "flux-2-dev", PROMPT, seed=3, aspect_ratio="16:9", output_format=fmt, response_format=response_format
    )
    assert gen.mime == mime
    assert gen.data.startswith(magic)
    assert gen.size == (64, 40)
    assert Image.open(io.BytesIO(gen.data)).size == (64, 40)


def test_flux_2_dev_defaults_to_webp_and_16_9(client: OxenClient) -> None:
    gen = client.generate("flux-2-dev", PROMPT, seed=3)
    assert gen.mime == "image/webp" and gen.data.startswith(b"RIFF") and gen.size == (64, 40)


def test_release_then_image_decodes_again(client: OxenClient) -> None:
    gen = client.generate(MODEL, PROMPT, seed=2)
    first = gen.image
    pixels = first.tobytes()
    gen.release()
    assert gen._image is None
    again = gen.image
    assert again is not first and again.size == gen.size and again.tobytes() == pixels
    assert gen.image is again  # decoded once, then kept


def test_eight_threads_share_one_client(hub: TestHub, client: OxenClient) -> None:
    hub.latency = 0.3
    results: list[Generation] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        try:
            gen = client.generate(MODEL, PROMPT, seed=seed)
        except BaseException as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(gen)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []
    assert len(results) == 8
    assert sorted(g.request["seed"] for g in results) == list(range(8))
    assert len({g.data for g in results}) == 8
    assert hub.peak_in_flight == 8  # truly concurrent, not queued behind each other


# -- the origin rule ------------------------------------------------------------------------


def test_result_on_another_origin_gets_no_token(hub: TestHub, client: OxenClient, other: OtherOrigin) -> None:
    hub.result_url = other.url + "/img.png"
    gen = client.generate(MODEL, PROMPT, seed=1)
    assert gen.data == other.image and gen.size == (24, 16) and gen.mime == "image/png"
    assert [r.authorization for r in posts(hub)] == [f"Bearer {KEY}"]
    assert gets(hub, "/api/repos/") == []
    ((method, path, headers),) = other.requests
    assert (method, path) == ("GET", "/img.png")
    assert "authorization" not in {h.lower() for h in headers}
    assert KEY not in json.dumps(headers)


def test_redirect_to_another_origin_drops_the_token(
    hub: TestHub, client: OxenClient, other: OtherOrigin
) -> None:
    hub.redirect_to = other.url + "/img.png"
    gen = client.generate(MODEL, PROMPT, seed=1)
    assert gen.data == other.image
    (hop,) = gets(hub, "/redirect/")
    assert hop.status == 302
    assert hop.authorization == f"Bearer {KEY}"  # the API's own origin does get it
    ((_, path, headers),) = other.requests
    assert path == "/img.png"
    assert "authorization" not in {h.lower() for h in headers}
    assert KEY not in json.dumps(headers)


def test_expired_result_on_another_origin(hub: TestHub, client: OxenClient, other: OtherOrigin) -> None:
    hub.result_url = other.url + "/gone"
    with pytest.raises(ResultExpiredError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == "The result URL had expired when it was fetched (HTTP 410); generate again."
    assert info.value.status == 410
    assert_clean(info.value, client)


def test_redirect_loop_is_bounded(hub: TestHub, client: OxenClient) -> None:
    hub.redirect_to = hub.url + "/redirect/again"
    with pytest.raises(BadResponseError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == f"Too many redirects from {hub.url}."
    assert len(gets(hub, "/redirect/")) == transport_module.MAX_REDIRECTS + 1
    assert_clean(info.value, client)


# -- errors ---------------------------------------------------------------------------------


def test_empty_prompt_title_shape(hub: TestHub, client: OxenClient) -> None:
    with pytest.raises(InvalidParamsError) as info:
        client.generate(MODEL, "")
    assert str(info.value) == "The API rejected the request: Prompt cannot be empty."
    assert info.value.status == 400
    assert len(posts(hub)) == 1
    assert_clean(info.value, client)


def test_unknown_model_message_shape(hub: TestHub, client: OxenClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.generate("bad-model-name", PROMPT)
    assert str(info.value) == "Model not found: bad-model-name"
    assert len(posts(hub)) == 1
    assert_clean(info.value, client)


def test_invalid_parameter(hub: TestHub, client: OxenClient) -> None:
    with pytest.raises(InvalidParamsError) as info:
        client.generate(MODEL, PROMPT, num_inference_steps=999)
    assert str(info.value) == (
        "The API rejected the request: Invalid num_inference_steps: 999 is greater than the maximum 50."
    )
    assert len(posts(hub)) == 1
    assert_clean(info.value, client)


def test_wrong_key_is_an_auth_error(hub: TestHub, make_client: Callable[..., OxenClient]) -> None:
    client = make_client(api_key=WRONG_KEY)
    with pytest.raises(AuthError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert not isinstance(info.value, MissingKeyError)
    assert str(info.value) == (
        "The API refused the key (HTTP 401: Unauthenticated); run oxen_magic.login() to enter it again, "
        "or check OXEN_API_KEY."
    )
    assert len(posts(hub)) == 1
    assert_clean(info.value, client, WRONG_KEY)


def test_server_text_quoting_the_token_is_scrubbed(hub: TestHub, client: OxenClient) -> None:
    hub.echo_auth = True
    with pytest.raises(InvalidParamsError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == "The API rejected the request: Token not accepted: Bearer ***."
    assert_clean(info.value, client)


def test_html_5xx_page(hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps) -> None:
    client = make_client(max_retries=1)
    hub.fail_next(2, 503, retry_after=0.01, gateway=True)  # a page, but Retry-After: not taken
    with pytest.raises(ServerError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    message = str(info.value)
    assert message.startswith("The API failed (HTTP 503: the API answered with an HTML page")
    assert message.endswith("after 2 tries; try again later.")
    assert "<" not in message and "nginx" not in message
    assert info.value.status == 503 and not info.value.maybe_billed
    assert len(posts(hub)) == 2 and len(sleeps) == 1
    assert_clean(info.value, client)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_failure_after_sending_is_not_resent(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps, status: int
) -> None:
    """A gateway may answer 502/504 after the backend started (and billed) the image."""
    client = make_client()
    hub.fail_next(3, status)
    with pytest.raises(ServerError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    message = str(info.value)
    assert f"HTTP {status}" in message and "may have been made and billed" in message
    assert "not resent" in message and "a rerun asks again" in message
    assert "<" not in message
    assert len(posts(hub)) == 1 and sleeps == []
    assert_clean(info.value, client)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("html", "The API answered with an HTML page (HTTP 200), not JSON."),
        ("non_json", "The API answered with invalid JSON (HTTP 200)."),
        ("no_images", "The API answered without an 'images' list; try again."),
        ("bad_base64", "The API returned an image whose base64 is invalid."),
    ],
)
def test_unusable_answers(hub: TestHub, client: OxenClient, kind: str, expected: str) -> None:
    hub.garbage = kind
    with pytest.raises(BadResponseError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == expected
    assert len(posts(hub)) == 1  # a 200 is never resent
    assert_clean(info.value, client)


@pytest.mark.parametrize(
    ("kind", "words"), [("not_image", "is not an image ("), ("truncated", "is truncated or corrupt (")]
)
@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_undecodable_images(
    hub: TestHub, client: OxenClient, kind: str, words: str, response_format: str
) -> None:
    hub.garbage = kind
    with pytest.raises(BadResponseError) as info:
        client.generate(MODEL, PROMPT, seed=1, response_format=response_format)
    message = str(info.value)
    assert message.startswith("The image the API returned " + words)
    assert "bytes" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no Pillow traceback
    shown = "".join(traceback.format_exception(info.value))
    assert "PIL" not in shown and "During handling" not in shown
    assert_clean(info.value, client)


def test_truncated_jpeg_is_called_truncated() -> None:
    out = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(out, "JPEG")
    data = out.getvalue()
    with pytest.raises(BadResponseError, match="is truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_expired_url_when_fetched(make_client: Callable[..., OxenClient]) -> None:
    with TestHub(api_key=KEY, image_size=64, url_ttl=0.0) as short_lived:
        client = make_client(host=short_lived.url)
        with pytest.raises(ResultExpiredError) as info:
            client.generate(MODEL, PROMPT, seed=1)
        assert str(info.value) == (
            "The result URL had expired when it was fetched (HTTP 404); generate again."
        )
        assert isinstance(info.value, BadResponseError)
        assert len(short_lived.generate_calls()) == 1  # the POST is not resent
        assert_clean(info.value, client)


def test_expire_urls_then_download(hub: TestHub, client: OxenClient) -> None:
    answer = requests.post(
        hub.url + GENERATE_PATH,
        json={"model": MODEL, "prompt": PROMPT, "seed": 1},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    url = answer.json()["images"][0]["url"]
    assert Image.open(io.BytesIO(client.download(url))).size == (64, 64)
    hub.expire_urls()
    with pytest.raises(ResultExpiredError, match=r"HTTP 404\); generate again\.$") as info:
        client.download(url)
    assert_clean(info.value, client)


# -- retries --------------------------------------------------------------------------------


def test_429_twice_then_success(hub: TestHub, client: OxenClient, sleeps: Sleeps) -> None:
    hub.fail_next(2, 429, retry_after=0)
    gen = client.generate(MODEL, PROMPT, seed=1)
    assert gen.size == (64, 64)
    assert [r.status for r in posts(hub)] == [429, 429, 200]
    assert sleeps == [0.0, 0.0]
    assert all(r.body == posts(hub)[0].body for r in posts(hub))  # the same request each time


def test_retry_after_seconds_is_honoured(hub: TestHub, client: OxenClient, sleeps: Sleeps) -> None:
    hub.fail_next(1, 429, retry_after=2)
    client.generate(MODEL, PROMPT, seed=1)
    assert sleeps == [2.0]
    assert len(posts(hub)) == 2


def test_retry_after_http_date_is_honoured(hub: TestHub, client: OxenClient, sleeps: Sleeps) -> None:
    hub.fail_next(1, 429, retry_after=email.utils.formatdate(time.time() + 5, usegmt=True))
    hub.fail_next(1, 503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")  # in the past: no wait
    client.generate(MODEL, PROMPT, seed=1)
    assert len(sleeps) == 2
    assert 3.0 <= sleeps[0] <= 5.5
    assert sleeps[1] == 0.0
    assert len(posts(hub)) == 3


def test_unreadable_retry_after_falls_back_to_backoff(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps
) -> None:
    client = make_client(backoff=0.5)
    hub.fail_next(1, 429, retry_after="soon")
    client.generate(MODEL, PROMPT, seed=1)
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.75
    assert len(posts(hub)) == 2


@pytest.mark.parametrize("status", [503])
def test_html_5xx_is_retried(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps, status: int
) -> None:
    client = make_client(backoff=0.5)
    hub.fail_next(2, status)
    client.generate(MODEL, PROMPT, seed=1)
    assert [r.status for r in posts(hub)] == [status, status, 200]
    # exponential backoff with jitter: 0.5 * 2**(n-1) * [0.5, 1.5)
    assert 0.25 <= sleeps[0] < 0.75 and 0.5 <= sleeps[1] < 1.5


def test_retries_are_bounded_in_count(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps
) -> None:
    client = make_client(max_retries=3)
    hub.fail_next(100, 503)
    with pytest.raises(ServerError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert len(posts(hub)) == 3 + 1
    assert len(sleeps) == 3
    assert str(info.value).endswith("after 4 tries; try again later.")
    assert_clean(info.value, client)


def test_retries_are_bounded_in_total_wait(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps
) -> None:
    client = make_client(max_retries=50, backoff=1.0, max_wait=5.0)
    hub.fail_next(100, 503)
    with pytest.raises(ServerError):
        client.generate(MODEL, PROMPT, seed=1)
    assert sum(sleeps) <= 5.0
    assert len(posts(hub)) == len(sleeps) + 1 < 10


def test_long_retry_after_gives_up_at_max_wait(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps
) -> None:
    client = make_client(max_wait=60.0)
    hub.fail_next(100, 429, retry_after=30)
    with pytest.raises(RateLimitError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert sleeps == [30.0, 30.0]
    assert len(posts(hub)) == 3
    assert str(info.value) == (
        "Rate limit exceeded (HTTP 429) after 3 tries; the API asked to wait 30 s, so try again then."
    )
    assert info.value.status == 429
    assert_clean(info.value, client)


def test_one_try_is_singular(hub: TestHub, make_client: Callable[..., OxenClient]) -> None:
    client = make_client(max_retries=0)
    hub.fail_next(1, 429)
    with pytest.raises(RateLimitError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == "Rate limit exceeded (HTTP 429) after 1 try; wait a minute and rerun."


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, InvalidParamsError), (401, AuthError), (404, NotFoundError), (500, ServerError)],
)
def test_not_retried(
    hub: TestHub, client: OxenClient, sleeps: Sleeps, status: int, error: type[OxenError]
) -> None:
    hub.fail_next(5, status)
    with pytest.raises(error) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert info.value.status == status
    assert len(posts(hub)) == 1
    assert sleeps == []
    assert_clean(info.value, client)


def test_cancel_while_waiting_to_retry(hub: TestHub, client: OxenClient) -> None:
    hub.fail_next(1, 429, retry_after=30)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match=r"^Stopped before this image was generated\.$"):
        client.generate_payload({"model": MODEL, "prompt": PROMPT, "seed": 1}, cancel=cancel)
    assert len(posts(hub)) == 1


@pytest.mark.parametrize("call", ["generate", "models"])
def test_connection_refused(make_client: Callable[..., OxenClient], sleeps: Sleeps, call: str) -> None:
    port = closed_port()
    client = make_client(host=f"http://127.0.0.1:{port}", max_retries=4)
    with pytest.raises(NetworkError) as info:
        if call == "generate":
            client.generate(MODEL, PROMPT, seed=1)
        else:
            client.models()
    assert str(info.value) == (
        f"Cannot connect to http://127.0.0.1:{port} (connection refused); is the server running?"
    )
    assert info.value.status is None
    assert len(sleeps) == 1  # refused: nothing listens there, so one quick retry, then the message
    assert_clean(info.value, client)


def test_read_timeout_is_not_retried(
    hub: TestHub, make_client: Callable[..., OxenClient], sleeps: Sleeps
) -> None:
    client = make_client(timeout=(1.0, 0.5))
    hub.latency = 2.0
    with pytest.raises(NetworkError) as info:  # waiting out the 2 s answer would succeed
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value) == (
        f"{hub.url} did not answer in time (0.5 s) after the request was sent, so the image may "
        "have been made and billed; it was not resent, and a rerun asks again (a slow model may "
        "need a longer read timeout: see OXEN_MAGIC_READ_TIMEOUT)."
    )
    assert info.value.maybe_billed
    assert sleeps == []
    assert hub.peak_in_flight == 1
    # counted as it arrived (its slow answer is still on the way); the call is over, so a
    # resend would have arrived already
    assert hub.arrived_calls() == 1  # a POST that may have been billed is never resent
    assert_clean(info.value, client)


class _SlowFirstGet(BaseHTTPRequestHandler):
    """Answers the model list, but the first request only after the client has given up."""

    seen: ClassVar[list[str]] = []
    given_up: ClassVar[threading.Event] = threading.Event()  # set by the test once the call is over

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if len(type(self).seen) == 1:
            type(self).given_up.wait(10)
        body = json.dumps({"object": "list", "data": []}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client hung up after its read timeout

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_get_that_times_out_is_retried(make_client: Callable[..., OxenClient], sleeps: Sleeps) -> None:
    # Reading the model list or a result file costs nothing, so a dropped answer is fetched again
    # (unlike a POST to /images/generate, which may have been billed: see the read-timeout test).
    _SlowFirstGet.seen = []
    _SlowFirstGet.given_up = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFirstGet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = make_client(host=f"http://127.0.0.1:{server.server_address[1]}", timeout=(1.0, 0.3))
        assert client.models() == []
        assert _SlowFirstGet.seen == ["/api/ai/models", "/api/ai/models"]
        assert len(sleeps) == 1
    finally:
        _SlowFirstGet.given_up.set()  # the first answer goes out to a client long gone
        server.shutdown()
        server.server_close()


class _DropsFirstDownload(BaseHTTPRequestHandler):
    """Serves a PNG, but the first time hangs up halfway through the body."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = png_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if len(type(self).seen) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_download_dropped_mid_body_is_fetched_again(
    make_client: Callable[..., OxenClient], sleeps: Sleeps
) -> None:
    _DropsFirstDownload.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DropsFirstDownload)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = make_client(host=f"http://127.0.0.1:{server.server_address[1]}")
        assert client.download("/result.png") == png_bytes()
        assert _DropsFirstDownload.seen == ["/result.png", "/result.png"]
        assert len(sleeps) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_api_never_downloads_over_plain_http() -> None:
    client = OxenClient("https://api.example.invalid", api_key=KEY)
    with pytest.raises(BadResponseError) as info:  # refused before any connection is tried
        client.download("http://cdn.example.invalid/result.png")
    assert str(info.value) == (
        "The https API returned a result URL pointing to plain http (http://cdn.example.invalid), "
        "which was refused rather than fetched unencrypted."
    )
    assert_clean(info.value, client)
    with pytest.raises(NetworkError):  # loopback stays allowed (a local hub behind a proxy)
        client.download(f"http://127.0.0.1:{closed_port()}/result.png")
    client.close()


def test_a_long_retry_after_on_503_says_how_long(hub: TestHub, client: OxenClient, sleeps: Sleeps) -> None:
    hub.fail_next(1, 503, retry_after=7200)
    with pytest.raises(ServerError) as info:
        client.generate(MODEL, PROMPT, seed=1)
    assert str(info.value).endswith("after 1 try; the API asked to wait 120 min, so try again then.")
    assert sleeps == [] and len(posts(hub)) == 1


def test_a_huge_or_odd_retry_after_is_not_a_traceback(
    hub: TestHub, client: OxenClient, sleeps: Sleeps
) -> None:
    for value in ("1e400", "nan", "-5", "Wed, 99 Foo 1999 99:99:99 GMT"):
        hub.reset()
        hub.fail_next(1, 429, retry_after=value)
        try:
            client.generate(MODEL, PROMPT, seed=1)
        except OxenError as exc:
            assert "Traceback" not in str(exc)


class _Gzipped(BaseHTTPRequestHandler):
    """The model list gzip-encoded (as a CDN may send it); `/bomb` is 64 MB of zeros in 64 kB."""

    def do_GET(self) -> None:
        if self.path == "/bomb":
            body = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=1)
        else:
            body = gzip.compress(json.dumps({"object": "list", "data": []}).encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_gzip_answers_are_decoded_and_their_decoded_size_capped(
    make_client: Callable[..., OxenClient],
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gzipped)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = make_client(host=f"http://127.0.0.1:{server.server_address[1]}", max_body_bytes=1024 * 1024)
        assert client.models() == []
        with pytest.raises(BadResponseError) as info:
            client.download("/bomb")
        assert "larger than the 1 MB limit" in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
