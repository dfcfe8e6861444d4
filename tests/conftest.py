"""Shared fixtures: a real loopback hub, an environment pointing at it, and a real IPython shell.

* `make_hub`: a factory that starts a `LocalHub` with any knobs (`make_hub(latency=0.5)`) on a
  free loopback port and stops every hub it started when the test ends.
* `hub`: a `LocalHub` (64 px images, no latency) started per test by `make_hub`, so every test
  sees fresh recorded requests, catalogue, failure queue and in-flight peak.
* `oxen_env`: OXEN_HOST / OXEN_API_KEY point at the hub; the cache, HOME and the Oxen CLI config
  live under the test's tmp_path, so no real config, key or cache is ever read or written.
* `fresh_session` (automatic): every test starts with a new `Session`, so one test's clients,
  %config values and spend never reach the next.
* `dists`: the project's sdist and wheel, built once per session (offline) for the tests that
  install or inspect them.
* `shell`: the (singleton) test `InteractiveShell` with a *fresh* `OxenMagic` registered for this
  test (so its client cache starts empty and host changes take effect), rich display formats on
  (as in a notebook, so `text/html` is captured), and the user namespace restored afterwards.
Helpers that tests import (`run_cell`, `html_outputs`, ...) live in `support.py`: a module
named `conftest` would be ambiguous, since notebooks/ has a conftest of its own.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bytecode_caches  # noqa: F401  (first: before the package is imported, see its doc)
import pytest
from hypothesis import settings
from support import Dists, build_dists, wait_for_no_oxen_threads

import oxen_magic
import oxen_magic.network.client
import oxen_magic.network.keys
from oxen_magic.frontends.magic import OxenMagic
from oxen_magic.localhub import LocalHub
from oxen_magic.session.session import reset_session


def pytest_cmdline_main(config: pytest.Config) -> None:
    """One test file runs in one process: the xdist workers of pyproject's addopts take
    seconds to start, more than one file gains from them. An explicit `-n` still wins."""
    explicit = any(a.startswith(("-n", "--numprocesses")) for a in config.invocation_params.args)
    files = {str(a).split("::")[0] for a in config.args}
    if not explicit and len(files) == 1 and files.pop().endswith((".py", ".ipynb")):
        config.option.numprocesses = 0
        config.option.dist = "no"
        config.option.tx = []


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Files as units, except the long tests' groups, which go first (tests/scheduling.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from scheduling import FilesAndGroups

    return FilesAndGroups(config, log)


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    """Each test starts with a new process session (defaults, clients, spend) and closes it."""
    reset_session()
    yield
    reset_session()


# CI runs the suite once and one failure stops every landing, so property tests draw the same
# examples each run (a failure reproduces; it does not come and go) and keep no example database
# in the checkout. `HYPOTHESIS_PROFILE=explore` draws fresh examples, to look for new bugs.
settings.register_profile("stable", derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "stable"))


#: Where tests tried to reach past this machine (an address, or a name to resolve).
_OUTSIDE: list[str] = []


def _outside(host: object) -> bool:
    """True for anything but loopback: an IP literal off 127/8 or ::1, or a name to look up
    other than localhost (`.invalid` names are refused without a lookup, as they should be)."""
    if not isinstance(host, str):
        return False  # a bytes path (AF_UNIX) or an interface index
    name = host.strip("[]").split("%")[0]
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name.lower() not in ("localhost", "")


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """CI runs without a network and the brief allows only loopback: every connection or name
    lookup past this machine is refused at once (as offline) and recorded, and the test fails."""
    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and _outside(address[0]):
            _OUTSIDE.append(f"connect {address[0]}")
            raise ConnectionRefusedError(111, "Connection refused (the tests use loopback only)")
        connect(self, address)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if _outside(host.decode() if isinstance(host, bytes) else host):
            if not str(host).lower().endswith(".invalid"):
                _OUTSIDE.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return lookup(host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_lookup
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.getaddrinfo = lookup


@pytest.fixture(autouse=True)
def _nothing_outside(_loopback_only: None) -> Iterator[None]:
    _OUTSIDE.clear()
    yield
    reached, _OUTSIDE[:] = list(_OUTSIDE), []
    assert not reached, f"the test reached past loopback: {reached}"


@pytest.fixture
def make_hub() -> Iterator[Callable[..., LocalHub]]:
    """Start a `LocalHub` with the given knobs (the constructor's, passed through unchanged) on a
    free loopback port; every hub started this way is stopped when the test ends, pass or fail."""
    started: list[LocalHub] = []

    def make(*args: Any, **knobs: Any) -> LocalHub:
        running = LocalHub(*args, **knobs).start()
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        running.stop()


@pytest.fixture
def hub(make_hub: Callable[..., LocalHub]) -> LocalHub:
    """A fresh local hub on a free loopback port: tiny images, no latency."""
    key = "oxen-test-key-" + secrets.token_hex(8)  # distinctive, so a leak is easy to spot
    return make_hub(api_key=key, image_size=64, latency=0.0)


@pytest.fixture
def oxen_env(hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the package at `hub`; returns the cache folder (tmp_path / 'cache')."""
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "oxen-config"
    config.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("OXEN_HOST", hub.url)
    assert hub.api_key is not None
    monkeypatch.setenv("OXEN_API_KEY", hub.api_key)
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(cache))
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(config))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return cache


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and wheel, built once per session (per xdist worker)."""
    return build_dists(tmp_path_factory.mktemp("dists"))


@pytest.fixture(scope="session")
def _ipython() -> Iterator[Any]:
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    assert shell is not None
    yield shell
    # IPython's test shell keeps its history in a temp file it removes only at its own exit,
    # which pytest never calls: without this each run leaves a /tmp/tmp*test_hist.sqlite.
    shell.history_manager.end_session()
    if shell.history_manager.save_thread is not None:  # a thread of its own, also left running
        shell.history_manager.save_thread.stop()
    for path in list(shell.tempfiles):
        Path(path).unlink(missing_ok=True)


@pytest.fixture
def shell(_ipython: Any, oxen_env: Path) -> Iterator[Any]:
    """The test shell with a fresh OxenMagic for this test and notebook-like rich display."""
    shell = _ipython
    formatter = shell.display_formatter
    saved_types = list(formatter.active_types)
    formatter.active_types = list(formatter.format_types)  # text/html etc., as in Jupyter
    saved_ns = dict(shell.user_ns)
    # `%config X.y = v` also merges into the shell's own config, which a new OxenMagic (whose
    # parent is the shell) reads: keep one test's %config from becoming the next test's default.
    saved_config = copy.deepcopy(shell.config["OxenMagic"]) if "OxenMagic" in shell.config else None
    # `%load_ext` runs an extension once per shell; register a fresh magic ourselves so its
    # per-host client cache (and %config values) never leak from one test to the next.
    oxen_magic.load_ipython_extension(shell)
    magic = shell.magics_manager.registry["OxenMagic"]
    assert isinstance(magic, OxenMagic)
    try:
        yield shell
    finally:
        wait_for_no_oxen_threads()
        shell.configurables[:] = [c for c in shell.configurables if not isinstance(c, OxenMagic)]
        formatter.active_types = saved_types
        if saved_config is None:
            shell.config.pop("OxenMagic", None)
        else:
            shell.config["OxenMagic"] = saved_config
        shell.user_ns.clear()
        shell.user_ns.update(saved_ns)
