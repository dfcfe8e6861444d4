"""A hostile or broken server, met by a real shell through the local hub's knobs (issue 12).

Each misbehaviour costs one cell (one clear sentence in its place), never the kernel: oversized
bodies are cut at the cap without being held, dripping answers are cut at the deadline, a bomb
of an image is refused at its header, a long Retry-After is reported, a 504 after billing is not
resent, malformed model descriptions degrade with a note. And both readings of the docs on model
reads (anonymous or not, schemas in the list or not) work.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import all_text, fast_client, magic_of, run_cell

from oxen_magic.core.errors import BadResponseError
from oxen_magic.localhub import LocalHub, malformed_catalogue
from oxen_magic.network.client import OxenClient
from oxen_magic.network.images import decode_image

PROMPT = "a lighthouse at dusk"
MB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def one_cell(shell: Any, line: str) -> tuple[str, Any]:
    """Run a one-image cell that must not raise; returns (everything shown, its only item)."""
    captured, error = run_cell(shell, line + " --out r", PROMPT)
    assert error is None, error
    shown = all_text(captured)
    assert "Traceback" not in shown and "Warning" not in shown
    (item,) = shell.user_ns["r"].items
    return shown, item


# -- bounded memory -----------------------------------------------------------------------------


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_an_oversized_result_is_refused_for_its_cell(hub: LocalHub, shell: Any, response_format: str) -> None:
    fast_client(shell, max_body_bytes=1 * MB)
    hub.oversize_bytes = 3 * MB
    shown, item = one_cell(shell, f"--model z-image-turbo --seed 1 --format {response_format}")
    assert item.status == "failed"
    assert "larger than the 1 MB limit, so it was cut off unread" in (item.error or "")
    assert len(hub.generate_calls()) == 1
    assert hub.api_key is not None and hub.api_key not in shown


def test_the_cap_is_configurable_from_the_environment(
    hub: LocalHub, oxen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_BODY_MB", "0.5")
    assert OxenClient(hub.url).max_body_bytes == MB // 2
    for bad in ("lots", "-1", "nan", ""):
        monkeypatch.setenv("OXEN_MAGIC_MAX_BODY_MB", bad)
        assert OxenClient(hub.url).max_body_bytes == 50 * MB  # the default, not a crash


def bomb_png(side: int = 10000) -> bytes:
    """A PNG header claiming side x side pixels and no pixels to speak of. 10000: 100 M pixels,
    where Pillow only warns; 30000: 900 M, where it raises."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10000, 30000])
def test_a_decompression_bomb_is_one_sentence_and_no_warning(side: int) -> None:
    data = bomb_png(side)
    assert len(data) < 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning reaching the cell would raise here
        with pytest.raises(BadResponseError) as info:
            decode_image(data, load=False)
    message = str(info.value)
    assert message.startswith("The image the API returned claims to be too large to open safely")
    assert "/" not in message and "\n" not in message  # no file paths from Pillow
    if side == 10000:
        assert "10000 x 10000 pixels" in message


def test_a_bomb_from_the_server_fails_only_its_cell(hub: LocalHub, shell: Any) -> None:
    client = fast_client(shell)
    data = bomb_png()
    original = client.download
    client.download = lambda url: data  # type: ignore[method-assign]  # the hub's URL, a bomb's bytes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, item = one_cell(shell, "--model z-image-turbo --seed 1")
    finally:
        client.download = original  # type: ignore[method-assign]
    assert item.status == "failed" and "too large to open safely" in (item.error or "")


# -- bounded time ----------------------------------------------------------------------------------


