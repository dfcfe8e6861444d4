"""The durable spend ledger and the budget as a promise (issue 19 item 4), against the real local
hub and real sessions: spend survives a restart and is shared by processes; concurrent runs
reserve before sending and cannot pass the budget together; an image is charged when the POST is
answered 200, whatever its download does; damaged cache entries are priced; bad budget values
are refused in one sentence; `spend()` shows this kernel, the ledger and what is left."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import child_env, cli, html_outputs, run_cell, wait_for_no_oxen_threads

import oxen_magic
from oxen_magic.core.errors import UsageProblem
from oxen_magic.localhub import LocalHub
from oxen_magic.network.cache import unpack
from oxen_magic.planning.plan import Request
from oxen_magic.results.results import Item
from oxen_magic.session.ledger import Ledger
from oxen_magic.session.ledgerstore import FILE, HOLD_TTL, MACHINE, Row, Store
from oxen_magic.session.session import current_session, reset_session

PROMPT = "a lighthouse at dusk"
DEV, TURBO = "flux-2-dev", "z-image-turbo"  # $0.025 and $0.002 per image on the local hub


# -- durable: a restart, another process ----------------------------------------------------------
def test_spend_survives_a_restart_and_is_shared_with_other_processes(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "0.20")
    oxen_magic.generate(PROMPT, model=DEV, seed="1..2")  # $0.05 in this "kernel"
    assert (oxen_env / FILE).is_file()
    reset_session()  # a kernel restart: a new session, the same cache folder
    spent = oxen_magic.spend()
    assert spent.images == 0 and spent.total == 0  # this kernel has billed nothing yet
    assert spent.user_images == 2 and spent.user_total == pytest.approx(0.05)
    assert spent.left == pytest.approx(0.15) and spent.left_text() == "$0.150 left of $0.200"
    # another process (the CLI) bills into the same ledger
    child = cli(PROMPT, "--model", DEV, "-s", "3..4", "--save", str(tmp_path / "out"))
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    spent = oxen_magic.spend()
    assert spent.user_images == 4 and spent.left == pytest.approx(0.10)
    # ... and the budget counts it: $0.15 of new images no longer fits
    with pytest.raises(UsageProblem, match=r"\$0\.100 left of your \$0\.200 budget"):
        oxen_magic.generate(PROMPT, model=DEV, seed="5..10")
    assert hub.billed == 4


# -- reservations: concurrent runs cannot pass the budget together --------------------------------
def test_four_threads_under_a_budget_spend_no_more_than_it(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "0.05")
    hub.latency = 0.4  # every run is still in flight while the others are planned
    start = threading.Barrier(4)
    refused: list[str] = []
    done: list[int] = []

    def one(n: int) -> None:
        start.wait()
        try:
            grid = oxen_magic.generate(PROMPT, model=DEV, seed=f"{2 * n + 1}..{2 * n + 2}")  # $0.05
        except UsageProblem as exc:
            refused.append(str(exc))
        else:
            done.append(grid.done)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert done == [2] and len(refused) == 3
    assert all("\n" not in r and "left of your $0.050 budget" in r for r in refused), refused
    assert hub.billed == 2 and len(hub.generate_calls()) == 2
    spent = oxen_magic.spend()
    assert spent.user_total == pytest.approx(0.05) and spent.left == pytest.approx(0.0)
    assert spent.held == 0  # the run's hold was settled


def test_two_processes_under_one_budget(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    hub.latency = 0.5
    env = {"OXEN_MAGIC_MAX_SPEND": "0.05"}
    runs = [
        cli(PROMPT, "--model", DEV, "-s", seeds, "--save", str(tmp_path / seeds), env=env)
        for seeds in ("1..2", "3..4")
    ]
    answers = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    codes = sorted(code for code, _ in answers)
    assert codes == [0, 2], answers
    (refusal,) = [err for code, err in answers if code == 2]
    assert "left of your $0.050 budget" in refusal and "Traceback" not in refusal
    assert hub.billed == 2
    assert oxen_magic.spend().user_total == pytest.approx(0.05)


def test_a_dead_process_hold_does_not_block_the_budget(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel killed mid-run leaves its reservation in the file; its pid is gone, so it no longer
    counts (and a hold past its expiry neither)."""
    grab = (
        "import os, sys; from pathlib import Path; from oxen_magic.session.ledgerstore import Store; "
        "hold, _, _ = Store(Path(sys.argv[1])).reserve('killed', 1.0, 1.0); "
        "assert hold is not None; os._exit(0)"  # no clean-up: as if the kernel were killed
    )
    subprocess.run([sys.executable, "-c", grab, str(oxen_env)], env=child_env(), check=True, timeout=60)
    store = Store(oxen_env)
    with store._connect() as db:  # the hold really is there
        assert db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 1
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "1")
    assert oxen_magic.generate(PROMPT, model=DEV, seed="1..2").done == 2
    # a live process's hold that expired no longer counts either
    hold, _, _ = store.reserve("stuck", 0.95, 1.0)
    assert hold is not None
    with pytest.raises(UsageProblem, match=r"\(\$0\.950 is held by runs in progress; all your notebooks"):
        oxen_magic.generate(PROMPT, model=DEV, seed="3..4")
    with store._connect() as db:
        db.execute("UPDATE holds SET expires = 0 WHERE id = ?", (hold,))
    assert oxen_magic.generate(PROMPT, model=DEV, seed="3..4").done == 2


