"""Faults a flaky workshop network produces, injected by the local hub and met by a real shell.

Transient 429/503s are retried and succeed; permanent ones stop after the bound; one failing
image leaves the rest of its grid alone; Ctrl-C mid-sweep keeps what arrived, leaves no worker
thread behind, and a rerun fetches only what is missing; and a 64-image soak with 20 % injected
failures bills each image once and gives its memory back.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import signal
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import fast_client, run_cell, session_clients, shown_html, wait_for_no_oxen_threads

from oxen_magic.localhub import LocalHub
from oxen_magic.results.results import Results
from oxen_magic.session.runner import THREAD_PREFIX
from oxen_magic.session.session import current_session

PROMPT = "a lighthouse at dusk"


def statuses(hub: LocalHub) -> list[int]:
    return [c.status for c in hub.generate_calls()]


def seeds_of(hub: LocalHub, status: int = 200) -> list[int]:
    return [c.body["seed"] for c in hub.generate_calls() if c.status == status and c.body]


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, None), (429, 0), (429, "0.01"), (503, None), (503, 0)],
)
def test_transient_failures_are_retried_and_succeed(
    hub: LocalHub, shell: Any, status: int, retry_after: Any
) -> None:
    fast_client(shell)
    hub.fail_next(3, status, retry_after)
    captured, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None
    r = shell.user_ns["r"]
    assert (r.done, r.failed) == (1, 0)
    assert statuses(hub) == [status, status, status, 200]  # billed once: the 200
    assert "Traceback" not in captured.stdout + captured.stderr


def test_permanent_failure_stops_after_the_retry_bound(hub: LocalHub, shell: Any) -> None:
    fast_client(shell, max_retries=2)
    hub.fail_next(100, 503)
    _, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None
    item = shell.user_ns["r"].items[0]
    assert item.status == "failed"
    assert "after 3 tries" in (item.error or "")
    assert statuses(hub) == [503, 503, 503]


def test_permanent_failure_stops_after_the_wait_bound(hub: LocalHub, shell: Any) -> None:
    """Retry-After is honoured, but never past max_wait in total."""
    fast_client(shell, max_wait=0.5)
    hub.fail_next(100, 429, retry_after=0.2)
    started = time.monotonic()
    _, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    elapsed = time.monotonic() - started
    assert error is None
    assert "Rate limit exceeded (HTTP 429) after 3 tries" in (shell.user_ns["r"].items[0].error or "")
    assert statuses(hub) == [429, 429, 429]  # waited 0.2 + 0.2; a third wait would pass 0.5
    # a lower bound only (load can only make it longer): the two Retry-After waits were honoured
    assert elapsed > 0.35


@pytest.mark.parametrize("status", [400, 401, 404, 500, 502, 504])
def test_failures_that_may_have_billed_are_never_resent(hub: LocalHub, shell: Any, status: int) -> None:
    fast_client(shell)
    hub.fail_next(1, status)
    _, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None
    assert shell.user_ns["r"].items[0].status == "failed"
    assert statuses(hub) == [status]


def test_read_timeout_is_never_resent(hub: LocalHub, shell: Any) -> None:
    """The server may be generating (and billing) already: a timeout must not send it again."""
    fast_client(shell, timeout=(5.0, 0.3))
    hub.latency = 0.8
    _, error = run_cell(shell, "--model z-image-turbo --seed 1 --out r", PROMPT)
    assert error is None
    error = shell.user_ns["r"].items[0].error or ""
    assert "did not answer in time" in error and "may have been made and billed" in error
    # counted as it arrived (its late answer is still on the way); the cell is over, so a resend
    # would have arrived already
    assert hub.arrived_calls() == 1


# -- one bad image, a good grid -------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 500])
def test_one_failing_image_does_not_spoil_the_grid(hub: LocalHub, shell: Any, status: int) -> None:
    fast_client(shell)
    hub.fail_next(1, status)
    captured, error = run_cell(shell, "--model z-image-turbo --seed 1..4 --concurrency 1 --out r", PROMPT)
    assert error is None
    r = shell.user_ns["r"]
    assert [i.status for i in r.items] == ["failed", "done", "done", "done"]
    expected = {400: "The API rejected the request", 500: "The API failed (HTTP 500"}[status]
    assert expected in (r.items[0].error or "")
    assert all(i.image is not None for i in r.items[1:])
    page = shown_html(captured)
    assert page.count("<img ") == 3 and page.count('class="oxen-error"') == 1
    assert "3/4 images, 1 failed" in page
    assert len(hub.generate_calls()) == 4


def test_rerun_after_a_failure_sends_only_the_failed_image(hub: LocalHub, shell: Any) -> None:
    fast_client(shell)
    hub.fail_next(1, 500)
    run_cell(shell, "--model z-image-turbo --seed 1..4 --concurrency 1 --out r", PROMPT)
    assert shell.user_ns["r"].failed == 1
    hub.reset()
    _, error = run_cell(shell, "--model z-image-turbo --seed 1..4 --concurrency 1 --out r", PROMPT)
    assert error is None
    r = shell.user_ns["r"]
    assert (r.done, sum(i.cached for i in r.items)) == (4, 3)
    assert seeds_of(hub) == [1]


def test_offline_rerun_keeps_the_cached_images(hub: LocalHub, shell: Any) -> None:
    """The Wi-Fi drops after a run: the cached grid still shows, a new seed says why it failed."""
    fast_client(shell, max_retries=1)
    _, error = run_cell(shell, "--model z-image-turbo --seed 1..2 --out r", PROMPT)
    assert error is None and shell.user_ns["r"].done == 2
    hub.stop()
    for client in session_clients().values():  # as after a kernel restart: a new client
        client.close()
    session_clients().clear()
    current_session().details.clear()  # a restarted kernel remembers no model details
    fast_client(shell, max_retries=1)
    captured, error = run_cell(shell, "--model z-image-turbo --seed 1..3 --out r", PROMPT)
    assert error is None
    r = shell.user_ns["r"]
    assert [i.status for i in r.items] == ["done", "done", "failed"]
    assert all(i.cached for i in r.items[:2])
    assert "(connection refused); is the server running?" in (r.items[2].error or "")
    assert "Offline: using the description of z-image-turbo saved by an earlier run." in r.notes
    assert "Traceback" not in captured.stdout + captured.stderr


# -- Ctrl-C ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _ctrl_c_reaches_python() -> Iterator[None]:
    """Python's own Ctrl-C handler, as in a kernel or a terminal: a test worker may have started
    with SIGINT ignored, and then `interrupt_main` (the stop button) would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_after(hub: LocalHub, calls: int) -> threading.Thread:
    """Press Ctrl-C (as the kernel's stop button does) once the hub has answered `calls` requests."""

    def watch() -> None:
        with contextlib.suppress(TimeoutError):  # then interrupt anyway: the test fails on its own
            hub.wait_for_calls(calls, timeout=10, answered=True)
        _thread.interrupt_main()

    thread = threading.Thread(target=watch, name="test-interrupter", daemon=True)
    thread.start()
    return thread


