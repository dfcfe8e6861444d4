"""Reusable helpers for real-browser tests: JupyterLab driven by headless Chromium.

Typical use (see ``tests/test_browser_harness.py``)::

    with jupyter_lab(tmp_path, {"PYTHONPATH": str(REPO)}) as url, chromium_browser() as browser:
        page = new_lab_page(browser)
        open_notebook(page, url, "demo.ipynb")
        run_all_cells(page, "demo.ipynb")
        assert_no_output_errors(page)
        assert_images_loaded(page, ".jp-OutputArea-output", expected=4)

Design notes / gotchas:

* The server is started in its own process group and is always stopped (SIGTERM, then
  SIGKILL).  Kernels are spawned by jupyter_client with ``start_new_session=True``, i.e. in
  *another* process group, so every descendant of the server is recorded from ``/proc`` and
  killed by pid as well.
* ``--LabApp.expose_app_in_browser=True`` exposes ``window.jupyterapp``; notebook commands
  (``notebook:run-all-cells``) and the kernel state are driven through it.  The
  ``Run > Run All Cells`` menu is the fallback (``via_menu=True``).
* Nothing may reach a non-loopback address: the news feed, the PyPI update check and the
  PyPI extension manager are disabled on the server; background networking is disabled in
  Chromium, which also resolves no host name but localhost and proxies the rest to a dead
  port.
* JupyterLab >= 4.2 renders off-screen cells lazily (``windowingMode: contentVisibility``);
  the harness switches this to ``none`` so every cell and image is in the DOM and
  rendered.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
from support import poll_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = Path("/usr/bin/chromium")

CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-dev-shm-usage",  # CI containers often have a 64 MB /dev/shm
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    # Only loopback is reachable: other names don't resolve, other addresses go to a dead
    # proxy (loopback bypasses proxies implicitly), so a stray request fails at once.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)

DEFAULT_VIEWPORT: tuple[int, int] = (1400, 1000)

STDERR_SELECTOR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# Written into the temporary JUPYTER_CONFIG_DIR (lab/user-settings/...).
LAB_USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        # Every cell attached and rendered, even off-screen ones.
        "windowingMode": "none",
        # Never show the "Select Kernel" dialog for notebooks without kernelspec metadata.
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {
        # The test owns the notebook file; don't let lab rewrite it behind our back.
        "autosave": False,
    },
}


def chromium_available() -> bool:
    """Whether the Debian Chromium that the browser tests drive is installed."""
    return CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)


#: The marks of every browser test module (`pytestmark = BROWSER_MARKS`): marked `browser`,
#: skipped without the Debian Chromium. (tests/scheduling.py runs them one at a time, first.)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not chromium_available(),
        reason="/usr/bin/chromium is missing (install it with `bash .ci/install-browser`)",
    ),
]


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# Notebook files
# --------------------------------------------------------------------------------------


def write_notebook(path: Path, cells: Sequence[str | tuple[str, str]]) -> Path:
    """Write a notebook with a ``python3`` kernelspec.

    ``cells`` are code sources, or ``("markdown", source)`` / ``("code", source)`` tuples.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        kind, source = ("code", cell) if isinstance(cell, str) else cell
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# --------------------------------------------------------------------------------------
# Process handling
# --------------------------------------------------------------------------------------


# A process is identified by (pid, start time in clock ticks) so that a recycled pid is
# never mistaken for (or killed as) one of ours.
ProcId = tuple[int, int]


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses.
    return stat[stat.rfind(")") + 2 :].split()


def process_identity(pid: int) -> ProcId | None:
    """``(pid, start time)`` of a live process, or None."""
    fields = _stat(pid)
    return None if fields is None else (pid, int(fields[19]))


def running(processes: Iterable[ProcId]) -> list[ProcId]:
    """Those of ``processes`` that still run (same pid *and* start time, not a zombie)."""
    alive = []
    for pid, start in processes:
        fields = _stat(pid)
        if fields is not None and int(fields[19]) == start and fields[0] != "Z":
            alive.append((pid, start))
    return alive


