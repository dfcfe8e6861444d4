"""The room relay: one upstream key for a class, a budget per seat kept on the server, and a room
that pays once per image (issue 23).

Run `python -m oxen_magic.relay --help`. Split by job:

* `ledger.py` — what the relay asks of its ledger, and `--db` as a path or connection string;
* `db.py` — seats, tokens, the ledger (reservations) and stored images, in SQLite (the only SQL);
* `pricing.py` — a request's price from the upstream model, and the key identical requests share;
* `upstream.py` — the aiohttp client toward the real API (the only holder of the key);
* `routes.py` — the documented API as a seat sees it: auth, budgets, sharing, coalescing;
* `dashboard.py`, `dashboard_page.py` — the instructor's live page at `/relay/`;
* `fair.py` — the room's window toward upstream, seats served in turn; `packs.py` — `--pack`;
* `server.py` — the aiohttp server (foreground or a background thread); `cli.py` — the command.
"""

from __future__ import annotations

from oxen_magic.relay.db import RoomDB
from oxen_magic.relay.ledger import Ledger, LedgerProblem, open_ledger
from oxen_magic.relay.server import Relay

__all__ = ["Ledger", "LedgerProblem", "Relay", "RoomDB", "open_ledger"]
