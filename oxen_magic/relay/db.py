"""The room's memory: seats and tokens, every request with its reservation, and the images made.

Everything that must survive a SIGKILL lives in one stdlib SQLite file (`--db`), so a relay that
is killed and started again with the same file knows the same seats, the same spend and the same
images. A budget is kept by reserving: a request's price is written as a `reserved` row inside
`BEGIN IMMEDIATE` (one writer at a time, across threads and processes), after summing what the
seat has reserved and been charged; two requests of one seat can therefore never both pass a
budget that has room for one. The upstream's 200 turns the row `charged` and stores the images in
the same transaction; a failure turns it `released`. A row still `reserved` when the relay starts
was in flight when it died: the upstream may have made (and billed) that image, so it is kept as
spend (`interrupted`), never forgotten and never charged a second time.

Images are kept as blobs here too (the upstream's URLs expire): one file to copy, back up or
delete after the class. This is the only module that speaks SQL (`ledger.Ledger` is what the rest
of the relay asks for), so a PostgreSQL ledger is a port of this one module.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from oxen_magic.relay.ledger_records import LEDGER_COLUMNS, Refusal, Seat, SeatReport, StoredImage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seats(
    seat INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, budget REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests(
    id INTEGER PRIMARY KEY, seat INTEGER NOT NULL, path TEXT NOT NULL, model TEXT NOT NULL,
    share_key TEXT, cost REAL NOT NULL, saved REAL NOT NULL DEFAULT 0, state TEXT NOT NULL,
    status INTEGER, created REAL NOT NULL, finished REAL);
CREATE INDEX IF NOT EXISTS requests_seat ON requests(seat, state);
CREATE INDEX IF NOT EXISTS requests_created ON requests(created);
CREATE TABLE IF NOT EXISTS results(
    rid TEXT PRIMARY KEY, share_key TEXT, request INTEGER NOT NULL, idx INTEGER NOT NULL,
    seat INTEGER NOT NULL, mime TEXT NOT NULL, data BLOB NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS results_key ON results(share_key, idx);
"""
#: Request states whose cost counts against the seat's budget.
SPENT_STATES = ("reserved", "charged", "interrupted")
_SPENT_SQL = "state IN ('reserved', 'charged', 'interrupted')"


def new_token() -> str:
    """A seat token: 43 random URL-safe characters after a recognisable prefix."""
    return "room-" + secrets.token_urlsafe(32)


