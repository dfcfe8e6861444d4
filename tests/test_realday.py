"""The real day: every front end in each configuration a room has, against https://hub.oxen.ai.

The rest of the suite points `OXEN_HOST` at a local hub on loopback. Here `OXEN_HOST` is unset, so
the product talks to its default host, https://hub.oxen.ai, which `realday_support.stand_in`
answers over TLS (a throwaway CA trusted through `REQUESTS_CA_BUNDLE`) on a loopback port. The
configurations (issue 19):

* (a) a key and no OXEN_HOST: images come from the stand-in, and the key reaches nothing else;
* (b) no key, online: `connect()` falls back to the local hub in one line, cells are placeholders;
* (c) no key, hub.oxen.ai unreachable, a pack imported: the pack answers, nothing is requested;
* (d) a login after the fallback: the next cell is real;
* (e) the network lost mid-session with a key: one sentence, no traceback, nothing billed twice.

The fixtures `hub` and `oxen_env` override conftest's, so conftest's `shell` (a real
InteractiveShell) runs in the real day's environment.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output
from realday_support import CHECKOUT, KEYED, KEYLESS, OFFLINE, REAL_URL, StandIn, hosts_seen, stand_in
from support import all_text, fast_client, run_cell, shown_html

import oxen_magic
import oxen_magic.network.keys
from oxen_magic.core.errors import NetworkError, OxenError
from oxen_magic.frontends.panel import Panel
from oxen_magic.localhub import LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.results.results import Results
from oxen_magic.session.session import current_session, reset_session

PROMPT = "a paper boat on a pond"
TURBO = "z-image-turbo"
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


@pytest.fixture
def real(tmp_path: Path) -> Iterator[StandIn]:
    with stand_in(tmp_path) as running:
        yield running


@pytest.fixture
def hub(real: StandIn) -> LocalHub:
    """conftest's `hub`, here the stand-in for hub.oxen.ai."""
    return real.hub


