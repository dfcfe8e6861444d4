"""The room relay (issue 23): seat tokens, budgets on the server, a room that pays once per image.

Against the real local hub as upstream, over real HTTP on loopback: the relay in-process (a thread
with its own event loop), except the SIGKILL test, which runs `python -m oxen_magic.relay` as a
subprocess, kills it and starts it again on the same db.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from oxen_magic.localhub import LocalHub
from oxen_magic.relay import Relay, RoomDB
from tests.support import all_text, html_outputs, run_cell, shown_html, wait_for

FLUX = "flux-2-dev"  # $0.025 an image on the local hub
PRICE = 0.025
GEN = "/api/ai/images/generate"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def room(hub: LocalHub, tmp_path: Path) -> Iterator[Relay]:
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(3, 1.0)
    with Relay(db, hub.url, hub.api_key) as relay:
        yield relay


def token(relay: Relay, seat: int) -> str:
    return dict(relay.db.tokens())[seat]


class At:
    """Where a relay answers (one in a subprocess has no `Relay` object here)."""

    def __init__(self, url: str) -> None:
        self.url = url


class Seen:
    """Every byte the relay sent to a seat in a test (status line, headers, body)."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def keep(self, response: requests.Response) -> requests.Response:
        head = f"{response.status_code} {response.reason}\n" + "".join(
            f"{k}: {v}\n" for k, v in response.headers.items()
        )
        self.blobs.append(head.encode() + response.content)
        return response


SEEN = Seen()


@pytest.fixture(autouse=True)
def _no_key_to_seats(hub: LocalHub) -> Iterator[None]:
    """After every test here: no byte the relay sent to a seat contained the upstream key."""
    SEEN.blobs.clear()
    yield
    assert hub.api_key is not None
    assert [b[:80] for b in SEEN.blobs if hub.api_key.encode() in b] == []


