"""The congestion window's logic, on a fake clock (no sleeping, no timing)."""

from __future__ import annotations

import threading

from oxen_magic.session.window import ADMITTED_AFTER, CEILING, START, Hint, Ticket, Window, WindowMemory


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


def test_auto_starts_with_the_whole_plan_up_to_start_and_a_cap_starts_at_the_cap() -> None:
    clock = Clock()
    auto = Window(clock=clock)
    assert (auto.room, auto.limit) == (START, CEILING)
    assert len(fill(auto)) == START
    for planned, room in ((1, 1), (4, 4), (8, 8), (16, 16), (64, START)):
        assert Window(planned=planned, clock=clock).room == room, planned
    assert START == 16  # a 16-image sweep is one round trip on a server with room
    capped = Window(6, planned=2, clock=clock)
    assert (capped.room, capped.limit) == (6, 6)  # the user's number, whatever the plan


def test_grows_on_success_in_slow_start() -> None:
    clock = Clock()
    window = Window(planned=4, clock=clock)
    first = fill(window)
    for ticket in first:
        window.release(ticket, ok=True)
    assert window.room == 8  # +1 per success: doubling per round
    failed = fill(window)
    for ticket in failed:
        window.release(ticket, ok=False)
    assert window.room == 8  # a failure (not a refusal) neither grows nor shrinks it


def test_requests_running_without_refusal_count_as_accepted() -> None:
    clock = Clock()
    window = Window(planned=4, clock=clock)
    fill(window)
    assert window.try_acquire() is None
    clock.tick()
    more = fill(window)  # the four still running count as accepted: the window doubled
    assert len(more) == 4 and window.room == 8


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


# -- where the next run starts: the session's memory per host -----------------------------------


def test_a_refused_hint_starts_there_and_probes_slowly_above_it() -> None:
    clock = Clock()
    window = Window(planned=64, hint=Hint(4, refused=True), clock=clock)
    assert window.room == 4 and window.threshold == 4.0
    taken = 0
    while window.room < 5:  # additive increase, slowed at the level refused last time
        ticket = window.try_acquire()
        assert ticket is not None
        window.release(ticket, ok=True)
        taken += 1
    assert taken >= 16
    assert Window(planned=2, hint=Hint(4, refused=True), clock=clock).room == 2  # never past the plan
    assert Window(3, hint=Hint(8, refused=True), clock=clock).room == 3  # a cap is the user's word


def test_an_unrefused_hint_never_starts_below_start_and_opens_past_it() -> None:
    clock = Clock()
    assert Window(planned=64, hint=Hint(4, refused=False), clock=clock).room == START
    assert Window(planned=64, hint=Hint(24, refused=False), clock=clock).room == 24
    assert Window(planned=8, hint=Hint(24, refused=False), clock=clock).room == 8
    window = Window(planned=64, hint=Hint(24, refused=False), clock=clock)
    for ticket in fill(window):
        window.release(ticket, ok=True)
    assert window.room == CEILING  # still slow start: no refusal has been seen on this host


def test_the_hint_a_run_leaves() -> None:
    clock = Clock()
    assert Window(planned=4, clock=clock).hint() is None  # nothing sent: nothing learned
    quiet = Window(planned=8, clock=clock)
    for ticket in fill(quiet):
        quiet.release(ticket, ok=True)
    assert quiet.room == 16  # opened on accepted requests, but only 8 ever ran at once
    assert quiet.hint() == Hint(8, refused=False)
    full = Window(clock=clock)
    sent = fill(full, clock)
    full.refused(sent[4])  # four are carried
    assert full.hint() == Hint(8, refused=True)  # halved from 16 (the four sent later are news)
    memory = WindowMemory()
    memory.put("http://a", full.hint())
    memory.put("http://b", None)  # a run that sent nothing leaves the old hint alone
    assert (memory.get("http://a"), memory.get("http://b")) == (Hint(8, True), None)
    memory.forget()
    assert memory.get("http://a") is None


