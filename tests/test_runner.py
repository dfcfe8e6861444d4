"""The runner on its own (issue 21, item 6): a Plan's grid run through `runner.run` against the
local hub, with no session, magic or pipeline around it.

What the runner alone promises: the cache answers before the client is asked, one seeded request
on its way is never sent a second time by another run of the process (the session's in-flight
table), Stop sends nothing new, and the ledger's callbacks hear of each billed image once.
Counts only, never times; waits are on the hub's arrivals (`wait_for_calls`), not on sleeps.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import Call, FakeTransport, json_answer
from fakes import png as fake_png
from PIL import Image
from support import wait_for_no_oxen_threads

from oxen_magic.core.errors import ServerError
from oxen_magic.frontends.python_api import generate
from oxen_magic.localhub import LocalHub
from oxen_magic.network.cache import Cache
from oxen_magic.network.client import OxenClient
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue
from oxen_magic.network.transport import Answer
from oxen_magic.planning.options import build_spec
from oxen_magic.planning.plan import make_plan
from oxen_magic.results.item import Item
from oxen_magic.results.results import Results
from oxen_magic.session.runner import run
from oxen_magic.session.session import current_session
from oxen_magic.session.state import InFlight

MODEL = "z-image-turbo"
COUNTED = "ideogram-v4"  # its schema takes num_images: one POST, several billed images


def grid(line: str, prompt: str = "a red cube") -> Results:
    """The grid a cell with these options would lay out (models described by the bundled
    catalogue, as the real API describes them)."""
    spec = build_spec(line, prompt)
    known = {str(o["id"]): ModelInfo.from_api(dict(o)) for o in bundled_catalogue()}
    plan = make_plan(spec, {m: known.get(m) for m in spec.models})
    return Results(plan, size=spec.size, cols=spec.cols)


@pytest.fixture
def slow_hub(make_hub: Callable[..., LocalHub]) -> LocalHub:
    """A hub that takes a while to answer, so a second run starts while the first is out."""
    return make_hub(api_key="runner-test-key", image_size=64, latency=1.0)


@pytest.fixture
def client(hub: LocalHub) -> OxenClient:
    return OxenClient(hub.url, hub.api_key)


def test_the_cache_answers_before_the_client_is_asked(
    hub: LocalHub, client: OxenClient, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    first = run(grid(f"--model {MODEL} --seed 1..3"), client, cache=cache)
    assert (first.done, len(hub.generate_calls())) == (3, 3)
    # No key at all: a request that reached the client would be refused before it was sent.
    keyless = OxenClient(hub.url, "")
    again = run(grid(f"--model {MODEL} --seed 1..3"), keyless, cache=cache)
    assert again.done == 3 and all(i.cached for i in again)
    assert [i.data for i in again] == [i.data for i in first]
    assert len(hub.generate_calls()) == 3
    # --no-cache (use_cache=False) sends them again.
    fresh = run(grid(f"--model {MODEL} --seed 1..3"), client, cache=cache, use_cache=False)
    assert fresh.done == 3 and not any(i.cached for i in fresh)
    assert len(hub.generate_calls()) == 6


def test_one_seeded_request_in_flight_is_sent_once_by_two_runs(slow_hub: LocalHub, tmp_path: Path) -> None:
    client = OxenClient(slow_hub.url, slow_hub.api_key)
    cache, table = Cache(tmp_path / "cache"), InFlight()
    first, second = grid(f"--model {MODEL} --seed 5"), grid(f"--model {MODEL} --seed 5")
    worker = threading.Thread(target=run, args=(first, client), kwargs={"cache": cache, "in_flight": table})
    worker.start()
    try:
        slow_hub.wait_for_calls(1)  # the first run's request is at the hub, not answered yet
        assert len(table) == 1
        run(second, client, cache=cache, in_flight=table)  # waits for the twin, reads its answer
    finally:
        worker.join()
    assert len(slow_hub.generate_calls()) == 1
    assert (first.done, second.done) == (1, 1)
    assert second[0].cached and second[0].data == first[0].data
    assert len(table) == 0  # every claim was released


def test_the_session_hands_its_in_flight_table_to_every_run(hub: LocalHub, oxen_env: Path) -> None:
    """Two `generate()` calls of one seeded request in one process: the second waits for the
    first's answer through the session's table (`session.state.in_flight`), and one is sent."""
    hub.latency = 1.0
    table = current_session().state.in_flight
    made: list[Results] = []
    worker = threading.Thread(target=lambda: made.append(generate("a red cube", seed=5, show=False)))
    worker.start()
    try:
        hub.wait_for_calls(1)
        assert len(table) == 1  # the first call's request, claimed in the session's table
        second = generate("a red cube", seed=5, show=False)
    finally:
        worker.join()
    assert len(hub.generate_calls()) == 1 and len(table) == 0
    assert made[0].done == second.done == 1 and second[0].data == made[0][0].data


def test_stop_sends_nothing_new(slow_hub: LocalHub, tmp_path: Path) -> None:
    client = OxenClient(slow_hub.url, slow_hub.api_key)
    cancel = threading.Event()
    sent: list[Item] = []

    def stop_at_the_first(item: Item) -> None:  # a worker thread, just before its POST
        sent.append(item)
        cancel.set()

    results = grid(f"--model {MODEL} --seed 1..4")
    run(
        results,
        client,
        cache=Cache(tmp_path / "cache"),
        concurrency=1,
        cancel=cancel,
        on_sent=stop_at_the_first,
    )
    assert wait_for_no_oxen_threads() == []  # the request already out finishes in the background
    assert len(sent) == 1 and slow_hub.arrived_calls() <= 1
    assert [i.status for i in results][1:] == ["cancelled"] * 3
    assert results.interrupted and not results.running


def test_a_stop_before_the_run_sends_nothing(hub: LocalHub, client: OxenClient) -> None:
    cancel = threading.Event()
    cancel.set()
    results = run(grid(f"--model {MODEL} --seed 1..2"), client, cancel=cancel)
    assert [i.status for i in results] == ["cancelled", "cancelled"]
    assert hub.arrived_calls() == 0


def test_each_billed_image_is_told_once(hub: LocalHub, client: OxenClient) -> None:
    billed: Counter[int] = Counter()
    gateways: list[int | None] = []
    sent: Counter[int] = Counter()

    def on_billed(item: Item, gateway: int | None) -> None:
        billed[id(item)] += 1
        gateways.append(gateway)

    results = grid(f"--model {MODEL} --seed 1..3")
    run(results, client, on_billed=on_billed, on_sent=lambda item: sent.update([id(item)]))
    assert results.done == 3
    assert billed == sent == Counter(id(i) for i in results)
    assert gateways == [None, None, None]


def test_one_post_of_several_images_bills_each_image_once(hub: LocalHub, client: OxenClient) -> None:
    billed: Counter[int] = Counter()
    sent: Counter[int] = Counter()
    results = grid(f"--model {COUNTED} --seed 7 --param num_images=3")
    assert len(results) == 3  # one cell per image of the one POST
    run(
        results,
        client,
        on_billed=lambda item, gateway: billed.update([id(item)]),
        on_sent=lambda item: sent.update([id(item)]),
    )
    assert results.done == 3 and len(hub.generate_calls()) == 1
    assert billed == sent == Counter(id(i) for i in results)


def test_a_gateway_error_after_billing_is_told_once_with_its_status(
    hub: LocalHub, client: OxenClient
) -> None:
    hub.fail_next(1, 504, after_billing=True)
    told: list[tuple[int, int | None]] = []
    results = grid(f"--model {MODEL} --seed 1")
    run(results, client, on_billed=lambda item, gateway: told.append((item.index, gateway)))
    assert results.failed == 1 and hub.billed == 1
    assert len(told) == 1 and told[0][0] == 0 and told[0][1] is not None


def test_the_in_flight_table_hands_a_key_to_one_owner_at_a_time() -> None:
    table = InFlight()
    assert table.claim("k") is None  # ours now
    twin = table.claim("k")
    assert twin is not None and not twin.is_set()
    table.release("k")
    assert twin.is_set() and len(table) == 0
    assert table.claim("k") is None  # free again


# -- the runner over a fake network (tests/fakes.py): no sockets, every call recorded ---------------
FAKE_BASE = "https://api.runner.invalid"
FAKE_KEY = "sk-runner-fake-KEY-91b2"
COLOURS = {1: "red", 2: "green", 3: "blue"}


def _by_seed(call: Call) -> Answer:
    """The API's answer to one POST: an image whose colour says which seed it was drawn for."""
    seed = call.json_body["seed"]
    picture = base64.b64encode(fake_png((16, 16), COLOURS[seed])).decode()
    return json_answer({"images": [{"b64_json": picture}], "created": 1700000000 + seed})