def post(relay: Relay | At, tok: str | None, body: dict[str, Any], path: str = GEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {tok}"} if tok is not None else {}
    return SEEN.keep(requests.post(relay.url + path, json=body, headers=headers, timeout=30))


def get(relay: Relay | At, tok: str | None, url: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {tok}"} if tok is not None else {}
    full = url if url.startswith("http") else relay.url + url
    return SEEN.keep(requests.get(full, headers=headers, timeout=30))


def seeded(seed: int = 7, prompt: str = "a red cube") -> dict[str, Any]:
    return {"model": FLUX, "prompt": prompt, "seed": seed, "aspect_ratio": "1:1"}


def image_bytes(relay: Relay | At, tok: str, answer: requests.Response) -> bytes:
    assert answer.status_code == 200, answer.text
    url = answer.json()["images"][0]["url"]
    assert url.startswith(relay.url + "/relay/files/"), url  # the relay's own origin
    got = get(relay, tok, url)
    assert got.status_code == 200
    return got.content


def title(answer: requests.Response) -> str:
    body = answer.json()
    assert body["status"] == "error" and body["status_message"] == body["error"]["type"]
    return str(body["error"]["title"])


# -- tokens ----------------------------------------------------------------------------------------


def test_a_seat_needs_its_own_valid_token(room: Relay, hub: LocalHub) -> None:
    one, two = token(room, 1), token(room, 2)
    for tok in (None, "", "room-not-a-seat", one + "x", one[:-1]):
        answer = post(room, tok, seeded())
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "unauthenticated"
        assert get(room, tok, "/api/ai/models").status_code == 401
    assert hub.generate_calls() == []  # nothing went upstream for them
    assert room.db.spent(1) == room.db.spent(2) == 0

    # an unseeded image is the seat's own: another seat cannot fetch it, nobody without a token can
    mine = post(room, one, {"model": FLUX, "prompt": "mine"})
    url = mine.json()["images"][0]["url"]
    assert get(room, one, url).status_code == 200
    assert get(room, two, url).status_code == 404
    assert get(room, None, url).status_code == 401
    assert room.db.spent(1) == pytest.approx(PRICE) and room.db.spent(2) == 0  # charged to seat 1 only

    room.db.revoke(2)
    assert post(room, two, seeded()).status_code == 401
    assert get(room, two, url).status_code == 401


def test_model_routes_are_relayed_with_the_upstream_key(room: Relay) -> None:
    tok = token(room, 1)
    listing = get(room, tok, "/api/ai/models")
    assert listing.status_code == 200 and listing.json()["object"] == "list"
    detail = get(room, tok, "/api/ai/models/" + FLUX)
    assert detail.json()["pricing"]["cost_per_image"] == PRICE
    assert get(room, tok, "/api/ai/models/search?search=flux").status_code == 200
    missing = get(room, tok, "/api/ai/models/no-such-model")
    assert missing.status_code == 404
    assert post(room, tok, {"model": "no-such-model", "prompt": "x"}).status_code == 404
    queue = post(room, tok, {"model": FLUX, "prompt": "x"}, "/api/ai/queue")  # not relayed (yet)
    assert queue.status_code == 404 and queue.json()["error"]["message"] == "Route not found: /api/ai/queue"
    assert room.db.spent(1) == 0


# -- budgets ---------------------------------------------------------------------------------------


def test_concurrent_requests_of_one_seat_cannot_pass_its_budget_together(room: Relay, hub: LocalHub) -> None:
    tok = token(room, 1)
    room.db.set_budget(1, 2 * PRICE + 0.001)  # room for two images
    hub.latency = 0.3  # all eight are in the relay at once
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(room, tok, {"model": FLUX, "prompt": f"p{i}"}), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200] + [402] * 6
    assert len(hub.generate_calls()) == 2  # the refused ones never went upstream
    assert room.db.spent(1) == pytest.approx(2 * PRICE)
    refusal = title(next(a for a in answers if a.status_code == 402))
    assert refusal.startswith("Seat budget reached: $0.001 of $0.051 left"), refusal
    assert "\n" not in refusal


def test_a_failed_upstream_request_costs_nothing(room: Relay, hub: LocalHub) -> None:
    tok = token(room, 1)
    hub.fail_next(1, 400)
    failed = post(room, tok, seeded())
    assert failed.status_code == 400
    hub.fail_next(1, 503)
    assert post(room, tok, seeded()).status_code == 503
    assert room.db.spent(1) == 0
    assert post(room, tok, seeded()).status_code == 200  # a failure is not stored for the room
    assert room.db.spent(1) == pytest.approx(PRICE)


def test_a_refused_upstream_key_is_the_relays_problem_and_never_shown(room: Relay, hub: LocalHub) -> None:
    real = hub.api_key
    hub.api_key = "another-key"  # the instructor's key is now wrong upstream
    try:
        answer = post(room, token(room, 1), {"model": "z-image-turbo", "prompt": "x"})
    finally:
        hub.api_key = real
    assert answer.status_code == 502 and "tell your instructor" in title(answer)
    assert room.db.spent(1) == 0


# -- the room pays once ----------------------------------------------------------------------------


def test_the_room_pays_once_per_seeded_image_never_for_unseeded_ones(room: Relay, hub: LocalHub) -> None:
    one, two = token(room, 1), token(room, 2)
    first = image_bytes(room, one, post(room, one, seeded()))
    # b64_json is the same request as far as the room is concerned
    again = post(room, two, {**seeded(), "response_format": "b64_json"})
    assert base64.b64decode(again.json()["images"][0]["b64_json"]) == first
    assert image_bytes(room, two, post(room, two, seeded())) == first  # seat 2 may fetch a shared file
    assert len(hub.generate_calls()) == 1
    assert room.db.spent(1) == pytest.approx(PRICE) and room.db.spent(2) == 0
    assert post(room, two, seeded(seed=8)).status_code == 200  # another seed is another image
    unseeded = {"model": FLUX, "prompt": "a red cube"}
    post(room, one, unseeded)
    post(room, two, unseeded)
    assert len(hub.generate_calls()) == 4
    assert room.db.spent(2) == pytest.approx(2 * PRICE)
    report = {r.seat: r for r in room.db.seats_report()}
    assert report[2].saved == pytest.approx(2 * PRICE) and report[2].images == 4


def test_identical_requests_in_flight_make_one_upstream_request(room: Relay, hub: LocalHub) -> None:
    room.db.ensure_seats(12, 1.0)
    hub.latency = 0.5
    tokens = [t for _, t in room.db.tokens()]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda t: post(room, t, seeded(seed=99)), tokens))
    assert [a.status_code for a in answers] == [200] * 12
    assert len(hub.generate_calls()) == 1
    images = {image_bytes(room, t, a) for t, a in zip(tokens, answers, strict=True)}
    assert len(images) == 1
    spent = [room.db.spent(s) for s, _ in room.db.tokens()]
    assert sorted(spent) == [0.0] * 11 + [pytest.approx(PRICE)]