@pytest.fixture
def oxen_env(real: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """(a) by default: a key, OXEN_HOST unset, the stand-in's CA trusted; HOME, cache and the
    Oxen CLI config under tmp_path. Returns the cache folder."""
    for name in ("home", "oxen-config"):
        (tmp_path / name).mkdir()
    monkeypatch.delenv("OXEN_HOST", raising=False)
    monkeypatch.delenv("OXEN_MAGIC_MAX_SPEND", raising=False)
    monkeypatch.setenv("OXEN_API_KEY", real.key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(real.ca_file))
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path / "oxen-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "cache"


@pytest.fixture
def keyless(oxen_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("OXEN_API_KEY")
    return oxen_env


def _clean(real: StandIn, *texts: str) -> None:
    """The key was sent only to hub.oxen.ai, with every request there, and shown nowhere."""
    assert hosts_seen(real.hub) <= {"hub.oxen.ai"}
    generate = real.hub.generate_calls()
    assert generate and all(r.authorization == f"Bearer {real.key}" for r in generate)
    for text in texts:
        assert real.key not in text


def _sent(real: StandIn) -> int:
    return len(real.hub.generate_calls())


def _panel(shell: Any, line: str) -> Results:
    panel = Panel(shell, line=line)
    try:
        assert not panel.generate_button.disabled, panel.errors
        panel.generate_button.click()
        assert panel.wait(30), "the panel's run did not finish"
        assert panel.result is not None, panel.status.value
        return panel.result
    finally:
        panel.close()


def _cli(
    real: StandIn, config: str, home: Path, *args: str, cwd: Path, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """`oxen-image` in a child process of `config` (resolver, CA, keys as in the room)."""
    env = {**real.env(config, home), **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "oxen_magic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- the certificate authority ----------------------------------------------------------------------
def test_the_stand_in_is_trusted_only_through_the_ca_variables(
    real: StandIn, oxen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A company network's CA: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE; without either, the
    stand-in's certificate is refused (so the variables, not a relaxed check, make it work)."""
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NetworkError) as refused:
        OxenClient(max_retries=0).models()
    assert "Cannot trust the certificate of https://hub.oxen.ai" in str(refused.value)
    assert "REQUESTS_CA_BUNDLE" in str(refused.value) and "\n" not in str(refused.value)
    assert real.hub.requests == []  # the handshake failed: nothing was asked
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(real.ca_file))
        assert any(m.id == TURBO for m in OxenClient(max_retries=0).models())
        monkeypatch.delenv(name)
    monkeypatch.setenv("SSL_CERT_FILE", str(real.ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(real.ca_file.with_name("missing.pem")))
    with pytest.raises(OxenError) as missing:
        OxenClient(max_retries=0).models()
    said = str(missing.value)
    assert said.startswith("REQUESTS_CA_BUNDLE names ") and "does not exist" in said


# -- (a) a key, OXEN_HOST unset ---------------------------------------------------------------------
def test_keyed_magic_reaches_the_default_host(real: StandIn, shell: Any) -> None:
    with capture_output() as said:
        assert oxen_magic.connect() == REAL_URL
    expected = f"Cells go to the Oxen API at {REAL_URL} (your key is used; images are billed)."
    assert said.stdout.strip() == expected
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..3 --out grid", PROMPT)
    assert error is None, error
    grid = shell.user_ns["grid"]
    assert grid.done == 3 and grid.host == REAL_URL and not any(i.placeholder for i in grid)
    assert all(i.url and i.url.startswith(f"{REAL_URL}/") for i in grid)
    assert "placeholder" not in shown_html(captured)
    assert _sent(real) == 3 and real.hub.billed == 3
    _clean(real, all_text(captured))
    assert "OXEN_HOST" not in os.environ


def test_keyed_generate_and_panel_reach_the_default_host(real: StandIn, shell: Any) -> None:
    grid = oxen_magic.generate(PROMPT, model=TURBO, seed="1..2")
    assert grid.done == 2 and grid.host == REAL_URL and _sent(real) == 2
    result = _panel(shell, f"--model {TURBO} --seed 3..4 {PROMPT}")
    assert result.done == 2 and result.host == REAL_URL and not any(i.placeholder for i in result)
    assert _sent(real) == 4
    _clean(real, repr(grid), result._repr_html_())


def test_keyed_cli_reaches_the_default_host(real: StandIn, oxen_env: Path, tmp_path: Path) -> None:
    args = (PROMPT, "-m", TURBO, "-s", "1..2", "--save", "out")
    done = _cli(real, KEYED, tmp_path / "child", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("z-image*.png")) == [
        "z-image-turbo_seed-1.png",
        "z-image-turbo_seed-2.png",
    ]
    assert _sent(real) == 2 and "Traceback" not in done.stderr
    _clean(real, done.stdout, done.stderr)


# -- (b) no key, online -----------------------------------------------------------------------------
def test_keyless_falls_back_in_one_line_and_marks_placeholders(
    real: StandIn, keyless: Path, shell: Any
) -> None:
    with capture_output() as said:
        url = oxen_magic.connect()
    lines = said.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("No OXEN_API_KEY found: using the local Oxen hub at ")
    assert url in lines[0] and "oxen_magic.login() switches to https://hub.oxen.ai" in lines[0]
    assert "OXEN_HOST" not in os.environ and "OXEN_API_KEY" not in os.environ  # nothing stale left
    assert current_session().where() == url
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..2 --out grid", PROMPT)
    assert error is None, error
    grid = shell.user_ns["grid"]
    assert grid.done == 2 and all(i.placeholder for i in grid)
    assert shown_html(captured).count("placeholder") >= 2 and "placeholder" in repr(grid[0])
    assert real.hub.generate_calls() == []
    generated = oxen_magic.generate(PROMPT, model=TURBO, seed=3)
    assert generated.done == 1 and generated[0].placeholder
    result = _panel(shell, f"--model {TURBO} --seed 4 {PROMPT}")
    assert result.done == 1 and result[0].placeholder and "placeholder" in result._repr_html_()
    local = current_session().local_hub
    assert local is not None and len(local.generate_calls()) == 4 and real.hub.generate_calls() == []


def test_keyless_cli_names_both_ways_on(real: StandIn, keyless: Path, tmp_path: Path) -> None:
    done = _cli(real, "no-key", tmp_path / "child", PROMPT, "-m", TURBO, "-s", "1", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "login" in done.stderr and "--host local" in done.stderr and "Traceback" not in done.stderr
    args = (PROMPT, "-m", TURBO, "-s", "1", "--host", "local")
    local = _cli(real, "no-key", tmp_path / "child", *args, cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert (tmp_path / "oxen-images" / "z-image-turbo_seed-1.png").is_file()
    assert real.hub.generate_calls() == []


# -- (d) a login after the fallback -----------------------------------------------------------------
def test_login_after_a_fallback_makes_the_next_cell_real(
    real: StandIn, keyless: Path, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    oxen_magic.connect()
    _, error = run_cell(shell, f"--model {TURBO} --seed 1 --out before", PROMPT)
    assert error is None and shell.user_ns["before"][0].placeholder
    prompts: list[str] = []

    def typed(prompt: str = "", stream: Any = None) -> str:
        prompts.append(prompt)
        return real.key

    monkeypatch.setattr(getpass, "getpass", typed)
    with capture_output() as said:
        oxen_magic.login()
    assert prompts == [f"Oxen API key for {REAL_URL} (from your oxen.ai profile settings): "]
    assert f"cells now go to {REAL_URL}" in said.stdout and real.key not in said.stdout
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..2 --out after", PROMPT)
    assert error is None, error
    after = shell.user_ns["after"]
    assert after.done == 2 and after.host == REAL_URL and not any(i.placeholder for i in after)
    assert _sent(real) == 2  # seed 1 too: the local hub's placeholder never stands in for it
    assert "OXEN_HOST" not in os.environ and "OXEN_API_KEY" not in os.environ
    _clean(real, all_text(captured))
    assert oxen_magic.generate(PROMPT, model=TURBO, seed=3).host == REAL_URL
    result = _panel(shell, f"--model {TURBO} --seed 4 {PROMPT}")
    assert result.host == REAL_URL and not result[0].placeholder and _sent(real) == 4


def test_a_refused_key_after_login_names_login(
    real: StandIn, keyless: Path, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    oxen_magic.connect()
    monkeypatch.setattr(getpass, "getpass", lambda prompt="", stream=None: "oxen-wrong-key-123")
    oxen_magic.login()
    _, error = run_cell(shell, f"--model {TURBO} --seed 1", PROMPT)
    assert error is not None and "HTTP 401" in error and "oxen_magic.login()" in error
    assert "\n" not in error and "oxen-wrong-key-123" not in error
    assert real.hub.generate_calls() == []


# -- (c) no key, offline, a pack imported ----------------------------------------------------------
def _make_pack(real: StandIn, tmp_path: Path, seeds: str) -> Path:
    """Online with a key, as the instructor does the day before; returns the pack."""
    made = oxen_magic.generate(PROMPT, model=TURBO, seed=seeds)
    assert made.done == len(made.items) and made.host == REAL_URL
    pack = tmp_path / "room-pack.zip"
    oxen_magic.export_pack(str(pack))
    return pack


def _student_offline(real: StandIn, tmp_path: Path, pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another machine: an empty cache, no key, hub.oxen.ai unreachable, the pack imported."""
    reset_session()
    monkeypatch.delenv("OXEN_API_KEY")
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path / "student-cache"))
    real.go_offline()
    real.hub.reset()
    report = oxen_magic.import_pack(str(pack))
    assert report.entries >= 2 and report.hosts == [REAL_URL]


def test_offline_pack_answers_every_front_end_with_no_request(
    real: StandIn, oxen_env: Path, shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = _make_pack(real, tmp_path, "1..4")
    _student_offline(real, tmp_path, pack, monkeypatch)
    # without connect(): the default host's cache answers
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..2 --out grid", PROMPT)
    assert error is None, error
    assert all(i.cached and not i.placeholder for i in shell.user_ns["grid"])
    # with connect() (which falls back to the local hub): the pack still answers first
    oxen_magic.connect()
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..4 --out grid", PROMPT)
    assert error is None, error
    grid = shell.user_ns["grid"]
    assert grid.done == 4 and all(i.cached and not i.placeholder for i in grid)
    assert "placeholder" not in shown_html(captured)
    assert not any(i.placeholder for i in oxen_magic.generate(PROMPT, model=TURBO, seed="3..4"))
    result = _panel(shell, f"--model {TURBO} --seed 2..3 {PROMPT}")
    assert result.done == 2 and all(i.cached and not i.placeholder for i in result)
    local = current_session().local_hub
    assert local is not None and local.generate_calls() == []
    assert real.hub.requests == []  # offline: nothing reached hub.oxen.ai
    # what the pack cannot answer is drawn by the local hub, and says so
    captured, error = run_cell(shell, f"--model {TURBO} --seed 4..5 --out mixed", PROMPT)
    mixed = shell.user_ns["mixed"]
    assert error is None and [i.placeholder for i in mixed] == [False, True]
    assert len(local.generate_calls()) == 1


def test_an_edit_of_a_pack_image_is_answered_by_the_pack(
    real: StandIn, oxen_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain (generate, then edit the result) made online comes back whole offline: the pack's
    image is named by its request to hub.oxen.ai, so the edit's request is found in the pack too."""
    grid = oxen_magic.generate(PROMPT, model=TURBO, seed=1)
    edit = {"model": "flux-kontext-dev", "input_image": "best", "seed": 1}
    made = oxen_magic.generate("paint it blue", variables={"best": grid[0]}, **edit)
    assert made.done == 1 and _sent(real) == 1 and len(real.hub.edit_calls()) == 1
    pack = tmp_path / "chain.zip"
    oxen_magic.export_pack(str(pack))
    _student_offline(real, tmp_path, pack, monkeypatch)
    oxen_magic.connect()
    again = oxen_magic.generate(PROMPT, model=TURBO, seed=1)
    edited = oxen_magic.generate("paint it blue", variables={"best": again[0]}, **edit)
    assert edited.done == 1 and edited[0].cached and not edited[0].placeholder
    assert edited[0].data == made[0].data
    local = current_session().local_hub
    assert local is not None and local.generate_calls() == [] and local.edit_calls() == []


def test_offline_cli_reads_the_pack(
    real: StandIn, oxen_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = _make_pack(real, tmp_path, "1..2")
    real.hub.reset()
    home = tmp_path / "student"
    imported = _cli(real, OFFLINE, home, "pack", "import", str(pack), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    done = _cli(real, OFFLINE, home, PROMPT, "-m", TURBO, "-s", "1..2", "--save", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 from cache" in done.stdout and len(list((tmp_path / "out").glob("z-image*.png"))) == 2
    assert real.hub.requests == []


# -- (e) the network lost mid-session, with a key ---------------------------------------------------
def test_network_lost_mid_session_is_one_sentence_and_bills_nothing_twice(real: StandIn, shell: Any) -> None:
    _, error = run_cell(shell, f"--model {TURBO} --seed 1..2 --out first", PROMPT)
    assert error is None and shell.user_ns["first"].done == 2
    fast_client(shell, max_retries=1)
    real.go_offline()
    real.hub.stop()  # the Wi-Fi goes: open connections drop, the name no longer resolves
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..4 --out later", PROMPT)
    text = all_text(captured) + (error or "")
    assert "Traceback" not in text and real.key not in text
    assert error is None, error  # the grid is shown: what the cache holds, and why the rest is not
    later = shell.user_ns["later"]
    assert [i.status for i in later] == ["done", "done", "failed", "failed"]
    assert later[0].cached and later[1].cached and all(i.offline for i in later.items[2:])
    assert later[2].error == "Cannot find the host https://hub.oxen.ai (DNS failed); check your network."
    assert any("could not reach the server" in n for n in later.notes)
    # generate() and the panel: the same, one sentence per image that could not be reached
    again = oxen_magic.generate(PROMPT, model=TURBO, seed="2..3")
    assert [i.status for i in again] == ["done", "failed"] and again[1].offline
    result = _panel(shell, f"--model {TURBO} --seed 5 {PROMPT}")
    assert result[0].status == "failed" and result[0].offline and "Traceback" not in result._repr_html_()
    assert real.hub.billed == 2 and len(real.hub.generate_calls()) == 2  # nothing sent again
    assert current_session().spend().images == 2


def test_network_lost_cli_keeps_what_the_cache_has(real: StandIn, oxen_env: Path, tmp_path: Path) -> None:
    home = tmp_path / "child"
    args = (PROMPT, "-m", TURBO, "-s", "1..2", "--save", "out")
    assert _cli(real, KEYED, home, *args, cwd=tmp_path).returncode == 0
    offline = {"OXEN_TEST_RESOLVE": f"hub.oxen.ai:443={OFFLINE}"}  # the same machine, the Wi-Fi gone
    done = _cli(
        real, KEYED, home, PROMPT, "-m", TURBO, "-s", "1..3", "--save", "out", cwd=tmp_path, **offline
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and real.key not in done.stdout + done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed: ")]
    assert failed == [
        "failed: z-image-turbo seed 3: Cannot find the host https://hub.oxen.ai (DNS failed); "
        "check your network."
    ], done.stderr
    assert real.hub.billed == 2 and len(real.hub.generate_calls()) == 2


# -- every notebook under nbval, in (a), (b) and (c) ------------------------------------------------
def _nbval(real: StandIn, config: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Every notebook of notebooks/ in one nbval run (one kernel at a time) in `config`.

    The notebooks run in a copy of the folder under `home`, as a student's would: what they save
    (`out/...`, read back by a later cell) never meets another run's files, and other runs of
    the same notebooks (the suite's own, the other configurations) go on at the same time."""
    env = real.env(config, home)
    env["OXEN_NOTEBOOK_HUB"] = "off"  # notebooks/conftest.py: no hub of its own, no OXEN_HOST
    folder = home / "notebooks"
    shutil.copytree(
        CHECKOUT / "notebooks",
        folder,
        ignore=shutil.ignore_patterns("out", "__pycache__", ".ipynb_checkpoints"),
    )
    config_file = str(CHECKOUT / "pyproject.toml")  # the suite's nbval options (--nbval-lax, ...)
    # one process (`-n 0`): this test is already one of the outer run's units, and xdist's own
    # workers would only cost their start-ups on a machine whose cores are busy
    args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        "-c",
        config_file,
        "--rootdir",
        str(folder),
        str(folder),
    ]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.fixture
def big(tmp_path: Path) -> Iterator[StandIn]:
    """The stand-in drawing 512 px images, as the notebooks' own hub does."""
    with stand_in(tmp_path, image_size=512) as running:
        yield running


def _passed(run: subprocess.CompletedProcess[str]) -> None:
    """nbval passed, having run the notebooks' cells (not an empty collection)."""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    found = re.search(r"(\d+) passed", run.stdout)
    assert found is not None and int(found.group(1)) >= 60, run.stdout[-2000:]


def test_every_notebook_with_a_key_then_offline_with_its_pack(big: StandIn, tmp_path: Path) -> None:
    _passed(_nbval(big, KEYED, tmp_path / "instructor"))
    assert big.hub.generate_calls() and hosts_seen(big.hub) <= {"hub.oxen.ai"}
    assert all(r.authorization == f"Bearer {big.key}" for r in big.hub.generate_calls())
    pack = tmp_path / "room.zip"
    exported = _cli(big, KEYED, tmp_path / "instructor", "pack", "export", str(pack), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    big.hub.reset()
    imported = _cli(big, OFFLINE, tmp_path / "student", "pack", "import", str(pack), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    _passed(_nbval(big, OFFLINE, tmp_path / "student"))
    assert big.hub.requests == []


def test_every_notebook_with_no_key_online(big: StandIn, tmp_path: Path) -> None:
    _passed(_nbval(big, KEYLESS, tmp_path / "student"))
    assert big.hub.generate_calls() == []


def test_connect_again_says_where_cells_go(
    real: StandIn, keyless: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setup cell run twice never calls the local hub "the Oxen API"; after a login it says the
    real host, and the explicit "local" still means the local hub."""
    first = oxen_magic.connect()
    with capture_output() as again:
        assert oxen_magic.connect() == first
    assert again.stdout.startswith("No OXEN_API_KEY found: using the local Oxen hub at ")
    monkeypatch.setattr(getpass, "getpass", lambda prompt="", stream=None: real.key)
    oxen_magic.login()
    with capture_output() as after:
        assert oxen_magic.connect() == REAL_URL
    assert after.stdout.startswith(f"Cells go to the Oxen API at {REAL_URL}")
    with capture_output() as local:
        assert oxen_magic.connect("local") == first
    assert "using the local Oxen hub" in local.stdout and current_session().where() == first


# -- the test infrastructure itself -----------------------------------------------------------------
def test_child_processes_reach_only_loopback_and_the_stand_in(real: StandIn, tmp_path: Path) -> None:
    """In a process the tests start, hub.oxen.ai is the stand-in and nothing else is reachable:
    no other name is looked up for real and no outside address is connected to."""
    probe = (
        "import socket\n"
        "print(socket.getaddrinfo('hub.oxen.ai', 443)[0][4])\n"
        "for name in ('oxen-magic-test.example', 'pypi.org'):\n"
        "    try: socket.getaddrinfo(name, 443); print('resolved', name)\n"
        "    except socket.gaierror: print('refused', name)\n"
        "s = socket.socket(); s.settimeout(2)\n"
        "try: s.connect(('192.0.2.1', 443)); print('connected')\n"
        "except ConnectionRefusedError: print('refused 192.0.2.1')\n"
    )
    env = real.env(KEYED, tmp_path / "child")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"('127.0.0.1', {real.hub.port})",
        "refused oxen-magic-test.example",
        "refused pypi.org",
        "refused 192.0.2.1",
    ]


def test_no_notebook_reads_os_environ_unguarded() -> None:
    """`os.environ["X"]` raises KeyError in a configuration that does not set X (issue 19, the
    workshop's Wi-Fi drill with a key and no OXEN_HOST): notebooks use .get() or set it."""
    import nbformat

    read = re.compile(r"os\.environ\[[^\]]+\](?!\s*=[^=])")
    offending = [
        f"{path.name} {cell.get('id')}"
        for path in sorted((CHECKOUT / "notebooks").glob("*.ipynb"))
        for cell in nbformat.read(path, 4).cells
        if cell.cell_type == "code" and read.search(cell.source)
    ]
    assert offending == []


def test_the_suite_guard_still_refuses_outside_with_the_stand_in_installed(
    real: StandIn, request: pytest.FixtureRequest
) -> None:
    """In the test process the resolver maps hub.oxen.ai and leaves every other name and address
    to conftest's loopback guard, which still refuses (and records) them."""
    import socket

    # tests/conftest.py as pytest loaded it (sys.modules["conftest"] may be notebooks/conftest.py)
    guard = next(
        m
        for m in request.config.pluginmanager.get_plugins()
        if hasattr(m, "_OUTSIDE") and hasattr(m, "_loopback_only")
    )
    assert socket.getaddrinfo("hub.oxen.ai", 443)[0][4] == ("127.0.0.1", real.hub.port)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("pypi.org", 443)
    with socket.socket() as outside, pytest.raises(ConnectionRefusedError, match="loopback only"):
        outside.connect(("192.0.2.1", 443))
    assert guard._OUTSIDE == ["lookup pypi.org", "connect 192.0.2.1"]
    guard._OUTSIDE.clear()  # recorded as it must be; this test meant to reach out
