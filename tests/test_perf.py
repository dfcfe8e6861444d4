"""Issue 15 end to end: the adaptive window against slot-limited hubs, the spool, display sizes.

Counts and sizes only, never times (speed figures live in benchmarks/run.py).
"""

from __future__ import annotations

from typing import Any

from support import run_cell

from oxen_magic.localhub import LocalHub
from oxen_magic.results import Results
from oxen_magic.window import CEILING


def sweep(shell: Any, line: str) -> tuple[Any, Results]:
    shell.user_ns.pop("r", None)
    captured, error = run_cell(shell, line + " --out r", "a red cube")
    assert error is None, error
    results = shell.user_ns["r"]
    assert isinstance(results, Results)
    return captured, results


def refusals(hub: LocalHub) -> int:
    return sum(1 for call in hub.generate_calls() if call.status == 429)


def test_auto_concurrency_fits_a_small_slot_limit_without_failures(shell: Any, hub: LocalHub) -> None:
    hub.max_concurrent = 2
    hub.latency = 0.3
    _, r = sweep(shell, "--model z-image-turbo --seed 1..16")
    assert (r.done, r.failed) == (16, 0)
    assert hub.peak_in_flight == 2
    posts = len(hub.generate_calls())
    # The first round (4 at once) meets two refusals; after that the window stays at two and
    # probes three only every few rounds.
    assert refusals(hub) <= 5, [c.status for c in hub.generate_calls()]
    assert posts == 16 + refusals(hub)


def test_auto_concurrency_opens_past_the_old_fixed_eight_when_the_server_allows(
    shell: Any, hub: LocalHub
) -> None:
    hub.latency = 0.5
    _, r = sweep(shell, "--model z-image-turbo --seed 1..48 --max-images 48")
    assert r.done == 48
    assert refusals(hub) == 0
    assert 8 < hub.peak_in_flight <= CEILING


def test_an_explicit_concurrency_is_a_hard_cap_even_when_refused(shell: Any, hub: LocalHub) -> None:
    hub.max_concurrent, hub.latency = 3, 0.2
    r = sweep(shell, "--model z-image-turbo --seed 1..12 --concurrency 5")[1]
    assert [r.done, r.failed, hub.peak_in_flight] == [12, 0, 3]
    assert refusals(hub) <= 4  # the first round's two, then a probe of four now and then
