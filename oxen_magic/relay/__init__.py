"""The room relay: one upstream key for a class, a budget per seat kept on the server, and a room
that pays once per image (issue 23).

Run `python -m oxen_magic.relay --help`. Split by job:

* `db.py` — seats, tokens, the ledger (reservations) and stored images, in SQLite;
* `pricing.py` — a request's price from the upstream model, and the key identical requests share;
* `upstream.py` — the aiohttp client toward the real API (the only holder of the key);
* `routes.py` — the documented API as a seat sees it: auth, budgets, sharing, coalescing;
* `server.py` — the aiohttp server (foreground or a background thread); `cli.py` — the command.
"""

from __future__ import annotations

from .db import RoomDB
from .server import Relay

__all__ = ["Relay", "RoomDB"]
