"""The key never leaks: not into outputs, files, messages or logs, nor to another origin.

A distinctive key is used throughout, so any copy of it is found by a plain substring search:

* a representative session (successes, a cached rerun, --save, `contact_sheet().save`, errors of
  every kind, --list-models, DEBUG logging of urllib3/requests) is scanned end to end: stdout,
  stderr, every display bundle and update, every exception and item message, every log record,
  every file under the test's folders (cache, saved PNGs and their text chunks, contact sheet);
* the quickstart notebook, executed in a real kernel, and its HTML copy are scanned too;
* the token goes only to the API's origin: a result URL or a redirect to another loopback port
  (another origin) never receives it;
* keys are refused as magic options; `oxen_magic.login()`, the env var and the Oxen CLI config
  are the ways in.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import io
import json
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image
from support import all_text, files_under, magic_of, read_if_there, run_cell, session_clients

import oxen_magic
from oxen_magic.core.errors import OxenError
from oxen_magic.localhub import LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.session.session import current_session

SECRET = "sk-test-SECRET-1234567890"
WRONG = "sk-test-WRONG-0987654321"
ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red cube on a white background"


@pytest.fixture
def hub(make_hub: Callable[..., LocalHub]) -> LocalHub:
    """Overrides conftest's hub: this one accepts only SECRET (so `oxen_env` exports it)."""
    return make_hub("127.0.0.1", 0, api_key=SECRET, image_size=64)


def _png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "blue").save(out, "PNG")
    return out.getvalue()