def descendants(pid: int) -> list[ProcId]:
    """All live descendants of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    if not Path("/proc").is_dir():
        return []
    children: dict[int, list[ProcId]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append((int(entry), int(fields[19])))
    found: list[ProcId] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def stop_process_tree(proc: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``), its group and descendants.

    SIGTERM to the group first, so that jupyter_server shuts its kernels down cleanly;
    SIGKILL for whatever is left after ``grace`` seconds.  Descendants that are in another
    process group (kernels) are tracked from ``/proc`` and killed by pid.
    """
    tracked = set(descendants(proc.pid))
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)

    def ended() -> bool:
        if proc.poll() is None:
            tracked.update(descendants(proc.pid))  # kernels may still be starting
            return False
        return not running(tracked)

    poll_until(ended, grace, every=0.1)
    if proc.poll() is None:  # still our group: its id cannot have been recycled
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for pid, _ in running(tracked):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


# --------------------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------------------


#: The two front ends the browser tests drive: JupyterLab and Notebook 7 (the `notebook>=7`
#: package, built from JupyterLab's components: the same DOM classes and `window.jupyterapp`).
APPS = ("lab", "notebook")


def lab_command(root_dir: Path, port: int, *, app: str = "lab") -> list[str]:
    """The ``python -m jupyterlab`` (or ``python -m notebook``) command line of :func:`jupyter_lab`."""
    if app not in APPS:
        raise ValueError(f"app must be one of {APPS}, not {app!r}")
    own = (
        ["--JupyterNotebookApp.expose_app_in_browser=True"]
        if app == "notebook"
        else ["--LabApp.expose_app_in_browser=True"]
    )
    return [
        sys.executable,
        "-m",
        "jupyterlab" if app == "lab" else "notebook",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.allow_root=True",  # CI runs as root
        # Nothing below may go to the network.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LanguageServerManager.autodetect=False",
        # window.jupyterapp, to run commands and read kernel state.
        *own,
    ]


def _wait_for_status(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float) -> None:
    last_error: Exception | None = None

    def answers() -> bool:
        nonlocal last_error
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with {proc.returncode} before answering; log:\n"
                + log.read_text(errors="replace")[-4000:]
            )
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    json.load(response)
                    return True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = exc
        return False

    if poll_until(answers, timeout, every=0.1):
        return
    raise TimeoutError(
        f"jupyter lab did not answer {url}/api/status within {timeout:.0f}s "
        f"({last_error!r}); log:\n" + log.read_text(errors="replace")[-4000:]
    )


