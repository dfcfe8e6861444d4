"""What this session was billed for, and the budget that refuses a plan before it is sent.

An image counts when it arrived from the API (not from the cache): that is what the API bills.
Prices come from the model list (`pricing.cost_per_image`); an image whose price is unknown is
counted as an image and said to be unpriced, never silently added as $0. The runner reports each
arrival as it happens (`Session.run` passes `Ledger.charge` down as `on_billed`), so an image that
arrives after Stop or Ctrl-C, when the grid no longer changes, is counted all the same. A POST a
gateway answered 502/504 may have been billed (the backend can make the image first): it is kept
apart as "possibly billed", never added to the total.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import TIMED_OUT, UsageProblem

if TYPE_CHECKING:
    from .results import Item, Results


@dataclass(frozen=True)
class Charge:
    """One billed image."""

    model: str
    price: float | None  # USD, None when the API lists no price
    at: float  # time.time() when it arrived
    host: str
    gateway: int | None = None  # 502/504: a gateway error that may have been billed (not counted)


def dollars(amount: float) -> str:
    return f"${amount:.3f}" if amount < 1 else f"${amount:.2f}"


@dataclass(frozen=True)
class Spend:
    """`oxen_magic.spend()`: the total (known prices), the number billed, and a table per model.

    `images`, `total`, `unpriced` and the table count images that arrived. Answers a gateway gave
    (502/504) after the backend may have billed are counted apart: `possibly` of them, whose known
    prices add up to `possible_total` (not part of `total`, nor of what the budget counts)."""

    charges: tuple[Charge, ...]
    budget: float = 0.0

    @property
    def billed(self) -> tuple[Charge, ...]:
        """The images that arrived (what `total` counts)."""
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
        text = f"{self.images} image(s) billed this session, {dollars(self.total)}"
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
        if self.budget:
            text += f" (budget {dollars(self.budget)}, {dollars(max(0.0, self.budget - self.total))} left)"
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
        from .cells import NO_MATH, esc

        cells = "".join(
            f"<tr><td><code>{esc(m)}</code></td><td>{n}</td>"
            f"<td>{esc(dollars(p) if p is not None else '?')}</td><td>{esc(dollars(t))}</td></tr>"
            for m, n, p, t in self.by_model()
        )
        return (
            f'<table class="oxen-spend {NO_MATH}"><tr><th>model</th><th>images</th><th>each</th>'
            f'<th>total</th></tr>{cells}</table><div class="oxen-spend-summary {NO_MATH}" '
            f'style="font-size:12px">{esc(self.summary())}</div>'
        )


class Ledger:
    """The session's record of billed images (thread-safe: the panel records from its thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._charges: list[Charge] = []

    def charge(self, item: Item, price: float | None, host: str, gateway: int | None = None) -> bool:
        """Count one answer the API may bill as it happens (the runner's `on_billed`), once per
        item: an image that arrived (`gateway` None), or a 502/504 that may have been billed.
        Returns whether it was new."""
        if item.request is None:
            return False
        with self._lock:
            if item.billed:
                return False
            item.billed = True
            self._charges.append(Charge(item.request.model, price, time.time(), host, gateway))
        return True

    def record(self, results: Results, host: str) -> int:
        """Count each item that arrived from the API and was not counted yet; returns how many."""
        prices = results.plan.prices
        now = time.time()
        added = 0
        with self._lock:
            for item in results.items:
                if item.request is None or item.status != "done" or item.cached or item.billed:
                    continue
                item.billed = True
                model = item.request.model
                self._charges.append(Charge(model, prices.get(model), now, host))
                added += 1
        return added

    def spend(self, budget: float = 0.0) -> Spend:
        with self._lock:
            return Spend(tuple(self._charges), budget)

    @property
    def total(self) -> float:
        return self.spend().total

    def check_budget(self, results: Results, fresh: Sequence[Item], budget: float) -> None:
        """Refuse, before anything is sent, new images whose known prices would pass the budget."""
        if budget <= 0:
            return
        prices = results.plan.prices
        known = [prices.get(i.model or "") for i in fresh]
        cost = sum(p for p in known if p is not None)
        unpriced = sum(1 for p in known if p is None)
        spent = self.total
        left = max(0.0, budget - spent)
        if cost > left + 1e-9:
            count = len(fresh)
            raise UsageProblem(
                f"These {count} new image(s) would cost about {dollars(cost)}, more than the "
                f"{dollars(left)} left of this session's {dollars(budget)} budget; narrow the sweep "
                "(cached images are free) or raise %config OxenMagic.max_spend."
            )
        if unpriced:
            results.notes.append(
                f"{unpriced} new image(s) have no listed price, so the budget ({dollars(left)} left) "
                "cannot count them."
            )
