"""Property tests: whatever a learner types or a server answers, nothing escapes uncaught.

* The option grammar and the prompt template: any line, body and variables give a `Spec` or a
  one-sentence `UsageProblem`, never another exception.
* The client's response parsing: any status, headers, JSON or bytes (served by a real loopback
  server, one reused across examples) give a `Generation` or an `OxenError`.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import string
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from oxen_magic.core.errors import OxenError, UsageProblem
from oxen_magic.network.client import Generation, OxenClient
from oxen_magic.network.images import decode_image
from oxen_magic.planning.options import Defaults, Spec, build_spec
from oxen_magic.planning.prompts import fill_template
from oxen_magic.planning.ranges import MAX_RANGE, SEED_MAX, parse_ints

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _one_sentence(problem: UsageProblem) -> None:
    text = str(problem)
    assert text.strip() and "\n" not in text and len(text) < 400, text
    assert "Traceback" not in text


# -- the option grammar -----------------------------------------------------------------------------

OPTIONS = [
    "--model",
    "-m",
    "--seed",
    "-s",
    "--aspect-ratio",
    "-a",
    "--steps",
    "-n",
    "--param",
    "-p",
    "--format",
    "--namespace",
    "--host",
    "--out",
    "--cols",
    "--size",
    "--no-cache",
    "--concurrency",
    "--save",
    "--max-images",
    "--list-models",
    # what people mistype
    "--sed",
    "--seeds",
    "--api-key",
    "--token",
    "--key=abc",
    "--seed=1..3",
    "-x",
    "--",
    "-",
    "---",
]
INTISH = st.text(alphabet="0123456789.,:-+ ", max_size=14)
#: What one magic line can hold: IPython splits the cell at newlines before the magic sees it.
LINE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=60)
VALUES = st.one_of(
    INTISH,
    st.sampled_from(
        [
            "1..4",
            "1..10:3",
            "random:4",
            "random:0",
            "random:",
            "5..-2",
            "1,,2",
            "..3",
            "1..",
            "0..4294967295",
            "flux-2-dev,z-image-turbo",
            "1:1,16:9",
            "guidance=3.5",
            "guidance",
            "=3",
            "url",
            "b64_json",
            "r",
            "2x",
            "None",
            "0",
            "64",
            "99999999999999999999",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=12),
)
LINES = st.one_of(
    st.lists(st.one_of(st.sampled_from(OPTIONS), VALUES), max_size=10).map(
        lambda words: " ".join(shlex.quote(w) for w in words)
    ),
    LINE_TEXT,
)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
VARIABLES = st.dictionaries(NAMES, st.one_of(st.text(max_size=10), st.integers(), st.floats()), max_size=4)
BODIES = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.lists(
        st.one_of(st.sampled_from(["---", "{x}", "{{", "}}", "{", "}", "a cube"]), st.text(max_size=10))
    ).map("\n".join),
)


def _check_spec(spec: Spec) -> None:
    if spec.list_models:
        return
    assert spec.prompts and all(p.strip() for p in spec.prompts)
    assert spec.models and all(m.strip() for m in spec.models)
    assert 1 <= spec.count <= spec.max_images
    seeds = [s for s in spec.seeds if s is not None]
    assert seeds == sorted(set(seeds)) and all(0 <= s <= SEED_MAX for s in seeds)
    assert 0 <= spec.concurrency <= 64 and 32 <= spec.size <= 2048 and spec.cols >= 1  # 0: auto
    assert spec.out is None or spec.out.isidentifier()
    assert spec.response_format in ("url", "b64_json")


@FUZZ
@given(line=LINES, body=BODIES, variables=VARIABLES)
def test_build_spec_gives_a_spec_or_a_usage_problem(line: str, body: str | None, variables: dict) -> None:
    try:
        spec = build_spec(line, body, variables, Defaults())
    except UsageProblem as problem:
        _one_sentence(problem)
    else:
        _check_spec(spec)


@FUZZ
@given(line=LINE_TEXT, body=st.one_of(st.none(), st.text(max_size=200)))
def test_build_spec_on_arbitrary_text(line: str, body: str | None) -> None:
    try:
        spec = build_spec(line, body, {})
    except UsageProblem as problem:
        _one_sentence(problem)
    else:
        _check_spec(spec)


@FUZZ
@given(text=st.one_of(INTISH, LINE_TEXT), lo=st.integers(0, 5), span=st.integers(0, SEED_MAX))
def test_parse_ints_sorted_unique_bounded_or_usage_problem(text: str, lo: int, span: int) -> None:
    hi = lo + span
    try:
        values = parse_ints(text, "seed", lo=lo, hi=hi)
    except UsageProblem as problem:
        _one_sentence(problem)
    else:
        assert values and list(values) == sorted(set(values))
        assert all(lo <= v <= hi for v in values) and len(values) <= MAX_RANGE


@FUZZ
@given(start=st.integers(0, 10_000), length=st.integers(0, 50), step=st.integers(1, 7))
def test_parse_ints_ranges_are_inclusive(start: int, length: int, step: int) -> None:
    end = start + length
    assert parse_ints(f"{start}..{end}:{step}") == tuple(range(start, end + 1, step))


# -- the prompt template -----------------------------------------------------------------------------


@FUZZ
@given(prompt=st.text(max_size=60), variables=VARIABLES)
def test_fill_template_gives_text_or_usage_problem(prompt: str, variables: dict) -> None:
    try:
        filled = fill_template(prompt, variables)
    except UsageProblem as problem:
        _one_sentence(problem)
    else:
        assert isinstance(filled, str)
        if "{" not in prompt and "}" not in prompt:
            assert filled == prompt


@FUZZ
@given(text=st.text(max_size=60), variables=VARIABLES)
def test_escaped_braces_come_back_literally(text: str, variables: dict) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert fill_template(escaped, variables) == text


@FUZZ
@given(
    parts=st.lists(st.one_of(st.text(alphabet=string.ascii_letters + " ", max_size=8), NAMES), max_size=6),
    variables=st.dictionaries(NAMES, st.text(max_size=8), min_size=1, max_size=4),
)
def test_known_variables_are_filled_once(parts: list[str], variables: dict) -> None:
    names = list(variables)
    prompt = "".join(f"{{{names[i % len(names)]}}}{p}" for i, p in enumerate(parts))
    expected = "".join(f"{variables[names[i % len(names)]]}{p}" for i, p in enumerate(parts))
    assert fill_template(prompt, variables) == expected  # values are not expanded again


# -- response parsing against a real loopback server ---------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        answer = self.server.files.get(self.path) if self.command == "GET" else None
        answer = answer or self.server.answer
        self.server.hits += 1
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = _answer
    do_POST = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answer = Answer()
    files: dict[str, Answer]
    hits = 0


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files = {}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def client(server: _Server) -> Iterator[OxenClient]:
    port = server.server_address[1]
    c = OxenClient(
        f"http://127.0.0.1:{port}",
        "fuzz-key-0123456789",
        max_retries=1,
        backoff=0.0,
        max_wait=0.05,
        timeout=(2.0, 5.0),
    )
    yield c
    c.close()


def _png(size: tuple[int, int] = (3, 2), mode: str = "RGB", fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode in ("RGB", "RGBA", "P") else 1).save(out, fmt)
    return out.getvalue()


def _bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb, or nonsense)."""
    data = bytearray(_png((1, 1)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


VALID_IMAGES = [
    _png(),
    _png(mode="RGBA"),
    _png(mode="L"),
    _png(mode="P"),
    _png(mode="1"),
    _png(mode="I;16"),
    _png(fmt="JPEG"),
    _png(fmt="GIF", mode="P"),
    _png(fmt="WEBP"),
    _png(mode="CMYK", fmt="JPEG"),
]


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(VALID_IMAGES))
    how = draw(st.sampled_from(["valid", "truncate", "flip", "bomb", "random"]))
    if how == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if how == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "bomb":
        return _bomb(draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)))
    if how == "random":
        return draw(st.binary(max_size=200))
    return base


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: Result URLs stay on the fuzz server (relative paths) or fail at once (.invalid, bad schemes).
URLS = st.one_of(
    st.just("/files/result.img"),
    st.text(alphabet=string.ascii_letters + string.digits + "/._-?=&%", max_size=20).map(lambda t: "/" + t),
    st.sampled_from(["http://oxen-fuzz.invalid/x.png", "ftp://127.0.0.1/x", "mailto:x", "http://[::1", ""]),
)


