"""What the relay asks of its ledger, and `--db` read as a path or a connection string.

The routes, the dashboard and the command speak only to `Ledger` and its records
(`ledger_records.py`, which both this interface and its SQLite implementation use);
`db.py` is the one module that speaks SQL, to stdlib SQLite, the embedded default. A course of
thousands of seats runs several relays behind a load balancer sharing one ledger in PostgreSQL:
that is a second class with these methods (the same tables; `BEGIN IMMEDIATE` becomes a
`SELECT ... FOR UPDATE` of the seat's row) chosen here by its `postgresql://` URL. It is not
built yet, and `--db` says so in one sentence rather than pretending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from oxen_magic.relay.db import RoomDB
from oxen_magic.relay.ledger_records import LEDGER_COLUMNS, Refusal, Seat, SeatReport, StoredImage


class Ledger(Protocol):
    """Seats, tokens, reservations, stored images and the reports, whatever keeps them."""

    def close(self) -> None: ...
    def recover(self) -> int: ...
    def ensure_seats(self, count: int, budget: float) -> int: ...
    def tokens(self) -> list[tuple[int, str]]: ...
    def admin_token(self) -> str: ...
    def seat_for(self, token: str) -> Seat | None: ...
    def revoke(self, seat: int) -> bool: ...
    def set_budget(self, seat: int, budget: float) -> bool: ...
    def spent(self, seat: int) -> float: ...
    def reserve(
        self, seat: int, path: str, model: str, share_key: str | None, cost: float
    ) -> int | Refusal: ...
    def finish(self, request: int, images: Sequence[tuple[str, bytes]]) -> list[str]: ...
    def preload(self, share_key: str, model: str, path: str, mime: str, data: bytes) -> int: ...
    def release(self, request: int, status: int) -> None: ...
    def record_shared(self, seat: int, path: str, model: str, share_key: str, saved: float) -> None: ...
    def shared_results(self, share_key: str) -> tuple[list[str], float]: ...
    def image(self, rid: str) -> StoredImage | None: ...
    def seats_report(self) -> list[SeatReport]: ...
    def ledger_rows(self) -> list[tuple[Any, ...]]: ...
    def request_states(self) -> dict[str, int]: ...
    def upstream_rate(self, seconds: float = 60.0) -> int: ...


T = TypeVar("T")


async def off_loop(call: Callable[[], T]) -> T:
    """A blocking ledger call in a worker thread: a commit waits for the disk, and the event loop
    every seat shares must not wait with it."""
    return await asyncio.get_running_loop().run_in_executor(None, call)


class LedgerProblem(ValueError):
    """`--db` names something this relay cannot open (the message is one sentence with the fix)."""


#: Schemes of a PostgreSQL connection string (documented; not built yet).
POSTGRES = ("postgresql", "postgres")


def sqlite_path(target: str) -> Path:
    """The SQLite file `--db` names: a plain path, or `sqlite:///relative` / `sqlite:////absolute`."""
    if "://" not in target:
        return Path(target)
    parts = urlsplit(target)
    if parts.scheme != "sqlite":
        raise LedgerProblem(f"--db {parts.scheme}:// is not a ledger this relay knows")
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise LedgerProblem(
            "A SQLite URL has three slashes then the file: sqlite:///room.sqlite (relative) or "
            "sqlite:////srv/room.sqlite (absolute)."
        )
    return Path(unquote(parts.path[1:]))


def open_ledger(target: str | Path) -> Ledger:
    """The ledger `--db` names (SQLite by path or `sqlite:///` URL); anything else: LedgerProblem."""
    text = str(target)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme in POSTGRES:
        raise LedgerProblem(
            "--db postgresql://... is how several relays would share one ledger, but this relay has "
            "no PostgreSQL ledger yet; give a SQLite file (--db room.sqlite) and run one relay per room."
        )
    if scheme not in ("", "sqlite"):
        raise LedgerProblem(
            f"--db {scheme}://... is not a ledger this relay knows; give a SQLite file path or "
            "sqlite:///room.sqlite."
        )
    return RoomDB(sqlite_path(text))


__all__ = [
    "LEDGER_COLUMNS",
    "Ledger",
    "LedgerProblem",
    "Refusal",
    "Seat",
    "SeatReport",
    "StoredImage",
    "off_loop",
    "open_ledger",
    "sqlite_path",
]
