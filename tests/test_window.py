"""The congestion window's logic, on a fake clock (no sleeping, no timing)."""

from __future__ import annotations

import threading

from oxen_magic.window import ADMITTED_AFTER, CEILING, START, Ticket, Window


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = ADMITTED_AFTER) -> None:
        self.now += seconds


def fill(window: Window, clock: Clock | None = None) -> list[Ticket]:
    """Take every place the window allows now (one millisecond apart, given the clock)."""
    taken = []
    while (ticket := window.try_acquire()) is not None:
        taken.append(ticket)
        if clock is not None:
            clock.tick(0.001)
    return taken


def test_auto_starts_modestly_and_a_cap_starts_at_the_cap() -> None:
    clock = Clock()
    auto = Window(clock=clock)
    assert (auto.room, auto.limit) == (START, CEILING)
    assert len(fill(auto)) == START
    capped = Window(6, clock=clock)
    assert (capped.room, capped.limit) == (6, 6)


def test_grows_on_success_in_slow_start() -> None:
    clock = Clock()
    window = Window(clock=clock)
    first = fill(window)
    for ticket in first:
        window.release(ticket, ok=True)
    assert window.room == 2 * START  # +1 per success: doubling per round
    failed = fill(window)
    for ticket in failed:
        window.release(ticket, ok=False)
    assert window.room == 2 * START  # a failure (not a refusal) neither grows nor shrinks it


def test_requests_running_without_refusal_count_as_accepted() -> None:
    clock = Clock()
    window = Window(clock=clock)
    fill(window)
    assert window.try_acquire() is None
    clock.tick()
    more = fill(window)  # the four still running count as accepted: the window doubled
    assert len(more) == START and window.room == 2 * START


def test_halves_on_a_refusal_once_per_burst() -> None:
    clock = Clock()
    window = Window(clock=clock)
    window.size = 16.0
    burst = fill(window)
    for ticket in burst[:8]:  # the eight oldest finished
        window.release(ticket, ok=False)
    clock.tick(0.01)
    late = fill(window)
    window.refused(late[0])  # sent after every request still running: nothing is proven
    assert window.size == 8.0  # 16 + 0 growth, halved (the 8 older ones are carried)
    for ticket in late[1:]:
        window.refused(ticket)  # same burst: no second cut
    assert window.size == 8.0
    assert window.throttles == len(late)


def test_never_closes_below_what_the_server_carries() -> None:
    clock = Clock()
    window = Window(clock=clock)
    window.size = 20.0
    running = fill(window)
    clock.tick()  # all twenty have run long enough: accepted
    window.refused(running[-1])
    assert window.size == 19.0  # not 10: the other nineteen are being served


def test_additive_increase_after_a_refusal_and_slow_probes_at_the_refused_level() -> None:
    clock = Clock()
    window = Window(clock=clock)
    window.size = 5.0
    places = fill(window, clock)
    window.refused(places[-1])  # the fifth: the server holds four
    assert window.size == 4.0
    for ticket in places[:-1]:
        window.release(ticket, ok=True)
    # additive increase: +1/size per success, slowed near 5 (the level refused)
    assert 4.0 < window.size < 4.5
    grown = 0
    while window.room < 5:
        ticket = window.try_acquire()
        assert ticket is not None
        window.release(ticket, ok=True)
        grown += 1
    assert grown >= 16  # several rounds of four before the next probe


def test_never_above_the_cap_or_the_ceiling() -> None:
    clock = Clock()
    for cap, limit in ((None, CEILING), (3, 3), (40, 40)):
        window = Window(cap, clock=clock)
        for _ in range(200):
            for ticket in fill(window):
                window.release(ticket, ok=True)
            clock.tick()
        assert window.size == limit and window.peak == limit


def test_acquire_gives_up_once_cancelled() -> None:
    window = Window(1)
    held = window.try_acquire()
    assert held is not None
    cancel = threading.Event()
    got: list[Ticket | None] = []
    waiter = threading.Thread(target=lambda: got.append(window.acquire(cancel)))
    waiter.start()
    cancel.set()
    waiter.join(5)
    assert got == [None]
    assert window.flight == [held]


def test_places_go_out_in_turn_order() -> None:
    window = Window(2)
    assert window.try_acquire(turn=1) is None  # turn 0 has not had its place yet
    assert window.try_acquire(turn=0) is not None
    window.pass_turn(2)  # turn 2 needs none (cached): it does not hold up turn 3 once 1 went
    assert window.try_acquire(turn=3) is None
    assert window.try_acquire(turn=1) is not None
    assert window.try_acquire(turn=3) is None  # its turn, but no room: both places are taken
    assert len(window.flight) == 2
