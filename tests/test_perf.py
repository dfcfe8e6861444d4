"""Issue 15 end to end: the adaptive window against slot-limited hubs, the spool, display sizes.

Counts and sizes only, never times (speed figures live in benchmarks/run.py).
"""

from __future__ import annotations

import gc
import re
from pathlib import Path
from typing import Any

from PIL import Image
from support import run_cell, shown_html

from oxen_magic.display import live
from oxen_magic.display.live import LiveGrid
from oxen_magic.display.render import thumbnail
from oxen_magic.localhub import LocalHub
from oxen_magic.planning.options import build_spec
from oxen_magic.planning.plan import make_plan
from oxen_magic.results.results import Item, Results
from oxen_magic.session.session import current_session
from oxen_magic.session.window import CEILING, Hint


def sweep(shell: Any, line: str) -> tuple[Any, Results]:
    shell.user_ns.pop("r", None)
    captured, error = run_cell(shell, line + " --out r", "a red cube")
    assert error is None, error
    results = shell.user_ns["r"]
    assert isinstance(results, Results)
    return captured, results


def refusals(hub: LocalHub) -> int:
    return sum(1 for call in hub.generate_calls() if call.status == 429)


def test_auto_concurrency_fits_a_small_slot_limit_and_the_next_sweep_starts_there(
    shell: Any, hub: LocalHub
) -> None:
    hub.max_concurrent = 2
    hub.latency = 0.3
    _, r = sweep(shell, "--model z-image-turbo --seed 1..16")
    assert (r.done, r.failed) == (16, 0)
    assert hub.peak_in_flight == 2
    first = refusals(hub)
    # The first burst sends all sixteen: the server refuses what it has no slot for (at once,
    # nothing billed), and the window settles at two.
    assert 0 < first <= 16 + 4, [c.status for c in hub.generate_calls()]
    assert len(hub.generate_calls()) == 16 + first
    # The session keeps where the window settled: at the server's two slots, or one below when a
    # loaded machine let a refusal land while only one request was known to be running.
    hint = current_session().windows.get(current_session().client().base)
    assert hint in (Hint(2, refused=True), Hint(1, refused=True)), hint
    _, again = sweep(shell, "--model z-image-turbo --seed 17..32")
    assert (again.done, again.failed) == (16, 0)
    # The session remembered the host's window: the second sweep starts at two, probes three
    # at most once or twice.
    assert refusals(hub) - first <= 2, [c.status for c in hub.generate_calls()]


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


# -- full images on disk, not in memory ---------------------------------------------------------


def test_a_sweep_keeps_its_images_on_disk_and_reads_them_when_asked(
    shell: Any, hub: LocalHub, oxen_env: Path
) -> None:
    _, r = sweep(shell, "--model z-image-turbo --seed 1..6")
    assert r.done == 6
    blobs = [item._blob for item in r]
    assert all(item._data is None for item in r)  # no image's bytes are held in memory
    assert all(b is not None and b.path.is_file() for b in blobs)
    folder = blobs[0].path.parent if blobs[0] else None
    assert folder is not None and folder.parent == oxen_env / "spool"
    for item in r:
        assert item.ok and item.data is not None and item.data == item._blob.read()
        assert item.image is not None and item.image.size == item.size

    _, again = sweep(shell, "--model z-image-turbo --seed 1..6")  # from the cache: spooled too
    assert all(i.cached and i._data is None for i in again)
    assert [i.data for i in again] == [i.data for i in r]

    del r, blobs, item  # the last holder of the run's blobs: its folder goes
    shell.user_ns.pop("r", None)
    gc.collect()
    assert not folder.exists()


def test_bytes_set_by_hand_stay_in_memory() -> None:
    item = Item(None, 0, 0)
    item.data = b"abc"
    assert (item.data, item._blob) == (b"abc", None)


# -- display traffic ----------------------------------------------------------------------------


def sent_html(captured: Any) -> list[str]:
    return [o.data["text/html"] for o in captured.outputs]


def test_redraws_resend_only_the_rows_that_changed(shell: Any, hub: LocalHub) -> None:
    hub.latency = 0.3
    captured, r = sweep(shell, "--model z-image-turbo,flux-2-dev --seed 1..8 --concurrency 16")
    assert r.done == 16
    final = shown_html(captured)
    assert final.count("<img ") == 16
    sent = sent_html(captured)
    for html in sent:
        assert html.count("<img ") <= 8  # one row at most: never the whole grid again
    assert sum(len(h) for h in sent) <= 3 * len(final)


def test_a_big_grid_shows_its_first_page_and_pages_to_the_rest(shell: Any, hub: LocalHub) -> None:
    hub.latency = 0.2
    captured, r = sweep(shell, "--model z-image-turbo --seed 1..100 --max-images 100")
    assert r.done == 100 and r.pages == 2
    shown = shown_html(captured)
    assert shown.count("<img ") == 64
    assert "Showing page 1 of 2 (64 of 100 images); results.page(2) shows the next ones" in shown
    second = r.page(2)._repr_html_()
    assert second.count("<img ") == 36 and "Showing page 2 of 2 (36 of 100 images)" in second
    assert r._repr_html_().count("<img ") == 64
    heads = [h for h in sent_html(captured) if "oxen-progress" in h]
    assert any(re.search(r"\d+/100 images, [\d.]+ s, about \d+ s left", h) for h in heads)
    assert "left" not in heads[-1]  # no estimate once done


def test_a_row_is_resent_as_its_images_double_not_at_every_arrival(monkeypatch: Any) -> None:
    monkeypatch.setattr(live, "STALE_AFTER", 1e9)  # no image waits long in this test
    spec = build_spec("--model z-image-turbo --seed 1..8", "a red cube")
    results = Results(make_plan(spec, {"z-image-turbo": None}), size=spec.size, cols=spec.cols)
    sent: list[tuple[int, str, bool]] = []
    view = LiveGrid(results, lambda index, html, first: sent.append((index, html, first)))
    view.draw()
    assert [(i, first) for i, _, first in sent] == [(0, True), (1, True), (2, True)]
    thumb = thumbnail(Image.new("RGB", (64, 64), "red"), 64)
    shown = []
    for item in results.items:
        item.thumb, item.status, item.elapsed = thumb, "done", 0.1
        sent.clear()
        view.draw()
        shown.append([html.count("<img ") for i, html, _ in sent if i == 2])
    # the row goes out with its 1st, 2nd, 4th and 8th image; the progress line at every draw
    assert shown == [[1], [2], [], [4], [], [], [], [8]]