def test_a_dripping_answer_is_cut_at_the_deadline_and_not_resent(hub: LocalHub, shell: Any) -> None:
    fast_client(shell, deadline=1.0, timeout=(5.0, 5.0))
    hub.drip = 0.05  # one byte every 50 ms: the ~150-byte answer would take ~8 s
    _, item = one_cell(shell, "--model z-image-turbo --seed 1")
    assert item.status == "failed"  # cut: the whole answer would have come in ~8 s
    assert "did not finish answering within 1 s" in (item.error or "")
    assert "may have been billed" in (item.error or "") and "a rerun asks again" in (item.error or "")
    hub.drip = None
    assert hub.arrived_calls() <= 1  # counted as it arrived: the cell is over, so none is to come


def test_a_dripping_download_is_cut_at_the_deadline(hub: LocalHub, oxen_env: Path) -> None:
    client = OxenClient(hub.url, timeout=(5.0, 5.0), deadline=1.0, backoff=0.001)
    gen = client.generate("z-image-turbo", PROMPT, seed=1)
    assert gen.url is not None
    hub.drip = 0.05
    with pytest.raises(Exception) as info:  # the whole file would come: only a cut raises
        client.download(gen.url)
    assert "did not finish answering within 1 s; try again later." in str(info.value)
    hub.drip = None
    client.close()


def test_a_long_retry_after_is_reported_with_the_wait(hub: LocalHub, shell: Any) -> None:
    fast_client(shell, max_wait=60.0)
    hub.fail_next(1, 429, retry_after=120)
    _, item = one_cell(shell, "--model z-image-turbo --seed 1")
    assert item.status == "failed"
    assert "the API asked to wait 120 s, so try again then" in (item.error or "")
    assert [c.status for c in hub.generate_calls()] == [429]


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_failure_after_billing_is_sent_once(hub: LocalHub, shell: Any, status: int) -> None:
    fast_client(shell)
    hub.fail_next(1, status, after_billing=True)
    _, item = one_cell(shell, "--model z-image-turbo --seed 1")
    assert item.status == "failed"
    assert "may have been made and billed" in (item.error or "")
    assert len(hub.generate_calls()) == 1 and hub.billed == 1  # billed once, not twice


# -- fields from the server ------------------------------------------------------------------------


def test_malformed_descriptions_never_break_the_listing_or_a_run(hub: LocalHub, shell: Any) -> None:
    hub.models[:0] = malformed_catalogue()
    captured, error = run_cell(shell, "--list-models")
    assert error is None
    shown = all_text(captured)
    assert "Traceback" not in shown
    for model in malformed_catalogue():
        assert model["id"] in shown
    assert "is not a usable number, so the price is unknown" in shown
    for model in malformed_catalogue():
        captured, error = run_cell(shell, f"--model {model['id']} --seed 1 --dry-run --out r", PROMPT)
        assert error is None, (model["id"], error)
        assert "Traceback" not in all_text(captured)


def test_properties_not_an_object_plans_unchecked_with_a_note(hub: LocalHub, shell: Any) -> None:
    hub.models[:0] = malformed_catalogue()
    _, error = run_cell(shell, "--model malformed-properties-list --seed 1 --out r", PROMPT)
    assert error is None
    r = shell.user_ns["r"]
    assert r.done == 1
    assert any("parameters are sent unchecked" in note for note in r.notes)


