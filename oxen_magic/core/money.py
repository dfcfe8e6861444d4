"""Money: how an amount is written, and what a set of images is estimated to cost.

Why one module: the same dollars appear in the plan's estimate, the grid's cost line, the
panel's spend line and status, `spend()`, the budget refusals, `doctor()` and the relay's 402.
Written in one place they read the same everywhere (`$0.025` below a dollar, `$2.50` above), and
one estimator decides what an unknown or per-second price does to a total.

Pure (core layer): plain numbers in, text or numbers out; nothing from the package is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Prices and amounts are floats like 0.025: compared with this slack.
EPSILON = 1e-9


def dollars(amount: float) -> str:
    """`$0.025` below a dollar (prices are fractions of a cent apart), `$2.50` from a dollar on.
    Decided on the rounded amount, so 0.9996 reads `$1.00`, never `$1.000`."""
    return f"${amount:.3f}" if round(amount, 3) < 1 else f"${amount:.2f}"


def per_second(price: float) -> str:
    """A price per second of generation (a fine-tuned model): `$0.0012/s`, to the millionth
    of a dollar, without trailing zeros."""
    return "$" + f"{price:.6f}".rstrip("0").rstrip(".") + "/s"


def price_text(per_image: float | None, per_sec: float | None = None) -> str:
    """A model's price as the model table shows it: `$0.025` (per image), `$0.0012/s` (per
    second), or `?` when the API lists neither."""
    if per_image is not None:
        return dollars(per_image)
    if per_sec is not None:
        return per_second(per_sec)
    return "?"


def left_of(left: float, budget: float) -> str:
    """`$0.375 left of $0.50`: what a budget has left, as every front end says it."""
    return f"{dollars(left)} left of {dollars(budget)}"


def image_price(per_image: float | None, per_sec: float | None, typical: float | None) -> float | None:
    """USD one image is estimated at: the per-image price; else the per-second price times a
    `typical` duration (seconds per image) when one is known; None (unknown) when neither is. A
    per-second price with no typical duration stays unknown rather than guessed: a guess would
    let the budget pass."""
    if per_image is not None:
        return per_image
    if per_sec is not None and typical is not None:
        return per_sec * typical
    return None


@dataclass(frozen=True)
class Estimate:
    """What some images are estimated to cost: `cost` sums the known prices (USD), `unpriced`
    counts the images of unknown price (never added as $0), `priced` whether any price was known."""

    cost: float = 0.0
    unpriced: int = 0
    priced: bool = False

    def line(self, new: int | None = None) -> str | None:
        """The estimate as the plan and the grid say it (see `text`); None when no price is known."""
        return self.text(new) if self.priced else None

    def text(self, new: int | None = None) -> str:
        """`est. $0.10`, `est. $0.003 for 1 new` (`new`: when some images come from the cache,
        how many will be sent), with `+ 2 image(s) of unknown price` when some have none."""
        text = f"est. {dollars(self.cost)}"
        if new is not None:
            text += f" for {new} new"
        if self.unpriced:
            text += f" + {self.unpriced} image(s) of unknown price"
        return text


def estimate(images: Iterable[tuple[float | None, int]]) -> Estimate:
    """The one estimator: each (price per image or None, images billed at it), for a request that
    asks for several images (`num_images`) as for one cell per image. Known prices times their
    images add up; unknown ones are counted as images."""
    cost, unpriced, priced = 0.0, 0, False
    for price, count in images:
        if price is None:
            unpriced += count
        else:
            cost += price * count
            priced = True
    return Estimate(cost, unpriced, priced)