def test_over_a_fake_network_each_cell_gets_its_own_answer() -> None:
    fake = FakeTransport().on("POST", "/api/ai/images/generate", _by_seed)
    results = grid(f"--model {MODEL} --seed 1..3")
    billed: list[int] = []
    run(
        results,
        OxenClient(FAKE_BASE, FAKE_KEY, transport=fake),
        on_billed=lambda i, g: billed.append(i.index),
    )
    posts = [c for c in fake.calls if c.method == "POST"]
    assert sorted(c.json_body["seed"] for c in posts) == [1, 2, 3]
    assert all(c.key == FAKE_KEY and c.json_body["model"] == MODEL for c in posts)
    assert results.done == 3 and sorted(billed) == [0, 1, 2]
    for item in results:
        assert item.image is not None and item.seed is not None
        assert item.image.convert("RGB").getpixel((0, 0)) == Image.new(
            "RGB", (1, 1), COLOURS[item.seed]
        ).getpixel((0, 0))
        assert item.created == 1700000000 + item.seed


def test_over_a_fake_network_a_possibly_billed_failure_is_never_resent() -> None:
    gateway = ServerError("The gateway timed out (504).", 504, maybe_billed=True)
    fake = FakeTransport().on("POST", "/api/ai/images/generate", gateway)
    results = grid(f"--model {MODEL} --seed 1")
    told: list[int | None] = []
    run(results, OxenClient(FAKE_BASE, FAKE_KEY, transport=fake), on_billed=lambda i, g: told.append(g))
    assert len(fake.calls) == 1  # one POST, not retried
    assert results.failed == 1 and told == [504]
    assert results[0].error == "The gateway timed out (504)."  # the transport's sentence, kept


def test_over_a_fake_network_the_cache_answers_a_rerun_without_a_call(tmp_path: Path) -> None:
    fake = FakeTransport().on("POST", "/api/ai/images/generate", _by_seed)
    client = OxenClient(FAKE_BASE, FAKE_KEY, transport=fake)
    cache = Cache(tmp_path / "cache")
    run(grid(f"--model {MODEL} --seed 1..2"), client, cache=cache)
    assert len(fake.calls) == 2
    again = run(grid(f"--model {MODEL} --seed 1..3"), client, cache=cache)
    assert [c.json_body["seed"] for c in fake.calls[2:]] == [3]  # only the new seed is sent
    assert [i.cached for i in again] == [True, True, False]
