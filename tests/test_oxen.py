"""Sweeps as Oxen datasets (`Results.to_oxen`, `--to-oxen`), the HTML gallery, input uploads.

The repositories are real ones, written and read back through the `oxenai` package. Uploads to
a remote repository are tested up to `oxen.RemoteRepo`'s calls (no Oxen server runs here): a
recording stand-in takes its place.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import all_text, files_under, run_cell

from oxen_magic.core.errors import OxenError, UsageProblem
from oxen_magic.exports import oxen_repo
from oxen_magic.exports.gallery import MAX_BYTES, embed, gallery_html
from oxen_magic.localhub import LocalHub
from oxen_magic.localhub.placeholder import input_sha_of
from oxen_magic.network.client import OxenClient
from oxen_magic.planning.options import build_spec
from oxen_magic.results.results import Results
from oxen_magic.session.run import Run

oxen = pytest.importorskip("oxen")


@pytest.fixture
def no_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Git sees only this (empty) global config: no user name or email anywhere."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return config


def sweep(hub: LocalHub, line: str, prompt: str) -> Results:
    client = OxenClient(hub.url)
    try:
        spec = build_spec(line + " --no-cache", prompt)
        return Run.prepare(spec, client).execute()
    finally:
        client.close()


def table(repo: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (repo / "images.jsonl").read_text().splitlines()]


def test_two_sweeps_make_two_commits_with_rows_and_images(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    repo = tmp_path / "dataset"
    first = sweep(hub, "--model flux-2-dev,z-image-turbo --seed 1..2", "a red cube")
    second = sweep(hub, "--model flux-2-dev --seed 7 --aspect-ratio 16:9", "a blue cone")

    one = first.to_oxen(repo)
    two = second.to_oxen(repo, message="blue cones")

    log = oxen.Repo(str(repo)).log()  # read back through oxenai
    assert log[0].message == "blue cones"
    assert len(log) == 2 and [c.id for c in log] == [two.commit, one.commit]
    assert "a red cube" in log[1].message
    rows = table(repo)
    items = [*first.items, *second.items]
    assert len(rows) == len(items) == 5
    for row, item in zip(rows, items, strict=True):
        assert (row["model"], row["prompt"], row["seed"]) == (item.model, item.prompt, item.seed)
        assert json.loads(row["parameters"]) == item.params
        assert row["host"] == hub.url and row["price"] == first.prices.get(item.model or "", row["price"])
        assert row["price"] is not None and row["elapsed"] is not None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row["created"])
        assert row["input_image"] is None
        with Image.open(repo / row["file"]) as png:  # decodes, and carries its parameters
            assert png.size == (row["width"], row["height"]) == item.size
            assert json.loads(png.info["parameters"]) == item.params
    assert rows[-1]["aspect_ratio"] == "16:9"
    assert one.files == [r["file"] for r in rows[:4]] and two.files == [rows[4]["file"]]
    assert rows[0]["sweep"] != rows[4]["sweep"]
    # Oxen's own data-frame loader reads the table.
    frame = oxen.df_utils.load(str(repo / "images.jsonl"))
    assert frame.height == 5 and "parameters" in frame.columns
    # Committed as a default author, and the note says so.
    assert log[0].email.endswith("@localhost")
    assert "neither Oxen nor git" in "\n".join(two.notes)
    assert not (Path(os.environ["OXEN_CONFIG_DIR"]) / "user_config.toml").exists()  # theirs untouched
    status = oxen.Repo(str(repo)).status()
    assert not status.added_files()


def test_author_from_oxen_config_then_git(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    results = sweep(hub, "--seed 1", "a cube")
    no_git.write_text("[user]\n\tname = Git Person\n\temail = git@example.com\n")
    export = results.to_oxen(tmp_path / "a")
    assert export.author == "Git Person <git@example.com>"
    assert "from git's user.name" in repr(export)

    config = Path(os.environ["OXEN_CONFIG_DIR"])
    (config / "user_config.toml").write_text('name = "Ox Person"\nemail = "ox@example.com"\n')
    export = results.to_oxen(tmp_path / "a")
    assert export.author == "Ox Person <ox@example.com>" and "from your Oxen config" in repr(export)
    assert [(c.author, c.email) for c in oxen.Repo(str(tmp_path / "a")).log()] == [
        ("Ox Person", "ox@example.com"),
        ("Git Person", "git@example.com"),
    ]


def test_push_without_a_remote_is_one_sentence_and_writes_nothing(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    results = sweep(hub, "--seed 1", "a cube")
    with pytest.raises(UsageProblem, match=r"has no remote to push to; add one with `oxen config") as exc:
        results.to_oxen(tmp_path / "r", push=True)
    assert str(exc.value).count(". ") == 0 and not (tmp_path / "r").exists()


def test_a_failed_push_keeps_the_commit(hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path) -> None:
    repo = tmp_path / "r"
    results = sweep(hub, "--seed 1", "a cube")
    results.to_oxen(repo)
    config = repo / ".oxen" / "config.toml"
    # A remote on a loopback port nothing listens on (set_remote itself would contact it).
    text = config.read_text().replace("remotes = []", "")
    config.write_text('[[remotes]]\nname = "origin"\nurl = "http://127.0.0.1:9/ns/r"\n' + text)
    assert oxen_repo.remotes(repo) == [("origin", "http://127.0.0.1:9/ns/r")]
    with pytest.raises(OxenError, match=r"is committed in .*, but pushing it to origin failed"):
        results.to_oxen(repo, push=True)
    assert len(oxen.Repo(str(repo)).log()) == 2


def test_without_oxenai_one_sentence_says_how_to_install(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = sweep(hub, "--seed 1", "a cube")
    monkeypatch.setitem(sys.modules, "oxen", None)  # import oxen now raises ImportError
    with pytest.raises(UsageProblem) as exc:
        results.to_oxen(tmp_path / "r")
    assert str(exc.value) == oxen_repo.INSTALL and 'pip install "oxen_magic[oxen]"' in str(exc.value)
    assert not (tmp_path / "r").exists()


def test_nothing_to_save_is_refused(hub: LocalHub, oxen_env: Path, tmp_path: Path) -> None:
    client = OxenClient(hub.url)
    spec = build_spec("--seed 1 --dry-run", "a cube")
    results = Run.prepare(spec, client).results
    client.close()
    with pytest.raises(UsageProblem, match="no finished images"):
        results.to_oxen(tmp_path / "r")


def test_magic_options_write_the_repository_and_the_gallery(shell: Any, tmp_path: Path, no_git: Path) -> None:
    repo, page = tmp_path / "ds", tmp_path / "g" / "sweep.html"
    captured, error = run_cell(
        shell, f"--model flux-2-dev --seed 1..2 --to-oxen {repo} --to-html {page}", "a lamp"
    )
    assert error is None
    text = all_text(captured)
    assert f"Created the Oxen repository {repo}: 2 image(s)" in text
    assert f"Wrote the gallery to {page}" in text
    assert len(table(repo)) == 2 and page.is_file()
    _, error = run_cell(shell, "--seed 1 --push", "a lamp")
    assert error is not None and "--push pushes what --to-oxen commits" in error


def test_public_params_never_keep_a_data_uri() -> None:
    raw = b"\x89PNG fake"
    uri = "data:image/png;base64," + base64.b64encode(raw).decode()
    ref = "sha256:" + hashlib.sha256(raw).hexdigest()
    params = {"prompt": "p", "input_image": [uri, "https://x/y.png"], "mask": uri, "seed": 3}
    assert oxen_repo.public_params(params) == {
        "prompt": "p",
        "input_image": [ref, "https://x/y.png"],
        "mask": ref,
        "seed": 3,
    }


# -- uploads -------------------------------------------------------------------------------------
class FakeRemote:
    """Records what `upload_input` asks of `oxen.RemoteRepo`; keeps uploaded files in a dict."""

    def __init__(self, repo: str, host: str, files: dict[str, bytes], calls: list[Any]) -> None:
        self.repo, self.host, self.files, self.calls = repo, host, files, calls

    def file_exists(self, path: str) -> bool:
        self.calls.append(("file_exists", path))
        return path in self.files

    def upload(self, src: str, commit_message: str, file_name: str, dst_dir: str) -> None:
        # The real upload reads the author from Oxen's config folder: one must be there.
        config = Path(os.environ["OXEN_CONFIG_DIR"])
        assert (config / "user_config.toml").is_file()
        self.calls.append(("upload", file_name, dst_dir, commit_message))
        self.files[f"{dst_dir}/{file_name}"] = Path(src).read_bytes()


def test_upload_input_is_content_addressed_and_uploads_once(oxen_env: Path, no_git: Path) -> None:
    files: dict[str, bytes] = {}
    calls: list[Any] = []
    made: list[tuple[str, str]] = []

    def factory(repo: str, host: str) -> FakeRemote:
        made.append((repo, host))
        return FakeRemote(repo, host, files, calls)

    data = b"\x89PNG\r\n\x1a\n not really"
    sha = hashlib.sha256(data).hexdigest()
    url = oxen_repo.upload_input(data, "me/inputs", "hub.oxen.ai", "png", remote_factory=factory)
    assert url == f"https://hub.oxen.ai/api/repos/me/inputs/file/main/oxen_magic/inputs/{sha}.png"
    assert files == {f"oxen_magic/inputs/{sha}.png": data}
    assert [c[0] for c in calls] == ["file_exists", "upload"]
    calls.clear()
    again = oxen_repo.upload_input(data, "me/inputs", "hub.oxen.ai", ".PNG", remote_factory=factory)
    assert again == url and [c[0] for c in calls] == ["file_exists"]  # nothing sent twice
    assert made == [("me/inputs", "hub.oxen.ai")] * 2
    assert not (Path(os.environ["OXEN_CONFIG_DIR"]) / "user_config.toml").exists()


@pytest.mark.parametrize("name", ["inputs", "a/b/c", "/", "me/ in"])
def test_upload_repo_must_be_namespace_slash_repo(name: str) -> None:
    with pytest.raises(UsageProblem, match="namespace/repo"):
        oxen_repo.upload_input(b"x", name, remote_factory=lambda r, h: pytest.fail("no call"))


def test_a_failed_upload_is_one_sentence(oxen_env: Path, no_git: Path) -> None:
    class Down(FakeRemote):
        def file_exists(self, path: str) -> bool:
            raise ValueError("Remote Error: repository me/inputs not found")

    with pytest.raises(
        OxenError, match=r"^Could not upload the input image to the Oxen repository me/inputs"
    ):
        oxen_repo.upload_input(b"x", "me/inputs", remote_factory=lambda r, h: Down(r, h, {}, []))


def test_remote_repo_is_built_from_the_host() -> None:
    made: dict[str, Any] = {}

    class Spy:
        def __init__(self, repo: str, host: str, revision: str, scheme: str) -> None:
            made.update(repo=repo, host=host, revision=revision, scheme=scheme)

    real = oxen.RemoteRepo
    oxen.RemoteRepo = Spy
    try:
        oxen_repo._remote_repo("me/inputs", "http://127.0.0.1:3000")
    finally:
        oxen.RemoteRepo = real
    assert made == {"repo": "me/inputs", "host": "127.0.0.1:3000", "revision": "main", "scheme": "http"}
    assert oxen_repo.file_url("me/r", "http://127.0.0.1:3000", "a b.png").endswith("/file/main/a%20b.png")


# -- gallery -------------------------------------------------------------------------------------
def test_gallery_is_standalone_with_every_prompt_and_parameter(
    hub: LocalHub, oxen_env: Path, tmp_path: Path
) -> None:
    results = sweep(hub, "--model flux-2-dev,z-image-turbo --seed 1..2 --steps 4", "a <b>bold</b> fox")
    page = results.to_html(tmp_path)
    assert page == tmp_path / "gallery.html"
    text = page.read_text()
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == results.done == 4
    for src in sources:
        assert src.startswith("data:image/jpeg;base64,")
        assert len(base64.b64decode(src.split(",", 1)[1])) <= MAX_BYTES
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from a network
    assert "a &lt;b&gt;bold&lt;/b&gt; fox" in text and "<b>bold</b> fox" not in text
    assert text.count("num_inference_steps: 4") >= 4 and "seed: 2" in text
    for label in ("flux-2-dev", "z-image-turbo", "seed 1", "seed 2"):
        assert f"<th>{label}</th>" in text


def test_a_large_noisy_image_is_shrunk_under_the_cap() -> None:
    noisy = Image.effect_noise((2048, 2048), 120).convert("RGB")
    data = embed(noisy)
    assert len(data) <= MAX_BYTES
    with Image.open(io.BytesIO(data)) as out:
        assert out.format == "JPEG" and max(out.size) <= 1024


def test_gallery_shows_failed_cells(hub: LocalHub, oxen_env: Path) -> None:
    hub.fail_next(1, 400)
    results = sweep(hub, "--seed 1", "a cube")
    assert results.failed == 1
    assert 'class="missing"' in gallery_html(results)


@pytest.fixture
def repo_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback stand-in for hub.oxen.ai's public file route: serves `root/<path>` at
    `/api/repos/<ns>/<repo>/file/main/<path>`, so the local hub can download uploaded inputs."""
    root = tmp_path / "served"
    root.mkdir()

    class Files(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.unquote(self.path).split("/file/main/", 1)[-1]
            target = root / path
            body = target.read_bytes() if target.is_file() else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_input_images_go_through_the_upload_repository(
    shell: Any,
    hub: LocalHub,
    tmp_path: Path,
    no_git: Path,
    repo_files: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`%config OxenMagic.upload_repo`: a local file is uploaded once (content-addressed) and sent
    as its repository file URL; the hub downloads it from there and marks its result with it."""
    base, root = repo_files
    calls: list[Any] = []

    class Remote(FakeRemote):
        def upload(self, src: str, commit_message: str, file_name: str, dst_dir: str) -> None:
            super().upload(src, commit_message, file_name, dst_dir)
            (root / dst_dir).mkdir(parents=True, exist_ok=True)
            (root / dst_dir / file_name).write_bytes(Path(src).read_bytes())

    files: dict[str, bytes] = {}
    monkeypatch.setattr(oxen_repo, "_remote_repo", lambda repo, host: Remote(repo, host, files, calls))
    picture = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), "orange").save(picture)
    data = picture.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    url = f"{base}/api/repos/me/inputs/file/main/oxen_magic/inputs/{sha}.png"

    shell.run_line_magic("config", f'OxenMagic.upload_repo = "{base}/me/inputs"')
    captured, error = run_cell(shell, f"-m flux-kontext-dev -i {picture} --seed 1,2 --out edits", "a hat")
    assert error is None, error
    assert "1 uploaded" in all_text(captured) and "data: URI" not in all_text(captured)
    assert [c[0] for c in calls] == ["file_exists", "upload"]  # one picture, one upload
    sent = [r.body["input_image"] for r in hub.edit_calls()]
    assert sent == [url, url]
    edits = shell.user_ns["edits"]
    assert edits.done == 2 and all(input_sha_of(i.data) == sha for i in edits)
    assert all(i.params["input_image"] == url for i in edits)

    calls.clear()
    captured, error = run_cell(shell, f"-m flux-kontext-dev -i {picture} --seed 3", "a hat")
    assert error is None and [c[0] for c in calls] == ["file_exists"]  # already there: not sent
    assert "0 uploaded, 1 already there" in all_text(captured)

    calls.clear()
    _, error = run_cell(shell, f"-m flux-kontext-dev -i {picture} --seed 4 --dry-run", "a hat")
    assert error is None and calls == []  # a dry run sends nothing, uploads included


def test_an_unreachable_upload_repository_stops_the_cell_before_any_request(
    shell: Any, hub: LocalHub, tmp_path: Path, no_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Down(FakeRemote):
        def file_exists(self, path: str) -> bool:
            raise ValueError("Remote Error: repository me/inputs not found")

    monkeypatch.setattr(oxen_repo, "_remote_repo", lambda repo, host: Down(repo, host, {}, []))
    picture = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), "orange").save(picture)
    shell.run_line_magic("config", 'OxenMagic.upload_repo = "me/inputs"')
    _, error = run_cell(shell, f"-m flux-kontext-dev -i {picture} --seed 1", "a hat")
    assert error is not None and error.startswith("Could not upload the input image to the Oxen repository")
    assert hub.edit_calls() == [] and hub.billed == 0


def test_the_key_is_written_nowhere(hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path) -> None:
    """Not in the repository (files, table, Oxen's own metadata), the gallery or Oxen's config."""
    assert hub.api_key
    results = sweep(hub, "--model flux-2-dev --seed 1,2", "a cube")
    results.to_oxen(tmp_path / "repo")
    results.to_html(tmp_path / "page.html")
    key = hub.api_key.encode()
    written = files_under(tmp_path, skip={"cache"})
    assert any(p.name == "images.jsonl" for p in written) and any(".oxen" in p.parts for p in written)
    assert [p for p in written if key in p.read_bytes()] == []


def test_gallery_headers_show_the_input_images(hub: LocalHub, oxen_env: Path, tmp_path: Path) -> None:
    for colour in ("red", "blue"):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{colour}.png")
    both = f"{tmp_path / 'red.png'},{tmp_path / 'blue.png'}"
    axis = gallery_html(sweep(hub, f"-m flux-kontext-dev -i {both} --seed 1", "a hat"))
    assert axis.count('class="oxen-input"') == 2 and "red.png" in axis and "blue.png" in axis
    fixed = gallery_html(sweep(hub, f"-m flux-kontext-dev -i {tmp_path / 'red.png'} --seed 1,2", "a hat"))
    assert fixed.count('class="oxen-input"') == 1 and "input: red.png" in fixed
    assert "data:image/png" not in fixed  # the input is shown as a thumbnail, never sent inline here


# -- one transaction as far as Oxen allows (issue 20) -------------------------------------------
ROOT = Path(__file__).resolve().parent.parent

#: A process that runs one sweep against the hub and exports it to a repository, with one Oxen step
#: replaced by an abrupt death (`os._exit`: no cleanup, no finally, as a kill), or that waits for
#: a line on its stdin first (two writers at once), and another before it exits.
WRITER = """
import os, sys
import oxen
import oxen_magic
from oxen_magic.exports import saving
from oxen_magic.core.errors import OxenError
repo, prompt, die, go = sys.argv[1:5]
grid = oxen_magic.generate(prompt, seed="1,2", no_cache=True)
if die == "commit":
    oxen.Repo.commit = lambda self, message: os._exit(9)
if die == "image":
    real, count = saving.write_new, [0]
    def write_new(path, data):
        count[0] += 1
        if count[0] == 2:
            os._exit(9)
        return real(path, data)
    saving.write_new = write_new
if go:
    print("ready", flush=True)
    sys.stdin.readline()  # go
try:
    print(grid.to_oxen(repo), flush=True)
except OxenError as exc:
    print(exc, flush=True)
    code = 3
else:
    code = 0
if go:
    sys.stdin.readline()  # stay alive until told to quit, as a notebook kernel does
sys.exit(code)
"""


def writer(repo: Path, prompt: str, die: str = "", go: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(repo), prompt, die, "go" if go else ""],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tell(procs: list[subprocess.Popen[str]], line: str) -> None:
    """Send each writer the line it waits for (both at once: neither has a head start)."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()


def committed_rows(repo: Path) -> list[dict[str, Any]]:
    """The table and images as committed: the working copies are deleted and restored from HEAD
    through Oxen (a file that was never committed cannot come back), then read."""
    import shutil

    shutil.rmtree(repo / "images")
    (repo / "images.jsonl").unlink()
    handle = oxen.Repo(str(repo))
    handle.restore("images.jsonl")
    rows = table(repo)
    for row in rows:
        handle.restore(row["file"])
        with Image.open(repo / row["file"]) as png:
            png.load()
    return rows


def test_a_kill_between_the_table_and_the_commit_is_finished_next_time(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    repo = tmp_path / "ds"
    assert writer(repo, "a first sweep").wait(120) == 0  # (Oxen: one process per repository at a time)
    killed = writer(repo, "a killed sweep", die="commit")
    assert killed.wait(120) == 9, killed.communicate()
    assert len(table(repo)) == 4  # the rows are there, uncommitted
    export = sweep(hub, "--seed 1", "a later sweep").to_oxen(repo)
    assert "Finished an earlier export to this repository that was stopped before its commit" in repr(export)
    rows = committed_rows(repo)
    assert [r["prompt"] for r in rows] == [*["a first sweep"] * 2, *["a killed sweep"] * 2, "a later sweep"]
    assert len({r["file"] for r in rows}) == len(rows)  # no duplicate rows
    assert [c.message for c in oxen.Repo(str(repo)).log()][1].endswith("(finished after an interruption)")
    assert not (repo / ".oxen" / "oxen_magic-journal.json").exists()


def test_a_kill_while_writing_images_is_undone_next_time(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    repo = tmp_path / "ds"
    assert writer(repo, "a first sweep").wait(120) == 0
    killed = writer(repo, "a killed sweep", die="image")
    assert killed.wait(120) == 9, killed.communicate()
    assert len(list((repo / "images").iterdir())) == 2  # a half-written sweep folder
    export = sweep(hub, "--seed 1", "a later sweep").to_oxen(repo)
    assert "was stopped while writing its images; they were removed" in repr(export)
    assert len(list((repo / "images").iterdir())) == 2  # the first and the later sweep
    assert [r["prompt"] for r in committed_rows(repo)] == [*["a first sweep"] * 2, "a later sweep"]


def test_two_writers_at_once_one_commits_the_other_is_refused_in_one_sentence(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    """Two living processes (two notebooks): the lock serialises them, and Oxen keeps the
    repository for the first while it lives, so the second is refused in one sentence with nothing
    of its sweep written (it used to die of a Rust panic, its rows committed by the other)."""
    repo = tmp_path / "ds"
    assert writer(repo, "a first sweep").wait(120) == 0
    procs = [writer(repo, f"writer {n}", go=True) for n in (1, 2)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    tell(procs, "go")
    said = [proc.stdout.readline() for proc in procs if proc.stdout is not None]
    tell(procs, "quit")
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert sorted(proc.returncode for proc in procs) == [0, 3], outs
    assert all("Traceback" not in err and "panicked" not in err for _, err in outs), outs
    refused = said[[proc.returncode for proc in procs].index(3)]
    assert refused.startswith("Another process (a notebook kernel or script that used it) has the Oxen")
    assert refused.strip().endswith("(nothing of this sweep was committed).")
    winner = [f"writer {n}" for n, proc in zip((1, 2), procs, strict=True) if proc.returncode == 0]
    rows = committed_rows(repo)
    assert [r["prompt"] for r in rows] == [*["a first sweep"] * 2, *winner * 2]
    assert len(list((repo / "images").iterdir())) == 2  # nothing of the refused sweep left
    assert len(oxen.Repo(str(repo)).log()) == 2


def test_a_writer_that_waits_too_long_is_refused_in_one_sentence(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oxen_magic.exports import oxen_export

    repo = tmp_path / "ds"
    results = sweep(hub, "--seed 1", "a cube")
    results.to_oxen(repo)
    with oxen_export.locked(repo):  # another writer holds the repository
        monkeypatch.setattr(oxen_export, "LOCK_WAIT", 0.0)
        with pytest.raises(OxenError, match=r"^Another process is writing to the Oxen repository .*\.$"):
            results.to_oxen(repo)
    assert len(table(repo)) == 1 and len(oxen.Repo(str(repo)).log()) == 1


class PanicException(BaseException):
    """Stands in for `pyo3_runtime.PanicException`: a Rust panic is a BaseException."""


def test_a_panic_in_oxen_is_one_sentence_and_rolled_back(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "ds"
    sweep(hub, "--seed 5", "a first sweep").to_oxen(repo)
    before = (repo / "images.jsonl").read_bytes()

    def panic(self: Any, message: str) -> None:
        raise PanicException("called `Result::unwrap()` on an `Err` value: LockError")

    with monkeypatch.context() as patch, pytest.raises(OxenError) as exc:
        patch.setattr(oxen.Repo, "commit", panic)
        sweep(hub, "--seed 1,2", "a panicked sweep").to_oxen(repo)
    assert str(exc.value).startswith(f"Oxen could not commit the sweep in {repo} (called `Result::unwrap()`")
    assert str(exc.value).endswith("; nothing was committed.") and "\n" not in str(exc.value)
    assert (repo / "images.jsonl").read_bytes() == before  # rolled back
    assert len(list((repo / "images").iterdir())) == 1
    status = oxen.Repo(str(repo)).status()
    assert status.added_files() == [] and status.modified_files() == []
    sweep(hub, "--seed 1", "a later sweep").to_oxen(repo)
    assert [r["prompt"] for r in committed_rows(repo)] == ["a first sweep", "a later sweep"]


def test_a_failed_oxen_export_makes_the_cli_exit_1(
    hub: LocalHub, oxen_env: Path, tmp_path: Path, no_git: Path
) -> None:
    """The repository's own metadata made unreadable after the check: Oxen's error, one sentence."""
    repo = tmp_path / "ds"
    sweep(hub, "--seed 5", "a first sweep").to_oxen(repo)
    script = (
        "import shutil, sys\n"
        "from oxen_magic.exports import exports\n"
        "real = exports.export\n"
        "def export(results, spec, sheet=False):\n"
        "    shutil.rmtree(sys.argv[1] + '/.oxen/history', ignore_errors=True)\n"
        "    (open(sys.argv[1] + '/.oxen/HEAD', 'w').write('garbage'))\n"
        "    return real(results, spec, sheet=sheet)\n"
        "exports.export = export\n"
        "from oxen_magic.frontends.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(repo), "a cube", "-s", "1", "--to-oxen", str(repo), "--save", "o"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    failures = [line for line in done.stderr.splitlines() if line.startswith("oxen-image: ")]
    assert len(failures) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Saved 1 PNG file(s) to o." in done.stdout  # the other exports still ran
