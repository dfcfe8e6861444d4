"""The client's own logic over a fake transport: what it sends where, and what answers mean.

No sockets: `FakeTransport` (tests/fakes.py) answers from a script and records each call with its
key. Over real HTTP the same is in test_client/test_secrets/test_fidelity; these pin what the
client itself decides (payloads, routes, what is never resent, where the key goes, what is kept).
"""

from __future__ import annotations

import base64
import email.utils
import threading
import time

import pytest
from fakes import FakeTransport, image_answer, json_answer, png

from oxen_magic.core.errors import (
    AuthError,
    BadResponseError,
    MissingKeyError,
    NetworkError,
    NotFoundError,
    OxenError,
    ResultExpiredError,
    ServerError,
    TooLargeError,
    too_large,
)
from oxen_magic.network.client import OxenClient
from oxen_magic.network.imageroutes import EDIT_PATH, GENERATE_PATH
from oxen_magic.network.keys import KeyStore
from oxen_magic.network.modelreads import ModelDetails
from oxen_magic.network.retries import backoff_delay, retry_after, retryable
from oxen_magic.network.transport import MAX_JSON

BASE = "https://api.test.invalid"
KEY = "sk-unit-KEY-5f3a9c1e7b"
MODEL = "flux-kontext-dev"
PICTURE = "data:image/png;base64," + base64.b64encode(png()).decode()


@pytest.fixture(autouse=True)
def _no_key_around(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """Only the keys a test gives: none in the environment or an Oxen CLI config."""
    monkeypatch.delenv("OXEN_API_KEY", raising=False)
    monkeypatch.delenv("OXEN_HOST", raising=False)
    monkeypatch.delenv("OXEN_MAGIC_READ_TIMEOUT", raising=False)
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path))


def b64_images(*colors: str, created: object = 1700000000) -> dict[str, object]:
    return {
        "images": [{"b64_json": base64.b64encode(png(color=c)).decode()} for c in colors],
        "created": created,
    }


def client_over(fake: FakeTransport, **kwargs: object) -> OxenClient:
    kwargs.setdefault("api_key", KEY)
    return OxenClient(BASE, transport=fake, **kwargs)  # type: ignore[arg-type]


def model_entry(model_id: str) -> dict[str, object]:
    return {"id": model_id, "capabilities": {"input": ["text"], "output": ["image"]}}


# -- composition ---------------------------------------------------------------------------------


def test_the_client_holds_its_transport_and_closes_it() -> None:
    fake = FakeTransport(max_body_bytes=1234, deadline=42.0)
    client = client_over(fake)
    assert client.transport is fake and not isinstance(client, FakeTransport)
    assert (client.max_body_bytes, client.deadline, client.pool_size) == (1234, 42.0, 16)
    client.close()
    assert fake.closed


def test_http_options_with_a_transport_given_are_refused() -> None:
    with pytest.raises(TypeError, match="max_retries"):
        OxenClient(BASE, KEY, transport=FakeTransport(), max_retries=0)


# -- payload building ------------------------------------------------------------------------------


