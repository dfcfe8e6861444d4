"""`/relay/`: the instructor's page — each seat's spend, budget and images, the room's total and
what sharing saved; revoke a seat, change its budget, export the ledger as CSV.

Behind the admin token (made once, kept in the db, printed at start): `/relay/?token=...`. Every
action is a POST whose form carries the token, so another web page cannot act for the instructor
without knowing it; answers say `Referrer-Policy: no-referrer` so the token in the address is not
sent on. The page reloads itself every few seconds (what "live" needs for a room, with no script).
"""

from __future__ import annotations

import csv
import hmac
import html
import io
import math
import time
from urllib.parse import quote

from aiohttp import web

from .db import LEDGER_COLUMNS, RoomDB

_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
#: Seconds between the page's reloads.
REFRESH = 5


class Dashboard:
    """The admin routes of one room."""

    def __init__(self, db: RoomDB) -> None:
        self.db = db
        self.token = db.admin_token()

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/relay/", self.page)
        app.router.add_get("/relay/ledger.csv", self.ledger)
        app.router.add_post("/relay/seats/{seat}", self.change)

    def _admitted(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    @staticmethod
    def _refused() -> web.Response:
        return web.Response(status=401, text="This page needs the relay's admin token.", headers=_HEADERS)

    async def page(self, request: web.Request) -> web.Response:
        given = request.query.get("token")
        if not self._admitted(given):
            return self._refused()
        return web.Response(text=self.render(str(given)), content_type="text/html", headers=_HEADERS)

    def render(self, token: str) -> str:
        seats = self.db.seats_report()
        spent = sum(s.spent for s in seats)
        saved = sum(s.saved for s in seats)
        states = self.db.request_states()
        quoted = html.escape(token, quote=True)
        rows = []
        for s in seats:
            state = "revoked" if s.revoked else "active"
            last = time.strftime("%H:%M:%S", time.gmtime(s.last)) if s.last else "-"
            rows.append(
                f"<tr data-seat='{s.seat}'><td>{s.seat}</td><td>{state}</td><td>${s.spent:.3f}</td>"
                f"<td>${s.budget:.2f}</td><td>{s.images}</td><td>${s.saved:.3f}</td>"
                f"<td>{s.failed}</td><td>{s.refused}</td><td>{last}</td><td>"
                f"<form method='post' action='/relay/seats/{s.seat}'>"
                f"<input type='hidden' name='token' value='{quoted}'>"
                f"<input name='budget' size='6' value='{s.budget:.2f}'>"
                "<button name='do' value='budget'>set budget</button>"
                "<button name='do' value='revoke'>revoke</button></form></td></tr>"
            )
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv='refresh' content='{REFRESH}'><title>Room relay</title></head><body>"
            "<h1>Room relay</h1>"
            f"<p class='room'>Room total: ${spent:.3f} spent; sharing saved ${saved:.3f}; "
            f"{states.get('charged', 0)} images paid upstream, {states.get('shared', 0)} served from the "
            f"room's store, {states.get('released', 0)} failed (not charged), "
            f"{states.get('interrupted', 0)} interrupted, {states.get('refused', 0)} refused over budget, "
            f"{states.get('preloaded', 0)} preloaded from packs.</p>"
            "<table border='1'><tr><th>seat</th><th>state</th><th>spent</th><th>budget</th>"
            "<th>images</th><th>saved</th><th>failed</th><th>over budget</th><th>last (UTC)</th>"
            "<th></th></tr>" + "".join(rows) + "</table>"
            f"<p><a href='/relay/ledger.csv?token={quoted}'>ledger as CSV</a></p></body></html>"
        )

    async def ledger(self, request: web.Request) -> web.Response:
        if not self._admitted(request.query.get("token")):
            return self._refused()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(LEDGER_COLUMNS)
        writer.writerows(self.db.ledger_rows())
        headers = {**_HEADERS, "Content-Disposition": "attachment; filename=ledger.csv"}
        return web.Response(text=out.getvalue(), content_type="text/csv", headers=headers)

    async def change(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._admitted(str(form.get("token", ""))):
            return self._refused()
        try:
            seat = int(request.match_info["seat"])
        except ValueError:
            return web.Response(status=404, text="No such seat.", headers=_HEADERS)
        if form.get("do") == "revoke":
            self.db.revoke(seat)
        elif form.get("do") == "budget":
            try:
                budget = float(str(form.get("budget", "")))
            except ValueError:
                budget = -1.0
            if not math.isfinite(budget) or budget < 0:
                return web.Response(status=400, text="A budget is a number of US dollars, 0 or more.")
            self.db.set_budget(seat, budget)
        raise web.HTTPSeeOther(f"/relay/?token={quote(self.token)}", headers=_HEADERS)
