"""The relay's dashboard (issue 23) in headless Chromium: Debian's /usr/bin/chromium through
Playwright, as tests/test_browser.py drives the grid.

A real relay (in-process, its own event loop) in front of the real local hub; seats ask for images
over real HTTP while the page is open, and the page must follow without a reload. Budget changes
and revokes are made by clicking the page, and must hold at the relay's API.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import requests
from browser_harness import BROWSER_MARKS, chromium_browser

from oxen_magic.relay import Relay
from tests.test_relay import room  # noqa: F401 (the fixture: a relay of 3 seats at $1.00 before the local hub)

pytest.importorskip("playwright.sync_api")

pytestmark = BROWSER_MARKS

GEN = "/api/ai/images/generate"
WAIT_MS = 20_000  # the page reads the room every 1.5 s; a loaded machine may be slow


def ask(relay: Relay, seat: int, seed: int) -> requests.Response:
    tok = dict(relay.db.tokens())[seat]
    body: dict[str, Any] = {"model": "flux-2-dev", "prompt": "a red cube", "seed": seed}
    return requests.post(relay.url + GEN, json=body, headers={"Authorization": f"Bearer {tok}"}, timeout=30)


def test_the_dashboard_follows_the_room_live_and_acts_on_it(room: Relay, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    admin = room.db.admin_token()
    with chromium_browser() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and "Failed to load resource" not in msg.text  # the 401s, the 400
                else None
            ),
        )

        # The admin token is required: none, a seat's, or a wrong one is a 401 and no table.
        for wrong in ("", dict(room.db.tokens())[1], admin + "x"):
            answer = page.goto(f"{room.url}/relay/?token={wrong}")
            assert answer is not None and answer.status == 401
            assert "admin token" in page.content() and page.locator("#seats").count() == 0

        answer = page.goto(room.dashboard_url)
        assert answer is not None and answer.status == 200
        rows = page.locator("#seats tr")
        expect(rows).to_have_count(3, timeout=WAIT_MS)
        seat = {n: page.locator(f"#seats tr[data-seat='{n}'] td") for n in (1, 2, 3)}
        expect(seat[1].nth(1)).to_have_text("active")
        expect(seat[1].nth(3)).to_have_text("$1.00")
        page.evaluate("window.notReloaded = true")

        # New images update the page, no reload: a paid one, then the same one shared.
        assert ask(room, 1, 7).status_code == 200
        expect(seat[1].nth(2)).to_have_text("$0.025", timeout=WAIT_MS)
        expect(seat[1].nth(4)).to_have_text("1")
        expect(page.locator("#rate")).to_have_text("1")
        assert ask(room, 2, 7).status_code == 200
        expect(seat[2].nth(5)).to_have_text("$0.025", timeout=WAIT_MS)  # what sharing saved seat 2
        expect(page.locator("#saved")).to_have_text("$0.025")
        expect(page.locator("#spent")).to_have_text("$0.025")
        expect(page.locator("#rate")).to_have_text("1")  # the shared image never went upstream

        # A budget changed on the page holds at the API.
        budget = page.locator("#seats tr[data-seat='1'] input[name='budget']")
        budget.fill("0.03")
        page.locator("#seats tr[data-seat='1'] button", has_text="set budget").click()
        expect(seat[1].nth(3)).to_have_text("$0.03", timeout=WAIT_MS)
        over = ask(room, 1, 8)
        assert over.status_code == 402 and "$0.005 of $0.030 left" in over.json()["error"]["title"]
        expect(seat[1].nth(7)).to_have_text("1", timeout=WAIT_MS)  # one refused over budget

        # A revoke on the page (after its confirmation) holds at the API.
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#seats tr[data-seat='2'] button", has_text="revoke").click()
        expect(seat[2].nth(1)).to_have_text("revoked", timeout=WAIT_MS)
        assert ask(room, 2, 9).status_code == 401

        # Text is text: a budget that is markup is refused in a sentence, shown as plain text.
        budget3 = page.locator("#seats tr[data-seat='3'] input[name='budget']")
        budget3.fill("<img src=x onerror='window.pwned=1'>")
        page.locator("#seats tr[data-seat='3'] button", has_text="set budget").click()
        problem = page.locator("#problem")
        expect(problem).to_have_text(
            "A budget is a number of US dollars, 0 or more, e.g. 2.50.", timeout=WAIT_MS
        )
        assert page.locator("#problem *").count() == 0 and page.locator("img").count() == 0
        assert page.evaluate("window.pwned") is None

        # The ledger downloads as CSV, every request in it.
        with page.expect_download() as download:
            page.locator("#csv").click()
        saved = tmp_path / "ledger.csv"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "ledger.csv"
        ledger = list(csv.DictReader(saved.read_text().splitlines()))
        assert [(r["seat"], r["state"]) for r in ledger] == [
            ("1", "charged"),
            ("2", "shared"),
            ("1", "refused"),
        ]

        assert page.evaluate("window.notReloaded") is True  # all of it live, no reload
        assert errors == []
        tokens = [t for _, t in room.db.tokens()]
        assert not any(t in page.content() for t in tokens)  # no seat's token on the page
