"""Where the merged features meet (issues 19, 20, 22): two processes sending the same seeded
request, the ledger with `num_images`, packs and the cache layout, over real HTTP and real
processes against the local hub."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import child_env, cli, wait_for_no_oxen_threads

import oxen_magic
from oxen_magic.localhub import LocalHub
from oxen_magic.network.cache import Cache
from oxen_magic.network.keys import DEFAULT_HOST
from oxen_magic.session.claims import FileClaim
from oxen_magic.session.session import reset_session

PROMPT = "a lighthouse at dusk"
DEV = "flux-2-dev"  # $0.025 per image on the local hub
IDEOGRAM = "ideogram-v4"  # its schema takes num_images


# -- two notebooks, one cell: a seeded request is sent once across processes ----------------------
def test_two_processes_sending_the_same_seeded_request_pay_once(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    hub.latency = 1.0  # the first is still being drawn when the second is ready to send
    runs = [cli(PROMPT, "--model", DEV, "-s", "7", "--save", str(tmp_path / f"out{n}")) for n in (1, 2)]
    answers = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    assert [code for code, _ in answers] == [0, 0], answers
    assert len(hub.generate_calls()) == 1 and hub.billed == 1
    saved = [sorted((tmp_path / f"out{n}").glob(f"{DEV}_seed-7*.png")) for n in (1, 2)]
    assert all(len(files) == 1 for files in saved), saved
    assert saved[0][0].read_bytes() == saved[1][0].read_bytes()  # both got the one image
    spent = oxen_magic.spend()
    assert spent.user_images == 1 and spent.user_total == pytest.approx(0.025)
    assert not list(oxen_env.rglob("*.lock")), "a finished claim leaves no lock file behind"
    assert hub.api_key is not None
    written = [p.read_bytes() for p in [*oxen_env.rglob("*"), *tmp_path.rglob("*.png")] if p.is_file()]
    assert not any(hub.api_key.encode() in blob for blob in written)
    assert not any(hub.api_key in err for _, err in answers)


def test_a_claim_held_by_a_killed_process_is_free_and_a_waiter_can_stop(tmp_path: Path) -> None:
    hold = (
        "import sys, time; from pathlib import Path; from oxen_magic.session.claims import FileClaim; "
        "c = FileClaim(Path(sys.argv[1]), 'k'); assert not c.busy(); print('held', flush=True); "
        "time.sleep(60)"  # the behaviour under test: a live holder, until the test kills it
    )
    child = subprocess.Popen(
        [sys.executable, "-c", hold, str(tmp_path)], env=child_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        waiter = FileClaim(tmp_path, "k")
        assert waiter.busy()
        stop = threading.Event()
        stop.set()
        assert waiter.take(stop, 0.01) is False  # Stop while waiting: nothing held, nothing sent
        assert waiter.busy()
    finally:
        child.kill()  # a crashed holder: the operating system drops its lock
        child.wait(timeout=30)
    assert waiter.busy() is False  # ours now
    other = FileClaim(tmp_path, "k")
    assert other.busy()
    waiter.release()
    assert other.busy() is False  # the released (removed) file: a new one is claimed
    other.release()
    assert not list((tmp_path / "claims").iterdir())


def test_two_processes_sending_the_same_num_images_request_both_get_every_image(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    hub.latency = 1.0
    args = (PROMPT, "--model", IDEOGRAM, "-s", "7", "-p", "num_images=3")
    runs = [cli(*args, "--save", str(tmp_path / f"out{n}")) for n in (1, 2)]
    answers = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    assert [code for code, _ in answers] == [0, 0], answers
    assert len(hub.generate_calls()) == 1 and hub.billed == 3
    saved = [sorted(p.name for p in (tmp_path / f"out{n}").glob(f"{IDEOGRAM}*.png")) for n in (1, 2)]
    assert len(saved[0]) == 3 and saved[0] == saved[1], saved
    assert oxen_magic.spend().user_images == 3


# -- the ledger and num_images: a stopped run keeps the whole count's price held -------------------
def test_a_stopped_num_images_request_in_flight_keeps_every_image_held(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "1.00")
    hub.latency = 1.0
    stop = threading.Event()

    def stop_once_sent() -> None:  # Stop while the request for 3 images is being drawn
        hub.wait_until(lambda: hub.in_flight >= 1)
        stop.set()

    threading.Thread(target=stop_once_sent, daemon=True).start()
    grid = oxen_magic.generate(PROMPT, model=IDEOGRAM, seed=1, param=["num_images=3"], cancel=stop)
    assert grid.interrupted
    spent = oxen_magic.spend()
    # the 3 images in flight ($0.06 each) are held until they are charged: no other run can spend it
    assert spent.held + spent.user_total == pytest.approx(0.18)
    assert wait_for_no_oxen_threads(timeout=10.0) == []
    spent = oxen_magic.spend()
    assert hub.billed == 3 and spent.user_total == pytest.approx(0.18) and spent.held == 0


def test_fewer_images_than_asked_are_charged_as_they_arrived_and_hold_nothing(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "1.00")
    hub.extra_images = -2  # one image of the three asked
    grid = oxen_magic.generate(PROMPT, model=IDEOGRAM, seed=1, param=["num_images=3"], format="b64_json")
    assert [i.status for i in grid] == ["done", "failed", "failed"]
    spent = oxen_magic.spend()
    assert hub.billed == 1 and spent.user_images == 1 and spent.user_total == pytest.approx(0.06)
    assert spent.held == 0  # the two that never came are not held for the deadline either
    assert spent.left == pytest.approx(0.94)


def test_a_count_answered_200_then_lost_is_charged_whole(oxen_env: Path, hub: LocalHub) -> None:
    hub.url_ttl = 0.0  # the result links have expired by the time they are fetched
    grid = oxen_magic.generate(PROMPT, model=IDEOGRAM, seed=1, param=["num_images=3"], format="url")
    assert [i.status for i in grid] == ["failed"] * 3
    assert hub.billed == 3 and oxen_magic.spend().user_images == 3  # billed as asked, once
    hub.url_ttl = 600.0
    assert oxen_magic.generate(PROMPT, model=IDEOGRAM, seed=1, param=["num_images=3"]).done == 3
    assert oxen_magic.spend().user_images == 6


@pytest.mark.parametrize("count", ["0", "-2"])
def test_a_count_of_no_image_is_refused_before_anything_is_sent(
    oxen_env: Path, hub: LocalHub, count: str
) -> None:
    child = cli(PROMPT, "--model", IDEOGRAM, "-s", "1", "-p", f"num_images={count}")
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2
    assert err.strip() == f"oxen-image: num_images={count} asks {IDEOGRAM} for no image; give 1 or more."
    assert hub.generate_calls() == []


def test_a_dry_run_lists_each_request_once_and_counts_every_image(oxen_env: Path, hub: LocalHub) -> None:
    child = cli(PROMPT, "--model", IDEOGRAM, "-s", "1..2", "-p", "num_images=3", "--dry-run")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[:2] == [f"{IDEOGRAM}: {PROMPT!r} seed={s}, num_images=3" for s in (1, 2)]
    assert lines[2:] == [
        "Dry run: 6 image(s) planned (est. $0.360); nothing was sent. Remove --dry-run to generate them."
    ]
    assert hub.generate_calls() == []


def test_a_kernel_and_the_cli_sending_the_same_request_pay_once(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    hub.latency = 1.0
    child = cli(PROMPT, "--model", DEV, "-s", "9", "--save", str(tmp_path / "out"))
    hub.wait_until(lambda: hub.in_flight >= 1, timeout=60)  # the CLI is drawing its image
    grid = oxen_magic.generate(PROMPT, model=DEV, seed=9)  # this kernel, the same cell
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert grid.done == 1 and grid[0].cached  # answered from the cache the CLI wrote
    assert len(hub.generate_calls()) == 1 and hub.billed == 1
    assert oxen_magic.spend().user_images == 1 and oxen_magic.spend().images == 0


# -- a rehearsal on the embedded hub spends no budget, but a budget value that is wrong is said -----
def test_a_bad_budget_is_refused_on_the_embedded_hub_too(oxen_env: Path, tmp_path: Path) -> None:
    env = {"OXEN_MAGIC_MAX_SPEND": "nan", "OXEN_API_KEY": "", "OXEN_HOST": ""}
    child = cli(PROMPT, "-s", "1..2", "--host", "local", "--save", str(tmp_path / "out"), env=env)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2, err
    assert err.strip().startswith("oxen-image: OXEN_MAGIC_MAX_SPEND='nan' is not an amount of dollars")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    env["OXEN_MAGIC_MAX_SPEND"] = "0.01"  # a real budget: the rehearsal's placeholders spend none of it
    child = cli(PROMPT, "-m", DEV, "-s", "1..2", "--host", "local", "--save", str(tmp_path / "o2"), env=env)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err


# -- packs first in the CLI: what the local hub drew is said to be a placeholder --------------------
def _as_a_pack(folder: Path) -> None:
    """File the cache's entries (made online against the test hub) under hub.oxen.ai, as an
    imported pack would have them."""
    cache = Cache(folder)
    for path in cache.entry_files():
        entry = cache.read_entry(path)
        assert entry is not None
        meta = {k: v for k, v in entry.meta.items() if k not in ("host", "body", "sha256", "thumb_size")}
        cache.put(DEFAULT_HOST, entry.meta["body"], entry.data, entry.thumb, entry.meta["thumb_size"], **meta)


def test_the_cli_on_the_local_hub_says_which_images_are_placeholders(oxen_env: Path, tmp_path: Path) -> None:
    oxen_magic.generate(PROMPT, model=DEV, seed="1..2")
    _as_a_pack(oxen_env)
    env = {"OXEN_API_KEY": "", "OXEN_HOST": ""}  # a student with no key: the pack first, then the local hub
    child = cli(PROMPT, "-m", DEV, "-s", "1..3", "--host", "local", "--save", str(tmp_path / "out"), env=env)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("3/3 images, 2 from cache, 1 placeholder (the local hub's, not a model's)"), out


def test_stop_while_another_process_sends_the_request_sends_nothing(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    hub.latency = 2.0
    child = cli(PROMPT, "--model", DEV, "-s", "11", "--save", str(tmp_path / "out"))
    hub.wait_until(lambda: hub.in_flight >= 1, timeout=60)  # the CLI holds the claim
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()  # Stop while this kernel waits for the CLI's answer
    grid = oxen_magic.generate(PROMPT, model=DEV, seed=11, cancel=stop)
    assert grid.interrupted and grid[0].status == "cancelled"
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert len(hub.generate_calls()) == 1 and oxen_magic.spend().user_images == 1
    again = oxen_magic.generate(PROMPT, model=DEV, seed=11)  # the rerun reads the CLI's image
    assert again[0].cached and len(hub.generate_calls()) == 1


def test_a_damaged_entry_is_fetched_again_once_by_two_processes(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    oxen_magic.generate(PROMPT, model=DEV, seed=13)
    (entry,) = Cache(oxen_env).entry_files()
    blob = bytearray(entry.read_bytes())
    start = blob.index(b"\n", blob.index(b"\n") + 1) + 1  # after the marker and the record lines
    blob[start + 100 : start + 120] = bytes(20)  # the image no longer matches its checksum
    entry.write_bytes(bytes(blob))
    hub.reset()
    hub.latency = 1.0
    runs = [cli(PROMPT, "--model", DEV, "-s", "13", "--save", str(tmp_path / f"out{n}")) for n in (1, 2)]
    answers = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    assert [code for code, _ in answers] == [0, 0], answers
    assert len(hub.generate_calls()) == 1  # priced and sent again, by one of them
    assert oxen_magic.spend().user_images == 2  # the first run's image and this one


def test_a_pack_answers_every_image_of_a_count_with_no_key(oxen_env: Path, tmp_path: Path) -> None:
    oxen_magic.generate(PROMPT, model=IDEOGRAM, seed="1..2", param=["num_images=2"])
    _as_a_pack(oxen_env)
    env = {"OXEN_API_KEY": "", "OXEN_HOST": ""}
    args = (PROMPT, "-m", IDEOGRAM, "-s", "1..3", "-p", "num_images=2", "--host", "local")
    child = cli(*args, "--save", str(tmp_path / "out"), env=env)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.strip().splitlines()[-1].startswith("6/6 images, 4 from cache, 2 placeholders"), out


def test_an_image_past_the_count_is_shown_again_by_a_cached_rerun(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    hub.extra_images = 1  # the server answers one more image than asked (billed all the same)
    first = oxen_magic.generate(PROMPT, model=IDEOGRAM, seed=3, param=["num_images=2"])
    assert len(first) == 3 and hub.billed == 3
    reset_session()  # a kernel restart: only the cache remembers
    again = oxen_magic.generate(PROMPT, model=IDEOGRAM, seed=3, param=["num_images=2"])
    assert [i.cached for i in again] == [True] * 3 and len(hub.generate_calls()) == 1
    assert [i.data for i in again] == [i.data for i in first]
    assert again[2].col >= len(again.plan.col_labels)  # off the grid, as the first time
    assert any("more images than asked" in note for note in again.notes)
    assert len(again.save(tmp_path / "pngs")) == 3