class Leaks:
    """Everything a session showed, said or wrote, searched for the secrets at the end."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = secrets
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, str(text)))

    def add_captured(self, where: str, captured: Any) -> None:
        self.add(where, all_text(captured))
        for output in captured.outputs:  # every display bundle and update, all mime types
            self.add(where + " bundle", json.dumps(output.data, default=str))

    def add_files(self, folder: Path) -> int:
        count = 0
        for path in files_under(folder):
            data = read_if_there(path)  # a spool file goes when its grid does
            if data is None:
                continue
            count += 1
            for secret in self.secrets:
                assert secret.encode() not in data, f"the key is in {path}"
                assert base64.b64encode(secret.encode()) not in data, f"the key (base64) is in {path}"
            if data[:8] == b"\x89PNG\r\n\x1a\n":
                with Image.open(path) as image:  # text chunks, compressed ones included
                    self.add(f"{path} text", json.dumps(getattr(image, "text", {})))
        return count

    def check(self) -> None:
        for where, text in self.texts:
            for secret in self.secrets:
                assert secret not in text, f"the key leaked into {where}: {text[:300]}"
                assert secret[-10:] not in text, f"part of the key leaked into {where}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fast(shell: Any) -> OxenClient:
    client = magic_of(shell).client(None, 8)
    client.transport.backoff, client.transport.max_wait = 0.001, 5.0
    return client


def test_a_whole_session_never_shows_the_key(
    hub: LocalHub,
    shell: Any,
    oxen_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "oxen_magic"):
        caplog.set_level(logging.DEBUG, logger=name)
    leaks = Leaks(SECRET, WRONG)
    _fast(shell)

    def cell(line: str, body: str | None = PROMPT) -> None:
        captured, error = run_cell(shell, line, body)
        leaks.add_captured(line, captured)
        if error is not None:
            leaks.add(line + " error", error)

    def source(text: str) -> None:  # as a notebook runs it: UsageErrors printed by the shell
        with capture_output() as captured:
            result = shell.run_cell(text)
        leaks.add_captured(text, captured)
        leaks.add(text + " result", repr(result.error_in_exec))

    saved = tmp_path / "saved"
    # Successes: a comparison, a cached rerun, b64 + --save, saving and a contact sheet.
    cell("--model z-image-turbo,flux-2-dev --seed 1..2 --out grid")
    cell("--model z-image-turbo,flux-2-dev --seed 1..2 --out grid")
    cell(f"--model z-image-turbo --seed 3 --format b64_json --save {saved / 'cell'} --out one")
    grid = shell.user_ns["grid"]
    assert grid.done == 4 and sum(i.cached for i in grid.items) == 4
    assert shell.user_ns["one"].done == 1
    grid.save(saved / "grid")
    grid.contact_sheet().save(saved / "sheet.png")
    cell("--list-models", None)
    cell("--model z-image-turbo --seed 4", None)  # one-liner: prompt "" -> refused

    # Every kind of error, with the real key configured.
    for kind in ("html", "non_json", "no_images", "bad_base64", "not_image", "truncated"):
        hub.garbage = kind
        fmt = " --format b64_json" if kind == "bad_base64" else ""
        cell(f"--model z-image-turbo --seed 10 --no-cache --out bad{fmt}")
        leaks.add(kind, shell.user_ns["bad"].items[0].error)
    hub.garbage = None
    for status in (400, 404, 429, 500, 503):
        hub.fail_next(50 if status in (429, 503) else 1, status)
        cell("--model z-image-turbo --seed 11 --out bad")
        leaks.add(f"HTTP {status}", shell.user_ns["bad"].items[0].error)
        hub.reset()
    hub.url_ttl = -1.0
    cell("--model z-image-turbo --seed 12 --out bad")
    assert "expired" in (shell.user_ns["bad"].items[0].error or "")
    hub.url_ttl = 300.0
    source("%%oxenimage --model flux-2-devv --seed 1\na cube")
    source("%%oxenimage --seed 1..x\na cube")
    source(f"%%oxenimage --api-key {SECRET} --seed 1\na cube")  # refused without echoing it
    source(f"%%oxenimage --token={SECRET}\na cube")

    # A wrong key (401), then no key at all, then the network failing.
    monkeypatch.setenv("OXEN_API_KEY", WRONG)
    cell("--model z-image-turbo --seed 13 --out bad")
    assert "refused the key" in (shell.user_ns["bad"].items[0].error or "")
    monkeypatch.delenv("OXEN_API_KEY")
    cell("--model z-image-turbo --seed 14")
    monkeypatch.setenv("OXEN_API_KEY", SECRET)
    hub.latency = 0.6
    _fast(shell).transport.timeout = (5.0, 0.2)
    cell("--model z-image-turbo --seed 15 --out bad")
    assert "did not answer in time" in (shell.user_ns["bad"].items[0].error or "")
    hub.latency = 0.0
    for host in (f"http://127.0.0.1:{_closed_port()}", "http://oxen-secret-test.invalid"):
        monkeypatch.setenv("OXEN_HOST", host)
        _fast(shell)
        cell("--model z-image-turbo --seed 16")
    monkeypatch.setenv("OXEN_HOST", hub.url)

    # Everything the objects themselves say.
    for name in ("grid", "one", "bad"):
        value = shell.user_ns[name]
        leaks.add(name, repr(value))
        leaks.add(name + " html", value._repr_html_())
        for item in value.items:
            leaks.add(name + " item", repr(item) + repr(item.params) + str(item.error))
    for client in session_clients().values():
        leaks.add("client", repr(client))
    for record in caplog.records:
        leaks.add(f"log {record.name}", record.getMessage())
        leaks.add(f"log {record.name} args", repr(record.args))
        leaks.add(f"log {record.name} exc", record.exc_text or "")
    out = capsys.readouterr()
    leaks.add("capsys", out.out + out.err)

    # The test would have seen a leak: the key really was used, and logging really was on.
    assert any(r.authorization == f"Bearer {SECRET}" for r in hub.requests)
    assert any(r.authorization == f"Bearer {WRONG}" for r in hub.requests)
    assert any(r.name.startswith("urllib3") for r in caplog.records)

    files = leaks.add_files(tmp_path)
    assert files > 10 and (saved / "sheet.png").is_file() and list((saved / "cell").glob("*.png"))
    assert any(p.suffix == ".entry" for p in files_under(oxen_env))
    leaks.check()


def test_an_executed_notebook_never_holds_the_key(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the quickstart in a real kernel (as `python -m oxen_magic demo` does) and scan it all."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nbconvert = pytest.importorskip("nbconvert")
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", work / "quickstart.ipynb")
    notebook = nbformat.read(work / "quickstart.ipynb", as_version=4)
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path / "nb-cache"))
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()
    nbformat.write(notebook, work / "executed.ipynb")
    body, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    (work / "executed.html").write_text(body, encoding="utf-8")

    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert any("text/html" in o.get("data", {}) for o in outputs)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(r.authorization == f"Bearer {SECRET}" for r in hub.generate_calls())
    leaks = Leaks(SECRET)
    assert leaks.add_files(tmp_path) > 5  # the notebook, its HTML, saved PNGs, sheet, cache
    assert list((work / "out").rglob("*.png"))  # grid.save and contact_sheet().save ran
    leaks.check()


# -- the token goes only to the API's origin ------------------------------------------------------------


class _Recorder(ThreadingHTTPServer):
    """A loopback server that records each request's Authorization header and answers by path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def route(self, method: str, path: str, status: int, body: bytes = b"", **headers: str) -> None:
        self.routes[(method, path)] = (status, {k.replace("_", "-"): v for k, v in headers.items()}, body)

    def auth_seen(self) -> list[str | None]:
        with self.lock:
            return [a for _, _, a in self.seen]


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        status, headers, body = self.server.routes.get((self.command, self.path), (404, {}, b"{}"))
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _handle
    do_POST = _handle