@st.composite
def generate_bodies(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["json", "b64", "url", "images-json"]))
    if kind == "json":
        return draw(JSON)
    if kind == "images-json":
        return {"images": draw(JSON), "created": draw(JSON)}
    if kind == "b64":
        data = draw(image_bytes())
        text = base64.b64encode(data).decode()
        text = draw(st.one_of(st.just(text), st.text(max_size=20), st.just(text[: len(text) // 2])))
        return {"created": draw(st.one_of(st.integers(), JSON)), "images": [{"b64_json": text}]}
    return {"model": "m", "created": 1, "images": [{"url": draw(URLS)}, *draw(st.lists(JSON, max_size=2))]}


STATUSES = st.sampled_from(
    [200, 200, 200, 201, 204, 301, 302, 307, 400, 401, 403, 404, 410, 418, 429, 500, 503]
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/html", "text/plain", "image/png", ""]
)
HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " :,-", max_size=30)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status = draw(STATUSES)
    if draw(st.booleans()):
        body = json.dumps(draw(generate_bodies())).encode()
    else:
        body = draw(
            st.one_of(st.binary(max_size=300), st.sampled_from([b"[" * 100_000, b"<html>oops</html>"]))
        )
    headers = {"Content-Type": draw(CONTENT_TYPES)}
    if draw(st.booleans()):
        headers["Retry-After"] = draw(st.one_of(HEADER_TEXT, st.sampled_from(["0", "-5", "1e309", "nan"])))
    if status in (301, 302, 307):
        headers["Location"] = draw(st.one_of(URLS, st.just("/api/ai/images/generate")))
    return Answer(status, body, headers)


def _file_answer(draw: st.DrawFn) -> Answer:
    status = draw(st.sampled_from([200, 200, 200, 403, 404, 410, 500]))
    return Answer(status, draw(image_bytes()), {"Content-Type": draw(CONTENT_TYPES)})


@FUZZ
@given(data=st.data())
def test_generate_gives_a_generation_or_an_oxen_error(server: _Server, client: OxenClient, data: Any) -> None:
    server.answer = data.draw(answers())
    server.files = {"/files/result.img": _file_answer(data.draw)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            result = client.generate_payload({"model": "m", "prompt": "p", "seed": 1})
    except OxenError as exc:
        assert exc.message.strip() and "\n" not in exc.message
        assert "fuzz-key-0123456789" not in exc.message
    else:
        assert isinstance(result, Generation)
        assert result.size == decode_image(result.data).size


@FUZZ
@given(data=image_bytes())
def test_decode_image_gives_an_image_or_a_bad_response(data: bytes) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = decode_image(data)
    except OxenError as exc:
        assert exc.message.startswith("The image the API returned")
    else:
        assert image.width > 0 and image.height > 0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"[" * 100_000),  # nested past the recursion limit
        (400, b"[" * 100_000),
        (
            200,
            json.dumps({"images": [{"b64_json": base64.b64encode(_bomb(30_000, 30_000)).decode()}]}).encode(),
        ),
        (200, json.dumps({"images": [{"b64_json": "ü" * 8}]}).encode()),
        (200, b"\xff\xfe\x00garbage"),
        (500, b'{"error": {"title": 5, "detail": ["x"], "message": null}}'),
        (429, b'{"error": "slow down"}'),
    ],
)
def test_known_nasty_answers(server: _Server, client: OxenClient, status: int, body: bytes) -> None:
    server.answer = Answer(status, body, {"Content-Type": "application/json"})
    with pytest.raises(OxenError) as caught:
        client.generate_payload({"model": "m", "prompt": "p"})
    assert "\n" not in caught.value.message