def test_malformed_descriptions_never_break_the_panel(hub: LocalHub, shell: Any, tmp_path: Path) -> None:
    from PIL import Image

    from oxen_magic.frontends.panel import Panel

    hub.models[:0] = malformed_catalogue()
    panel = Panel(magic=magic_of(shell))
    try:
        # The list shows one group at a time (text to image, edit or reference, upscale), and
        # models that need an input image only once one is given: give one, look in every group.
        picture = tmp_path / "input.png"
        Image.new("RGB", (16, 16), "teal").save(picture)
        panel.input_image.value = str(picture)
        offered: dict[str, str] = {}
        for kind in panel.kind.options:
            panel.kind.value = kind
            offered.update({value: kind for _label, value in panel.models.options})
        assert {m["id"] for m in malformed_catalogue()} <= set(offered)
        for model in malformed_catalogue():  # choosing any of them redraws the controls calmly
            panel.kind.value = offered[model["id"]]
            values = {value for _label, value in panel.models.options}
            panel.models.value = (
                (model["id"], "z-image-turbo") if "z-image-turbo" in values else (model["id"],)
            )
            panel.prompt.value = PROMPT
    finally:
        panel.close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"type": "invalid_params", "title": "Bad seed"}}', "Bad seed"),
        (b'{"error": {"message": "Model not found: x"}}', "Model not found: x"),
        (b'{"error": "plain text"}', "plain text"),
        (b'{"error": 42}', "HTTP 400"),
        (b'{"error": {"title": ["a", "list"]}}', "HTTP 400"),
        (b'{"message": "top-level message"}', "top-level message"),
        (b"[1, 2, 3]", "HTTP 400"),
        (b'"just a string"', "HTTP 400"),
        (b"null", "HTTP 400"),
        (b'{"error": {"title": "' + b"x" * 5000 + b'"}}', "..."),
        (b'{"error": {"title": "two\\nlines"}}', "two lines"),
        (b"<html>502</html>", "an HTML page"),
        (b"\xff\xfe garbage", "text/plain"),
        (b"[" * 100000, "invalid JSON"),
    ],
)
def test_error_bodies_of_any_shape_give_one_line(body: bytes, expected: str) -> None:
    from oxen_magic.core.errors import detail_of

    kind = "text/plain" if body.startswith(b"\xff") else "application/json"
    text = detail_of(400, kind, body)
    assert expected in text and "\n" not in text and len(text) <= 300


# -- both readings of the docs on model reads ----------------------------------------------------


@pytest.fixture
def strict_hub(
    oxen_env: Path, monkeypatch: pytest.MonkeyPatch, make_hub: Callable[..., LocalHub]
) -> Iterator[LocalHub]:
    """The documented reading: model routes need the token, the list carries no schemas."""
    key = "strict-key-0123456789"
    running = make_hub(api_key=key, image_size=64, anonymous_reads=False, list_schemas=False)
    monkeypatch.setenv("OXEN_HOST", running.url)
    monkeypatch.setenv("OXEN_API_KEY", key)
    yield running


def test_the_documented_reading_lists_and_checks_with_details(strict_hub: LocalHub, shell: Any) -> None:
    captured, error = run_cell(shell, "--list-models")
    assert error is None
    assert "num_inference_steps: int 1-50 (8)" in all_text(captured)  # filled in from the detail
    _, error = run_cell(shell, "--model z-image-turbo --seed 1 --steps 99 --out r", PROMPT)
    assert error is not None and "num_inference_steps" in error  # checked from the detail's schema
    assert strict_hub.generate_calls() == []
    reads = [r for r in strict_hub.requests if r.path.startswith("/api/ai/models")]
    assert reads and all(r.authorization == f"Bearer {strict_hub.api_key}" for r in reads)