@pytest.fixture
def servers() -> Iterator[tuple[_Recorder, _Recorder]]:
    """Two loopback servers on different ports: the API's origin and another origin."""
    api, other = _Recorder(), _Recorder()
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        for s in (api, other)
    ]
    for thread in threads:
        thread.start()
    yield api, other
    for server in (api, other):
        server.shutdown()
        server.server_close()


GENERATE = "/api/ai/images/generate"


def _images(**image: str) -> bytes:
    return json.dumps({"model": "m", "created": 1, "images": [image]}).encode()


def test_a_result_url_on_another_origin_never_gets_the_token(servers: tuple[_Recorder, _Recorder]) -> None:
    api, other = servers
    api.route("POST", GENERATE, 200, _images(url=other.url + "/results/x.png"))
    other.route("GET", "/results/x.png", 200, _png_bytes(), Content_Type="image/png")
    client = OxenClient(api.url, SECRET)
    generation = client.generate("m", "p", seed=1)
    assert generation.size == (8, 8)
    assert api.auth_seen() == [f"Bearer {SECRET}"]
    assert other.auth_seen() == [None]  # the other server got the request, but no token
    client.close()


def test_a_result_url_on_the_api_origin_gets_the_token(servers: tuple[_Recorder, _Recorder]) -> None:
    """The control for the test above: same origin, the token goes (result files may need it)."""
    api, _ = servers
    api.route("POST", GENERATE, 200, _images(url="/results/x.png"))
    api.route("GET", "/results/x.png", 200, _png_bytes(), Content_Type="image/png")
    client = OxenClient(api.url, SECRET)
    client.generate("m", "p")
    assert api.auth_seen() == [f"Bearer {SECRET}", f"Bearer {SECRET}"]
    client.close()


def test_same_port_other_host_name_is_another_origin(servers: tuple[_Recorder, _Recorder]) -> None:
    api, _ = servers
    port = api.server_address[1]
    api.route("POST", GENERATE, 200, _images(url=f"http://localhost:{port}/results/x.png"))
    api.route("GET", "/results/x.png", 200, _png_bytes(), Content_Type="image/png")
    client = OxenClient(api.url, SECRET)
    with contextlib.suppress(OxenError):  # localhost may not resolve here: the token is the point
        client.generate("m", "p")
    assert api.auth_seen()[0] == f"Bearer {SECRET}"
    assert api.auth_seen()[1:] in ([], [None])
    client.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_drops_the_token(
    servers: tuple[_Recorder, _Recorder], status: int
) -> None:
    api, other = servers
    api.route("POST", GENERATE, status, Location=other.url + "/elsewhere")
    body = _images(b64_json=base64.b64encode(_png_bytes()).decode())
    other.route("POST", "/elsewhere", 200, body)
    other.route("GET", "/elsewhere", 200, body)
    client = OxenClient(api.url, SECRET)
    client.generate("m", "p")
    assert api.auth_seen() == [f"Bearer {SECRET}"]
    assert other.auth_seen() == [None]
    client.close()


def test_a_result_download_redirected_away_drops_the_token(servers: tuple[_Recorder, _Recorder]) -> None:
    api, other = servers
    api.route("POST", GENERATE, 200, _images(url="/results/x.png"))
    api.route("GET", "/results/x.png", 302, Location=other.url + "/bucket/x.png")
    other.route("GET", "/bucket/x.png", 200, _png_bytes(), Content_Type="image/png")
    client = OxenClient(api.url, SECRET)
    client.generate("m", "p")
    assert api.auth_seen() == [f"Bearer {SECRET}", f"Bearer {SECRET}"]
    assert other.auth_seen() == [None]
    client.close()


def test_a_redirect_chain_back_to_the_api_is_still_the_api(servers: tuple[_Recorder, _Recorder]) -> None:
    """API → other → API: only the hops on the API's origin carry the token."""
    api, other = servers
    api.route("POST", GENERATE, 307, Location=other.url + "/hop")
    other.route("POST", "/hop", 307, Location=api.url + "/back")
    api.route("POST", "/back", 200, _images(b64_json=base64.b64encode(_png_bytes()).decode()))
    client = OxenClient(api.url, SECRET)
    client.generate("m", "p")
    assert api.auth_seen() == [f"Bearer {SECRET}", f"Bearer {SECRET}"]
    assert other.auth_seen() == [None]
    client.close()