def test_a_small_or_capped_sweep_never_lowers_what_the_session_knows() -> None:
    clock = Clock()
    one = Window(planned=1, hint=Hint(4, refused=True), clock=clock)
    for ticket in fill(one):
        one.release(ticket, ok=True)
    assert one.hint() == Hint(4, refused=True)  # not 2: one image proves nothing about the limit
    small = Window(planned=4, hint=Hint(24, refused=False), clock=clock)
    for ticket in fill(small):
        small.release(ticket, ok=True)
    assert small.hint() == Hint(24, refused=False)
    capped = Window(2, hint=Hint(4, refused=True), clock=clock)
    for ticket in fill(capped):
        capped.release(ticket, ok=True)
    assert capped.hint() is None  # the user's --concurrency 2: the memory stays as it was
    refused = Window(8, clock=clock)
    sent = fill(refused, clock)
    refused.refused(sent[-1])
    assert refused.hint() == Hint(7, refused=True)  # a capped run that was refused does teach


def simulate(window: Window, clock: Clock, slots: int, n: int, latency: float = 1.0) -> tuple[int, float]:
    """`n` requests against a server running `slots` at once (429, Retry-After 1 s, above it),
    as the runner drives the window, on the fake clock: (refusals, simulated seconds). The
    requests of a burst all leave before the first answer (a refusal) comes back."""
    started = clock.now
    ready, retries, done, refusals = n, [], 0, 0
    running: list[tuple[Ticket, float]] = []
    while done < n:
        for ticket, ends in [r for r in running if r[1] <= clock.now]:
            running.remove((ticket, ends))
            window.release(ticket, ok=True)
            done += 1
        ready += sum(1 for due in retries if due <= clock.now)
        retries = [due for due in retries if due > clock.now]
        burst = []
        while ready and (ticket := window.try_acquire()) is not None:
            ready -= 1
            burst.append(ticket)
            clock.tick(0.0001)
        clock.tick(0.001)  # the answers to a burst come back after it left
        for ticket in burst:
            if len(running) >= slots:
                window.refused(ticket)
                refusals += 1
                retries.append(clock.now + 1.0)
            else:
                running.append((ticket, clock.now + latency))
        clock.tick(0.01)
    return refusals, clock.now - started


def test_a_second_sweep_on_a_small_server_starts_where_the_first_ended() -> None:
    clock, memory = Clock(), WindowMemory()
    first = Window(planned=64, hint=memory.get("h"), clock=clock)
    refused_first, _ = simulate(first, clock, slots=4, n=64)
    memory.put("h", first.hint())
    assert refused_first > 0 and memory.get("h") == Hint(4, refused=True)
    second = Window(planned=64, hint=memory.get("h"), clock=clock)
    refused_second, took = simulate(second, clock, slots=4, n=64)
    assert refused_second / (64 + refused_second) < 0.05, refused_second
    assert took <= 1.1 * 16  # 16 rounds of four: the probes cost (almost) nothing
    assert refused_second < refused_first
    assert second.hint() == Hint(4, refused=True)


def test_a_sweep_without_refusals_keeps_the_refused_level_it_started_from() -> None:
    clock = Clock()
    window = Window(planned=16, hint=Hint(16, refused=True), clock=clock)
    assert simulate(window, clock, slots=16, n=16)[0] == 0
    assert window.hint() == Hint(16, refused=True)  # the next sweep does not overshoot again


def test_sweeps_on_a_server_with_room_take_one_round_and_a_sixteen_slot_server_four() -> None:
    clock = Clock()
    for n in (4, 8, 16):
        refused, took = simulate(Window(planned=n, clock=clock), clock, slots=1000, n=n)
        assert (refused, round(took, 1)) == (0, 1.0), n
    refused, took = simulate(Window(planned=64, clock=clock), clock, slots=16, n=64)
    assert took <= 1.35 * 4, (refused, took)
