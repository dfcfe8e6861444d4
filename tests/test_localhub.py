"""The local hub, tested the way the client uses it: real HTTP over loopback with `requests`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from PIL import Image
from support import FakeClock

from oxen_magic.localhub import FINE_TUNED_ID, LocalHub, default_catalogue, malformed_catalogue
from oxen_magic.localhub.placeholder import input_sha_of
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue

KEY = "local-demo-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GENERATE = "/api/ai/images/generate"
PROMPT = "a lighthouse at dusk, watercolour"


@pytest.fixture
def hub(make_hub: Callable[..., LocalHub]) -> LocalHub:
    return make_hub(image_size=128)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def generate(
    hub: LocalHub, session: requests.Session, headers: dict[str, str] | None = None, **body: Any
) -> requests.Response:
    payload: dict[str, Any] = {"model": "z-image-turbo", "prompt": PROMPT, "seed": 1}
    payload.update(body)
    payload = {k: v for k, v in payload.items() if v is not None}
    return session.post(hub.url + GENERATE, json=payload, headers=AUTH if headers is None else headers)


def image_bytes(hub: LocalHub, session: requests.Session, response: requests.Response) -> bytes:
    assert response.status_code == 200, response.text
    image = response.json()["images"][0]
    if "b64_json" in image:
        return base64.b64decode(image["b64_json"], validate=True)
    got = session.get(image["url"], headers=AUTH)
    assert got.status_code == 200
    return got.content


# -- models ---------------------------------------------------------------------------------


def test_models_list_has_the_bundled_catalogue_priced(hub: LocalHub, session: requests.Session) -> None:
    r = session.get(hub.url + "/api/ai/models", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    listing = r.json()
    assert listing["object"] == "list"
    models = {m["id"]: m for m in listing["data"]}
    bundled = {m["id"] for m in bundled_catalogue()}
    assert len(bundled) == 34 and bundled <= set(models)
    assert FINE_TUNED_ID in models
    for obj in listing["data"]:
        assert obj["object"] == "model"
        assert obj["owned_by"] and obj["model_type"] and obj["description"]
    infos = [ModelInfo.from_api(m) for m in listing["data"]]
    image_models = [i for i in infos if i.makes_images]
    assert len(image_models) == 35
    assert all(i.estimate or i.cost_per_second for i in image_models)  # the fine-tuned one: per second
    assert [i for i in infos if not i.makes_images], "non-image models make filtering testable"
    chat = next(m for m in listing["data"] if m["endpoint"] == "/chat/completions")
    assert chat["capabilities"]["output"] == ["text"] and not chat.get("request_schema")
    assert models["flux-2-dev"]["pricing"] == {"method": "per_image", "cost_per_image": 0.025}
    assert models["black-forest-labs-flux-2-klein-4b"]["pricing"]["cost_per_image"] == 0.003
    assert models["z-image-turbo"]["pricing"]["cost_per_image"] == 0.002
    # the bundled data is copied, never mutated
    assert "pricing" not in bundled_catalogue()[0]


def test_model_detail_unwrapped(hub: LocalHub, session: requests.Session) -> None:
    r = session.get(hub.url + "/api/ai/models/flux-2-dev", headers=AUTH)
    assert r.status_code == 200
    obj = r.json()
    assert obj["id"] == "flux-2-dev"
    assert obj["request_schema"]["properties"]["output_format"]["default"] == "webp"


@pytest.mark.parametrize("encode", [True, False], ids=["percent-encoded", "raw"])
def test_fine_tuned_id_with_colon_and_slash(hub: LocalHub, session: requests.Session, encode: bool) -> None:
    path = quote(FINE_TUNED_ID, safe="") if encode else FINE_TUNED_ID
    if encode:
        assert "%2F" in path and "%3A" in path
    r = session.get(f"{hub.url}/api/ai/models/{path}", headers=AUTH)
    assert r.status_code == 200
    obj = r.json()
    assert obj["id"] == FINE_TUNED_ID
    assert obj["request_schema"]["properties"]["aspect_ratio"]["default"] == "16:9"


def test_unknown_model_detail_is_404(hub: LocalHub, session: requests.Session) -> None:
    r = session.get(hub.url + "/api/ai/models/no-such-model", headers=AUTH)
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "Model not found: no-such-model"}}


def test_search(hub: LocalHub, session: requests.Session) -> None:
    r = session.get(hub.url + "/api/ai/models/search", params={"search": "FLUX.2"}, headers=AUTH)
    assert r.status_code == 200
    found = {m["id"] for m in r.json()["data"]}
    assert r.json()["object"] == "list"
    assert {"flux-2-dev", "flux-2-pro", "black-forest-labs-flux-2-klein-4b"} <= found
    assert "flux-1-dev" not in found
    by_id = session.get(
        hub.url + "/api/ai/models/search", params={"search": "Qwen-Image-2"}, headers=AUTH
    ).json()
    assert {m["id"] for m in by_id["data"]} == {"qwen-image-2", "qwen-image-2512"}
    none = session.get(hub.url + "/api/ai/models/search", params={"search": "zzz"}, headers=AUTH).json()
    assert none == {"object": "list", "data": []}


def test_custom_catalogue(make_hub: Callable[..., LocalHub]) -> None:
    only = [{"id": "tiny", "capabilities": {"output": ["image"]}, "request_schema": None}]
    hub = make_hub(catalogue=only, image_size=64)
    listing = requests.get(hub.url + "/api/ai/models", headers=AUTH).json()["data"]
    assert [m["id"] for m in listing] == ["tiny"]
    r = requests.post(hub.url + GENERATE, json={"model": "tiny", "prompt": "x"}, headers=AUTH)
    assert r.status_code == 200
    assert Image.open(io.BytesIO(image_bytes(hub, requests.Session(), r))).size == (64, 64)


def test_unknown_route_is_404_json(hub: LocalHub, session: requests.Session) -> None:
    for r in (
        session.get(hub.url + "/api/nothing/here"),
        session.get(hub.url + GENERATE),
        session.delete(hub.url + "/api/ai/models"),
    ):
        assert r.status_code == 404
        assert r.json()["error"]["message"].startswith("Not found: /api/")


# -- generate -------------------------------------------------------------------------------


def test_generate_url(hub: LocalHub, session: requests.Session) -> None:
    before = int(time.time())
    r = generate(hub, session, target_namespace="my-team")
    assert r.status_code == 200
    answer = r.json()
    assert answer["model"] == "z-image-turbo"
    assert isinstance(answer["created"], int) and answer["created"] >= before
    (image,) = answer["images"]
    url = image["url"]
    assert url.startswith(hub.url + "/api/repos/my-team/files/results/")
    assert url.endswith(".webp")  # z-image-turbo's schema default
    got = session.get(url, headers=AUTH)
    assert got.headers["Content-Type"] == "image/webp"
    assert int(got.headers["Content-Length"]) == len(got.content)
    assert Image.open(io.BytesIO(got.content)).format == "WEBP"
    plain = generate(hub, session).json()["images"][0]["url"]
    assert "/api/repos/local/files/results/" in plain


def test_generate_b64_json(hub: LocalHub, session: requests.Session) -> None:
    r = generate(hub, session, response_format="b64_json", output_format="png")
    (image,) = r.json()["images"]
    assert set(image) == {"b64_json"}
    data = base64.b64decode(image["b64_json"], validate=True)
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.size == (128, 128)


@pytest.mark.parametrize(
    ("model", "params", "fmt", "size"),
    [
        ("flux-2-dev", {}, "WEBP", (128, 72)),  # schema defaults: 16:9, webp
        ("flux-2-dev", {"aspect_ratio": "9:16", "output_format": "jpg"}, "JPEG", (72, 128)),
        ("flux-2-dev", {"aspect_ratio": "match_input_image"}, "WEBP", (128, 72)),
        ("z-image-turbo", {"output_format": "png"}, "PNG", (128, 128)),  # no aspect_ratio: 1:1
        ("krea-v2-large-text-to-image", {"aspect_ratio": "2.35:1"}, "PNG", (128, 56)),
        ("xai-grok-imagine-image", {"aspect_ratio": "19.5:9", "output_format": "jpeg"}, "JPEG", (128, 56)),
        ("google-nano-banana-pro", {"aspect_ratio": "auto"}, "PNG", (128, 72)),
        ("gpt-image-1-5", {"size": "portrait", "output_format": "webp"}, "WEBP", (96, 128)),
        ("gpt-image-1-5", {"size": "landscape"}, "PNG", (128, 96)),
        ("bytedance-seedream-4", {"size": "1K"}, "PNG", (128, 128)),
        ("qwen-image", {"aspect_ratio": "4:3"}, "JPEG", (128, 96)),  # schema default jpg
        (FINE_TUNED_ID, {"aspect_ratio": "3:2"}, "WEBP", (128, 88)),
    ],
)
def test_formats_and_aspect_ratios(
    hub: LocalHub,
    session: requests.Session,
    model: str,
    params: dict[str, Any],
    fmt: str,
    size: tuple[int, int],
) -> None:
    body = (
        {"seed": None} if model in {"google-nano-banana-pro", "gpt-image-1-5", "bytedance-seedream-4"} else {}
    )
    r = generate(hub, session, model=model, **{**body, **params})
    assert r.status_code == 200, r.text
    img = Image.open(io.BytesIO(image_bytes(hub, session, r)))
    img.load()
    assert img.format == fmt
    assert img.size == size
    assert img.width % 8 == 0 and img.height % 8 == 0


def test_full_size_png_weighs_like_a_real_image(session: requests.Session) -> None:
    with LocalHub() as hub:
        r = generate(hub, session, output_format="png", aspect_ratio=None)
        data = image_bytes(hub, session, r)
    img = Image.open(io.BytesIO(data))
    assert img.size == (1024, 1024)
    assert 500_000 < len(data) < 3_000_000


def test_image_size_is_settable_at_runtime(hub: LocalHub, session: requests.Session) -> None:
    hub.image_size = 64
    r = generate(hub, session, model="flux-2-dev", aspect_ratio="16:9")
    assert Image.open(io.BytesIO(image_bytes(hub, session, r))).size == (64, 40)


def test_same_seed_same_bytes_different_seed_different(session: requests.Session) -> None:
    with LocalHub(image_size=96) as first, LocalHub(image_size=96) as second:
        for fmt in ("png", "jpg", "webp"):
            a = image_bytes(first, session, generate(first, session, seed=7, output_format=fmt))
            b = image_bytes(second, session, generate(second, session, seed=7, output_format=fmt))
            again = image_bytes(first, session, generate(first, session, seed=7, output_format=fmt))
            other = image_bytes(first, session, generate(first, session, seed=8, output_format=fmt))
            assert a == b == again
            assert a != other
        prompt = image_bytes(first, session, generate(first, session, seed=7, prompt="other"))
        assert prompt != image_bytes(first, session, generate(first, session, seed=7))


def test_no_seed_gives_a_random_image(hub: LocalHub, session: requests.Session) -> None:
    a = image_bytes(hub, session, generate(hub, session, seed=None))
    b = image_bytes(hub, session, generate(hub, session, seed=None))
    assert a != b


def test_seed_ignored_by_a_model_that_takes_none(hub: LocalHub, session: requests.Session) -> None:
    a = image_bytes(hub, session, generate(hub, session, model="nano-banana", seed=5))
    b = image_bytes(hub, session, generate(hub, session, model="nano-banana", seed=5))
    assert a != b


# -- errors ---------------------------------------------------------------------------------

UNAUTHENTICATED = {
    "error": {"type": "unauthenticated", "title": "Unauthenticated"},
    "status": "error",
    "status_message": "unauthenticated",
}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Bearer "}],
    ids=["missing", "wrong", "no-scheme", "empty"],
)
def test_generate_needs_the_bearer(hub: LocalHub, session: requests.Session, headers: dict[str, str]) -> None:
    r = generate(hub, session, headers=headers)
    assert r.status_code == 401
    assert r.json() == UNAUTHENTICATED


def test_any_key_when_api_key_is_none(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(api_key=None, image_size=64)
    assert generate(hub, session, headers={"Authorization": "bearer whatever"}).status_code == 200
    assert generate(hub, session, headers={}).status_code == 401


def test_file_download_needs_the_bearer(hub: LocalHub, session: requests.Session) -> None:
    hub.require_auth_for_files = True  # the strict reading (the default follows the docs: none)
    url = generate(hub, session).json()["images"][0]["url"]
    r = session.get(url)
    assert r.status_code == 401 and r.json() == UNAUTHENTICATED
    assert session.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert session.get(url, headers=AUTH).status_code == 200


def test_public_files(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=64, require_auth_for_files=False)
    url = generate(hub, session).json()["images"][0]["url"]
    assert session.get(url).status_code == 200


@pytest.mark.parametrize("prompt", ["", "   \n\t", None])
def test_empty_prompt(hub: LocalHub, session: requests.Session, prompt: str | None) -> None:
    payload = {"model": "flux-2-dev"} if prompt is None else {"model": "flux-2-dev", "prompt": prompt}
    r = session.post(hub.url + GENERATE, json=payload, headers=AUTH)
    assert r.status_code == 400
    assert r.json() == {
        "error": {"type": "invalid_params", "title": "Prompt cannot be empty"},
        "status": "error",
        "status_message": "invalid_params",
    }


def test_unknown_model_generate_is_404(hub: LocalHub, session: requests.Session) -> None:
    r = generate(hub, session, model="bad-model-name")
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "Model not found: bad-model-name"}}


def test_body_not_json(hub: LocalHub, session: requests.Session) -> None:
    r = session.post(hub.url + GENERATE, data=b"prompt=hello", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_params"
    r = session.post(hub.url + GENERATE, json=["not", "an", "object"], headers=AUTH)
    assert r.status_code == 400


def test_bad_response_format(hub: LocalHub, session: requests.Session) -> None:
    r = generate(hub, session, response_format="png")
    assert r.status_code == 400
    assert "response_format" in r.json()["error"]["title"]


def test_text_model_cannot_generate_images(hub: LocalHub, session: requests.Session) -> None:
    r = generate(hub, session, model="gpt-oss-120b")
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_params"


@pytest.mark.parametrize(
    ("model", "params", "param"),
    [
        ("flux-2-dev", {"aspect_ratio": "5:7"}, "aspect_ratio"),
        ("flux-2-dev", {"num_inference_steps": 0}, "num_inference_steps"),
        ("flux-2-dev", {"num_inference_steps": 51}, "num_inference_steps"),
        ("flux-2-dev", {"num_inference_steps": 2.5}, "num_inference_steps"),
        ("flux-2-dev", {"num_inference_steps": "30"}, "num_inference_steps"),
        ("flux-2-dev", {"guidance": 10.5}, "guidance"),
        ("flux-2-dev", {"guidance": True}, "guidance"),
        ("flux-2-dev", {"output_format": "gif"}, "output_format"),
        ("flux-2-dev", {"seed": "one"}, "seed"),
        ("flux-kontext-dev", {"num_inference_steps": 3}, "num_inference_steps"),
        ("qwen-image-2", {"seed": -1}, "seed"),
        ("gpt-image-1-5", {"size": "huge"}, "size"),
        ("z-image-turbo", {"output_format": "tiff"}, "output_format"),
    ],
)
def test_schema_validation(
    hub: LocalHub, session: requests.Session, model: str, params: dict[str, Any], param: str
) -> None:
    r = generate(hub, session, model=model, **params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"]["type"] == "invalid_params"
    assert body["status"] == "error" and body["status_message"] == "invalid_params"
    assert param in body["error"]["title"]


def test_valid_edges_pass(hub: LocalHub, session: requests.Session) -> None:
    ok = generate(hub, session, model="flux-2-dev", num_inference_steps=50, guidance=0, output_format="png")
    assert ok.status_code == 200
    assert generate(hub, session, model="qwen-image-2", seed=2147483647).status_code == 200
    assert generate(hub, session, unknown_extra="ignored").status_code == 200


# -- failure injection ----------------------------------------------------------------------


def test_fail_next_429_with_retry_after(hub: LocalHub, session: requests.Session) -> None:
    hub.fail_next(2, 429, retry_after=3)
    for _ in range(2):
        r = generate(hub, session)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "3"
        assert r.json()["error"] == {"type": "rate_limited", "title": "Rate limit exceeded"}
    assert generate(hub, session).status_code == 200
    hub.fail_next(1, 429, retry_after=1.5)
    assert generate(hub, session).headers["Retry-After"] == "1.5"
    hub.fail_next(1, 429)
    assert "Retry-After" not in generate(hub, session).headers


@pytest.mark.parametrize("status", [502, 503, 504])
def test_fail_next_5xx_is_an_html_page(hub: LocalHub, session: requests.Session, status: int) -> None:
    hub.fail_next(1, status, gateway=True if status == 503 else None)  # a plain 503 is the API's JSON
    r = generate(hub, session)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html>" in r.text
    with pytest.raises(ValueError):
        r.json()
    assert generate(hub, session).status_code == 200
    assert [c.status for c in hub.generate_calls()] == [status, 200]


def test_fail_next_comes_before_auth(hub: LocalHub, session: requests.Session) -> None:
    hub.fail_next(1, 503)
    assert generate(hub, session, headers={}).status_code == 503


def test_fail_rate_is_deterministic(session: requests.Session) -> None:
    def statuses(seed: int) -> list[int]:
        with LocalHub(image_size=64, fail_rate=0.5, fail_seed=seed) as hub:
            return [generate(hub, session).status_code for _ in range(12)]

    first = statuses(3)
    assert first == statuses(3)
    assert set(first) == {200, 503}


def _decodes(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).load()
    except Exception:
        return False
    return True


def test_garbage_kind_is_checked(hub: LocalHub) -> None:
    with pytest.raises(ValueError):
        hub.garbage = "nonsense"
    assert hub.garbage is None


def test_garbage_html(hub: LocalHub, session: requests.Session) -> None:
    hub.garbage = "html"
    r = generate(hub, session)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    hub.garbage = None
    assert generate(hub, session).json()["images"]


def test_garbage_non_json(hub: LocalHub, session: requests.Session) -> None:
    hub.garbage = "non_json"
    r = generate(hub, session)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.text)


def test_garbage_no_images(hub: LocalHub, session: requests.Session) -> None:
    hub.garbage = "no_images"
    r = generate(hub, session)
    assert r.status_code == 200 and "images" not in r.json()


def test_garbage_bad_base64(hub: LocalHub, session: requests.Session) -> None:
    hub.garbage = "bad_base64"
    r = generate(hub, session, response_format="b64_json")
    with pytest.raises(ValueError):
        base64.b64decode(r.json()["images"][0]["b64_json"], validate=True)


@pytest.mark.parametrize("kind", ["not_image", "truncated"])
@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_garbage_undecodable_bytes(
    hub: LocalHub, session: requests.Session, kind: str, response_format: str
) -> None:
    hub.garbage = kind
    r = generate(hub, session, response_format=response_format)
    data = image_bytes(hub, session, r)
    assert data and not _decodes(data)
    if kind == "truncated":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    hub.garbage = None
    assert _decodes(image_bytes(hub, session, generate(hub, session, response_format=response_format)))


def test_url_ttl(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    clock = FakeClock()
    hub = make_hub(image_size=64, url_ttl=0.3, clock=clock)
    url = generate(hub, session).json()["images"][0]["url"]
    clock.advance(0.3)
    assert session.get(url, headers=AUTH).status_code == 200  # alive for the whole ttl
    clock.advance(0.15)
    r = session.get(url, headers=AUTH)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "resource_not_found"


def test_expire_urls(hub: LocalHub, session: requests.Session) -> None:
    old = [generate(hub, session, seed=s).json()["images"][0]["url"] for s in (1, 2)]
    hub.expire_urls()
    new = generate(hub, session).json()["images"][0]["url"]
    assert [session.get(u, headers=AUTH).status_code for u in old] == [404, 404]
    assert session.get(new, headers=AUTH).status_code == 200
    assert session.get(hub.url + "/api/repos/local/files/results/nope.png", headers=AUTH).status_code == 404


def test_result_ttl_is_the_url_lifetime(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=32, result_ttl=-1.0)  # every file stale at once
    assert hub.url_ttl == hub.result_ttl == -1.0
    url = generate(hub, session).json()["images"][0]["url"]
    assert session.get(url, headers=AUTH).status_code == 404
    assert hub.results_kept == (0, 0)  # expired files are dropped, not only hidden
    hub.result_ttl = 300.0
    assert session.get(generate(hub, session).json()["images"][0]["url"], headers=AUTH).status_code == 200


def test_max_results_evicts_the_oldest(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=32, max_results=2)
    urls = [generate(hub, session, seed=s).json()["images"][0]["url"] for s in (1, 2, 3)]
    assert [session.get(u, headers=AUTH).status_code for u in urls] == [404, 200, 200]
    assert hub.results_kept[0] == 2
    r = edit(hub, session, input_image=urls[0])  # an evicted result cannot be an input either
    assert r.status_code == 400 and "403 Client Error: Forbidden" in error_title(r)


def test_max_result_bytes_evicts_the_oldest(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=128, max_result_bytes=1)  # always keeps the newest one
    first = generate(hub, session, output_format="png", seed=1).json()["images"][0]["url"]
    second = generate(hub, session, output_format="png", seed=2).json()["images"][0]["url"]
    assert session.get(first, headers=AUTH).status_code == 404
    assert session.get(second, headers=AUTH).status_code == 200
    files, size = hub.results_kept
    assert files == 1 and 0 < size < 200_000
    hub.max_result_bytes = None
    generate(hub, session, seed=3)
    assert hub.results_kept[0] == 2


def test_storage_is_bounded_by_default() -> None:
    hub = LocalHub()
    assert hub.max_results is not None and hub.max_result_bytes is not None
    assert hub.max_result_bytes <= 256 * 1024 * 1024 and hub.result_ttl <= 3600


# -- concurrency, connections, records ------------------------------------------------------


def test_concurrent_calls_do_not_block_each_other(make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=64, latency=0.3)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def call(seed: int) -> None:
        with requests.Session() as s:
            barrier.wait()
            statuses.append(generate(hub, s, seed=seed).status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert statuses == [200] * 8
    assert hub.peak_in_flight == 8
    assert len(hub.generate_calls()) == 8
    hub.reset()
    assert hub.peak_in_flight == 0


def test_keep_alive_on_one_connection(hub: LocalHub) -> None:
    parts = urlsplit(hub.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/api/ai/models/flux-2-dev", headers=AUTH)
            r = conn.getresponse()
            assert r.status == 200 and r.version == 11
            assert json.loads(r.read())["id"] == "flux-2-dev"
        body = json.dumps({"model": "z-image-turbo", "prompt": "x", "seed": 1})
        headers = {**AUTH, "Content-Type": "application/json"}
        for _ in range(2):
            conn.request("POST", GENERATE, body=body, headers=headers)
            r = conn.getresponse()
            assert r.status == 200
            json.loads(r.read())
        conn.request("GET", "/missing")
        r = conn.getresponse()
        assert r.status == 404
        r.read()
    finally:
        conn.close()


def test_records(hub: LocalHub, session: requests.Session) -> None:
    session.get(hub.url + "/api/ai/models?x=1")
    generate(hub, session, headers={"Authorization": "Bearer wrong"})
    generate(hub, session, seed=9)
    assert [(r.method, r.path, r.status) for r in hub.requests] == [
        ("GET", "/api/ai/models?x=1", 200 if hub.anonymous_reads else 401),
        ("POST", GENERATE, 401),
        ("POST", GENERATE, 200),
    ]
    calls = hub.generate_calls()
    assert len(calls) == 2
    assert calls[0].authorization == "Bearer wrong"
    assert calls[1].authorization == f"Bearer {KEY}"
    assert calls[1].body == {"model": "z-image-turbo", "prompt": PROMPT, "seed": 9}
    assert calls[1].headers.get("Content-Type") == "application/json"
    assert hub.requests[0].body is None and hub.requests[0].authorization is None
    hub.fail_next(3)
    hub.garbage = "html"
    hub.reset()
    assert hub.requests == [] and hub.garbage is None
    assert generate(hub, session).status_code == 200


def test_latency_is_settable(hub: LocalHub, session: requests.Session) -> None:
    hub.latency = 0.2
    started = time.monotonic()
    assert generate(hub, session).status_code == 200
    assert time.monotonic() - started >= 0.2  # a lower bound: load can only make it longer


def test_stop_is_prompt_and_idempotent(session: requests.Session) -> None:
    hub = LocalHub(image_size=64).start()
    assert hub.start() is hub
    url = hub.url
    assert generate(hub, session).status_code == 200  # leaves a kept-alive connection open
    started = time.monotonic()
    hub.stop()
    hub.stop()
    # promptness is the behaviour under test (a kept-alive connection must not hold stop() up
    # for its 120 s idle timeout): a bound 60 times what it takes
    assert time.monotonic() - started < 2
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/api/ai/models", timeout=2)
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/api/ai/models", timeout=2)


def test_url_before_start() -> None:
    with pytest.raises(RuntimeError):
        _ = LocalHub().url


# -- model reads: auth and schemas (knobs for the docs' two readings) ------------------------

MODEL_READS = ["/api/ai/models", "/api/ai/models/flux-2-dev", "/api/ai/models/search?search=flux"]


@pytest.mark.parametrize("path", MODEL_READS)
def test_model_reads_can_require_the_bearer(
    session: requests.Session, path: str, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=64, anonymous_reads=False)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = session.get(hub.url + path, headers=headers)
        assert r.status_code == 401
        assert r.json() == UNAUTHENTICATED
    assert session.get(hub.url + path, headers=AUTH).status_code == 200
    hub = make_hub(image_size=64, anonymous_reads=True)
    assert session.get(hub.url + path).status_code == 200


def test_list_without_schemas_detail_with(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=64, list_schemas=False)
    listing = session.get(hub.url + "/api/ai/models", headers=AUTH).json()["data"]
    assert listing and all(m["request_schema"] is None for m in listing)
    assert {m["id"] for m in listing} >= {"flux-2-dev", FINE_TUNED_ID}
    found = session.get(hub.url + "/api/ai/models/search?search=flux-2-dev", headers=AUTH).json()
    assert all(m["request_schema"] is None for m in found["data"])
    detail = session.get(hub.url + "/api/ai/models/flux-2-dev", headers=AUTH).json()
    assert detail["request_schema"]["properties"]["num_inference_steps"]["maximum"] == 50
    assert hub.models[0]["request_schema"] is not None  # the served catalogue is untouched
    hub = make_hub(image_size=64, list_schemas=True)
    listing = session.get(hub.url + "/api/ai/models", headers=AUTH).json()["data"]
    assert next(m for m in listing if m["id"] == "flux-2-dev")["request_schema"]


def test_json_request_schema_naming(session: requests.Session) -> None:
    with LocalHub(image_size=32, schema_field="json_request_schema", list_schemas=True) as hub:
        detail = session.get(hub.url + "/api/ai/models/flux-2-dev", headers=AUTH).json()
        assert "request_schema" not in detail
        assert detail["json_request_schema"]["properties"]["output_format"]["default"] == "webp"
        listing = session.get(hub.url + "/api/ai/models", headers=AUTH).json()["data"]
        assert all("request_schema" not in m for m in listing)
        hub.list_schemas = False
        listing = session.get(hub.url + "/api/ai/models", headers=AUTH).json()["data"]
        assert all(m["json_request_schema"] is None for m in listing)
        assert generate(hub, session, model="flux-2-dev", num_inference_steps=99).status_code == 400
    with pytest.raises(ValueError):
        LocalHub(schema_field="schema")


def test_private_model_generates_but_cannot_be_read(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=32, private_models=[FINE_TUNED_ID])
    path = quote(FINE_TUNED_ID, safe="")
    r = session.get(f"{hub.url}/api/ai/models/{path}", headers=AUTH)
    assert r.status_code == 404 and r.json() == {"error": {"message": f"Model not found: {FINE_TUNED_ID}"}}
    listing = session.get(hub.url + "/api/ai/models", headers=AUTH).json()["data"]
    assert FINE_TUNED_ID not in {m["id"] for m in listing} and "flux-1-dev" in {m["id"] for m in listing}
    found = session.get(hub.url + "/api/ai/models/search?search=cyberpunk", headers=AUTH).json()
    assert found["data"] == []
    assert generate(hub, session, model=FINE_TUNED_ID).status_code == 200


def test_bare_edit_route_knob(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    body = {"model": "flux-kontext-dev", "prompt": "p", "input_image": data_uri(solid_png((9, 9, 9)))}
    hub = make_hub(image_size=32)
    assert session.post(hub.url + "/api/images/edit", json=body, headers=AUTH).status_code == 404
    hub = make_hub(image_size=32, bare_edit_route=True)
    r = session.post(hub.url + "/api/images/edit", json=body, headers=AUTH)
    assert r.status_code == 200
    (call,) = hub.edit_calls()
    assert call.path == "/api/images/edit"


def test_result_origin_serves_files_under_another_origin(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=32, require_auth_for_files=False)
    hub.result_origin = f"http://localhost:{hub.port}/"
    url = generate(hub, session, output_format="png").json()["images"][0]["url"]
    assert url.startswith(f"http://localhost:{hub.port}/api/repos/local/files/results/")
    got = session.get(url)  # no key: another origin must never get it
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert hub.requests[-1].headers.get("Host") == f"localhost:{hub.port}"
    r = edit(hub, session, input_image=url)  # still one of the hub's own results
    assert input_sha_of(image_bytes(hub, session, r)) == sha(got.content)


# -- image inputs: the edit route, required fields, fetching ---------------------------------

EDIT = "/api/ai/images/edit"


def solid_png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edit(hub: LocalHub, session: requests.Session, path: str = EDIT, **body: Any) -> requests.Response:
    payload: dict[str, Any] = {"model": "flux-kontext-dev", "prompt": "make it night", "seed": 3}
    payload.update(body)
    payload = {k: v for k, v in payload.items() if v is not None}
    return session.post(hub.url + path, json=payload, headers=AUTH)


def error_title(r: requests.Response) -> str:
    body = r.json()
    assert body["status"] == "error" and body["status_message"] == body["error"]["type"]
    return str(body["error"]["title"])


def test_edit_from_a_data_uri_is_derived_and_traceable(hub: LocalHub, session: requests.Session) -> None:
    red = solid_png((220, 20, 20))
    r = edit(hub, session, input_image=data_uri(red), output_format="png")
    data = image_bytes(hub, session, r)
    assert input_sha_of(data) == sha(red)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.info["oxen-input-sha"] == sha(red)
        r_, g_, b_ = img.convert("RGB").getpixel((1, 1))  # the tinted input shows at the corner
    assert r_ > g_ + 60 and r_ > b_ + 60
    plain = image_bytes(hub, session, generate(hub, session, output_format="png"))
    assert input_sha_of(plain) is None
    again = image_bytes(hub, session, edit(hub, session, input_image=data_uri(red), output_format="png"))
    assert again == data  # deterministic, like generate
    call, _ = hub.edit_calls()
    assert call.path == EDIT and call.body is not None and call.body["input_image"].startswith("data:")
    assert len(hub.generate_calls()) == 1


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_jpeg_and_webp_results_carry_the_mark_in_exif(
    hub: LocalHub, session: requests.Session, fmt: str
) -> None:
    blue = solid_png((10, 10, 200))
    data = image_bytes(hub, session, edit(hub, session, input_image=data_uri(blue), output_format=fmt))
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == {"jpg": "JPEG", "webp": "WEBP"}[fmt]
        assert img.getexif()[0x010E] == f"oxen-input-sha={sha(blue)}"
    assert input_sha_of(data) == sha(blue)


def test_chain_from_own_result_url_and_several_references(hub: LocalHub, session: requests.Session) -> None:
    first = generate(hub, session, output_format="png")
    url = first.json()["images"][0]["url"]
    first_bytes = session.get(url, headers=AUTH).content
    green = solid_png((0, 200, 0))
    r = edit(hub, session, model="flux-2-dev", input_image=[url, data_uri(green)], output_format="png")
    data = image_bytes(hub, session, r)
    assert input_sha_of(data) == f"{sha(first_bytes)},{sha(green)}"
    # an array model given a plain string, and a string model given a list, are refused by type
    wrong = edit(hub, session, model="flux-2-dev", input_image=url)
    assert wrong.status_code == 400 and "input_image" in error_title(wrong)
    wrong = edit(hub, session, model="flux-kontext-dev", input_image=[url])
    assert wrong.status_code == 400 and "input_image" in error_title(wrong)


FORBIDDEN = "Failed to download input image: 403 Client Error: Forbidden for url: "


def test_input_from_another_loopback_server(hub: LocalHub, session: requests.Session) -> None:
    """Fetched over HTTP; any failure (no image, a 401, ...) reads as the one generic 403 sentence,
    so the answers do not tell which loopback ports and paths exist."""
    with (
        LocalHub(image_size=48, require_auth_for_files=False, anonymous_reads=True) as other,
        LocalHub(image_size=48, require_auth_for_files=True) as guarded,
    ):
        public = other.url + "/api/ai/models"  # JSON, not an image
        r = edit(hub, session, input_image=public)
        assert r.status_code == 400
        assert error_title(r) == FORBIDDEN + public
        made = generate(other, session, output_format="png").json()["images"][0]["url"]
        made_bytes = session.get(made).content
        data = image_bytes(hub, session, edit(hub, session, input_image=made))
        assert input_sha_of(data) == sha(made_bytes)
        locked = generate(guarded, session).json()["images"][0]["url"]
        r = edit(hub, session, input_image=locked)  # the hub sends no token, like the real one
        assert r.status_code == 400
        assert error_title(r) == FORBIDDEN + locked


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "http://10.1.2.3/cat.png",
        "ftp://127.0.0.1/x.png",
        "http://127.0.0.1:9/x",
    ],
)
def test_unfetchable_input_reads_like_the_real_error(
    hub: LocalHub, session: requests.Session, url: str
) -> None:
    r = edit(hub, session, input_image=url)
    assert r.status_code == 400
    assert error_title(r) == f"Failed to download input image: 403 Client Error: Forbidden for url: {url}"
    assert hub.billed == 0


def test_expired_own_result_url_is_unfetchable(hub: LocalHub, session: requests.Session) -> None:
    url = generate(hub, session).json()["images"][0]["url"]
    hub.expire_urls()
    r = edit(hub, session, input_image=url)
    assert r.status_code == 400
    assert error_title(r) == f"Failed to download input image: 403 Client Error: Forbidden for url: {url}"


def test_data_uris_knob(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=48, data_uris=False)
    r = edit(hub, session, input_image=data_uri(solid_png((1, 2, 3))))
    assert r.status_code == 400
    assert error_title(r).startswith("Failed to download input image: No connection adapters were found")
    hub = make_hub(image_size=48)
    r = edit(hub, session, input_image="data:image/png;base64,***")
    assert r.status_code == 400 and error_title(r).startswith("Failed to download input image")


@pytest.mark.parametrize("path", [GENERATE, EDIT])
@pytest.mark.parametrize(
    "model", ["flux-kontext-dev", "qwen-image-edit-plus", "topazlabs-image-upscale", "sam-3-image"]
)
def test_required_input_image_is_enforced(
    hub: LocalHub, session: requests.Session, model: str, path: str
) -> None:
    r = edit(hub, session, path=path, model=model, seed=None)
    assert r.status_code == 400
    assert r.json() == {
        "error": {"type": "invalid_params", "title": "input_image is required"},
        "status": "error",
        "status_message": "invalid_params",
    }
    assert hub.billed == 0


def test_upscaler_needs_no_prompt_and_generate_uses_inputs(hub: LocalHub, session: requests.Session) -> None:
    img = solid_png((50, 60, 70), (96, 48))
    r = edit(hub, session, model="topazlabs-image-upscale", prompt=None, seed=None, input_image=data_uri(img))
    assert input_sha_of(image_bytes(hub, session, r)) == sha(img)
    # gpt-image-1-5 takes input_image on the generate route (its endpoint reads /images/generate)
    r = edit(hub, session, path=GENERATE, model="gpt-image-1-5", seed=None, input_image=[data_uri(img)])
    assert input_sha_of(image_bytes(hub, session, r)) == sha(img)
    # the edit route needs an input, and a model that takes one
    r = edit(hub, session, model="flux-2-dev")
    assert r.status_code == 400 and error_title(r) == "input_image is required"
    r = edit(hub, session, model="z-image-turbo", input_image=data_uri(img))
    assert r.status_code == 400 and error_title(r) == "Model z-image-turbo does not accept input_image"
    # match_input_image takes the input's shape
    r = edit(hub, session, model="flux-2-dev", aspect_ratio="match_input_image", input_image=[data_uri(img)])
    with Image.open(io.BytesIO(image_bytes(hub, session, r))) as out:
        assert out.size == (128, 64)


def test_fail_after_billing_makes_the_image_then_answers_the_gateway_error(
    hub: LocalHub, session: requests.Session
) -> None:
    hub.fail_next(1, 504, after_billing=True)
    r = generate(hub, session)
    assert r.status_code == 504 and r.headers["Content-Type"].startswith("text/html")
    assert hub.billed == 1
    hub.fail_next(1, 504, after_billing=True)
    assert generate(hub, session, model="no-such-model").status_code == 404  # refused: not billed
    assert hub.billed == 1
    assert generate(hub, session).status_code == 200  # that failure was spent on the refused call
    assert hub.billed == 2
    hub.fail_next(1, 503)  # a plain failure comes before anything is made
    assert generate(hub, session).status_code == 503
    assert hub.billed == 2
    assert len(hub.generate_calls()) == 4
    hub.reset()
    assert hub.billed == 0


# -- a misbehaving server: oversized and dripping bodies, malformed model descriptions -------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_oversize_url_download_is_padded_and_streamed(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    size = 3_000_001
    hub = make_hub(image_size=64, oversize_bytes=size)
    url = generate(hub, session, output_format="png").json()["images"][0]["url"]
    assert hub.store.total_bytes < 100_000  # the store keeps the real image only
    with session.get(url, headers=AUTH, stream=True) as r:
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == size
        chunks = list(r.iter_content(65536))
    assert chunks[0].startswith(PNG_SIGNATURE)
    assert sum(map(len, chunks)) == size
    hub.oversize_bytes = None
    assert len(session.get(url, headers=AUTH).content) < 100_000


def test_oversize_b64_json_decodes_to_the_size(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=64, oversize_bytes=2_000_000)
    r = generate(hub, session, response_format="b64_json", output_format="png")
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(r.content)
    data = base64.b64decode(r.json()["images"][0]["b64_json"], validate=True)
    assert data.startswith(PNG_SIGNATURE) and len(data) == 2_000_000
    assert r.json()["model"] == "z-image-turbo"


def test_oversized_answers_are_never_built_whole() -> None:
    from oxen_magic.localhub.generate import _oversized_b64_reply

    size = 200 * 1024 * 1024
    reply = _oversized_b64_reply("m", b"\x89PNG\r\n\x1a\n" + b"x" * 1000, size, 0.0)
    assert len(reply.body) + len(reply.tail) < 5000  # what is held: the head and the tail
    total = 0
    for chunk in reply.chunks():
        assert len(chunk) <= 65536
        total += len(chunk)
    assert total == reply.length
    assert size * 4 // 3 < reply.length < size * 4 // 3 + 5000  # base64 of 200 MB, plus the JSON


def test_drip_sends_one_byte_at_a_time(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=8, drip=0.0005)
    r = generate(hub, session, output_format="png")  # the JSON answer, dripped
    url = r.json()["images"][0]["url"]
    data = session.get(url, headers=AUTH).content  # the file, dripped
    assert data.startswith(PNG_SIGNATURE) and Image.open(io.BytesIO(data)).size == (8, 8)
    hub.drip = 0.2
    host, port = urlsplit(hub.url).hostname, urlsplit(hub.url).port
    conn = http.client.HTTPConnection(str(host), port, timeout=5)
    try:
        conn.request("GET", urlsplit(url).path, headers=AUTH)
        answer = conn.getresponse()
        assert answer.status == 200 and int(answer.headers["Content-Length"]) == len(data)
        first = answer.read1(65536)
        assert 1 <= len(first) <= 2  # a byte, and the next is 0.2 s away
        started = time.monotonic()
        hub.stop()  # a dripping answer does not hold up stopping
        # promptness is the behaviour under test: the drip would hold stop() for minutes
        assert time.monotonic() - started < 3
    finally:
        conn.close()


def test_malformed_catalogue_is_served_and_usable(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    bad = malformed_catalogue()
    assert len(bad) >= 10 and all(m["id"].startswith("malformed-") for m in bad)
    kinds = {m["id"]: m for m in bad}
    assert isinstance(kinds["malformed-properties-list"]["request_schema"]["properties"], list)
    assert isinstance(kinds["malformed-capabilities-list"]["capabilities"], list)
    props = kinds["malformed-minimum-string"]["request_schema"]["properties"]
    assert isinstance(props["num_inference_steps"]["minimum"], str)
    assert kinds["malformed-price-negative"]["pricing"]["cost_per_image"] < 0
    assert isinstance(kinds["malformed-price-text"]["pricing"]["cost_per_image"], str)
    hub = make_hub(image_size=32, catalogue=[*default_catalogue(), *bad])
    listing = session.get(hub.url + "/api/ai/models", headers=AUTH)
    assert listing.status_code == 200 and len(listing.json()["data"]) == len(hub.models)
    for obj in bad:
        detail = session.get(hub.url + "/api/ai/models/" + obj["id"], headers=AUTH)
        assert detail.status_code == 200 and detail.json() == obj
        r = generate(hub, session, model=obj["id"], num_inference_steps=4)
        assert r.status_code == 200, (obj["id"], r.text)


def test_entries_that_are_not_models_do_not_break_the_routes(
    hub: LocalHub, session: requests.Session
) -> None:
    hub.models[:0] = ["not an object", {"id": ["x"]}, {"id": 5, "capabilities": ["image"]}]
    hub.private_models.add("hidden")
    for path in ("/api/ai/models", "/api/ai/models/search?search=flux", "/api/ai/models/flux-2-dev"):
        assert session.get(hub.url + path, headers=AUTH).status_code == 200
    assert generate(hub, session, model="flux-2-dev").status_code == 200


# -- load: a hub that admits at most N requests at once -------------------------------------


def _hold(hub: LocalHub, n: int) -> list[threading.Thread]:
    """Start `n` generate calls in the background and wait until the hub is serving them all."""
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                requests.post(
                    hub.url + GENERATE,
                    json={"model": "z-image-turbo", "prompt": f"held {i}"},
                    headers=AUTH,
                    timeout=10,
                ).status_code
            )
        )
        for i in range(n)
    ]
    for t in threads:
        t.start()
    hub.wait_until(lambda: hub.in_flight >= n, timeout=5)
    assert hub.in_flight == n
    return threads


def test_max_concurrent_answers_429_above_the_limit(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=32, latency=1.0, max_concurrent=2)
    held = _hold(hub, 2)
    for _ in range(3):
        r = generate(hub, session)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert r.json() == {
            "error": {"type": "rate_limited", "title": "Rate limit exceeded"},
            "status": "error",
            "status_message": "rate_limited",
        }
    r = edit(hub, session, input_image=data_uri(solid_png((1, 1, 1))))
    assert r.status_code == 429  # the edit route shares the limit
    for t in held:
        t.join()
    assert hub.rejected == 4 and hub.peak_in_flight == 2 and hub.billed == 2
    assert generate(hub, session).status_code == 200  # room again
    hub.reset()
    assert hub.rejected == 0


@pytest.mark.parametrize(("value", "header"), [(None, None), (2.5, "2.5"), ("7", "7")])
def test_retry_after_knob(
    session: requests.Session,
    value: float | str | None,
    header: str | None,
    make_hub: Callable[..., LocalHub],
) -> None:
    hub = make_hub(image_size=32, latency=1.0, max_concurrent=1, retry_after=value)
    held = _hold(hub, 1)
    r = generate(hub, session)
    assert r.status_code == 429 and r.headers.get("Retry-After") == header
    for t in held:
        t.join()


def test_unlimited_by_default(make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=32, latency=0.5)
    assert hub.max_concurrent is None
    for t in _hold(hub, 12):
        t.join()
    assert hub.rejected == 0 and hub.billed == 12


# -- command line ---------------------------------------------------------------------------


def test_cli_serves_until_terminated() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oxen_magic.localhub",
            "--port",
            "0",
            "--key",
            "cli-key",
            "--image-size",
            "64",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Local Oxen hub on http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        assert "(key: cli-key)" in line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        told = [proc.stdout.readline().strip() for _ in range(3)]
        assert f"export OXEN_HOST={url}" in told and "export OXEN_API_KEY=cli-key" in told
        assert (
            requests.get(
                url + "/api/ai/models", headers={"Authorization": "Bearer cli-key"}, timeout=5
            ).status_code
            == 200
        )
        r = requests.post(
            url + GENERATE,
            json={"model": "z-image-turbo", "prompt": "cli", "response_format": "b64_json"},
            headers={"Authorization": "Bearer cli-key"},
            timeout=10,
        )
        assert r.status_code == 200
        assert Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]["b64_json"]))).size == (64, 64)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert proc.returncode == 0


def test_cli_on_a_busy_port_says_so_in_one_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "oxen_magic.localhub", "--port", str(port)],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr and "--port" in result.stderr


# -- waiting on the hub, not on the clock ------------------------------------------------------------


def test_a_request_is_counted_when_it_arrives_and_again_when_answered(
    make_hub: Callable[..., LocalHub], session: requests.Session
) -> None:
    hub = make_hub(image_size=32, latency=30.0)  # answered only when the hub stops
    sent = threading.Thread(target=lambda: _quiet(lambda: generate(hub, session)), daemon=True)
    sent.start()
    assert hub.wait_for_calls(1, timeout=10) == 1
    assert hub.arrived_calls() == 1 and hub.arrived_calls("images") == 1
    assert hub.arrived_calls(answered=True) == 0 and hub.generate_calls() == []  # not answered yet
    assert hub.arrived_calls("edit") == 0
    hub.stop()  # wakes the handler sleeping out its latency, which answers
    hub.wait_for_calls(1, answered=True, timeout=10)
    assert len(hub.generate_calls()) == 1
    sent.join(10)


def test_wait_for_calls_times_out_naming_what_came(hub: LocalHub, session: requests.Session) -> None:
    assert generate(hub, session).status_code == 200
    with pytest.raises(TimeoutError, match=r"^1 of 2 generate requests arrived within 0\.05 s$"):
        hub.wait_for_calls(2, timeout=0.05)
    assert session.get(hub.url + "/api/ai/models", headers=AUTH).status_code == 200
    assert hub.arrived_calls("/api/ai/models") == 1  # any other route by its path
    hub.reset()
    assert hub.arrived_calls() == 0 and hub.arrived_calls(answered=True) == 0


def test_wait_until_wakes_on_in_flight_changes(make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=32, latency=0.5)
    held = _hold(hub, 3)  # waits with hub.wait_until(in_flight >= 3)
    hub.wait_until(lambda: hub.in_flight == 0, timeout=10)
    for t in held:
        t.join(10)
    assert hub.arrived_calls(answered=True) == 3
    with pytest.raises(TimeoutError):
        hub.wait_until(lambda: hub.in_flight > 0, timeout=0.05)


def test_the_result_store_expires_by_the_given_clock(
    make_hub: Callable[..., LocalHub], session: requests.Session
) -> None:
    clock = FakeClock()
    hub = make_hub(image_size=32, result_ttl=60.0, clock=clock)
    old = generate(hub, session, seed=1).json()["images"][0]["url"]
    clock.advance(59.0)
    new = generate(hub, session, seed=2).json()["images"][0]["url"]
    assert session.get(old, headers=AUTH).status_code == 200
    clock.advance(2.0)  # old is 61 s old, new 2 s
    assert session.get(old, headers=AUTH).status_code == 404
    assert session.get(new, headers=AUTH).status_code == 200
    assert hub.results_kept[0] == 1  # the expired file is dropped, not only hidden


def test_knobs_set_on_the_hub_reach_its_parts_at_once(
    make_hub: Callable[..., LocalHub], session: requests.Session
) -> None:
    """The hub is built from parts that hold its knobs: a knob set on the hub after start is the
    one the next request sees (here `anonymous_reads` and `extra_images`), and the counters the
    image routes keep read back through the hub."""
    hub = make_hub(image_size=32)
    assert session.get(f"{hub.url}/api/ai/models").status_code == 401
    hub.anonymous_reads = True
    assert hub.knobs.anonymous_reads is True
    assert session.get(f"{hub.url}/api/ai/models").status_code == 200
    hub.extra_images = 1
    answer = generate(hub, session, seed=3).json()
    assert len(answer["images"]) == 2 and hub.billed == 2 and hub.tally.billed == 2
    hub.reset()
    assert hub.billed == 0 and hub.in_flight == 0


def test_an_unknown_keyword_is_refused_like_a_misspelt_argument() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'latncy'"):
        LocalHub(latncy=1.0)
    with pytest.raises(ValueError, match="schema_field"):
        LocalHub(schema_field="schema")


def _quiet(call: Callable[[], Any]) -> None:
    """Run `call`, ignoring the connection error a stopping hub may give it."""
    with contextlib.suppress(requests.RequestException):
        call()