def test_interrupt_keeps_what_arrived_and_rerun_fetches_only_the_rest(hub: LocalHub, shell: Any) -> None:
    fast_client(shell)
    hub.latency = 0.3
    line = "--model z-image-turbo --seed 1..6 --concurrency 1 --out r"
    watcher = _interrupt_after(hub, 2)
    captured, error = run_cell(shell, line, PROMPT)
    watcher.join(5)
    assert error is None
    r = shell.user_ns["r"]
    assert r.interrupted
    assert 1 <= r.done < 6  # 2 answered when Ctrl-C came; the second may not have been shown yet
    assert {i.status for i in r.items} <= {"done", "cancelled"}
    assert f"Interrupted: kept {r.done} of 6 images; rerun to fetch the rest." in captured.stdout
    assert "Traceback" not in captured.stdout + captured.stderr and "KeyboardInterrupt" not in captured.stderr
    assert "(interrupted)" in shown_html(captured)

    # Requests already sent when Ctrl-C came may finish (into the cache, not into r, which no
    # longer changes): one in flight, one arrived but not yet shown. Nothing else runs.
    done_at_return = r.done
    assert wait_for_no_oxen_threads(timeout=5) == []
    assert r.done == done_at_return
    fetched = seeds_of(hub)
    assert len(fetched) == len(set(fetched)) and len(fetched) <= r.done + 2

    hub.reset()
    hub.latency = 0.0
    captured, error = run_cell(shell, line, PROMPT)
    assert error is None
    again = shell.user_ns["r"]
    assert (again.done, again.failed, again.interrupted) == (6, 0, False)
    assert sum(i.cached for i in again.items) == len(fetched)
    assert sorted(seeds_of(hub)) == sorted(set(range(1, 7)) - set(fetched))  # only the missing ones
    assert wait_for_no_oxen_threads(timeout=5) == []