def test_the_magic_sends_the_token_only_to_the_api(
    hub: LocalHub, shell: Any, servers: tuple[_Recorder, _Recorder]
) -> None:
    """End to end: the hub's answers are fine, but a result URL points at another loopback port."""
    _, other = servers
    other.route("GET", "/x.png", 200, _png_bytes(), Content_Type="image/png")
    client = _fast(shell)
    original = client.download
    client.download = lambda url: original(other.url + "/x.png")  # type: ignore[method-assign]
    _, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None and shell.user_ns["r"].done == 1
    assert [r.authorization for r in hub.generate_calls()] == [f"Bearer {SECRET}"]
    assert other.auth_seen() == [None]


# -- server text is scrubbed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (400, {"error": {"type": "invalid_params", "title": f"Bad token {SECRET}"}}, "application/json"),
        (401, {"error": {"message": f"Authorization: Bearer {SECRET} is not valid"}}, "application/json"),
        (404, {"error": f"no such key {SECRET}"}, "application/json"),
        (418, {"status_message": f"teapot for {SECRET}"}, "application/json"),
        (500, f"<html>Bearer {SECRET}</html>", "text/html"),
    ],
)
def test_server_text_echoing_the_key_is_scrubbed(
    servers: tuple[_Recorder, _Recorder], status: int, body: Any, content_type: str
) -> None:
    api, _ = servers
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    api.route("POST", GENERATE, status, raw, Content_Type=content_type)
    client = OxenClient(api.url, SECRET, max_retries=0)
    with pytest.raises(OxenError) as caught:
        client.generate("m", "p")
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None or SECRET not in str(caught.value.__cause__)
    client.close()


# -- how keys get in ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        f"--api-key {SECRET}",
        f"--api_key {SECRET}",
        f"--api-key={SECRET}",
        f"--token {SECRET}",
        f"--key {SECRET}",
        f"--oxen-api-key {SECRET}",
        f"--secret {SECRET}",
        f"--auth {SECRET}",
        f"--password {SECRET}",
    ],
)
def test_keys_are_never_accepted_as_a_magic_option(hub: LocalHub, shell: Any, option: str) -> None:
    for text in (f"%%oxenimage {option} --seed 1\n{PROMPT}", f"%oxenimage {option} --seed 1 {PROMPT}"):
        with capture_output() as captured:
            result = shell.run_cell(text)
        assert isinstance(result.error_in_exec, UsageError)
        message = str(result.error_in_exec)
        assert "never taken as an option" in message and "oxen_magic.login()" in message
        assert "OXEN_API_KEY" in message
        assert SECRET not in all_text(captured) and "Traceback" not in captured.stderr
    assert hub.generate_calls() == [] and hub.requests == []


def test_login_asks_without_echo_and_keeps_the_key_for_the_session(
    hub: LocalHub, shell: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    _, error = run_cell(shell, "--model z-image-turbo --seed 1", PROMPT)
    assert error is not None and "oxen_magic.login()" in error  # no key yet

    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
        prompts.append(prompt)
        return f"  {SECRET}\n"

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    with capture_output() as captured:
        oxen_magic.login()
    printed = capsys.readouterr()
    assert len(prompts) == 1 and hub.url in prompts[0] and SECRET not in prompts[0]
    shown = all_text(captured) + printed.out + printed.err
    assert "Key saved for this session" in shown and SECRET not in shown
    assert "OXEN_API_KEY" not in os.environ

    captured, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None and shell.user_ns["r"].done == 1
    assert [r.authorization for r in hub.generate_calls()] == [f"Bearer {SECRET}"]
    assert SECRET not in all_text(captured)
    assert not files_under(Path(os.environ["HOME"]))  # written nowhere


def test_login_with_nothing_typed_changes_nothing(
    hub: LocalHub, shell: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    monkeypatch.setattr(getpass, "getpass", lambda prompt="", stream=None: "   ")
    oxen_magic.login()
    assert "No key entered" in capsys.readouterr().out
    assert len(current_session().keys) == 0


def test_the_oxen_cli_config_is_used_without_the_env_var(
    hub: LocalHub, shell: Any, oxen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    netloc = hub.url.removeprefix("http://")
    folder = Path(os.environ["OXEN_CONFIG_DIR"])
    (folder / "auth_config.toml").write_text(
        f'default_host = "{netloc}"\n[[host_configs]]\nhost = "{netloc}"\nauth_token = "{SECRET}"\n'
    )
    captured, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None and shell.user_ns["r"].done == 1
    assert [r.authorization for r in hub.generate_calls()] == [f"Bearer {SECRET}"]
    assert SECRET not in all_text(captured)
    # The cache holds the image, never the key.
    Leaks(SECRET).add_files(oxen_env)