class RoomDB:
    """One SQLite file; safe to share between the server's threads (one lock per connection).

    Writes share one connection (and wait for the disk's fsync); each thread reads on its own, so
    in WAL mode a read on the event loop never waits behind a commit, nor behind the dashboard's
    report running in a worker thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with contextlib.suppress(FileExistsError):  # owner-only: it holds the seats' tokens (SQLite
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # copies it to -wal)
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the write lock is taken before anything is read."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return list(reader.execute(sql, args).fetchall())

    # -- start-up ---------------------------------------------------------------------------

    def recover(self) -> int:
        """Requests left `reserved` by a relay that died: kept as spend (`interrupted`)."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE requests SET state = 'interrupted', finished = ? WHERE state = 'reserved'",
                (time.time(),),
            )
            return cursor.rowcount

    def ensure_seats(self, count: int, budget: float) -> int:
        """Make seats until there are `count`; returns how many were made (0 on a restart)."""
        with self._write() as db:
            have = int(db.execute("SELECT COUNT(*) FROM seats").fetchone()[0])
            for _ in range(max(0, count - have)):
                db.execute(
                    "INSERT INTO seats(token, budget, created) VALUES (?, ?, ?)",
                    (new_token(), budget, time.time()),
                )
            return max(0, count - have)

    def tokens(self) -> list[tuple[int, str]]:
        return [(int(s), str(t)) for s, t in self._read("SELECT seat, token FROM seats ORDER BY seat")]

    def admin_token(self) -> str:
        """The dashboard's token, made once and kept."""
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'admin_token'").fetchone()
            if row:
                return str(row[0])
            token = "admin-" + secrets.token_urlsafe(32)
            db.execute("INSERT INTO meta(name, value) VALUES ('admin_token', ?)", (token,))
            return token

    # -- seats ------------------------------------------------------------------------------

    def seat_for(self, token: str) -> Seat | None:
        """The seat this exact token belongs to, unless revoked."""
        rows = self._read("SELECT seat, budget FROM seats WHERE token = ? AND revoked = 0", (token,))
        return Seat(int(rows[0][0]), float(rows[0][1])) if rows else None

    def revoke(self, seat: int) -> bool:
        """Revoke the seat's token for good; False when there is no such seat."""
        with self._write() as db:
            return db.execute("UPDATE seats SET revoked = 1 WHERE seat = ?", (seat,)).rowcount > 0

    def set_budget(self, seat: int, budget: float) -> bool:
        """False when there is no such seat."""
        with self._write() as db:
            return db.execute("UPDATE seats SET budget = ? WHERE seat = ?", (budget, seat)).rowcount > 0

    def spent(self, seat: int) -> float:
        rows = self._read(
            f"SELECT COALESCE(SUM(cost), 0) FROM requests WHERE seat = ? AND {_SPENT_SQL}", (seat,)
        )
        return float(rows[0][0])

    # -- the ledger -------------------------------------------------------------------------

    def reserve(self, seat: int, path: str, model: str, share_key: str | None, cost: float) -> int | Refusal:
        """Reserve `cost` for the seat, atomically against its budget; the request's id, or why not."""
        with self._write() as db:
            budget = float(db.execute("SELECT budget FROM seats WHERE seat = ?", (seat,)).fetchone()[0])
            spent = float(
                db.execute(
                    f"SELECT COALESCE(SUM(cost), 0) FROM requests WHERE seat = ? AND {_SPENT_SQL}", (seat,)
                ).fetchone()[0]
            )
            if spent + cost > budget + 1e-9:
                db.execute(  # kept, at no cost: the ledger holds every request a seat made
                    "INSERT INTO requests(seat, path, model, share_key, cost, state, status, created, "
                    "finished) VALUES (?, ?, ?, ?, 0, 'refused', 402, ?, ?)",
                    (seat, path, model, share_key, time.time(), time.time()),
                )
                return Refusal(budget, max(0.0, budget - spent), cost)
            cursor = db.execute(
                "INSERT INTO requests(seat, path, model, share_key, cost, state, created) "
                "VALUES (?, ?, ?, ?, ?, 'reserved', ?)",
                (seat, path, model, share_key, cost, time.time()),
            )
            return int(cursor.lastrowid or 0)

    def finish(self, request: int, images: Sequence[tuple[str, bytes]]) -> list[str]:
        """The upstream's 200: charge the reservation and keep its images, in one transaction."""
        with self._write() as db:
            seat, share_key = db.execute(
                "SELECT seat, share_key FROM requests WHERE id = ?", (request,)
            ).fetchone()
            db.execute(
                "UPDATE requests SET state = 'charged', status = 200, finished = ? WHERE id = ?",
                (time.time(), request),
            )
            rids = []
            for index, (mime, data) in enumerate(images):
                rid = secrets.token_hex(16)
                db.execute(
                    "INSERT INTO results(rid, share_key, request, idx, seat, mime, data, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rid, share_key, request, index, seat, mime, data, time.time()),
                )
                rids.append(rid)
            return rids

    def preload(self, share_key: str, model: str, path: str, mime: str, data: bytes) -> int:
        """An image from an offline pack, stored for the room (no seat, no cost); 1 if new."""
        now = time.time()
        with self._write() as db:
            if db.execute("SELECT 1 FROM results WHERE share_key = ?", (share_key,)).fetchone():
                return 0
            cursor = db.execute(
                "INSERT INTO requests(seat, path, model, share_key, cost, state, status, created, finished) "
                "VALUES (0, ?, ?, ?, 0, 'preloaded', 200, ?, ?)",
                (path, model, share_key, now, now),
            )
            db.execute(
                "INSERT INTO results(rid, share_key, request, idx, seat, mime, data, created) "
                "VALUES (?, ?, ?, 0, 0, ?, ?, ?)",
                (secrets.token_hex(16), share_key, cursor.lastrowid, mime, data, now),
            )
            return 1

    def release(self, request: int, status: int) -> None:
        """A failed request costs nothing."""
        with self._write() as db:
            db.execute(
                "UPDATE requests SET state = 'released', status = ?, finished = ? WHERE id = ?",
                (status, time.time(), request),
            )

    def record_shared(self, seat: int, path: str, model: str, share_key: str, saved: float) -> None:
        """A seat served from the room's store (or a request in flight): free, and what it saved."""
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT INTO requests(seat, path, model, share_key, cost, saved, state, status, "
                "created, finished) VALUES (?, ?, ?, ?, 0, ?, 'shared', 200, ?, ?)",
                (seat, path, model, share_key, saved, now, now),
            )

    def shared_results(self, share_key: str) -> tuple[list[str], float]:
        """The stored images of the newest finished request with this key (none: empty) and
        what that request cost (what a seat served from the store saves)."""
        rows = self._read(
            "SELECT r.rid, q.cost FROM results r JOIN requests q ON q.id = r.request WHERE r.request = "
            "(SELECT MAX(request) FROM results WHERE share_key = ?) ORDER BY r.idx",
            (share_key,),
        )
        return [str(r[0]) for r in rows], (float(rows[0][1]) if rows else 0.0)

    def image(self, rid: str) -> StoredImage | None:
        rows = self._read("SELECT seat, share_key IS NOT NULL, mime, data FROM results WHERE rid = ?", (rid,))
        if not rows:
            return None
        seat, shared, mime, data = rows[0]
        return StoredImage(int(seat), bool(shared), str(mime), bytes(data))

    # -- reports ----------------------------------------------------------------------------

    def seats_report(self) -> list[SeatReport]:
        rows = self._read(
            "SELECT s.seat, s.budget, s.revoked, "
            f"COALESCE(SUM(CASE WHEN r.{_SPENT_SQL} THEN r.cost END), 0), "
            "COUNT(CASE WHEN r.state IN ('charged', 'shared') THEN 1 END), COALESCE(SUM(r.saved), 0), "
            "COUNT(CASE WHEN r.state = 'released' THEN 1 END), "
            "COUNT(CASE WHEN r.state = 'refused' THEN 1 END), MAX(r.created) "
            "FROM seats s LEFT JOIN requests r ON r.seat = s.seat GROUP BY s.seat ORDER BY s.seat"
        )
        return [
            SeatReport(int(s), float(b), float(sp), int(n), float(sv), bool(rv), int(f), int(rf), last)
            for s, b, rv, sp, n, sv, f, rf, last in rows
        ]

    def ledger_rows(self) -> list[tuple[Any, ...]]:
        """Every request, oldest first (the dashboard's CSV export)."""
        return self._read(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM requests ORDER BY id")

    def upstream_rate(self, seconds: float = 60.0) -> int:
        """Requests the room sent upstream in the last `seconds` (paid, failed, or in flight)."""
        rows = self._read(
            "SELECT COUNT(*) FROM requests WHERE created > ? "
            "AND state IN ('reserved', 'charged', 'released', 'interrupted')",
            (time.time() - seconds,),
        )
        return int(rows[0][0])

    def request_states(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._read("SELECT state, COUNT(*) FROM requests GROUP BY state")}