def test_a_seat_over_budget_never_hands_its_402_to_identical_requests(room: Relay, hub: LocalHub) -> None:
    """The broke seats' reservations are refused while the others wait at the key's gate: those
    then reserve in their own turn, one goes upstream and the rest share it."""
    room.db.ensure_seats(10, 1.0)
    for broke in range(1, 6):
        room.db.set_budget(broke, 0.0)
    hub.latency = 0.3
    tokens = room.db.tokens()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda t: post(room, t[1], seeded(seed=77)), tokens))
    statuses = {seat: a.status_code for (seat, _), a in zip(tokens, answers, strict=True)}
    # A broke seat is refused unless it came after the image existed (then it is free to all).
    assert all(statuses[s] == 200 for s in range(6, 11)), statuses
    assert set(statuses.values()) <= {200, 402}
    assert len(hub.generate_calls()) == 1
    assert sum(room.db.spent(s) for s, _ in tokens) == pytest.approx(PRICE)


def test_edit_requests_are_relayed_too(room: Relay, hub: LocalHub) -> None:
    tok = token(room, 1)
    png = get(room, tok, post(room, tok, seeded()).json()["images"][0]["url"]).content
    body = {**seeded(), "input_image": ["data:image/png;base64," + base64.b64encode(png).decode()]}
    assert post(room, tok, body, "/api/ai/images/edit").status_code == 200
    assert len(hub.edit_calls()) == 1


def test_no_byte_sent_to_a_seat_contains_the_upstream_key(room: Relay, hub: LocalHub) -> None:
    """Every kind of answer once (each test's answers are also checked by `_no_key_to_seats`)."""
    tok = token(room, 1)
    post(room, tok, seeded())
    post(room, tok, {"model": FLUX})
    post(room, tok, {"prompt": "no model"})
    room.db.set_budget(1, 0)
    post(room, tok, {"model": FLUX, "prompt": "over budget"})
    get(room, "wrong", "/api/ai/models")
    assert hub.api_key is not None and len(SEEN.blobs) >= 5
    leaks = [b[:80] for b in SEEN.blobs if hub.api_key.encode() in b]
    assert leaks == []