@contextlib.contextmanager
def jupyter_lab(
    root_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    startup_timeout: float = 60.0,
    log_path: Path | None = None,
    app: str = "lab",
) -> Iterator[str]:
    """Run JupyterLab (or Notebook 7: ``app="notebook"``) on a free loopback port serving
    ``root_dir``; yield its base URL.

    ``env`` is added to the server's environment, which kernels inherit.  Config, runtime,
    user-data and IPython dirs are temporary (the extensions in ``sys.prefix/share/jupyter``
    are still found; user-level kernelspecs and settings are not).  The server log goes to
    ``log_path`` (default: a file in the temporary dir, replayed in errors).
    """
    root_dir = Path(root_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="oxen-lab-") as tmp:
        home = Path(tmp)
        config_dir = home / "config"
        for rel, settings in LAB_USER_SETTINGS.items():
            target = config_dir / "lab" / "user-settings" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(settings))
        full_env = dict(os.environ)
        full_env.update(
            {
                "JUPYTER_CONFIG_DIR": str(config_dir),
                "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
                "JUPYTER_DATA_DIR": str(home / "data"),
                "IPYTHONDIR": str(home / "ipython"),
                "JUPYTER_PLATFORM_DIRS": "1",
                "PYTHONUNBUFFERED": "1",
                # Make sure the kernels do not try to render anything with a GUI backend.
                "MPLBACKEND": "Agg",
            }
        )
        full_env.pop("JUPYTER_PATH", None)
        full_env.pop("JUPYTER_CONFIG_PATH", None)
        full_env.update(env or {})
        log = log_path or home / "jupyter-lab.log"
        # A free port can be taken by another process before the server binds it (many tests
        # start servers at once): the server then exits saying so, and another port is tried.
        for attempt in range(3):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with open(log, "wb") as log_file:
                proc = subprocess.Popen(
                    lab_command(root_dir, port, app=app),
                    cwd=root_dir,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                _wait_for_status(url, proc, log, startup_timeout)
                break
            except RuntimeError:
                stop_process_tree(proc)
                if attempt == 2 or "is not available" not in log.read_text(errors="replace"):
                    raise
        try:
            yield url
        finally:
            stop_process_tree(proc)


# --------------------------------------------------------------------------------------
# Browser
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium_browser(*, extra_args: Iterable[str] = ()) -> Iterator[Browser]:
    """Launch Debian's Chromium through Playwright's sync API; always close it.

    Yields a ``playwright.sync_api.Browser``.  Uses ``/usr/bin/chromium`` (never a
    Playwright-downloaded browser).
    """
    from playwright.sync_api import sync_playwright

    if not chromium_available():
        raise RuntimeError(f"{CHROMIUM} is missing; run .ci/install-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """Console errors and uncaught page errors seen by a page."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            *(f"console: {m}" for m in self.console_errors[-20:]),
            *(f"pageerror: {m}" for m in self.page_errors[-20:]),
            *(f"requestfailed: {m}" for m in self.failed_requests[-20:]),
        ]
        return "\n".join(parts) or "(no browser errors)"


_PAGE_LOGS: weakref.WeakKeyDictionary[Page, PageLog] = weakref.WeakKeyDictionary()


def new_lab_page(
    browser: Browser,
    *,
    viewport: tuple[int, int] = DEFAULT_VIEWPORT,
    default_timeout_ms: int = 30_000,
) -> Page:
    """A fresh context + page; :func:`page_log` returns its browser errors.

    Chromium itself sends nothing but loopback traffic (see :data:`CHROMIUM_ARGS`); a failed
    request shows up in the page log.
    """
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.set_default_timeout(default_timeout_ms)
    page = context.new_page()
    log = PageLog()

    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    page.on(
        "requestfailed",
        lambda r: log.failed_requests.append(f"{r.url} {r.failure}"),
    )
    _PAGE_LOGS[page] = log
    return page


def page_log(page: Page) -> PageLog:
    """Browser errors collected for a page made by :func:`new_lab_page`."""
    return _PAGE_LOGS.get(page) or PageLog()


# --------------------------------------------------------------------------------------
# Notebook driving
# --------------------------------------------------------------------------------------

# Finds the notebook panel for a path through window.jupyterapp.
_JS_FIND_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
}
"""


def _js_with_panel(body: str) -> str:
    """Wrap ``body`` (which sees ``panel`` and ``arg``) into an ``(arg) => ...`` function."""
    return f"""
async ([path, arg]) => {{
  const find = {_JS_FIND_PANEL};
  const panel = find(path);
  if (!panel) throw new Error('no open notebook ' + path);
  {body}
}}
"""


def open_notebook(page: Page, url: str, path: str, *, timeout: float = 60.0, app: str = "lab") -> None:
    """Open ``{url}/lab/tree/<path>`` (Notebook 7: ``{url}/notebooks/<path>``) and wait until
    its kernel is connected and idle."""
    page.goto(f"{url}/{'lab/tree' if app == 'lab' else 'notebooks'}/{path}", wait_until="domcontentloaded")
    timeout_ms = int(timeout * 1000)
    page.wait_for_function("() => !!window.jupyterapp", timeout=timeout_ms)
    page.wait_for_function(f"(path) => !!({_JS_FIND_PANEL})(path)", arg=path, timeout=timeout_ms, polling=100)
    page.evaluate(
        _js_with_panel(
            "await panel.context.ready; await panel.sessionContext.ready;"
            " panel.content.activate(); window.jupyterapp.shell.activateById(panel.id);"
        ),
        [path, None],
    )
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.wait_for()
    wait_kernel_idle(page, path, timeout=timeout)


def kernel_status(page: Page, path: str) -> str:
    """The kernel status of an open notebook ('idle', 'busy', 'starting', 'unknown', ...)."""
    return str(
        page.evaluate(
            _js_with_panel(
                "const k = panel.sessionContext.session && panel.sessionContext.session.kernel;"
                " return k ? k.status : 'no-kernel';"
            ),
            [path, None],
        )
    )


def wait_kernel_idle(page: Page, path: str, *, timeout: float = 60.0) -> None:
    """Wait until the notebook's kernel exists and reports ``idle``."""
    page.wait_for_function(
        f"""(path) => {{
          const panel = ({_JS_FIND_PANEL})(path);
          const k = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
          return !!k && k.status === 'idle' && k.connectionStatus === 'connected';
        }}""",
        arg=path,
        timeout=int(timeout * 1000),
        polling=100,
    )


