"""What was billed, in this kernel and in all of this user's, and the budget that holds for all.

An image counts when the API answered 200 to its POST (not from the cache): that is what the API
bills, whatever then happens to its download (a result link that expired, a file past the size
cap). Prices come from the model list (`pricing.cost_per_image`); an image whose price is unknown
is counted as an image and said to be unpriced, never silently added as $0. The runner reports
each answer as it happens (`Run.execute` passes `Ledger.charge` down as `on_billed`), so an image
answered after Stop or Ctrl-C, when the grid no longer changes, is counted all the same. A POST a
gateway answered 502/504 may have been billed (the backend can make the image first): it is kept
apart as "possibly billed", never added to the total.

The record is durable and shared (`ledgerstore.Store`: SQLite in the cache folder), so the budget
is one promise for every notebook and process of the user: a run reserves its estimate before
sending (`reserve`), each charge settles part of it, and the rest is released when the run ends.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from oxen_magic.core.errors import TIMED_OUT, UsageProblem
from oxen_magic.core.money import EPSILON, dollars, estimate, left_of
from oxen_magic.session.ledgerstore import Row, Store, Totals

if TYPE_CHECKING:
    from oxen_magic.results.results import Item


@dataclass(frozen=True)
class Charge:
    """One billed image."""

    model: str
    price: float | None  # USD, None when the API lists no price
    at: float  # time.time() when the API answered
    host: str
    gateway: int | None = None  # 502/504: a gateway error that may have been billed (not counted)


@dataclass(frozen=True)
class Spend:
    """`oxen_magic.spend()`: this kernel's total (known prices), the number billed, a table per
    model; and, from the shared ledger, what all of this user's kernels and processes were billed
    (`user_total`, `user_images`), the budget and what is `left` of it.

    `images`, `total`, `unpriced` and the table count this kernel's images that were billed.
    Answers a gateway gave (502/504) after the backend may have billed are counted apart:
    `possibly` of them, whose known prices add up to `possible_total` (not part of `total`, nor
    of what the budget counts)."""

    charges: tuple[Charge, ...]
    budget: float = 0.0
    #: Every kernel and process of this user (the ledger file); None: only this kernel is known.
    everyone: Totals | None = None
    #: Where the ledger is kept (None: this process's memory), and why not on disk if it is not.
    where: str | None = None
    problem: str | None = None
    store: Store | None = field(default=None, repr=False, compare=False)

    @property
    def billed(self) -> tuple[Charge, ...]:
        """The images that were billed (what `total` counts)."""
        return tuple(c for c in self.charges if c.gateway is None)

    @property
    def total(self) -> float:
        return sum(c.price for c in self.billed if c.price is not None)

    @property
    def images(self) -> int:
        return len(self.billed)

    @property
    def unpriced(self) -> int:
        return sum(1 for c in self.billed if c.price is None)

    @property
    def possibly(self) -> int:
        """Requests a gateway answered 502/504: perhaps billed, perhaps not."""
        return len(self.charges) - len(self.billed)

    @property
    def possible_total(self) -> float:
        return sum(c.price for c in self.charges if c.gateway is not None and c.price is not None)

    @property
    def user_total(self) -> float:
        """USD billed to every kernel and process of this user (the shared ledger)."""
        return self.everyone.total if self.everyone is not None else self.total

    @property
    def user_images(self) -> int:
        return self.everyone.images if self.everyone is not None else self.images

    @property
    def held(self) -> float:
        """USD reserved by runs in flight (counted against the budget until they settle)."""
        return self.everyone.held if self.everyone is not None else 0.0

    @property
    def left(self) -> float | None:
        """USD a new run may still spend (budget - spent by all - held by runs in flight), or
        None when there is no budget. For a "$X left of $Y" line: see `left_text`."""
        if not self.budget:
            return None
        return max(0.0, self.budget - self.user_total - self.held)

    def left_text(self) -> str | None:
        """`$0.375 left of $0.50` (None when there is no budget)."""
        left = self.left
        return None if left is None else left_of(left, self.budget)

    def reset(self) -> None:
        """Forget every charge of this user (all kernels): a new workshop, a new budget period."""
        if self.store is not None:
            self.store.reset()

    def by_model(self) -> list[tuple[str, int, float | None, float]]:
        """(model, images, price per image or None, subtotal of known prices), by model id."""
        rows: dict[str, list[Charge]] = {}
        for charge in self.billed:
            rows.setdefault(charge.model, []).append(charge)
        out = []
        for model in sorted(rows):
            got = rows[model]
            prices = {c.price for c in got}
            price = prices.pop() if len(prices) == 1 else None
            out.append((model, len(got), price, sum(c.price for c in got if c.price is not None)))
        return out

    def summary(self) -> str:
        text = f"{self.images} image(s) billed in this kernel, {dollars(self.total)}"
        if self.unpriced:
            text += f" + {self.unpriced} of unknown price"
        if self.possibly:
            seen = {c.gateway for c in self.charges if c.gateway is not None}
            codes = "/".join(sorted(str(g) for g in seen if g != TIMED_OUT))  # 598: sent, no answer
            why = " and ".join(
                ([f"gateway error {codes}"] if codes else []) + (["no answer"] if TIMED_OUT in seen else [])
            )
            text += f"; {self.possibly} more may have been billed ({why}"
            text += f", {dollars(self.possible_total)})" if self.possible_total else ")"
        if self.everyone is not None:
            text += f"; all your notebooks: {self.user_images} image(s), {dollars(self.user_total)}"
        left = self.left_text()
        if left is not None:
            text += f"; {left} budget"
            if self.held > EPSILON:
                text += f" ({dollars(self.held)} held by runs in progress)"
        if self.problem:
            text += f"; {self.problem}"
        return text

    def __repr__(self) -> str:
        rows = self.by_model()
        width = max([len(r[0]) for r in rows] + [5])
        lines = [f"{'model':<{width}}  {'images':>6}  {'each':>7}  {'total':>8}"]
        for model, count, price, subtotal in rows:
            each = dollars(price) if price is not None else "?"
            lines.append(f"{model:<{width}}  {count:>6}  {each:>7}  {dollars(subtotal):>8}")
        lines.append(self.summary())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from oxen_magic.display.html import NO_MATH, esc

        cells = "".join(
            f"<tr><td><code>{esc(m)}</code></td><td>{n}</td>"
            f"<td>{esc(dollars(p) if p is not None else '?')}</td><td>{esc(dollars(t))}</td></tr>"
            for m, n, p, t in self.by_model()
        )
        left = self.left_text()
        style = f'class="oxen-spend-left {NO_MATH}" style="font-size:12px"'
        line = f"<div {style}>{esc(left)}</div>" if left else ""
        return (
            f'<table class="oxen-spend {NO_MATH}"><tr><th>model</th><th>images</th><th>each</th>'
            f'<th>total</th></tr>{cells}</table><div class="oxen-spend-summary {NO_MATH}" '
            f'style="font-size:12px">{esc(self.summary())}</div>{line}'
        )


class Ledger:
    """One kernel's view of the user's ledger (thread-safe: the panel records from its thread).

    `folder`: where the ledger file lives (the cache folder); None keeps it in this process's
    memory. `session`: this kernel's name in the ledger (its own spend is told apart). `clock`:
    seconds since the epoch, for when a charge happened and a hold expires (tests move one by hand)."""

    def __init__(
        self,
        folder: str | Path | None = None,
        session: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = Store(Path(folder) if folder is not None else None, clock)
        self.session = session or uuid.uuid4().hex
        self._lock = threading.RLock()
        self._unsaved: list[Charge] = []  # charges the file refused (kept here, said in spend())
        #: The items already counted (each answer is charged once, whoever reports it again).
        self._billed: weakref.WeakSet[Item] = weakref.WeakSet()

    def charge(
        self, item: Item, price: float | None, host: str, gateway: int | None = None, hold: int | None = None
    ) -> bool:
        """Count one answer the API may bill as it happens (the runner's `on_billed`), once per
        item: an image the API answered 200 for (`gateway` None), or a 502/504 that may have been
        billed. `hold`: the run's reservation, which shrinks by the price. Returns whether it was new."""
        if item.request is None:
            return False
        with self._lock:  # the flag and the row together: `settle` sees both or neither
            if item in self._billed:
                return False
            self._billed.add(item)
            self._add(Charge(item.request.model, price, self.store.clock(), host, gateway), hold)
        return True

    def _add(self, charge: Charge, hold: int | None = None) -> None:
        row = Row(charge.model, charge.price, charge.at, charge.host, charge.gateway, self.session)
        try:
            self.store.add(row, hold)
        except sqlite3.Error as exc:  # a locked or broken file must not lose the charge
            with self._lock:
                self._unsaved.append(charge)
                self.store.problem = self.store.problem or f"the ledger could not record a charge ({exc})"

    def charges(self) -> tuple[Charge, ...]:
        """This kernel's charges, oldest first."""
        rows = self.store.rows(self.session)
        with self._lock:
            unsaved = list(self._unsaved)
        return tuple(Charge(r.model, r.price, r.at, r.host, r.gateway) for r in rows) + tuple(unsaved)

    def spend(self, budget: float = 0.0) -> Spend:
        totals = self.store.totals()
        with self._lock:
            extra = [c for c in self._unsaved if c.gateway is None]
        if extra:
            known = sum(c.price for c in extra if c.price is not None)
            unknown = sum(1 for c in extra if c.price is None)
            images, unpriced = totals.images + len(extra), totals.unpriced + unknown
            totals = Totals(images, totals.total + known, unpriced, totals.held)
        where = str(self.store.path) if self.store.path is not None else None
        return Spend(self.charges(), budget, totals, where, self.store.problem, self.store)

    def check_budget(
        self, prices: Mapping[str, float | None], fresh: Sequence[Item], budget: float
    ) -> tuple[int | None, str | None]:
        """Reserve, before anything is sent, the known prices of the new images against the
        budget (what every kernel spent and holds counted); refuse in one sentence when they do
        not fit. Returns the hold's id (None: no budget, or nothing priced to hold) and a note
        for the grid when some new images have no price."""
        if budget <= 0:
            return None, None
        new = estimate((prices.get(i.model or ""), 1) for i in fresh)
        cost, unpriced = new.cost, new.unpriced
        hold, left, held = (None, self._left(budget), 0.0)
        if cost > 0:
            hold, left, held = self.store.reserve(self.session, cost, budget)
        if cost > 0 and hold is None:
            counted = f"{dollars(held)} is held by runs in progress; " if held > EPSILON else ""
            raise UsageProblem(
                f"These {len(fresh)} new image(s) would cost about {dollars(cost)}, more than the "
                f"{dollars(left)} left of your {dollars(budget)} budget ({counted}all your notebooks "
                "count); narrow the sweep (cached images are free) or raise %config OxenMagic.max_spend."
            )
        if unpriced:
            note = (
                f"{unpriced} new image(s) have no listed price, so the budget ({dollars(left)} left) "
                "cannot count them."
            )
            return hold, note
        return hold, None

    def _left(self, budget: float) -> float:
        totals = self.store.totals()
        return max(0.0, budget - totals.total - totals.held)

    def settle(
        self, hold: int, sent: Sequence[Item], prices: Mapping[str, float | None], seconds: float
    ) -> None:
        """A run ended: keep of its hold only what the requests `sent` and not yet billed (still
        in flight after Stop) may cost, for at most `seconds` (their deadline); the rest is free
        for the next run. Under the charge lock, so a charge landing now is counted once."""
        with self._lock, contextlib.suppress(sqlite3.Error):  # else the hold expires on its own
            # an item that ended (done, failed) is not in flight: unbilled, it was not billed
            out = [
                i.request.model
                for i in sent
                if i not in self._billed and i.request is not None and i.status not in ("done", "failed")
            ]
            self.store.shrink(hold, sum(prices.get(model) or 0.0 for model in out), seconds)

    def release(self, hold: int) -> None:
        self.store.release(hold)
