"""`/relay/`: the instructor's page — each seat's spend, budget, images, errors and last activity,
the room's total, what sharing saved and the upstream rate; revoke a seat, change its budget,
export the ledger as CSV. It updates live: its script reads `/relay/state.json` every
`REFRESH` seconds (no reload).

Behind the admin token (made once, kept in the db, printed at start): `/relay/?token=...`. Every
route but the static script needs it; every action is a POST whose form carries it, so another
web page cannot act for the instructor without knowing it; answers say `Referrer-Policy:
no-referrer` so the token in the address is not sent on, and a Content-Security-Policy allows
only the relay's own script (no inline script, so no text of the room can run as one).
Ledger reads run in a worker thread, off the event loop the seats' requests share.
"""

from __future__ import annotations

import csv
import hmac
import io
import math
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from oxen_magic.relay.dashboard_page import PAGE, REFRESH, SCRIPT
from oxen_magic.relay.ledger import LEDGER_COLUMNS, Ledger, off_loop

__all__ = ["REFRESH", "Dashboard"]

_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
    "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
}


class Dashboard:
    """The admin routes of one room."""

    def __init__(self, db: Ledger) -> None:
        self.db = db
        self.token = db.admin_token()

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/relay/", self.page)
        app.router.add_get("/relay/dashboard.js", self.script)
        app.router.add_get("/relay/state.json", self.state)
        app.router.add_get("/relay/ledger.csv", self.ledger)
        app.router.add_post("/relay/seats/{seat}", self.change)

    def _admitted(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    @staticmethod
    def _refused() -> web.Response:
        return web.Response(status=401, text="This page needs the relay's admin token.", headers=_HEADERS)

    async def page(self, request: web.Request) -> web.Response:
        if not self._admitted(request.query.get("token")):
            return self._refused()
        return web.Response(text=PAGE, content_type="text/html", headers=_HEADERS)

    async def script(self, request: web.Request) -> web.Response:
        """The page's script: static, the same for everyone (it holds no token and no data)."""
        return web.Response(text=SCRIPT, content_type="text/javascript", headers=_HEADERS)

    def snapshot(self) -> dict[str, Any]:
        """The room as the page shows it (blocking: read in a worker thread)."""
        seats = self.db.seats_report()
        return {
            "time": time.time(),
            "room": {
                "spent": round(sum(s.spent for s in seats), 6),
                "saved": round(sum(s.saved for s in seats), 6),
                "upstream_per_minute": self.db.upstream_rate(60.0),
                "states": self.db.request_states(),
            },
            "seats": [
                {
                    "seat": s.seat,
                    "revoked": s.revoked,
                    "spent": round(s.spent, 6),
                    "budget": s.budget,
                    "images": s.images,
                    "saved": round(s.saved, 6),
                    "failed": s.failed,
                    "refused": s.refused,
                    "last": s.last,
                }
                for s in seats
            ],
        }

    async def state(self, request: web.Request) -> web.Response:
        if not self._admitted(request.query.get("token")):
            return self._refused()
        return web.json_response(await off_loop(self.snapshot), headers=_HEADERS)

    async def ledger(self, request: web.Request) -> web.Response:
        if not self._admitted(request.query.get("token")):
            return self._refused()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(LEDGER_COLUMNS)
        writer.writerows(await off_loop(self.db.ledger_rows))
        headers = {**_HEADERS, "Content-Disposition": "attachment; filename=ledger.csv"}
        return web.Response(text=out.getvalue(), content_type="text/csv", headers=headers)

    async def change(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._admitted(str(form.get("token", ""))):
            return self._refused()
        try:
            seat = int(request.match_info["seat"])
        except ValueError:
            seat = -1
        done = seat >= 0
        if done and form.get("do") == "revoke":
            done = await off_loop(lambda: self.db.revoke(seat))
        elif done and form.get("do") == "budget":
            try:
                budget = float(str(form.get("budget", "")))
            except ValueError:
                budget = -1.0
            if not math.isfinite(budget) or budget < 0:
                text = "A budget is a number of US dollars, 0 or more, e.g. 2.50."
                return web.Response(status=400, text=text, headers=_HEADERS)
            done = await off_loop(lambda: self.db.set_budget(seat, budget))
        elif done:
            text = "Say what to do with the seat: do=revoke or do=budget."
            return web.Response(status=400, text=text, headers=_HEADERS)
        if not done:
            return web.Response(
                status=404, text=f"There is no seat {request.match_info['seat']}.", headers=_HEADERS
            )
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"seat": seat, "done": form.get("do")}, headers=_HEADERS)
        raise web.HTTPSeeOther(f"/relay/?token={quote(self.token)}", headers=_HEADERS)
