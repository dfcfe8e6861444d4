"""The local hub as a server a room can reach (issue 20): no request forgery through redirects,
no state that grows with requests, bodies capped before they are read, pixel caps on inputs,
malformed headers and bodies answered 4xx, a Host check against DNS rebinding, a command line
that states its defaults, and memory that stays flat under junk.

Every request goes over real HTTP to a real hub on loopback; the memory tests run the hub in
its own process (`python -m oxen_magic.localhub`) and read its resident size from /proc.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from PIL import Image

from oxen_magic.localhub import LocalHub
from oxen_magic.localhub.cli import exposure_warning

ROOT = Path(__file__).resolve().parents[1]
KEY = "local-demo-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GENERATE = "/api/ai/images/generate"
EDIT = "/api/ai/images/edit"
FORBIDDEN = "Failed to download input image: 403 Client Error: Forbidden for url: "
MB = 1024 * 1024


@pytest.fixture
def hub(make_hub: Callable[..., LocalHub]) -> LocalHub:
    return make_hub(image_size=48)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def png(size: tuple[int, int] = (16, 16), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def edit(hub: LocalHub, session: requests.Session, input_image: Any, **body: Any) -> requests.Response:
    payload = {"model": "flux-kontext-dev", "prompt": "make it night", "seed": 3, "input_image": input_image}
    payload.update(body)
    return session.post(hub.url + EDIT, json=payload, headers=AUTH, timeout=30)


def title(r: requests.Response | dict[str, Any]) -> str:
    """The error title, after checking the documented typed error shape."""
    body = r.json() if isinstance(r, requests.Response) else r
    assert body["status"] == "error" and body["status_message"] == body["error"]["type"], body
    return str(body["error"]["title"])


def raw_request(
    port: int, head: bytes, body: bytes = b"", timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (and `body`) as they are on a new connection; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def post_head(path: str, headers: dict[str, str], port: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- 1. server-side request forgery through redirects ----------------------------------------


class _Redirector(BaseHTTPRequestHandler):
    """A loopback server whose answers the test sets per path: (status, headers, body)."""

    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        status, headers, body = self.routes.get(self.path, (404, {}, b"not here"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other() -> Iterator[tuple[str, type[_Redirector]]]:
    """A plain loopback web server with settable routes: (its base URL, its handler class)."""
    handler = type("Routes", (_Redirector,), {"routes": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "target",
    [
        "http://10.1.2.3/cat.png",  # another machine (the conftest guard fails the test if tried)
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "ftp://127.0.0.1/cat.png",
        "gopher://127.0.0.1:25/x",
    ],
)
def test_a_redirect_to_a_place_the_first_url_could_not_name_is_refused(
    hub: LocalHub, session: requests.Session, other: tuple[str, Any], target: str
) -> None:
    base, routes = other
    routes.routes["/cat.png"] = (302, {"Location": target}, b"")
    url = base + "/cat.png"
    r = edit(hub, session, url)
    assert r.status_code == 400 and title(r) == FORBIDDEN + url
    assert routes.seen == ["/cat.png"] and hub.billed == 0


def test_redirects_are_checked_on_every_hop_and_may_end_at_an_image(
    hub: LocalHub, session: requests.Session, other: tuple[str, Any]
) -> None:
    base, routes = other
    picture = png()
    routes.routes["/a"] = (301, {"Location": "/b"}, b"")
    routes.routes["/b"] = (307, {"Location": f"{base}/c.png"}, b"")
    routes.routes["/c.png"] = (200, {"Content-Type": "image/png"}, picture)
    assert edit(hub, session, base + "/a").status_code == 200
    # a hop to loopback, then one that leaves it: refused at the second hop, nothing fetched there
    routes.seen.clear()
    routes.routes["/d"] = (302, {"Location": "/e"}, b"")
    routes.routes["/e"] = (302, {"Location": "http://10.9.9.9/c.png"}, b"")
    r = edit(hub, session, base + "/d")
    assert r.status_code == 400 and title(r) == FORBIDDEN + base + "/d"
    assert routes.seen == ["/d", "/e"]
    # a loop ends after a few hops, with the same sentence
    routes.seen.clear()
    routes.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    r = edit(hub, session, base + "/loop")
    assert r.status_code == 400 and title(r) == FORBIDDEN + base + "/loop"
    assert 2 <= len(routes.seen) <= 8


def test_a_redirect_to_the_hubs_own_result_is_served_from_its_store(
    hub: LocalHub, session: requests.Session, other: tuple[str, Any]
) -> None:
    made = session.post(
        hub.url + GENERATE, json={"model": "z-image-turbo", "prompt": "p", "seed": 1}, headers=AUTH
    ).json()["images"][0]["url"]
    base, routes = other
    routes.routes["/mine"] = (302, {"Location": made}, b"")
    assert edit(hub, session, base + "/mine").status_code == 200


def test_failed_fetches_do_not_tell_which_loopback_ports_and_paths_exist(
    hub: LocalHub, session: requests.Session, other: tuple[str, Any]
) -> None:
    base, routes = other
    routes.routes["/locked"] = (401, {}, b"who are you")
    routes.routes["/broken"] = (500, {}, b"oops")
    routes.routes["/page"] = (200, {"Content-Type": "text/html"}, b"<html>not an image</html>")
    routes.routes["/gone"] = (302, {"Location": "http://10.0.0.1/"}, b"")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free_port = closed.getsockname()[1]  # nothing listens there once closed
    urls = [
        f"http://127.0.0.1:{free_port}/cat.png",
        base + "/missing.png",
        base + "/locked",
        base + "/broken",
        base + "/page",
        base + "/gone",
    ]
    titles = []
    for url in urls:
        r = edit(hub, session, url)
        assert r.status_code == 400
        titles.append(title(r).replace(url, "<url>"))
    assert set(titles) == {FORBIDDEN + "<url>"}, titles


# -- 2. no state that grows with requests --------------------------------------------------


def test_the_request_record_keeps_the_newest_within_its_bounds(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=32, max_records=5)
    for n in range(12):
        session.get(f"{hub.url}/api/ai/models/m{n}", headers=AUTH)
    assert [r.path for r in hub.requests] == [f"/api/ai/models/m{n}" for n in range(7, 12)]
    assert hub.requests[-1].path == "/api/ai/models/m11" and len(hub.requests) == 5
    hub.reset()
    assert hub.requests == [] and list(hub.requests) == []
    hub = make_hub(image_size=32, max_records=None)  # no count cap: the weight cap holds
    hub.requests.max_weight = 10_000
    for n in range(40):
        session.get(f"{hub.url}/api/ai/models/m{n}", headers=AUTH)
    assert 3 <= len(hub.requests) < 40 and hub.requests.weight <= 10_000
    assert hub.requests[-1].path == "/api/ai/models/m39" and hub.requests.dropped == 40 - len(hub.requests)


def test_an_edits_data_uri_is_not_kept_whole(hub: LocalHub, session: requests.Session) -> None:
    big = png((300, 300), (1, 2, 3))
    noisy = Image.frombytes("RGB", (200, 200), random.Random(0).randbytes(200 * 200 * 3))
    out = io.BytesIO()
    noisy.save(out, "PNG")
    uris = [data_uri(out.getvalue()), data_uri(big)]
    assert len(uris[0]) > 100_000
    for uri in (uris[0], uris[0], uris[1]):
        assert edit(hub, session, uri).status_code == 200
    first, second, third = hub.edit_calls()
    kept = first.body["input_image"] if first.body else ""
    assert kept.startswith("data:image/png;base64,") and len(kept) < 200
    assert first.body == second.body and first.body != third.body  # a hash tells them apart
    assert f"{len(uris[0])} chars" in kept


def test_junk_bodies_are_not_kept(hub: LocalHub, session: requests.Session) -> None:
    junk = {"junk": "x" * MB, "more": list(range(5000))}
    for path, headers in (("/nowhere", AUTH), (GENERATE, {}), (GENERATE, AUTH)):
        session.post(hub.url + path, json=junk, headers=headers)
    nowhere, keyless, keyed = hub.requests
    assert (nowhere.status, keyless.status, keyed.status) == (404, 401, 400)
    assert nowhere.body is None and keyless.body is None  # never read into memory at all
    assert keyed.body is not None and len(json.dumps(keyed.body)) < 10_000
    assert hub.requests.weight < 25_000


# -- 3. bodies capped before they are read --------------------------------------------------


@pytest.mark.parametrize("length", ["400000000", "9" * 30])
def test_a_declared_length_over_the_cap_is_refused_before_reading(hub: LocalHub, length: str) -> None:
    """Only the head is sent: the hub answers 413 without waiting for a byte of the body."""
    headers = {**AUTH, "Content-Type": "application/json", "Content-Length": length}
    status, answer, body = raw_request(hub.port, post_head(GENERATE, headers, hub.port))
    assert status == 413 and answer["connection"] == "close"
    assert "too large" in title(json.loads(body))


def test_the_body_cap_is_a_knob(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=32, max_body_bytes=2000)
    small = {"model": "z-image-turbo", "prompt": "p", "seed": 1}
    assert session.post(hub.url + GENERATE, json=small, headers=AUTH).status_code == 200
    r = session.post(hub.url + GENERATE, json={**small, "pad": "x" * 3000}, headers=AUTH)
    assert r.status_code == 413 and title(r) == "Request body too large: the limit is 2000 bytes"
    assert hub.billed == 1


@pytest.mark.parametrize(
    "framing",
    [
        {"Content-Length": "-1"},
        {"Content-Length": "12abc"},
        {"Content-Length": "0x20"},
        {"Content-Length": "+20"},
        {"Content-Length": "20, 21"},
        {"Transfer-Encoding": "gzip"},
        {"Transfer-Encoding": "chunked", "Content-Length": "20"},
    ],
)
def test_a_bad_length_is_400_at_once(hub: LocalHub, framing: dict[str, str]) -> None:
    status, headers, body = raw_request(hub.port, post_head(GENERATE, {**AUTH, **framing}, hub.port))
    assert status == 400 and headers["connection"] == "close"
    assert title(json.loads(body)).startswith("Invalid request:")


@pytest.mark.parametrize("size_line", [b"-1", b"0x10", b"+5", b"zz", b"1" * 20])
def test_a_bad_chunk_size_is_400_and_never_reads_to_the_end(hub: LocalHub, size_line: bytes) -> None:
    """The connection stays open after the chunk: a reader to end of stream would hang here."""
    head = post_head(GENERATE, {**AUTH, "Transfer-Encoding": "chunked"}, hub.port)
    status, _, body = raw_request(hub.port, head, size_line + b"\r\n{}\r\n")
    assert status == 400 and "chunk" in title(json.loads(body))


def test_a_chunked_body_within_the_cap_is_read(hub: LocalHub, make_hub: Callable[..., LocalHub]) -> None:
    payload = json.dumps({"model": "z-image-turbo", "prompt": "chunked", "seed": 2}).encode()
    chunks = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:10], payload[10:])) + b"0\r\n\r\n"
    )
    head = post_head(GENERATE, {**AUTH, "Transfer-Encoding": "chunked", "Connection": "close"}, hub.port)
    status, _, body = raw_request(hub.port, head, chunks)
    assert status == 200 and json.loads(body)["images"]
    small = make_hub(image_size=32, max_body_bytes=50)
    head = post_head(GENERATE, {**AUTH, "Transfer-Encoding": "chunked"}, small.port)
    status, _, body = raw_request(small.port, head, chunks)
    assert status == 413


def test_expect_continue_over_the_cap_is_refused_before_the_client_sends(hub: LocalHub) -> None:
    head = post_head(GENERATE, {**AUTH, "Content-Length": str(400 * MB), "Expect": "100-continue"}, hub.port)
    status, _, _ = raw_request(hub.port, head)
    assert status == 413  # not "100 Continue"


# -- 4. pixel caps on input images -------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height zero pixels, made row by row (never in memory whole)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_decompression_bomb_input_is_refused_from_its_header(
    hub: LocalHub, session: requests.Session
) -> None:
    bomb = bomb_png(13000, 13000)
    assert len(bomb) < 40_000
    r = edit(hub, session, data_uri(bomb), aspect_ratio="match_input_image")
    assert r.status_code == 400
    assert title(r) == (
        "Failed to load input image: 13000 x 13000 pixels is over the limit of 50000000 pixels; "
        "send a smaller image"
    )
    assert hub.billed == 0
    assert edit(hub, session, data_uri(png((64, 48)))).status_code == 200


def test_without_a_pixel_cap_pillows_bomb_limit_is_an_error(
    session: requests.Session, make_hub: Callable[..., LocalHub]
) -> None:
    hub = make_hub(image_size=32, max_input_pixels=None)
    r = edit(hub, session, data_uri(bomb_png(13000, 13000)))  # over Pillow's 89 M: a warning
    assert r.status_code == 400 and "too many pixels" in title(r)
    hub = make_hub(image_size=32, max_input_pixels=1000)
    r = edit(hub, session, data_uri(png((40, 40))))
    assert r.status_code == 400 and "40 x 40 pixels is over the limit of 1000" in title(r)


# -- 5. malformed headers and bodies are 4xx ----------------------------------------------------


@pytest.mark.parametrize("path", ["/api/ai/models", "/api/ai/models/flux-2-dev", GENERATE])
def test_a_non_ascii_bearer_token_is_401(hub: LocalHub, path: str) -> None:
    method = "POST" if path == GENERATE else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\nContent-Length: 2\r\n"
    head += "Authorization: Bearer local-d\xe9mo-key\u00ff\r\n\r\n"
    status, _, body = raw_request(hub.port, head.encode("latin-1"), b"{}")
    assert status == 401 and title(json.loads(body)) == "Unauthenticated"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"model": "flux-2-dev", "prompt": "a \\ud800 cat"}', "lone surrogate"),
        (b'{"model": "\\udc80", "prompt": "a cat"}', "lone surrogate"),
        (b'{"model": "flux-2-dev", "prompt": "a cat", "x": ["\\udfff"]}', "lone surrogate"),
        (b'{"model": "flux-2-dev", "prompt": "a \xff\xfe cat"}', "UTF-8"),
        (b"[" * 100_000, "JSON object"),
        (b'{"model": "flux-2-dev", "prompt": "a cat", "guidance_scale": NaN}', "JSON object"),
    ],
)
def test_malformed_prompts_and_bodies_are_400(hub: LocalHub, raw: bytes, expected: str) -> None:
    head = post_head(
        GENERATE, {**AUTH, "Content-Type": "application/json", "Content-Length": str(len(raw))}, hub.port
    )
    status, _, body = raw_request(hub.port, head, raw)
    assert status == 400 and expected in title(json.loads(body))
    assert hub.billed == 0


# -- 6. the Host check against DNS rebinding -----------------------------------------------------


def get_with_host(hub: LocalHub, host: str | None, path: str = "/api/ai/models") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.putheader("Authorization", f"Bearer {KEY}")
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_rebound_name_is_refused_in_the_documented_shape(hub: LocalHub) -> None:
    for host in (f"evil.example:{hub.port}", "evil.example", f"localhost.evil.example:{hub.port}"):
        status, body = get_with_host(hub, host)
        assert status == 403
        said = title(json.loads(body))
        assert "evil" not in said and str(hub.port) not in said and "allowed_hosts" in said
    assert hub.billed == 0


def test_loopback_names_and_addresses_on_the_hubs_port_are_answered(hub: LocalHub) -> None:
    port = hub.port
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"LOCALHOST:{port}",
        f"[::1]:{port}",
        f"192.168.1.5:{port}",
    ):
        assert get_with_host(hub, host)[0] == 200, host
    assert get_with_host(hub, None)[0] == 200  # HTTP/1.0-style, no Host at all: no browser sends that
    for host in (f"127.0.0.1:{port + 1}", "localhost", f"[::1]:{port}x", "a b", f"localhost:{port}:1"):
        assert get_with_host(hub, host)[0] == 403, host


def test_configured_names_are_answered(session: requests.Session, make_hub: Callable[..., LocalHub]) -> None:
    hub = make_hub(image_size=32, allowed_hosts=["hub.oxen.ai"])
    assert get_with_host(hub, "hub.oxen.ai")[0] == 200  # as behind TLS on 443
    assert get_with_host(hub, f"HUB.OXEN.AI:{hub.port}")[0] == 200
    assert get_with_host(hub, "oxen.ai")[0] == 403
    hub.result_origin = "http://files.test:9000"
    assert get_with_host(hub, "files.test:9000")[0] == 200
    hub.allowed_hosts = ["*"]
    assert get_with_host(hub, "anything.example")[0] == 200
    hub = make_hub(image_size=32, result_origin="http://results.test")
    assert get_with_host(hub, "results.test")[0] == 200


def test_a_refused_host_with_a_body_is_answered_without_reading_it(hub: LocalHub) -> None:
    head = post_head(GENERATE, {**AUTH, "Content-Length": str(400 * MB)}, hub.port).replace(
        f"Host: 127.0.0.1:{hub.port}".encode(), b"Host: attacker.example"
    )
    status, headers, _ = raw_request(hub.port, head)
    assert status == 403 and headers["connection"] == "close"


# -- 7. the command line states its defaults and warns off loopback -----------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oxen_magic.localhub", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_states_the_defaults_and_the_public_demo_key() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for said in (
        "--bind HOST",
        "(default: 127.0.0.1)",
        "(default: 8765)",
        "(default: local-demo-key)",
        "well-known demo key",
        "Binding beyond loopback",
        "--allow-host",
        "(default: 64.0)",
    ):
        assert said in text, said


def test_a_bind_beyond_loopback_warns_at_start() -> None:
    """192.0.2.1 (a documentation address) is on no interface: the warning comes, then the one
    sentence saying it cannot listen there; nothing is exposed by the test."""
    done = run_cli("--bind", "192.0.2.1", "--port", "0")
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "Warning: listening on 192.0.2.1, beyond loopback: anyone on this network can reach the hub, "
        "and its key is the public demo key 'local-demo-key'; give one of your own with --key. "
        "Clients reach it by IP address, or by a name given with --allow-host."
    )
    assert lines[1].startswith("Cannot listen on 192.0.2.1 port 0") and len(lines) == 2


@pytest.mark.parametrize(
    ("host", "warns"),
    [
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
        ("127.0.0.2", False),
        ("0.0.0.0", True),
        ("::", True),
        ("", True),
        ("192.168.1.5", True),
        ("myhost.lan", True),
    ],
)
def test_which_binds_warn(host: str, warns: bool) -> None:
    assert (exposure_warning(host, "k") is not None) == warns
    if warns:
        assert "any token" in str(exposure_warning(host, None))


# -- 8. memory stays flat under junk --------------------------------------------------------


class HubProcess:
    """`python -m oxen_magic.localhub` in its own process, and its memory from /proc."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oxen_magic.localhub", "--port", "0", "--image-size", "32"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("Local Oxen hub on http://127.0.0.1:"), line
        self.url = line.split(" on ", 1)[1].split(" ", 1)[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def memory(self, field: str = "VmRSS") -> int:
        """Bytes of `field` (VmRSS: resident now; VmHWM: the peak) in /proc/<pid>/status."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)


@pytest.fixture
def hub_process() -> Iterator[HubProcess]:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the hub's memory from /proc")
    running = HubProcess()
    try:
        yield running
    finally:
        running.stop()


def test_memory_stays_flat_under_600_junk_megabytes(hub_process: HubProcess) -> None:
    junk = json.dumps({"junk": "x" * MB}).encode()
    with requests.Session() as s:

        def send(n: int) -> None:
            for i in range(n):
                headers = {"Content-Type": "application/json", **(AUTH if i % 2 else {})}
                r = s.post(hub_process.url + "/api/ai/nowhere", data=junk, headers=headers, timeout=30)
                assert r.status_code == 404

        send(40)  # warm up: threads, buffers, the allocator's pools
        before = hub_process.memory()
        send(600)
        for _ in range(60):  # junk where the body is read: kept only clipped
            r = s.post(
                hub_process.url + GENERATE, data=junk, headers={**AUTH, "Content-Type": "application/json"}
            )
            assert r.status_code == 400
        after = hub_process.memory()
    grown = (after - before) / MB
    print(f"hub RSS {before / MB:.0f} MB -> {after / MB:.0f} MB after 660 one-MB junk requests")
    assert grown < 50, f"the hub grew by {grown:.0f} MB"


def test_a_400_mb_post_is_not_read(hub_process: HubProcess) -> None:
    """The client sends the head and keeps sending: the hub answers 413 and hangs up long before
    400 MB went by, and its peak memory does not move."""
    peak = hub_process.memory("VmHWM")
    head = post_head(
        GENERATE,
        {**AUTH, "Content-Type": "application/json", "Content-Length": str(400 * MB)},
        hub_process.port,
    )
    sent = 0
    with socket.create_connection(("127.0.0.1", hub_process.port), timeout=10) as sock:
        sock.sendall(head)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 413
        answer.read()
        block = b"x" * MB
        with pytest.raises(OSError):  # the hub hung up: sending the rest fails
            while sent < 400 * MB:
                sock.sendall(block)
                sent += len(block)
    assert sent < 100 * MB, f"{sent / MB:.0f} MB went before the hub hung up"
    grown = (hub_process.memory("VmHWM") - peak) / MB
    print(f"hub peak grew by {grown:.1f} MB; {sent / MB:.0f} MB sent before it hung up")
    assert grown < 50
