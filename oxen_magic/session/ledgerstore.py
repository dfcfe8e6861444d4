"""The spend ledger on disk: one SQLite file per user, shared by every kernel and process.

Why SQLite: spend must survive a kernel restart and be shared by every notebook (and `oxen-image`
run) of one user, several of which may bill at the same moment. The file lives in the cache
folder (`spend.sqlite3`), which is per user; WAL mode, a busy timeout and short transactions
let several processes and threads write it at once. Two tables:

* `charges`: one row per billed image (or 502/504 answer that may have been billed);
* `holds`: money a run has reserved before sending (its estimate). A reservation is taken in one
  `BEGIN IMMEDIATE` transaction that also reads what was spent and what others hold, so
  concurrent runs cannot pass the budget together; each charge of the run lowers its hold by
  the price, and the rest is released when the run ends. A hold names its machine and process:
  one whose process is gone, or whose `expires` has passed, no longer counts (a killed kernel
  never blocks the budget for long).

A folder where the file cannot be opened (read-only, full) falls back to a ledger in this
process's memory, and `problem` says why (shown by `spend()`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from oxen_magic.core.money import EPSILON

FILE = "spend.sqlite3"
#: Seconds a hold stays valid without news from its run (each charge renews it).
HOLD_TTL = 3600.0
#: Seconds a SQLite writer waits for another to finish before giving up.
BUSY_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    host TEXT NOT NULL,
    model TEXT NOT NULL,
    price REAL,
    gateway INTEGER,
    session TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    machine TEXT NOT NULL,
    pid INTEGER NOT NULL,
    amount REAL NOT NULL,
    expires REAL NOT NULL
);
"""
MACHINE = socket.gethostname()


@dataclass(frozen=True)
class Row:
    """One charge as stored (see `ledger.Charge`)."""

    model: str
    price: float | None
    at: float
    host: str
    gateway: int | None
    session: str


@dataclass(frozen=True)
class Totals:
    """What every process of this user was billed for, and what runs in flight hold."""

    images: int
    total: float
    unpriced: int
    held: float


class Store:
    """The ledger's SQLite file (or, when it cannot be opened, one in this process's memory).

    `clock`: seconds since the epoch, for holds' expiry (tests pass one they move by hand)."""

    def __init__(self, folder: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path: Path | None = folder / FILE if folder is not None else None
        self.clock = clock
        self.problem: str | None = None
        self._memory: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                self.problem = (
                    f"the ledger cannot be kept in {self.path} ({exc}), so it counts this kernel only"
                )
                self.path = None
        if self.path is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._memory.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one short piece of work (a new one each time: safe across threads
        and forks); the in-memory fallback shares one under a lock."""
        if self._memory is not None:
            with self._lock:
                yield self._memory
            return
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (`BEGIN IMMEDIATE`) so its reads and writes are
        not interleaved with another process's."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- charges --------------------------------------------------------------------------------
    def add(self, row: Row, hold: int | None = None) -> None:
        """Record one charge; the run's hold (if any) shrinks by its price in the same transaction."""
        with self._write() as db:
            db.execute(
                "INSERT INTO charges (at, host, model, price, gateway, session) VALUES (?, ?, ?, ?, ?, ?)",
                (row.at, row.host, row.model, row.price, row.gateway, row.session),
            )
            if hold is not None and row.gateway is None:
                db.execute(
                    "UPDATE holds SET amount = MAX(0, amount - ?), expires = ? WHERE id = ?",
                    (row.price or 0.0, self.clock() + HOLD_TTL, hold),
                )

    def rows(self, session: str | None = None) -> list[Row]:
        """The charges of one session (a kernel), or of every session."""
        query = "SELECT model, price, at, host, gateway, session FROM charges"
        args: tuple[str, ...] = ()
        if session is not None:
            query, args = query + " WHERE session = ?", (session,)
        with self._connect() as db:
            return [Row(*found) for found in db.execute(query + " ORDER BY id", args)]

    def totals(self) -> Totals:
        with self._connect() as db:
            images, total, unpriced = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(price), 0), COUNT(*) - COUNT(price) FROM charges "
                "WHERE gateway IS NULL"
            ).fetchone()
            held = _held(db, self.clock())
        return Totals(int(images), float(total), int(unpriced), held)

    def reset(self) -> None:
        """Forget every charge and hold (a new workshop, a new budget period)."""
        with self._write() as db:
            db.execute("DELETE FROM charges")
            db.execute("DELETE FROM holds")

    # -- holds ----------------------------------------------------------------------------------
    def reserve(self, session: str, amount: float, budget: float) -> tuple[int | None, float, float]:
        """Hold `amount` against `budget` if it fits in what is left (spent and others' holds
        counted); returns (the hold's id or None when refused, what was left before it, what
        runs in flight held then)."""
        with self._write() as db:
            now = self.clock()
            _forget_stale(db, now)
            spent = db.execute("SELECT COALESCE(SUM(price), 0) FROM charges WHERE gateway IS NULL").fetchone()
            held = _held(db, now)
            left = budget - float(spent[0]) - held
            if amount > left + EPSILON:
                return None, max(0.0, left), held
            cursor = db.execute(
                "INSERT INTO holds (session, machine, pid, amount, expires) VALUES (?, ?, ?, ?, ?)",
                (session, MACHINE, os.getpid(), amount, self.clock() + HOLD_TTL),
            )
            return cursor.lastrowid, max(0.0, left), held

    def shrink(self, hold: int, amount: float, seconds: float) -> None:
        """Keep only `amount` of a hold (what requests still in flight may cost), for `seconds`."""
        with self._write() as db:
            if amount <= EPSILON:
                db.execute("DELETE FROM holds WHERE id = ?", (hold,))
            else:
                db.execute(
                    "UPDATE holds SET amount = MIN(amount, ?), expires = ? WHERE id = ?",
                    (amount, self.clock() + seconds, hold),
                )

    def release(self, hold: int) -> None:
        with contextlib.suppress(sqlite3.Error), self._write() as db:
            db.execute("DELETE FROM holds WHERE id = ?", (hold,))


def _held(db: sqlite3.Connection, now: float) -> float:
    """What live runs hold at `now` (a dead process's or an expired hold is not counted)."""
    total = 0.0
    for machine, pid, amount, expires in db.execute("SELECT machine, pid, amount, expires FROM holds"):
        if expires > now and _alive(machine, pid):
            total += amount
    return total


def _forget_stale(db: sqlite3.Connection, now: float) -> None:
    for hold, machine, pid, expires in db.execute("SELECT id, machine, pid, expires FROM holds").fetchall():
        if expires <= now or not _alive(machine, pid):
            db.execute("DELETE FROM holds WHERE id = ?", (hold,))


def _alive(machine: str, pid: int) -> bool:
    """Whether the process that took a hold still runs (another machine's: assumed so, its
    expiry bounds it; on Windows `os.kill(pid, 0)` is no probe, so only the expiry counts)."""
    if machine != MACHINE or os.name == "nt" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True