def test_the_documented_reading_without_a_key_says_how_to_give_one(
    strict_hub: LocalHub, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    _, error = run_cell(shell, "--list-models")
    assert error is not None
    assert "without a key (HTTP 401)" in error and "oxen_magic.login()" in error and "local hub" in error


def test_a_private_fine_tuned_model_generates_with_parameters_unchecked(hub: LocalHub, shell: Any) -> None:
    from oxen_magic.localhub import FINE_TUNED_ID

    hub.private_models = {FINE_TUNED_ID}  # generate serves it; the detail route answers 404
    _, error = run_cell(shell, f"--model {FINE_TUNED_ID} --seed 1 --out r", PROMPT)
    assert error is None
    r = shell.user_ns["r"]
    assert r.done == 1
    assert any("no public description" in n and "sent unchecked" in n for n in r.notes)
    _, error = run_cell(shell, "--model flux-2-devv --seed 1 --out r", PROMPT)  # a plain typo
    assert error is not None and "flux-2-dev" in error


# -- in a child process: memory and exit -------------------------------------------------------------


class _Hostile(BaseHTTPRequestHandler):
    """Answers generate with a result URL (or b64_json) whose body is endless: no Content-Length,
    so only the client's own count can stop it."""

    protocol_version = "HTTP/1.0"  # close-delimited bodies

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _endless(self, head: bytes, filler: bytes, total: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if head.startswith(b"{") else "image/png")
        self.end_headers()
        try:
            self.wfile.write(head)
            block = filler * (1024 * 1024)
            sent = len(head)
            while sent < total:
                self.wfile.write(block)
                sent += len(block)
        except OSError:
            pass  # the client hung up at its cap

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        if body.get("response_format") == "b64_json":
            self._endless(b'{"images": [{"b64_json": "', b"A", 200 * 1024 * 1024)
        else:
            answer = json.dumps({"images": [{"url": f"/big/{body.get('seed')}.png"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    def do_GET(self) -> None:
        if self.path.startswith("/api/ai/models"):  # no descriptions here: a 404 in the API's shape
            answer = json.dumps({"error": {"message": "Model not found"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        self._endless(b"\x89PNG\r\n\x1a\n", b"\0", 200 * 1024 * 1024)


@pytest.fixture
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys
    from oxen_magic.network.client import OxenClient
    from oxen_magic.planning.options import build_spec
    from oxen_magic.session.run import Run

    def status(name):
        for line in open("/proc/self/status"):
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise SystemExit("no " + name)

    host, fmt = sys.argv[1], sys.argv[2]
    client = OxenClient(host, "not-a-real-key", max_retries=0)
    line = f"--model oxen:someone/tuned --seed 1..4 --concurrency 4 --no-cache --format {fmt}"
    spec = build_spec(line, "a prompt")
    run = Run.prepare(spec, client)  # warm up: imports, the model lookup (a 404 here)
    results = run.results
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    run.execute()
    errors = {item.error for item in results.items}
    print(status("VmHWM") - before, results.failed, repr(errors))
    """
)


@pytest.mark.parametrize("fmt", ["url", "b64_json"])
def test_four_endless_answers_raise_memory_by_little(hostile: str, tmp_path: Path, fmt: str) -> None:
    """Four 200 MB answers in one sweep, at the default 50 MB cap: each is streamed, spooled to
    disk past a few MB and cut at the cap, so the process's peak grows by far less than 100 MB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    env.pop("OXEN_API_KEY", None)
    env.pop("OXEN_MAGIC_MAX_BODY_MB", None)
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, hostile, fmt],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown, failed, errors = done.stdout.split(" ", 2)
    assert int(failed) == 4, errors
    assert "larger than the 50 MB limit" in errors
    print(f"{fmt}: peak grew by {int(grown) / MB:.1f} MB")
    assert int(grown) < 100 * MB, f"peak grew by {int(grown) / MB:.0f} MB"


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from oxen_magic.network.client import OxenClient
    from oxen_magic.planning.options import build_spec
    from oxen_magic.session.run import Run

    client = OxenClient(sys.argv[1], sys.argv[2])
    spec = build_spec("--model z-image-turbo --seed 1..4 --no-cache", "a prompt")
    run = Run.prepare(spec, client)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()  # the Stop button (or Ctrl-C) with four in flight
    run.execute(cancel=cancel)
    print("stopped", time.monotonic(), flush=True)
    """
)


def test_the_process_exits_without_waiting_for_requests_in_flight(
    tmp_path: Path, make_hub: Callable[..., LocalHub]
) -> None:
    slow = make_hub(api_key="exit-key-0123", image_size=64, latency=20.0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", EXIT_SCRIPT, slow.url, "exit-key-0123"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=15)  # far less than the hub's 20 s
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("the process waited for requests still in flight")
    assert child.returncode == 0, err[-2000:]
    assert out.startswith("stopped")
    assert slow.in_flight >= 1  # they really were still in flight
