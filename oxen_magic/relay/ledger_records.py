"""The records a relay's ledger gives back (a seat, a refused reservation, a stored image, a
seat's report) and its exported columns: plain data shared by the `Ledger` interface
(`ledger.py`) and the SQLite ledger (`db.py`), so neither imports the other's module for them."""

from __future__ import annotations

from dataclasses import dataclass

#: The ledger's columns, as exported.
LEDGER_COLUMNS = ("id", "seat", "path", "model", "cost", "saved", "state", "status", "created", "finished")


@dataclass(frozen=True)
class Seat:
    seat: int
    budget: float


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: the seat's budget and what is left of it."""

    budget: float
    left: float
    cost: float


@dataclass(frozen=True)
class StoredImage:
    seat: int
    shared: bool
    mime: str
    data: bytes


@dataclass(frozen=True)
class SeatReport:
    seat: int
    budget: float
    spent: float
    images: int
    saved: float
    revoked: bool
    failed: int = 0  # upstream failures (released, not charged)
    refused: int = 0  # over budget (402, nothing sent)
    last: float | None = None  # the newest request's time (Unix seconds)
