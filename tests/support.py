"""Helpers the tests import: run a magic cell and read what a user would see.

(Kept out of conftest.py: `from conftest import ...` is ambiguous when notebooks/ has a
conftest too, and pytest may have loaded the other one first.)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.capture import CapturedIO, capture_output

from oxen_magic.frontends.magic import OxenMagic
from oxen_magic.localhub import LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.session.runner import THREAD_PREFIX
from oxen_magic.session.session import current_session

#: The checkout the tests run from.
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Dists:
    """The project's sdist and wheel as `build_dists` made them, and what the build printed."""

    sdist: Path
    wheel: Path
    log: str


def build_dists(out: Path) -> Dists:
    """Build the sdist, then the wheel from it, into `out`, offline: `python -m build
    --no-isolation` uses this environment's setuptools instead of downloading one, and building
    the wheel from the sdist means a file the sdist leaves out is missing from the wheel too.

    It writes `build/` and `*.egg-info` in the checkout (as any build does), so two builds at
    once (two xdist workers) would trample each other: a lock file makes them take turns."""
    lock_path = (
        Path(tempfile.gettempdir()) / f"oxen_magic-build-{hashlib.sha256(bytes(ROOT)).hexdigest()[:12]}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        built = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-6000:]
    (sdist,) = out.glob("oxen_magic-*.tar.gz")
    (wheel,) = out.glob("oxen_magic-*.whl")
    return Dists(sdist, wheel, log)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment (hub, key, cache folder) for a child process running this tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`oxen-image ARGS` started in a child process of this tree, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "oxen_magic", *args],
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def poll_until(condition: Callable[[], object], timeout: float, every: float = 0.01) -> bool:
    """Check `condition` every `every` seconds until it holds (True) or `timeout` passes (False):
    for what sends no event to wait on (a file another process writes, a process tree ending, a
    relay's queue). `condition` may raise to give up at once (a child that died). The local hub's
    own state is waited on with `hub.wait_until` instead, woken by each change."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)  # a bounded poll of a condition, not a wait that hopes
    return True


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "the condition") -> None:
    """`poll_until`, failing the test with a sentence naming `what` when `timeout` passes."""
    assert poll_until(condition, timeout), f"{what} did not happen within {timeout} s"


def _oxen_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def wait_for_no_oxen_threads(timeout: float = 5.0) -> list[threading.Thread]:
    """Wait until no runner worker thread is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while (alive := _oxen_threads()) and time.monotonic() < deadline:
        alive[0].join(max(0.0, deadline - time.monotonic()))  # wakes when it ends, not on a tick
    return _oxen_threads()


class FakeClock:
    """A monotonic clock a test moves by hand (`LocalHub(clock=...)`): URLs expire when the test
    says so, with no sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def session_clients() -> dict[str, Any]:
    """The process session's pooled clients, by base URL (what a kernel restart would drop)."""
    return current_session()._clients


def magic_of(shell: Any) -> OxenMagic:
    """The OxenMagic instance the shell dispatches `%%oxenimage` to."""
    magic = shell.magics_manager.registry["OxenMagic"]
    assert isinstance(magic, OxenMagic)
    return magic


def fast_client(shell: Any, **attrs: Any) -> OxenClient:
    """The magic's client for the default host, with retries that do not make a test wait."""
    client = magic_of(shell).client(None, 8)
    client.transport.backoff, client.transport.max_wait = 0.001, 10.0
    for name, value in attrs.items():
        setattr(client.transport, name, value)
    return client


def run_cell(shell: Any, line: str, body: str | None = None) -> tuple[CapturedIO, str | None]:
    """Run `%%oxenimage line` with `body` (or `%oxenimage line` when body is None).

    Returns the captured stdout/stderr/rich outputs and the `UsageError` message, or None.
    """
    error: str | None = None
    with capture_output() as captured:
        try:
            if body is None:
                shell.run_line_magic("oxenimage", line)
            else:
                shell.run_cell_magic("oxenimage", line, body)
        except UsageError as exc:
            error = str(exc)
    return captured, error


def html_outputs(captured: CapturedIO) -> list[str]:
    """The `text/html` of every rich output (display and update), in order."""
    return [o.data["text/html"] for o in captured.outputs if "text/html" in o.data]


def shown_html(captured: CapturedIO) -> str:
    """What the notebook shows (and saves) once the cell is done: the last `text/html` of every
    display, in the order they first appeared (a grid is a progress line, then one output per
    row, each updated in place)."""
    final: dict[str, str] = {}
    for index, output in enumerate(captured.outputs):
        key = (output.transient or {}).get("display_id") or f"#{index}"
        if "text/html" in output.data:
            final[key] = output.data["text/html"]
    return "".join(final.values())


def all_text(captured: CapturedIO) -> str:
    """Everything a user could see: stdout, stderr and every representation of every output."""
    parts = [captured.stdout, captured.stderr]
    for output in captured.outputs:
        parts.extend(str(v) for v in output.data.values())
        parts.append(str(output.metadata))
    return "\n".join(parts)


def login_for(hub: LocalHub) -> None:
    """What `oxen_magic.login(hub.url)` does: the key for a host other than the environment's."""
    assert hub.api_key is not None
    current_session().keys.remember(hub.url, hub.api_key)


def files_under(folder: Path, skip: Collection[str] = ()) -> list[Path]:
    """The files below `folder`, sorted, not descending into folders named in `skip`.

    A run's spool folder (see `oxen_magic/spool.py`) is removed when its last user is collected,
    which the garbage collector may do in any thread at any moment, even mid-walk. `os.walk`
    skips a folder that vanished; `Path.rglob` (Python 3.11) raises FileNotFoundError."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        found.extend(Path(root) / name for name in names)
    return sorted(found)


def read_if_there(path: Path) -> bytes | None:
    """A file's bytes, or None when it went away since it was listed (a spool file, say)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