def test_generate_posts_the_payload_as_given_with_the_key_to_generate() -> None:
    fake = FakeTransport(json_answer(b64_images("red")))
    made = client_over(fake).generate("z-image-turbo", "a red cube", seed=7, aspect_ratio="1:1")
    (call,) = fake.calls
    assert (call.method, call.url, call.key) == ("POST", BASE + GENERATE_PATH, KEY)
    assert call.json_body == {
        "model": "z-image-turbo",
        "prompt": "a red cube",
        "seed": 7,
        "aspect_ratio": "1:1",
    }
    assert call.limit == max(MAX_JSON, fake.max_body_bytes * 4 // 3 + 65536)  # room for b64_json
    assert call.read_timeout is None  # the transport's own read timeout
    assert made.request == call.json_body and made.mime == "image/png" and made.size == (8, 8)
    assert made.created == 1700000000 and made.url is None and made.count == 1


def test_the_payload_is_copied_not_kept() -> None:
    fake = FakeTransport(json_answer(b64_images("red")))
    payload = {"model": "z-image-turbo", "prompt": "p", "seed": 1}
    made = client_over(fake).generate_payload(payload)
    payload["seed"] = 2
    assert made.request["seed"] == 1


def test_a_slow_model_asks_for_a_longer_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTransport(*[json_answer(b64_images("red"))] * 3)
    client = client_over(fake)
    client.generate_payload({"model": "m", "prompt": "p"}, read_timeout=400.0)
    monkeypatch.setenv("OXEN_MAGIC_READ_TIMEOUT", "900")
    client.generate_payload({"model": "m", "prompt": "p"}, read_timeout=400.0)
    monkeypatch.setenv("OXEN_MAGIC_READ_TIMEOUT", "not a number")
    client.generate_payload({"model": "m", "prompt": "p"})
    assert [c.read_timeout for c in fake.calls] == [400.0, 900.0, None]


def test_several_images_in_one_answer_come_as_others() -> None:
    fake = FakeTransport(json_answer(b64_images("red", "green", "blue", created=True)))
    made = client_over(fake).generate("ideogram-v4", "p", num_images=3)
    assert made.count == 3 and made.created is None  # a bool is no timestamp
    assert [g.image.getpixel((0, 0)) for g in (made, *made.others)] == [(255, 0, 0), (0, 128, 0), (0, 0, 255)]


def test_an_image_url_is_downloaded_from_the_api_with_the_key() -> None:
    fake = FakeTransport(json_answer({"images": [{"url": "/files/a.png"}]}), image_answer(png()))
    made = client_over(fake).generate("z-image-turbo", "p")
    assert [(c.method, c.url, c.key, c.what) for c in fake.calls] == [
        ("POST", BASE + GENERATE_PATH, KEY, "answer"),
        ("GET", BASE + "/files/a.png", KEY, "image"),
    ]
    assert made.url == BASE + "/files/a.png" and made.data == png()


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"data": []}, "without an 'images' list"),
        ({"images": []}, "without an 'images' list"),
        ({"images": ["x"]}, "without an 'images' list"),
        ({"images": [{"b64_json": "%%%"}]}, "base64 is invalid"),
        ({"images": [{"name": "x"}]}, "neither a 'url' nor 'b64_json'"),
        ({"images": [{"b64_json": base64.b64encode(b"not an image").decode()}]}, "not an image"),
    ],
)
def test_an_answer_without_a_readable_image_is_one_sentence(body: object, said: str) -> None:
    fake = FakeTransport(json_answer(body))
    with pytest.raises(BadResponseError, match=said):
        client_over(fake).generate("z-image-turbo", "p")


def test_an_inline_image_past_the_cap_is_refused_before_decoding() -> None:
    fake = FakeTransport(json_answer(b64_images("red")), max_body_bytes=16)
    with pytest.raises(TooLargeError) as info:
        client_over(fake).generate("z-image-turbo", "p")
    assert "image" in str(info.value)


def test_an_answer_past_the_transport_cap_is_said_in_the_images_terms() -> None:
    fake = FakeTransport(json_answer(b64_images("red")), max_body_bytes=16)
    fake.on(
        "POST", GENERATE_PATH, lambda call: TooLargeError(f"The answer is larger than {call.limit} bytes.")
    )
    with pytest.raises(TooLargeError) as info:
        client_over(fake).generate("z-image-turbo", "p")
    assert str(info.value) == str(too_large("image", 16))  # the cap, not the JSON's own limit


def test_on_answered_is_called_when_the_api_answers() -> None:
    answered: list[int] = []
    fake = FakeTransport(json_answer({"images": [{"url": "/files/a.png"}]}), NotFoundError("gone", 404))
    with pytest.raises(ResultExpiredError):
        client_over(fake).generate_payload(
            {"model": "m", "prompt": "p"}, on_answered=lambda: answered.append(1)
        )
    assert answered == [1]  # billed at the POST's success, whatever became of the download


# -- the image route and its once-only fallback --------------------------------------------------------


def edit_payload(seed: int = 1) -> dict[str, object]:
    return {"model": MODEL, "prompt": "make it blue", "input_image": PICTURE, "seed": seed}


@pytest.mark.parametrize("status", [404, 405])
def test_an_edit_refused_by_its_route_is_sent_once_to_the_other_and_remembered(status: int) -> None:
    fake = FakeTransport(
        OxenError("no such route", status), json_answer(b64_images("red")), json_answer(b64_images("red"))
    )
    routes: dict[str, str] = {}
    client = client_over(fake, routes=routes)
    client.generate_payload(edit_payload(1), path=EDIT_PATH)
    assert fake.paths() == [EDIT_PATH, GENERATE_PATH] and routes == {MODEL: GENERATE_PATH}
    client.generate_payload(edit_payload(2), path=EDIT_PATH)
    assert fake.paths()[2:] == [GENERATE_PATH]  # remembered: straight to the route that served it