# State of an open notebook's run: kernel status, per-cell prompts/counts/errors, and the
# outcome of the last command started by run_all_cells (window.__harnessRun).
_JS_RUN_STATE = f"""(path) => {{
  const panel = ({_JS_FIND_PANEL})(path);
  if (!panel) return null;
  const k = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter((c) => c.model.type === 'code').map((c) => {{
    const prompt = c.node.querySelector('.jp-InputPrompt');
    const outputs = c.model.outputs.toJSON();
    return {{
      count: c.model.executionCount,
      running: !!prompt && prompt.textContent.includes('*'),
      error: outputs.some((o) => o.output_type === 'error'),
    }};
  }});
  const run = (window.__harnessRun || {{}})[path] || null;
  return {{ kernel: k ? k.status : 'no-kernel', cells, run }};
}}"""

# Done: the kernel is idle, no cell shows [*], and every code cell has an execution count,
# or a cell raised (run-all stops there; the rest stay unexecuted).  Via the command, also
# wait for the promise of notebook:run-all-cells.
_JS_RUN_DONE = f"""([path, viaCommand]) => {{
  const s = ({_JS_RUN_STATE})(path);
  if (!s || s.kernel !== 'idle') return false;
  if (viaCommand && !(s.run && s.run.done)) return false;
  if (s.cells.some((c) => c.running)) return false;
  return s.cells.every((c) => c.count !== null) || s.cells.some((c) => c.error);
}}"""

_JS_RUN_COMMAND = """
  window.__harnessRun = window.__harnessRun || {};
  const state = { done: false, ok: null, error: null };
  window.__harnessRun[path] = state;
  const app = window.jupyterapp;
  if (!app.commands.isEnabled('notebook:run-all-cells'))
    throw new Error('notebook:run-all-cells is disabled');
  app.commands.execute('notebook:run-all-cells').then(
    (ok) => { state.ok = ok; state.done = true; },
    (err) => { state.error = String(err); state.done = true; },
  );
"""


def run_all_cells(
    page: Page,
    path: str,
    *,
    timeout: float = 120.0,
    via_menu: bool = False,
    raise_on_error: bool = True,
) -> None:
    """Run every cell of the open notebook ``path`` and wait until it has settled.

    Settled: the kernel is idle, no cell shows ``[*]`` and every code cell has an execution
    count, or a cell raised (run-all stops at the first error).  Runs the
    ``notebook:run-all-cells`` command through ``window.jupyterapp`` (and waits for its
    promise), or clicks ``Run > Run All Cells`` with ``via_menu=True``.

    With ``raise_on_error`` an :class:`AssertionError` carrying the rendered tracebacks is
    raised if a cell raised or some cell was left unexecuted.
    """
    page.evaluate(
        _js_with_panel("window.jupyterapp.shell.activateById(panel.id); panel.content.activate();"),
        [path, None],
    )
    if via_menu:
        before = execution_counts(page, path)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(
            ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
            has_text=re.compile(r"^Run All Cells$"),
        ).click()
        # No promise to wait for: make sure the run has visibly started (a [*] prompt or
        # changed counts) so that a previous run's state is not mistaken for this one's.
        with contextlib.suppress(Exception):
            page.wait_for_function(
                f"""([path, before]) => {{
                  const s = ({_JS_RUN_STATE})(path);
                  return !!s && (s.kernel !== 'idle' || s.cells.some((c) => c.running)
                    || JSON.stringify(s.cells.map((c) => c.count)) !== JSON.stringify(before));
                }}""",
                arg=[path, before],
                timeout=5_000,
                polling=50,
            )
    else:
        page.evaluate(_js_with_panel(_JS_RUN_COMMAND), [path, None])
    try:
        page.wait_for_function(
            _JS_RUN_DONE, arg=[path, not via_menu], timeout=int(timeout * 1000), polling=100
        )
    except Exception as exc:
        raise AssertionError(
            f"cells of {path} did not finish within {timeout:.0f}s: "
            f"{page.evaluate(_JS_RUN_STATE, path)}\noutput errors: {output_errors(page)}\n"
            + page_log(page).summary()
        ) from exc
    state = page.evaluate(_JS_RUN_STATE, path)
    run = state.get("run") or {}
    if run.get("error"):
        raise AssertionError(f"notebook:run-all-cells failed: {run['error']}")
    if raise_on_error:
        failed = [i for i, c in enumerate(state["cells"]) if c["error"] or c["count"] is None]
        if failed:
            raise AssertionError(
                f"code cells {failed} of {path} raised or did not run; execution counts "
                f"{[c['count'] for c in state['cells']]}; rendered errors:\n"
                + "\n---\n".join(e[-3000:] for e in output_errors(page))
            )