def test_a_stopped_run_releases_what_it_did_not_spend(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "0.10")
    hub.latency = 0.6
    stop = threading.Event()

    def stop_once_sent() -> None:  # Stop while the first request is in flight (being drawn)
        hub.wait_until(lambda: hub.in_flight >= 1)
        stop.set()

    watcher = threading.Thread(target=stop_once_sent, daemon=True)
    watcher.start()
    grid = oxen_magic.generate(PROMPT, model=DEV, seed="1..4", concurrency=1, cancel=stop)
    assert grid.interrupted
    # the image in flight stays held (or is charged by now), the three never sent are released
    assert oxen_magic.spend().left == pytest.approx(0.075)
    assert wait_for_no_oxen_threads(timeout=10.0) == []
    spent = oxen_magic.spend()
    assert hub.billed == 1 and spent.user_total == pytest.approx(0.025)
    assert spent.held == 0 and spent.left == pytest.approx(0.075)  # the other 3 images' hold is free
    hub.latency = 0.0
    assert oxen_magic.generate(PROMPT, model=DEV, seed="2..4").done == 3  # $0.075 fits exactly


# -- charged at the 200, whatever the download does -------------------------------------------------
@pytest.mark.parametrize("fault", ["expired-url", "over-the-cap-url", "over-the-cap-b64", "not-an-image"])
def test_an_image_billed_then_lost_is_charged_once(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    options: dict[str, Any] = {}
    if fault == "expired-url":
        hub.url_ttl = 0.0  # the result link has expired by the time it is fetched
    elif fault.startswith("over-the-cap"):
        monkeypatch.setenv("OXEN_MAGIC_MAX_BODY_MB", "0.25")
        hub.oversize_bytes = 1024 * 1024
        options["format"] = "url" if fault.endswith("url") else "b64_json"
    else:
        hub.garbage = "not_image"
    grid = oxen_magic.generate(PROMPT, model=DEV, seed=1, **options)
    assert grid.failed == 1 and hub.billed == 1
    spent = oxen_magic.spend()
    assert spent.images == 1 and spent.total == pytest.approx(0.025)  # charged, once
    assert not current_session().ledger.charge(grid.items[0], 0.025, "any")  # a second report adds nothing
    assert oxen_magic.spend().images == 1


def test_an_image_that_arrives_is_charged_once(oxen_env: Path, hub: LocalHub) -> None:
    grid = oxen_magic.generate(PROMPT, model=[DEV, TURBO], seed="1..3")
    assert grid.done == 6 and hub.billed == 6
    spent = oxen_magic.spend()
    assert spent.images == 6 and spent.total == pytest.approx(3 * 0.025 + 3 * 0.002)


# -- a damaged cache entry is priced ------------------------------------------------------------------
def test_a_damaged_cache_entry_is_priced_and_counted_by_the_budget(
    shell: Any, hub: LocalHub, oxen_env: Path
) -> None:
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2", PROMPT)
    assert error is None
    entries = sorted(oxen_env.glob("??/*.entry"))
    assert len(entries) == 2
    blob = entries[0].read_bytes()
    unit = unpack(blob)
    assert unit is not None
    middle = blob.index(unit[1]) + len(unit[1]) // 2
    entries[0].write_bytes(blob[:middle] + b"\0" * 8 + blob[middle + 8 :])  # the image damaged on disk
    entries[1].write_bytes(blob[: len(blob) // 3])  # cut short
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2 --dry-run --out plan", PROMPT)
    assert error is None
    notes = " ".join(shell.user_ns["plan"].notes)
    assert "(est. $0.050)" in notes and "from cache" not in notes, notes
    shell.run_line_magic("config", "OxenMagic.max_spend = 0.06")  # $0.05 spent, $0.01 left
    hub.reset()
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2", PROMPT)
    assert error is not None and "$0.050" in error and "$0.010 left" in error
    assert hub.generate_calls() == []


# -- budget values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-5", "abc", "-inf", "$-1"])
def test_a_budget_from_the_environment_that_is_no_amount_is_refused(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", value)
    with pytest.raises(UsageProblem) as info:
        oxen_magic.generate(PROMPT, model=DEV, seed=1)
    text = str(info.value)
    assert text.startswith(f"OXEN_MAGIC_MAX_SPEND={value!r} is not an amount of dollars")
    assert "OXEN_MAGIC_MAX_SPEND=2.50" in text and "\n" not in text
    assert hub.generate_calls() == []
    assert value in oxen_magic.spend().summary()  # spend() says it rather than failing


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "-5"])
def test_a_budget_from_config_that_is_no_amount_is_refused(shell: Any, hub: LocalHub, value: str) -> None:
    shell.run_line_magic("config", f"OxenMagic.max_spend = {value}")
    captured, error = run_cell(shell, f"--model {DEV} --seed 1", PROMPT)
    assert error is not None and "\n" not in error
    assert "max_spend" in error and "is not an amount of dollars" in error
    assert "%config OxenMagic.max_spend = 2.5" in error
    assert hub.generate_calls() == [] and html_outputs(captured) == []


def test_a_budget_given_to_the_session_that_is_no_amount_is_refused(oxen_env: Path, hub: LocalHub) -> None:
    reset_session(max_spend=-1.0)
    with pytest.raises(UsageProblem, match=r"^max_spend = -1\.0 is not an amount of dollars"):
        oxen_magic.generate(PROMPT, model=DEV, seed=1)
    assert hub.generate_calls() == []


def test_config_zero_switches_off_the_environments_budget(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "0.01")
    _, error = run_cell(shell, f"--model {DEV} --seed 1", PROMPT)
    assert error is not None and "$0.010 left" in error  # the environment's budget holds
    shell.run_line_magic("config", "OxenMagic.max_spend = 0")  # 0: no budget, from %config too
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2", PROMPT)
    assert error is None and hub.billed == 2
    assert oxen_magic.spend().left is None


# -- spend(): this kernel, the ledger, what is left ------------------------------------------------------
def test_spend_shows_this_kernel_the_ledger_and_what_is_left(shell: Any, hub: LocalHub) -> None:
    shell.run_line_magic("config", "OxenMagic.max_spend = 0.5")
    run_cell(shell, f"--model {DEV} --seed 1..2", PROMPT)
    other = current_session().name
    reset_session(max_spend=0.5)  # another kernel
    assert current_session().name != other
    oxen_magic.generate(PROMPT, model=TURBO, seed=1)
    spent = oxen_magic.spend()
    assert (spent.images, spent.user_images) == (1, 3)
    assert spent.total == pytest.approx(0.002) and spent.user_total == pytest.approx(0.052)
    assert spent.left == pytest.approx(0.448)
    text = repr(spent)
    assert "1 image(s) billed in this kernel, $0.002" in text
    assert "all your notebooks: 3 image(s), $0.052" in text and "$0.448 left of $0.500 budget" in text
    page = spent._repr_html_()
    assert "&#36;0.448 left of &#36;0.500" in page and "$" not in page
    spent.reset()  # a new workshop: the ledger starts again
    spent = oxen_magic.spend()
    assert spent.user_images == 0 and spent.left == pytest.approx(0.5)


def test_a_ledger_folder_that_cannot_be_written_counts_this_kernel_and_says_so(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    store = Store(blocker / "inside")
    assert store.path is None and store.problem is not None
    hold, left, _ = store.reserve("k", 0.01, 0.05)
    assert hold is not None and left == pytest.approx(0.05)


# -- the embedded local hub bills nothing, so a rehearsal spends no budget --------------------------
def test_a_rehearsal_on_the_embedded_hub_spends_none_of_the_budget(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "0.05")
    reset_session()
    # $0.10 of images at the real API's prices: more than the budget, but drawn locally
    rehearsal = oxen_magic.generate(PROMPT, model=DEV, seed="1..4", host="local")
    assert all(item.status == "done" for item in rehearsal.items)
    spent = oxen_magic.spend()
    assert spent.user_images == 0 and spent.user_total == 0 and spent.left == pytest.approx(0.05)
    # the real API (here the test's hub) still has the whole budget, and still guards it
    oxen_magic.generate(PROMPT, model=DEV, seed="5..6")
    assert hub.billed == 2 and oxen_magic.spend().left == pytest.approx(0.0)
    with pytest.raises(UsageProblem, match="budget"):
        oxen_magic.generate(PROMPT, model=DEV, seed="7")
    assert hub.billed == 2


# -- unit: the Ledger and its Store alone, with a clock the test moves -------------------------------
class Clock:
    """Seconds since the epoch that move only when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _items(model: str, n: int) -> list[Item]:
    return [Item(Request(model, PROMPT, seed=s), 0, s) for s in range(1, n + 1)]


def _grid(prices: dict[str, float | None]) -> Any:
    """What `check_budget` reads of the results: the plan's prices and the notes it adds to."""
    return SimpleNamespace(plan=SimpleNamespace(prices=prices), notes=[])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Ledger:
    return Ledger(tmp_path, "kernel-1", clock=clock)


def test_a_charge_counts_once_at_the_clocks_time(ledger: Ledger, clock: Clock) -> None:
    dev, free = _items(DEV, 1)[0], Item(None, 0, 0)
    assert ledger.charge(dev, 0.025, "https://hub") is True
    assert ledger.charge(dev, 0.025, "https://hub") is False  # the same item again: not new
    assert ledger.charge(free, 0.025, "https://hub") is False  # no request: nothing was sent
    (charge,) = ledger.charges()
    assert (charge.model, charge.price, charge.at, charge.host) == (DEV, 0.025, clock.now, "https://hub")
    spent = ledger.spend()
    assert (spent.images, spent.total, spent.unpriced) == (1, pytest.approx(0.025), 0)


def test_unknown_prices_and_gateway_answers_are_counted_apart(ledger: Ledger) -> None:
    known, unknown, gateway = _items(DEV, 3)
    ledger.charge(known, 0.025, "h")
    ledger.charge(unknown, None, "h")
    ledger.charge(gateway, 0.025, "h", gateway=502)
    spent = ledger.spend()
    assert (spent.images, spent.unpriced, spent.possibly) == (2, 1, 1)
    assert spent.total == pytest.approx(0.025) and spent.possible_total == pytest.approx(0.025)
    assert spent.summary() == (
        "2 image(s) billed in this kernel, $0.025 + 1 of unknown price; 1 more may have been billed "
        "(gateway error 502, $0.025); all your notebooks: 2 image(s), $0.025"
    )
    assert spent.by_model() == [(DEV, 2, None, pytest.approx(0.025))]  # two prices: no single "each"


def test_a_hold_reserves_the_estimate_and_each_charge_shrinks_it(ledger: Ledger) -> None:
    items = _items(DEV, 4)
    grid = _grid({DEV: 0.025})
    hold = ledger.check_budget(grid.plan.prices, items, budget=0.5)[0]
    assert hold is not None
    assert ledger.spend(0.5).held == pytest.approx(0.1)
    ledger.charge(items[0], 0.025, "h", hold=hold)
    spent = ledger.spend(0.5)
    assert spent.held == pytest.approx(0.075) and spent.user_total == pytest.approx(0.025)
    assert spent.left == pytest.approx(0.4) and spent.left_text() == "$0.400 left of $0.500"
    assert spent.summary().endswith("; $0.400 left of $0.500 budget ($0.075 held by runs in progress)")


def test_no_budget_holds_nothing(ledger: Ledger) -> None:
    items = _items(DEV, 2)
    assert ledger.check_budget(_grid({DEV: 0.025}).plan.prices, items, budget=0)[0] is None
    assert ledger.spend().held == 0 and ledger.spend().left is None


def test_a_run_that_does_not_fit_is_refused_in_one_sentence(tmp_path: Path, clock: Clock) -> None:
    first, second = Ledger(tmp_path, "kernel-1", clock=clock), Ledger(tmp_path, "kernel-2", clock=clock)
    items = _items(DEV, 2)
    assert first.check_budget(_grid({DEV: 0.025}).plan.prices, items, budget=0.06)[0] is not None
    more = _items(DEV, 2)
    with pytest.raises(UsageProblem) as refused:
        second.check_budget(_grid({DEV: 0.025}).plan.prices, more, budget=0.06)[0]
    assert str(refused.value) == (
        "These 2 new image(s) would cost about $0.050, more than the $0.010 left of your $0.060 budget "
        "($0.050 is held by runs in progress; all your notebooks count); narrow the sweep (cached "
        "images are free) or raise %config OxenMagic.max_spend."
    )


def test_unpriced_images_are_not_held_and_the_run_says_so(ledger: Ledger) -> None:
    items = [*_items(DEV, 1), *_items("oxen:mine", 2)]
    grid = _grid({DEV: 0.025, "oxen:mine": None})
    hold, note = ledger.check_budget(grid.plan.prices, items, budget=0.5)
    assert hold is not None
    assert ledger.spend(0.5).held == pytest.approx(0.025)
    assert grid.notes == []  # the ledger returns its note; the run writes it into the grid
    assert note == "2 new image(s) have no listed price, so the budget ($0.500 left) cannot count them."
    only = _items("oxen:mine", 1)
    nothing = ledger.check_budget(_grid({"oxen:mine": None}).plan.prices, only, budget=0.5)[0]
    assert nothing is None  # nothing to hold


def test_settle_keeps_only_what_requests_in_flight_may_cost(ledger: Ledger, clock: Clock) -> None:
    items = _items(DEV, 4)
    prices = {DEV: 0.025}
    hold = ledger.check_budget(_grid(prices).plan.prices, items, budget=1.0)[0]
    assert hold is not None
    ledger.charge(items[0], 0.025, "h", hold=hold)  # answered and billed
    items[0].status, items[1].status = "done", "failed"  # the second ended unbilled: never billed
    ledger.settle(hold, items, prices, seconds=30)  # items 2 and 3 are still in flight (after Stop)
    assert ledger.spend(1.0).held == pytest.approx(0.05)
    clock.now += 31  # their deadline passed: the rest of the hold is free again
    assert ledger.spend(1.0).held == 0


def test_settle_with_nothing_in_flight_frees_the_hold(ledger: Ledger) -> None:
    items = _items(DEV, 2)
    hold = ledger.check_budget(_grid({DEV: 0.025}).plan.prices, items, budget=1.0)[0]
    assert hold is not None
    for item in items:
        ledger.charge(item, 0.025, "h", hold=hold)
        item.status = "done"
    ledger.settle(hold, items, {DEV: 0.025}, seconds=30)
    with ledger.store._connect() as db:
        assert db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0


def test_release_frees_a_hold(ledger: Ledger) -> None:
    items = _items(DEV, 2)
    hold = ledger.check_budget(_grid({DEV: 0.025}).plan.prices, items, budget=1.0)[0]
    assert hold is not None and ledger.spend(1.0).held == pytest.approx(0.05)
    ledger.release(hold)
    assert ledger.spend(1.0).held == 0 and ledger.spend(1.0).left == pytest.approx(1.0)
    ledger.release(hold)  # twice: harmless


def test_a_hold_expires_unless_a_charge_renews_it(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, clock)
    hold, left, held = store.reserve("k", 0.5, 1.0)
    assert hold is not None and (left, held) == (pytest.approx(1.0), 0.0)
    clock.now += HOLD_TTL - 1
    store.add(Row(DEV, 0.025, clock.now, "h", None, "k"), hold)  # a charge: the hold lives on
    clock.now += HOLD_TTL - 1
    assert store.totals().held == pytest.approx(0.475)
    clock.now += 2  # no news from its run for longer than HOLD_TTL: it no longer counts
    assert store.totals().held == 0
    hold, left, _ = store.reserve("k2", 0.975, 1.0)  # and the next reservation forgets it
    assert hold is not None and left == pytest.approx(0.975)


def test_a_dead_process_hold_is_ignored_and_forgotten(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, clock)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    with store._connect() as db:
        db.execute(
            "INSERT INTO holds (session, machine, pid, amount, expires) VALUES (?, ?, ?, ?, ?)",
            ("killed", MACHINE, gone.pid, 0.9, clock.now + HOLD_TTL),
        )
        db.execute(
            "INSERT INTO holds (session, machine, pid, amount, expires) VALUES (?, ?, ?, ?, ?)",
            ("elsewhere", "another-machine", gone.pid, 0.05, clock.now + HOLD_TTL),
        )
    assert store.totals().held == pytest.approx(0.05)  # another machine's: only its expiry bounds it
    hold, left, held = store.reserve("k", 0.9, 1.0)
    assert hold is not None and left == pytest.approx(0.95) and held == pytest.approx(0.05)
    with store._connect() as db:
        sessions = {s for (s,) in db.execute("SELECT session FROM holds")}
    assert sessions == {"elsewhere", "k"}  # the dead one was deleted


def test_two_kernels_share_the_ledger_and_each_sees_its_own(tmp_path: Path, clock: Clock) -> None:
    first, second = Ledger(tmp_path, "kernel-1", clock=clock), Ledger(tmp_path, "kernel-2", clock=clock)
    first.charge(_items(DEV, 1)[0], 0.025, "h")
    second.charge(_items(TURBO, 1)[0], 0.002, "h")
    spent = second.spend(0.5)
    assert (spent.images, spent.user_images) == (1, 2)
    assert spent.total == pytest.approx(0.002) and spent.user_total == pytest.approx(0.027)
    assert repr(spent).splitlines() == [
        "model          images     each     total",
        "z-image-turbo       1   $0.002    $0.002",
        "1 image(s) billed in this kernel, $0.002; all your notebooks: 2 image(s), $0.027; "
        "$0.473 left of $0.500 budget",
    ]
    spent.reset()
    assert first.spend().user_images == 0 and first.charges() == ()
