"""Unit tests of `money.py` (how amounts are written, the one estimator) and `pace.py` (the one
progress line and ETA), and of the places that now write through them: a model's price, the
plan's estimate and the terminal bar. Pure functions: no hub, no network, no clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from oxen_magic.core.money import Estimate, dollars, estimate, image_price, left_of, per_second, price_text
from oxen_magic.core.pace import Tally, duration, eta, progress_line
from oxen_magic.frontends.progress import WIDTH, Progress
from oxen_magic.network.model_info import ModelInfo


# -- dollars ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.000"),
        (0.0, "$0.000"),
        (0.002, "$0.002"),
        (0.025, "$0.025"),
        (0.0004, "$0.000"),  # below a tenth of a cent: rounds, never written in scientific notation
        (0.0006, "$0.001"),
        (0.5, "$0.500"),
        (0.999, "$0.999"),
        (0.9996, "$1.00"),  # rounds to a dollar: written as dollars, never "$1.000"
        (1, "$1.00"),
        (2.5, "$2.50"),
        (1234.5, "$1234.50"),
    ],
)
def test_dollars_three_places_below_a_dollar_two_from_one_on(amount: float, text: str) -> None:
    assert dollars(amount) == text


def test_left_of_a_budget() -> None:
    assert left_of(0.375, 0.5) == "$0.375 left of $0.500"
    assert left_of(0.0, 2.0) == "$0.000 left of $2.00"
    assert left_of(1.5, 2.0) == "$1.50 left of $2.00"


@pytest.mark.parametrize(
    ("price", "text"),
    [(0.0012, "$0.0012/s"), (0.001, "$0.001/s"), (0.000125, "$0.000125/s"), (0.5, "$0.5/s"), (2.0, "$2/s")],
)
def test_per_second_prices_keep_their_digits_without_trailing_zeros(price: float, text: str) -> None:
    assert per_second(price) == text


def test_price_text_per_image_per_second_or_unknown() -> None:
    assert price_text(0.025) == "$0.025"
    assert price_text(0.025, 0.0012) == "$0.025"  # a per-image price wins
    assert price_text(None, 0.0012) == "$0.0012/s"
    assert price_text(None) == "?" and price_text(None, None) == "?"
    assert price_text(1.5) == "$1.50"  # as the spend table's "each" column writes it


# -- a model's price -------------------------------------------------------------------------------
def test_image_price_per_image_else_per_second_times_a_typical_duration() -> None:
    assert image_price(0.025, None, None) == 0.025
    assert image_price(0.025, 0.5, 10) == 0.025  # per image wins
    assert image_price(None, 0.0012, 10) == pytest.approx(0.012)
    assert image_price(None, 0.0012, None) is None  # no typical duration: unknown, never guessed
    assert image_price(None, None, 10) is None
    assert image_price(0.0, None, None) == 0.0  # free is a price, not unknown


def test_a_model_object_priced_per_second_with_and_without_a_typical_duration() -> None:
    timed = {"id": "oxen:mine", "pricing": {"method": "time", "cost_per_second": 0.0012}}
    unknown = ModelInfo.from_api(timed)
    assert unknown.price_text == "$0.0012/s" and unknown.estimate is None
    typical = ModelInfo.from_api({**timed, "pricing": {**timed["pricing"], "typical_seconds": 10}})
    assert typical.price_text == "$0.0012/s" and typical.estimate == pytest.approx(0.012)
    flat = ModelInfo.from_api({"id": "flux", "pricing": {"cost_per_image": 0.025}})
    assert flat.price_text == "$0.025" and flat.estimate == 0.025
    assert ModelInfo.from_api({"id": "free-text"}).price_text == "?"


# -- the one estimator -----------------------------------------------------------------------------
def test_an_estimate_multiplies_prices_by_the_images_each_request_asks_for() -> None:
    # a request asking for 4 images (`num_images=4`) is one sender cell counted 4, then 3 cells of 0
    got = estimate([(0.025, 4), (0.025, 0), (0.025, 0), (0.025, 0), (0.002, 1)])
    assert got == Estimate(pytest.approx(0.102), 0, True)  # type: ignore[arg-type]
    assert got.line() == "est. $0.102"


def test_unknown_prices_are_counted_as_images_never_as_zero() -> None:
    got = estimate([(0.025, 1), (None, 2), (0.025, 1), (None, 0)])
    assert (got.cost, got.unpriced, got.priced) == (pytest.approx(0.05), 2, True)
    assert got.line() == "est. $0.050 + 2 image(s) of unknown price"


def test_nothing_priced_has_no_estimate_line() -> None:
    assert estimate([(None, 3)]).line() is None
    assert estimate([]).line() is None and estimate([]) == Estimate()
    # the grid says what the new ones cost once some price is known in its plan, even $0 of them
    assert estimate([(None, 2)]).text(new=2) == "est. $0.000 for 2 new + 2 image(s) of unknown price"


def test_free_images_are_priced_at_zero() -> None:
    assert estimate([(0.0, 3)]).line() == "est. $0.000"


def test_an_estimate_over_a_dollar_and_of_the_new_images_only() -> None:
    assert estimate([(0.5, 4)]).line() == "est. $2.00"
    assert estimate([(0.003, 1)]).line(new=1) == "est. $0.003 for 1 new"


# -- the one progress line and ETA ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "1 s"), (8.4, "8 s"), (59.4, "59 s"), (61, "1 min"), (150, "2 min"), (4800, "1 h 20 min")],
)
def test_durations_are_rounded_the_way_people_say_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_the_eta_is_the_pace_of_the_fetched_images_times_those_left() -> None:
    assert eta(10.0, 5, 5) == pytest.approx(10.0)
    assert eta(4.0, 2, 6) == pytest.approx(12.0)
    assert eta(4.0, 0, 6) is None  # nothing fetched yet: no pace
    assert eta(4.0, 2, 0) is None  # nothing left
    assert eta(0.0, 2, 6) is None


def _item(status: str, cached: bool = False, placeholder: bool = False, request: Any = 1) -> SimpleNamespace:
    return SimpleNamespace(status=status, cached=cached, placeholder=placeholder, request=request)


def test_a_tally_counts_a_grids_items() -> None:
    items = [
        _item("done"),
        _item("done", cached=True),
        _item("failed"),
        _item("pending"),
        _item("pending"),
        _item("done", placeholder=True),
        _item("skipped", request=None),  # a cell without a request is not an image
    ]
    tally = Tally.of(items, elapsed=6.0, running=True)
    assert (tally.total, tally.done, tally.failed, tally.cached) == (6, 3, 1, 1)
    assert (tally.fetched, tally.pending, tally.placeholders, tally.settled) == (3, 2, 1, 4)
    assert tally.eta == pytest.approx(4.0)  # 3 fetched in 6 s, 2 left (the cached one is no pace)
    assert Tally.of(items, elapsed=6.0, running=False).eta is None  # a finished run has no ETA


def test_the_progress_line() -> None:
    running = Tally(total=16, done=12, failed=1, cached=2, fetched=11, pending=3, elapsed=4.2, running=True)
    assert progress_line(running) == "12/16 images, 1 failed, 2 from cache, 4.2 s, about 1 s left"
    finished = Tally(total=2, done=2, fetched=2, elapsed=1.25)
    assert progress_line(finished) == "2/2 images, 1.2 s"
    stopped = Tally(total=3, done=1, fetched=1, elapsed=3.0, interrupted=True)
    assert progress_line(stopped) == "1/3 images, 3.0 s (interrupted)"


def test_placeholders_are_said_and_why_except_in_a_brief_line() -> None:
    one = Tally(total=2, done=2, placeholders=1, elapsed=0.5)
    assert progress_line(one) == "2/2 images, 1 placeholder (the local hub's, not a model's), 0.5 s"
    two = Tally(total=2, done=2, placeholders=2, elapsed=0.5)
    assert progress_line(two, brief=True) == "2/2 images, 2 placeholders, 0.5 s"


def _results(items: list[SimpleNamespace], elapsed: float, running: bool) -> SimpleNamespace:
    return SimpleNamespace(
        items=items,
        done=sum(1 for i in items if i.status == "done"),
        failed=sum(1 for i in items if i.status == "failed"),
        total=len(items),
        elapsed=elapsed,
        running=running,
        interrupted=False,
    )


class _Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_the_terminal_bar_shows_the_same_progress_line(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [_item("done"), _item("failed"), _item("pending"), _item("pending")]
    results = _results(items, elapsed=2.0, running=True)
    bar = Progress(results, _Stream(), tty=False).line()  # type: ignore[arg-type]
    line = progress_line(Tally.of(items, 2.0, True))
    assert line == "1/4 images, 1 failed, 2.0 s, about 2 s left"
    assert bar == "[" + "#" * (WIDTH // 2) + "." * (WIDTH // 2) + "] " + line
    monkeypatch.setenv("COLUMNS", "40")  # on a terminal it is cut to fit one line
    assert Progress(results, _Stream(), tty=True).line() == bar[:39]  # type: ignore[arg-type]