# -- SIGKILL and restart ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxen_magic.relay", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def answers() -> bool:
        assert proc.poll() is None, proc.communicate()
        try:
            requests.get(url + "/api/ai/models", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    wait_for(answers, what="the relay answering")
    return proc


def test_sigkill_and_restart_keep_tokens_spend_and_images(hub: LocalHub, tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    db, seats = tmp_path / "room.sqlite", tmp_path / "seats.csv"
    args = ["--upstream", hub.url, "--port", str(port), "--seats", "2", "--budget", "1"]
    args += ["--db", str(db), "--seats-file", str(seats)]
    assert hub.api_key is not None
    env = {**os.environ, "OXEN_HOST": hub.url, "OXEN_API_KEY": hub.api_key, "PYTHONPATH": str(ROOT)}
    proc = _start(args, env, url)
    relay = At(url)
    tokens = list(csv.reader(seats.read_text().splitlines()))
    assert tokens[0] == ["seat", "token"] and len(tokens) == 3
    tok = tokens[1][1]
    first = image_bytes(relay, tok, post(relay, tok, seeded()))
    hub.latency = 5.0  # one more request, in flight when the relay dies
    threading.Thread(target=lambda: _quiet_post(url, tok), daemon=True).start()
    hub.wait_until(lambda: hub.in_flight > 0)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    hub.latency = 0.0

    before = seats.read_text()
    proc = _start(args, env, url)
    try:
        assert seats.read_text() == before  # no new seats, same tokens
        assert seats.stat().st_mode & 0o077 == 0 and db.stat().st_mode & 0o077 == 0  # owner-only
        assert image_bytes(relay, tok, post(relay, tok, seeded())) == first  # from the store
        sevens = [c for c in hub.generate_calls() if c.body and c.body.get("seed") == 7]
        assert len(sevens) == 1  # the finished image was not made (or billed) again
        assert RoomDB(db).spent(1) == pytest.approx(2 * PRICE)  # the interrupted one is kept as spend
        assert post(relay, "room-wrong", seeded()).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out2, err2 = proc.communicate(timeout=10)
    for text in (out, err, out2, err2):
        assert hub.api_key.encode() not in text
    assert b"kept as spend" in err2
    admin = RoomDB(db).admin_token().encode()
    assert b"/relay/?token=" + admin in out and b"/relay/?token=" + admin in out2  # kept in the db


def _quiet_post(url: str, tok: str) -> None:
    with contextlib.suppress(requests.RequestException):  # the relay is killed under it
        requests.post(url + GEN, json=seeded(seed=5), headers={"Authorization": f"Bearer {tok}"}, timeout=10)


# -- the command -----------------------------------------------------------------------------------


def test_help_is_enough_and_bad_values_are_one_sentence(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "oxen_magic.relay"]
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True)
    for flag in ("--upstream", "--seats", "--budget", "--db", "--seats-file", "--bind"):
        assert flag in helped.stdout
    bad = subprocess.run(
        [*run, "--upstream", "local", "--budget", "-1", "--db", str(tmp_path / "r.sqlite")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "--budget" in bad.stderr
    no_pack = subprocess.run(
        [*run, "--upstream", "local", "--port", "0", "--pack", str(tmp_path / "missing.zip")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert no_pack.returncode == 2 and "Traceback" not in no_pack.stderr
    assert "Cannot open the pack" in no_pack.stderr


def test_db_is_a_path_or_a_connection_string_and_postgresql_is_said_not_built(
    hub: LocalHub, tmp_path: Path
) -> None:
    from oxen_magic.relay import LedgerProblem, open_ledger
    from oxen_magic.relay.ledger import sqlite_path

    assert sqlite_path("room.sqlite") == Path("room.sqlite")
    assert sqlite_path("sqlite:///rooms/a.sqlite") == Path("rooms/a.sqlite")
    assert sqlite_path(f"sqlite:///{tmp_path}/b.sqlite") == tmp_path / "b.sqlite"  # 4 slashes: absolute
    with pytest.raises(LedgerProblem, match="three slashes"):
        sqlite_path("sqlite://host/room.sqlite")
    with pytest.raises(LedgerProblem, match="no PostgreSQL ledger yet"):
        open_ledger("postgresql://relay@db.example/room")
    with pytest.raises(LedgerProblem, match="not a ledger this relay knows"):
        open_ledger("mysql://x/y")
    # A relay on a sqlite:/// URL keeps its seats across a restart like one on a path.
    url = f"sqlite:///{tmp_path}/url.sqlite"
    with Relay(url, hub.url, hub.api_key) as relay:
        relay.db.ensure_seats(2, 1.0)
        first = relay.db.tokens()
        assert post(relay, first[0][1], seeded()).status_code == 200
    again = open_ledger(url)
    assert again.tokens() == first and again.spent(1) == pytest.approx(PRICE)
    again.close()
    run = [sys.executable, "-m", "oxen_magic.relay", "--upstream", "local", "--port", "0"]
    refused = subprocess.run(
        [*run, "--db", "postgresql://relay@db.example/room"], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "no PostgreSQL ledger yet" in refused.stderr


# -- the real front ends, unchanged ----------------------------------------------------------------


def test_the_magic_fills_a_grid_through_the_relay_and_shows_a_402_as_one_sentence(
    shell: Any, hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(2, 4 * PRICE + 0.001)
    with Relay(db, hub.url, hub.api_key) as relay:
        monkeypatch.setenv("OXEN_HOST", relay.url)
        monkeypatch.setenv("OXEN_API_KEY", token(relay, 1))
        captured, problem = run_cell(shell, f"--model {FLUX} --seed 1..3", "a red cube")
        assert problem is None, problem
        assert shown_html(captured).count("<img") >= 3
        assert "3/3 images" in shown_html(captured)
        assert len(hub.generate_calls()) == 3
        # seat 2 runs the same cell: the room already has it
        monkeypatch.setenv("OXEN_API_KEY", token(relay, 2))
        monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path / "seat2-cache"))
        captured, problem = run_cell(shell, f"--model {FLUX} --seed 1..3", "a red cube")
        assert problem is None and "3/3 images" in shown_html(captured)
        assert len(hub.generate_calls()) == 3 and db.spent(2) == 0
        # seat 1 goes past its budget on the server: one more fits, the rest are 402s in the grid
        monkeypatch.setenv("OXEN_API_KEY", token(relay, 1))
        captured, problem = run_cell(shell, f"--model {FLUX} --seed 10..13", "a blue cube")
        text = all_text(captured)
        sentence = "HTTP 402: Seat budget reached: $0.001 of $0.101 left"
        assert sentence in text, html_outputs(captured)[-1][:2000]
        assert hub.api_key is not None and hub.api_key not in text
        assert db.spent(1) == pytest.approx(4 * PRICE)


def test_a_body_past_the_limit_is_refused_in_the_documented_shape(room: Relay, hub: LocalHub) -> None:
    from oxen_magic.relay.routes import MAX_REQUEST_BODY

    body = {"model": FLUX, "prompt": "x", "input_image": "data:image/png;base64," + "A" * MAX_REQUEST_BODY}
    answer = post(room, token(room, 1), body, "/api/ai/images/edit")
    assert answer.status_code == 413 and "32 MB limit" in title(answer)
    assert hub.edit_calls() == [] and room.db.spent(1) == 0


# -- the dashboard ---------------------------------------------------------------------------------


def test_the_dashboard_shows_the_room_and_changes_seats_only_with_the_admin_token(room: Relay) -> None:
    one, two = token(room, 1), token(room, 2)
    post(room, one, seeded())
    post(room, two, seeded())  # served from the store
    admin = room.db.admin_token()
    for wrong in ("", one, admin + "x"):
        assert requests.get(f"{room.url}/relay/", params={"token": wrong}, timeout=10).status_code == 401
        action = {"token": wrong, "do": "revoke"}
        refused = requests.post(f"{room.url}/relay/seats/2", data=action, timeout=10)
        assert refused.status_code == 401
    assert post(room, two, seeded(seed=3)).status_code == 200  # still a seat
    page = requests.get(room.dashboard_url, timeout=10)
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert requests.get(f"{room.url}/relay/state.json", params={"token": one}, timeout=10).status_code == 401
    state = requests.get(f"{room.url}/relay/state.json", params={"token": admin}, timeout=10).json()
    assert state["room"]["spent"] == pytest.approx(0.05) and state["room"]["saved"] == pytest.approx(0.025)
    assert state["room"]["upstream_per_minute"] == 2  # seed 7 once, seed 3 once; the shared one never
    first = state["seats"][0]
    assert (first["seat"], first["revoked"], first["spent"], first["budget"], first["images"]) == (
        1,
        False,
        pytest.approx(0.025),
        1.0,
        1,
    )
    assert state["seats"][1]["saved"] == pytest.approx(0.025)
    changed = requests.post(
        f"{room.url}/relay/seats/1", data={"token": admin, "do": "budget", "budget": "0"}, timeout=10
    )
    assert changed.status_code == 200  # redirected back to the page
    over = post(room, one, seeded(seed=4))
    assert over.status_code == 402 and "$0.000 of $0.000 left" in title(over)
    requests.post(f"{room.url}/relay/seats/2", data={"token": admin, "do": "revoke"}, timeout=10)
    assert post(room, two, seeded(seed=5)).status_code == 401
    ledger = requests.get(f"{room.url}/relay/ledger.csv", params={"token": admin}, timeout=10).text
    rows = list(csv.DictReader(ledger.splitlines()))
    assert [r["state"] for r in rows] == ["charged", "shared", "charged", "refused"]
    missing = requests.post(f"{room.url}/relay/seats/99", data={"token": admin, "do": "revoke"}, timeout=10)
    assert missing.status_code == 404 and missing.text == "There is no seat 99."
    shown = page.text + str(state) + ledger
    assert one not in shown and two not in shown  # no seat's token shown


# -- fairness --------------------------------------------------------------------------------------


def test_one_seats_sweep_does_not_starve_another_seat(hub: LocalHub, tmp_path: Path) -> None:
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(2, 1.0)
    hub.latency = 0.3
    with Relay(db, hub.url, hub.api_key, window=2) as relay, ThreadPoolExecutor(11) as pool:
        sweep = [
            pool.submit(post, relay, token(relay, 1), {"model": FLUX, "prompt": f"a{i}"}) for i in range(10)
        ]
        # two upstream, eight waiting for the window
        wait_for(lambda: relay.routes.window.waiting >= 8, what="eight requests waiting for the window")
        other = pool.submit(post, relay, token(relay, 2), {"model": FLUX, "prompt": "b"})
        assert all(f.result().status_code == 200 for f in [*sweep, other])
        assert hub.peak_in_flight == 2
    order = [c.body["prompt"] for c in hub.generate_calls() if c.body]
    assert order.index("b") <= 3, order  # served after at most one more of the sweep's images, not ten


def test_upstream_rate_limits_shrink_the_window_and_never_reach_a_seat(hub: LocalHub, tmp_path: Path) -> None:
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(6, 1.0)
    hub.latency, hub.max_concurrent, hub.retry_after = 0.2, 2, 0.05
    with Relay(db, hub.url, hub.api_key, window=6) as relay, ThreadPoolExecutor(6) as pool:
        tokens = [t for _, t in db.tokens()]
        answers = list(pool.map(lambda t: post(relay, t, {"model": FLUX, "prompt": t[-6:]}), tokens))
        assert [a.status_code for a in answers] == [200] * 6
        assert hub.rejected > 0  # upstream did refuse some ...
        assert relay.routes.window.size < 6  # ... and the room's window shrank
    assert len(hub.generate_calls()) == 6 + hub.rejected
    assert sum(db.spent(s) for s, _ in db.tokens()) == pytest.approx(6 * PRICE)  # each charged once


def test_beyond_loopback_warns_of_tokens_in_clear_and_the_log_holds_no_token(
    hub: LocalHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from oxen_magic.relay.cli import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    for bind in ("0.0.0.0", "192.168.1.20", "::"):
        warning = exposure_warning(bind)
        assert warning is not None and "seat tokens travel in clear" in warning
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(1, 1.0)
    caplog.set_level("INFO", logger="aiohttp.access")
    with Relay(db, hub.url, hub.api_key, access_log=True) as relay:
        post(relay, token(relay, 1), seeded())
        assert requests.get(relay.dashboard_url, timeout=10).status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "aiohttp.access")
    assert "GET /relay/ 200" in logged and f"POST {GEN} 200" in logged
    assert db.admin_token() not in logged and token(relay, 1) not in logged


def test_https_with_a_certificate(hub: LocalHub, tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(1, 1.0)
    with Relay(db, hub.url, hub.api_key, ssl_context=context) as relay:
        assert relay.url.startswith("https://")
        tok = token(relay, 1)
        answer = requests.post(
            relay.url + GEN, json=seeded(), headers={"Authorization": f"Bearer {tok}"}, verify=str(ca_file)
        )
        url = answer.json()["images"][0]["url"]
        assert url.startswith(relay.url + "/relay/files/")  # served over HTTPS too
        got = requests.get(url, headers={"Authorization": f"Bearer {tok}"}, verify=str(ca_file))
        assert got.status_code == 200 and got.headers["Content-Type"] == "image/webp"  # flux-2-dev's default
        with pytest.raises(requests.ConnectionError):
            requests.get(relay.url.replace("https", "http") + "/api/ai/models", timeout=5)

    from oxen_magic.relay.cli import exposure_warning

    assert exposure_warning("0.0.0.0", tls=True) is None


def test_a_preloaded_pack_answers_the_room_with_no_upstream_request(
    hub: LocalHub, tmp_path: Path, oxen_env: Path
) -> None:
    import oxen_magic
    from oxen_magic.exports.pack import export_pack
    from oxen_magic.relay.packs import preload

    made = oxen_magic.generate("a red cube", model=FLUX, seed=42, aspect_ratio="1:1")  # the instructor's run
    assert made.done == 1
    export_pack(tmp_path / "pack.zip", host=hub.url, cache_dir=oxen_env)
    sent = hub.generate_calls()[0].body
    assert sent is not None
    hub.reset()
    db = RoomDB(tmp_path / "room.sqlite")
    db.ensure_seats(1, 0.0)  # no budget at all: only the store can answer
    assert preload(db, tmp_path / "pack.zip", hub.url) == 1
    assert preload(db, tmp_path / "pack.zip", hub.url) == 0  # a second preload adds nothing
    with Relay(db, hub.url, hub.api_key) as relay:
        tok = token(relay, 1)
        assert image_bytes(relay, tok, post(relay, tok, sent)) == made[0].data  # the pack's own bytes
        assert post(relay, tok, {**sent, "seed": 43}).status_code == 402
    assert hub.generate_calls() == [] and db.spent(1) == 0


def test_generate_with_connect_and_login_and_the_cli_work_through_the_relay(
    room: Relay, hub: LocalHub, oxen_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import oxen_magic
    from oxen_magic.session.session import current_session

    current_session().keys.remember(room.url, token(room, 1))  # what oxen_magic.login(relay) keeps
    assert oxen_magic.connect(room.url) == room.url
    grid = oxen_magic.generate("a red cube", model=FLUX, seed=[1, 2], aspect_ratio="1:1")
    assert grid.done == 2 and room.db.spent(1) == pytest.approx(2 * PRICE)
    assert "Cells go to the Oxen API at" in capsys.readouterr().out

    env = {**os.environ, "OXEN_HOST": room.url, "OXEN_API_KEY": token(room, 2), "PYTHONPATH": str(ROOT)}
    env["OXEN_MAGIC_CACHE_DIR"] = str(tmp_path / "cli-cache")
    done = subprocess.run(
        [sys.executable, "-m", "oxen_magic", "a red cube", "-m", FLUX, "-s", "1,2,3", "-a", "1:1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    saved = [p for p in (tmp_path / "oxen-images").rglob("*") if p.suffix in (".png", ".webp")]
    assert len(saved) >= 3, saved
    assert len(hub.generate_calls()) == 3  # seeds 1 and 2 came from the room's store
    assert room.db.spent(2) == pytest.approx(PRICE)