def test_interrupt_with_many_in_flight_leaves_no_thread(hub: LocalHub, shell: Any) -> None:
    fast_client(shell)
    hub.latency = 0.3
    watcher = _interrupt_after(hub, 4)
    _, error = run_cell(shell, "--model z-image-turbo --seed 1..24 --concurrency 4 --out r", PROMPT)
    watcher.join(5)
    assert error is None
    r = shell.user_ns["r"]
    assert r.interrupted and r.done < 24
    assert wait_for_no_oxen_threads(timeout=5) == []
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    # Only what was already sent: the 4 answered when Ctrl-C came, and at most 4 in flight.
    assert len(hub.generate_calls()) <= 4 + 4


# -- soak ----------------------------------------------------------------------------------------------


@pytest.fixture
def soak_hub(
    oxen_env: Path, monkeypatch: pytest.MonkeyPatch, make_hub: Callable[..., LocalHub]
) -> Iterator[LocalHub]:
    """A hub that fails 20 % of generate calls with a transient 503 and keeps no image cache."""
    key = "soak-key-0123456789"
    hub = make_hub(api_key=key, image_size=128, fail_rate=0.2, fail_seed=42, cache_size=0)
    monkeypatch.setenv("OXEN_HOST", hub.url)
    monkeypatch.setenv("OXEN_API_KEY", key)
    yield hub


def test_soak_64_images_with_20_percent_transient_failures(soak_hub: LocalHub, shell: Any) -> None:
    hub = soak_hub
    fast_client(shell, max_retries=12, max_wait=30.0)  # 0.2**13: an image never runs out of tries
    # Warm up (imports, connection pool, model description) so the baseline is a steady state.
    _, error = run_cell(shell, "--seed 1000 --out warm", PROMPT)
    assert error is None and shell.user_ns.pop("warm").done == 1
    hub.reset()
    hub.expire_urls()
    gc.collect()

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        captured, error = run_cell(shell, "--seed 1..64 --max-images 64 --out r", PROMPT)
        assert error is None
        r: Results = shell.user_ns["r"]
        assert (r.total, r.done, r.failed) == (64, 64, 0)
        assert sorted(i.seed or 0 for i in r.items) == list(range(1, 65))

        calls = hub.generate_calls()
        injected = [c for c in calls if c.status == 503]
        billed = [c for c in calls if c.status == 200]
        assert len(injected) >= 5, "the 20 % failure injection did not fire"
        assert len(calls) == 64 + len(injected)  # no duplicate billing beyond retried failures
        assert sorted(c.body["seed"] for c in billed if c.body) == list(range(1, 65))
        assert {c.status for c in calls} == {200, 503}

        kept = sum(len(i.data or b"") + len(i.thumb or b"") for i in r.items)
        held = tracemalloc.get_traced_memory()[0] - baseline
        assert held >= kept  # the measurement sees the results (encoded bytes, not bitmaps)

        del r
        shell.user_ns.pop("r")
        del captured
        hub.expire_urls()  # the hub (same process) keeps result files for their URL lifetime
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = current - baseline
    held_mib, growth_mib = held / 2**20, growth / 2**20
    assert growth < 5 * 2**20, f"{growth_mib:.1f} MiB of {held_mib:.1f} MiB still held after deleting r"
    assert peak - baseline < 200 * 2**20
    assert wait_for_no_oxen_threads(timeout=5) == []