def test_neither_route_knowing_the_model_says_the_first_answer() -> None:
    first = NotFoundError("The edit route does not exist.", 404)
    fake = FakeTransport(first, OxenError("Method not allowed", 405))
    routes: dict[str, str] = {}
    with pytest.raises(NotFoundError) as info:
        client_over(fake, routes=routes).generate_payload(edit_payload(), path=EDIT_PATH)
    assert info.value is first and fake.paths() == [EDIT_PATH, GENERATE_PATH] and routes == {}


def test_the_other_routes_own_failure_is_raised_and_nothing_remembered() -> None:
    fake = FakeTransport(OxenError("no such route", 404), ServerError("The API failed (HTTP 500).", 500))
    routes: dict[str, str] = {}
    with pytest.raises(ServerError):
        client_over(fake, routes=routes).generate_payload(edit_payload(), path=EDIT_PATH)
    assert len(fake.calls) == 2 and routes == {}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (edit_payload(), NotFoundError("Model not found: flux-kontext-dev", 404)),  # about the model
        ({"model": "z-image-turbo", "prompt": "p"}, NotFoundError("Not found", 404)),  # no input image
        (edit_payload(), OxenError("bad request", 400)),  # not about the route
    ],
)
def test_no_fallback_when_the_other_route_cannot_help(payload: dict[str, object], error: OxenError) -> None:
    fake = FakeTransport(error)
    with pytest.raises(OxenError) as info:
        client_over(fake).generate_payload(
            payload, path=EDIT_PATH if "input_image" in payload else GENERATE_PATH
        )
    assert info.value is error and len(fake.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        ServerError("The API's gateway failed (HTTP 504).", 504, maybe_billed=True),
        ServerError("The API's gateway failed (HTTP 503).", 503, maybe_billed=True),
        NetworkError("The connection dropped after the request was sent.", maybe_billed=True),
    ],
)
def test_a_maybe_billed_failure_is_never_resent(error: OxenError) -> None:
    fake = FakeTransport(error)
    with pytest.raises(OxenError) as info:
        client_over(fake).generate_payload(edit_payload(), path=EDIT_PATH)
    assert info.value.maybe_billed and len(fake.calls) == 1


# -- keys: only to the API's own origin -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("/files/a.png", KEY),
        (BASE + "/files/a.png", KEY),
        (BASE + ":443/files/a.png", KEY),  # the default port is the same origin
        ("https://cdn.test.invalid/a.png", None),  # another host
        ("https://api.test.invalid:8443/a.png", None),  # another port
    ],
)
def test_a_download_carries_the_key_only_to_the_apis_origin(url: str, key: str | None) -> None:
    fake = FakeTransport(image_answer(png()))
    assert client_over(fake).download(url) == png()
    assert fake.calls[0].key == key


def test_a_result_url_on_plain_http_is_refused_unfetched() -> None:
    fake = FakeTransport()
    with pytest.raises(BadResponseError, match="plain http"):
        client_over(fake).download("http://cdn.test.invalid/a.png")
    assert fake.calls == []


def test_no_key_over_plain_http_off_loopback_and_none_anywhere_is_said() -> None:
    fake = FakeTransport()
    with pytest.raises(AuthError, match="plain http"):
        OxenClient("http://api.test.invalid", KEY, transport=fake).generate("m", "p")
    with pytest.raises(MissingKeyError, match="No Oxen API key found"):
        OxenClient(BASE, transport=fake).generate("m", "p")
    assert fake.calls == []


def test_a_login_key_comes_from_the_store_the_client_is_given() -> None:
    keys = KeyStore()
    keys.remember(BASE, KEY)
    fake = FakeTransport(json_answer(b64_images("red")))
    client = OxenClient(BASE, transport=fake, keys=keys)
    assert client.has_key and not OxenClient(BASE, transport=FakeTransport()).has_key
    client.generate("m", "p")
    assert fake.calls[0].key == KEY
    assert KEY not in repr(keys) + repr(client) + client.scrub(f"echo {KEY} Bearer {KEY}")