def execution_counts(page: Page, path: str) -> list[int | None]:
    """Execution counts of the code cells of an open notebook."""
    return list(
        page.evaluate(
            _js_with_panel(
                "return panel.content.widgets.filter((c) => c.model.type === 'code')"
                ".map((c) => c.model.executionCount);"
            ),
            [path, None],
        )
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def output_errors(page: Page, *, scope: str = ".jp-NotebookPanel") -> list[str]:
    """Text of every stderr/traceback output rendered under ``scope`` (ANSI stripped).

    JupyterLab renders both ``stream/stderr`` and ``error`` outputs with the
    ``application/vnd.jupyter.stderr`` MIME type, including those inside Output widgets.
    """
    texts = page.locator(f"{scope} {STDERR_SELECTOR}").all_inner_texts()
    return [_ANSI.sub("", t).strip() for t in texts]


def assert_no_output_errors(
    page: Page, *, allow: Iterable[str] = (), scope: str = ".jp-NotebookPanel"
) -> None:
    """Fail with the rendered tracebacks unless every stderr output matches an ``allow`` regex."""
    patterns = [re.compile(p, re.S) for p in allow]
    bad = [t for t in output_errors(page, scope=scope) if not any(p.search(t) for p in patterns)]
    if bad:
        raise AssertionError(
            "notebook shows errors:\n"
            + "\n---\n".join(b[-3000:] for b in bad)
            + "\n"
            + page_log(page).summary()
        )


def save_screenshot(page: Page, folder: Path, name: str, *, selector: str | None = None) -> Path:
    """Save a PNG of the page (or of the first element matching ``selector``) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name if name.endswith(".png") else f"{name}.png")
    if selector is None:
        page.screenshot(path=str(target))
    else:
        page.locator(selector).first.screenshot(path=str(target))
    return target


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageState:
    src: str
    complete: bool
    natural_width: int
    natural_height: int

    @property
    def loaded(self) -> bool:
        return self.complete and self.natural_width > 0


_JS_IMAGES = """
(imgs) => imgs.map((img) => ({
  src: img.currentSrc || img.src || '',
  complete: img.complete,
  w: img.naturalWidth,
  h: img.naturalHeight,
}))
"""


def image_states(page: Page, selector: str) -> list[ImageState]:
    """Load state of every ``<img>`` under ``selector`` (evaluated in the page)."""
    raw = page.locator(f"{selector} img").evaluate_all(_JS_IMAGES)
    return [
        ImageState(src=r["src"][:80], complete=r["complete"], natural_width=r["w"], natural_height=r["h"])
        for r in raw
    ]


def assert_images_loaded(
    page: Page, selector: str, *, expected: int | None = None, timeout: float = 15.0
) -> list[ImageState]:
    """Wait until ``<img>`` elements under ``selector`` are all loaded and return them.

    Loaded means ``img.complete && img.naturalWidth > 0``.  With ``expected``, also
    require exactly that many images; otherwise at least one.
    """
    want = -1 if expected is None else expected
    js = """([sel, want]) => {
      const imgs = Array.from(document.querySelectorAll(sel + ' img'));
      if (want >= 0 ? imgs.length !== want : imgs.length === 0) return false;
      return imgs.every((img) => img.complete && img.naturalWidth > 0);
    }"""
    try:
        page.wait_for_function(js, arg=[selector, want], timeout=int(timeout * 1000), polling=100)
    except Exception as exc:
        states = image_states(page, selector)
        raise AssertionError(
            f"expected {'some' if expected is None else expected} loaded <img> under "
            f"{selector!r}, found {len(states)}: "
            + "; ".join(
                f"{s.src!r} complete={s.complete} {s.natural_width}x{s.natural_height}" for s in states
            )
            + "\n"
            + "\n".join(output_errors(page))
        ) from exc
    return image_states(page, selector)


# --------------------------------------------------------------------------------------
# ipywidgets
# --------------------------------------------------------------------------------------

# Root-element classes of ipywidgets 8 controls in the DOM (JupyterLab renders e.g.
# ``<div class="widget-textarea"><label class="widget-label">Prompt</label><textarea>``).
WIDGET_CLASSES: dict[str, tuple[str, ...]] = {
    "text": ("widget-text",),
    "textarea": ("widget-textarea",),
    "any_text": ("widget-text", "widget-textarea"),
    "select_multiple": ("widget-select-multiple",),
    "select": ("widget-select",),
    "dropdown": ("widget-dropdown",),
    "button": ("widget-button",),
    "output": ("widget-output",),
}


def widget_locator(
    page: Page,
    kind: str,
    *,
    label: str | None = None,
    css_class: str | None = None,
    scope: str = ".jp-NotebookPanel",
) -> Locator:
    """Locator of ipywidget root elements of ``kind`` (a key of :data:`WIDGET_CLASSES`).

    Identify the widget by its ``description`` (``label``, matched exactly, whitespace
    trimmed) and/or by a class added with ``widget.add_class(...)`` (``css_class``).
    """
    if label is None and css_class is None:
        raise ValueError("give a label or a css_class")
    suffix = f".{css_class}" if css_class else ""
    loc = page.locator(", ".join(f"{scope} .{cls}{suffix}" for cls in WIDGET_CLASSES[kind]))
    if label is not None:
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        loc = loc.filter(has=page.locator("label.widget-label", has_text=exact))
    return loc


def fill_text_widget(
    page: Page,
    value: str,
    *,
    label: str | None = None,
    css_class: str | None = None,
    scope: str = ".jp-NotebookPanel",
) -> None:
    """Type ``value`` into a Text or Textarea widget and sync it to the kernel.

    Fires ``input`` (continuous_update) and ``change``/blur (continuous_update=False).
    """
    root = widget_locator(page, "any_text", label=label, css_class=css_class, scope=scope)
    field_ = root.locator("textarea, input").first
    field_.fill(value)
    field_.dispatch_event("change")
    field_.blur()


def select_multiple(
    page: Page,
    options: Sequence[str],
    *,
    label: str | None = None,
    css_class: str | None = None,
    scope: str = ".jp-NotebookPanel",
) -> None:
    """Select exactly ``options`` (by their labels) in a SelectMultiple widget."""
    root = widget_locator(page, "select_multiple", label=label, css_class=css_class, scope=scope)
    root.locator("select").select_option(label=list(options))


def click_widget_button(
    page: Page, text: str, *, css_class: str | None = None, scope: str = ".jp-NotebookPanel"
) -> None:
    """Click an ipywidgets Button by its (exact) description text."""
    sel = "button.widget-button" + (f".{css_class}" if css_class else "")
    page.locator(f"{scope} {sel}", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")).click()


def widget_text(page: Page, css_class: str, *, scope: str = ".jp-NotebookPanel") -> str:
    """``innerText`` of the widget carrying ``css_class`` (e.g. a Label or HTML widget)."""
    return str(page.locator(f"{scope} .{css_class}").first.inner_text()).strip()


def wait_widget_text(
    page: Page,
    css_class: str,
    expected: str,
    *,
    timeout: float = 15.0,
    scope: str = ".jp-NotebookPanel",
) -> None:
    """Wait until the widget carrying ``css_class`` shows exactly ``expected``."""
    try:
        page.wait_for_function(
            """([sel, expected]) => {
              const el = document.querySelector(sel);
              return !!el && el.innerText.trim() === expected;
            }""",
            arg=[f"{scope} .{css_class}", expected],
            timeout=int(timeout * 1000),
            polling=100,
        )
    except Exception as exc:
        got = page.locator(f"{scope} .{css_class}").all_inner_texts()
        raise AssertionError(
            f"widget .{css_class}: expected {expected!r}, got {got!r}\n"
            + "\n".join(output_errors(page, scope=scope))
        ) from exc