def test_model_reads_go_without_a_key_when_there_is_none_and_say_how_to_give_one() -> None:
    fake = FakeTransport(json_answer({"data": [model_entry("a")]}), AuthError("refused", 401))
    client = OxenClient(BASE, transport=fake)
    assert [m.id for m in client.models()] == ["a"]
    with pytest.raises(AuthError, match=r"without a key \(HTTP 401\); run oxen_magic.login\(\)"):
        client.model("b")
    assert [c.key for c in fake.calls] == [None, None]


# -- model reads and what is remembered ----------------------------------------------------------------


def test_the_list_keeps_image_models_and_skips_malformed_entries() -> None:
    listed = {"data": [model_entry("a"), {"id": ""}, "x", {"id": "t", "capabilities": {"output": ["text"]}}]}
    fake = FakeTransport(json_answer(listed), json_answer(listed))
    client = client_over(fake)
    assert [m.id for m in client.models()] == ["a"]
    assert [m.id for m in client.models(search="flux", developer="bfl")] == ["a"]
    assert [c.url for c in fake.calls] == [
        BASE + "/api/ai/models",
        BASE + "/api/ai/models/search?search=flux&developer_name=bfl",
    ]


def test_model_details_are_kept_per_host_by_the_details_owner() -> None:
    details = ModelDetails()
    one, other = FakeTransport(), FakeTransport()
    for fake in (one, other):
        fake.on("GET", "/api/ai/models/oxen%3Ateam%2Fx", json_answer(model_entry("oxen:team/x")))
    first = client_over(one, details=details)
    assert first.model("oxen:team/x") is client_over(one, details=details).model("oxen:team/x")
    assert len(one.calls) == 1  # a second client of the same owner and host reads nothing
    OxenClient("https://other.test.invalid", KEY, transport=other, details=details).model("oxen:team/x")
    client_over(other).model("oxen:team/x")  # a client of its own remembers nothing
    assert len(other.calls) == 2 and len(details) == 2


def test_a_detail_is_read_again_once_it_is_old() -> None:
    now = [0.0]
    details = ModelDetails(ttl=600.0, clock=lambda: now[0])
    fake = FakeTransport().on("GET", "/api/ai/models/a", json_answer(model_entry("a")))
    client = client_over(fake, details=details)
    client.model("a")
    now[0] = 599.0
    client.model("a")
    now[0] = 601.0
    client.model("a")
    assert len(fake.calls) == 2


def test_models_detailed_returns_failures_in_the_order_asked() -> None:
    fake = FakeTransport()
    fake.on("GET", "/api/ai/models/a", json_answer(model_entry("a")))
    fake.on("GET", "/api/ai/models/b", NotFoundError("Model not found: b", 404))
    fake.on("GET", "/api/ai/models/c", json_answer({"no": "id"}))
    got = client_over(fake).models_detailed(["c", "a", "b", "a"])
    assert list(got) == ["c", "a", "b"]
    assert isinstance(got["c"], BadResponseError) and isinstance(got["b"], NotFoundError)
    assert getattr(got["a"], "id", None) == "a"


def test_a_cancelled_event_reaches_the_transport() -> None:
    seen: list[object] = []
    stop = threading.Event()

    class Watching(FakeTransport):
        def call(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            seen.append(kwargs.get("cancel"))
            return super().call(*args, **kwargs)  # type: ignore[arg-type]

    client_over(Watching(json_answer(b64_images("red")))).generate_payload(
        {"model": "m", "prompt": "p"}, stop
    )
    assert seen == [stop]


# -- the retry policy (pure: what may be resent, after how long) ---------------------------------------


def test_a_post_is_retried_only_after_answers_that_say_it_was_not_taken() -> None:
    assert retryable("GET") == {429, 502, 503, 504}
    assert retryable("POST") == {429, 503}  # a 502/504 after a POST may have been billed


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("-3", 0.0), ("nan", None), ("", None), (None, None), ("next week", None)],
)
def test_retry_after_reads_seconds_and_refuses_nonsense(value: str | None, seconds: float | None) -> None:
    assert retry_after(value) == seconds


def test_retry_after_reads_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (retry_after(later) or 0) <= 121


def test_backoff_doubles_with_jitter_within_bounds() -> None:
    for attempt in (1, 2, 3):
        delay = backoff_delay(0.5, attempt)
        assert 0.25 * 2 ** (attempt - 1) <= delay <= 0.75 * 2 ** (attempt - 1)
