"""Issue 22, items 1-4: the client and the local hub follow the documented API.

Every test goes over real HTTP to the local hub (most through a real IPython shell): every image
a count asks for is kept, shown, saved and billed; input images go to the documented edit route
with one fallback remembered by the session; a POST that may have been billed is never resent
and is recorded as possibly billed; presigned result links, per-second prices and the list's
own filters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from support import fast_client, run_cell, shown_html

import oxen_magic
from oxen_magic.core.errors import TIMED_OUT, NotFoundError, ServerError
from oxen_magic.localhub import FINE_TUNED_ID, LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.network.imageroutes import EDIT_PATH, GENERATE_PATH
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue
from oxen_magic.planning.options import build_spec
from oxen_magic.planning.plan import make_plan
from oxen_magic.planning.required import SLOW_READ
from oxen_magic.session.session import current_session

PROMPT = "a lighthouse at dusk"
IDEOGRAM = "ideogram-v4"  # its schema takes num_images (integer, default 1)
IDEOGRAM_PRICE = 0.06  # the local hub's price for it
KONTEXT = "flux-kontext-dev"  # an edit model: needs an input image
ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = {m["id"]: ModelInfo.from_api(m) for m in bundled_catalogue()}


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (20, 120, 200)).save(path)
    return path


def posts(hub: LocalHub) -> list[Any]:
    return hub.generate_calls() + hub.edit_calls()


def paths(hub: LocalHub) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in hub.requests if r.method == "POST"]


def cell(shell: Any, line: str, body: str = PROMPT, out: str = "r") -> Any:
    _, error = run_cell(shell, f"{line} --out {out}", body)
    assert error is None, error
    return shell.user_ns[out]


# -- 1. every billed image kept -------------------------------------------------------------------


def test_the_local_hub_answers_as_many_images_as_num_images_asks(hub: LocalHub) -> None:
    auth = {"Authorization": f"Bearer {hub.api_key}"}
    body = {"model": IDEOGRAM, "prompt": PROMPT, "seed": 1, "num_images": 4}
    answer = requests.post(hub.url + GENERATE_PATH, json=body, headers=auth, timeout=30).json()
    urls = [image["url"] for image in answer["images"]]
    assert len(urls) == 4 and len(set(urls)) == 4 and hub.billed == 4
    pictures = {requests.get(url, timeout=30).content for url in urls}  # presigned: no header
    assert len(pictures) == 4  # four different images, not one repeated
    one = requests.post(hub.url + GENERATE_PATH, json={**body, "num_images": 1}, headers=auth, timeout=30)
    assert len(one.json()["images"]) == 1


def test_a_count_is_an_axis_of_cells_and_the_estimate_multiplies() -> None:
    models = {IDEOGRAM: CATALOGUE[IDEOGRAM]}
    plan = make_plan(build_spec(f"-m {IDEOGRAM} -s 1,2 -p num_images=3", PROMPT), models)
    assert plan.col_axis == "seed" and plan.row_axes == ("image",)
    assert plan.row_labels == ("image 1", "image 2", "image 3")
    assert len(plan.requests) == 6  # six images, one cell each ...
    senders = [r for r in plan.requests if r.image == 0]
    assert len(senders) == 2 and all(r.count == 3 and r.billed_images == 3 for r in senders)  # ... two POSTs
    assert sum(r.billed_images for r in plan.requests) == 6
    assert all(r.payload()["num_images"] == 3 and "_image" not in r.payload() for r in plan.requests)
    models[IDEOGRAM] = ModelInfo.from_api({**CATALOGUE[IDEOGRAM].raw, "pricing": {"cost_per_image": 0.06}})
    plan = make_plan(build_spec(f"-m {IDEOGRAM} -s 1 -p num_images=4", PROMPT), models)
    assert plan.cost == pytest.approx(4 * 0.06) and plan.col_labels == (
        "image 1",
        "image 2",
        "image 3",
        "image 4",
    )
    with pytest.raises(oxen_magic.UsageProblem, match="would generate 80 images"):
        make_plan(build_spec(f"-m {IDEOGRAM} -s 1..20 -p num_images=4", PROMPT), models)


def test_every_image_of_a_count_is_kept_shown_saved_and_billed(
    hub: LocalHub, shell: Any, tmp_path: Path
) -> None:
    captured, error = run_cell(
        shell, f"-m {IDEOGRAM} -s 7 -p num_images=3 --save {tmp_path / 'out'} --out r", PROMPT
    )
    assert error is None, error
    r = shell.user_ns["r"]
    assert len(hub.generate_calls()) == 1 and hub.billed == 3  # one POST, three billed images
    assert [i.status for i in r] == ["done"] * 3
    assert len({i.data for i in r}) == 3 and len({i.url for i in r}) == 3
    html = shown_html(captured)
    assert all(f"image {n}" in html for n in (1, 2, 3)) and html.count("data:image/jpeg;base64,") >= 3
    saved = sorted(p.name for p in (tmp_path / "out").glob("*.png") if p.name != "contact-sheet.png")
    assert saved == [f"{IDEOGRAM}_seed-7{tail}.png" for tail in ("", "_image-2", "_image-3")]
    spend = oxen_magic.spend()
    assert spend.images == 3 and spend.total == pytest.approx(3 * IDEOGRAM_PRICE)
    again = cell(shell, f"-m {IDEOGRAM} -s 7 -p num_images=3", out="again")  # seeded: from the cache
    assert len(hub.generate_calls()) == 1 and all(i.cached for i in again) and oxen_magic.spend().images == 3
    assert [i.data for i in again] == [i.data for i in r]


def test_more_images_than_asked_are_kept_and_counted(hub: LocalHub, shell: Any) -> None:
    hub.extra_images = 1  # the server answers one more than asked
    r = cell(shell, f"-m {IDEOGRAM} -s 3 -p num_images=2")
    assert len(r) == 3 and [i.status for i in r] == ["done"] * 3 and len({i.data for i in r}) == 3
    assert any("more images than asked" in note for note in r.notes)
    assert r[2].col >= len(r.plan.col_labels)  # off the grid: image 1's cell still shows image 1
    assert r.contact_sheet() is not None
    assert oxen_magic.spend().images == 3 == hub.billed


def test_fewer_images_than_asked_fail_only_the_cells_left(hub: LocalHub, shell: Any) -> None:
    hub.extra_images = -2
    r = cell(shell, f"-m {IDEOGRAM} -s 3 -p num_images=3 --format b64_json")
    assert [i.status for i in r] == ["done", "failed", "failed"]
    assert r[1].error == "The API returned 1 of the 3 images asked."
    assert oxen_magic.spend().images == 1 == hub.billed  # what arrived is what is counted


def test_a_refused_request_fails_every_cell_of_its_count(hub: LocalHub, shell: Any) -> None:
    hub.fail_next(1, 400)
    r = cell(shell, f"-m {IDEOGRAM} -s 3 -p num_images=2")
    assert [i.status for i in r] == ["failed", "failed"] and r[0].error == r[1].error
    assert oxen_magic.spend().charges == () and len(hub.generate_calls()) == 1


def test_every_image_of_a_b64_json_answer_is_kept(hub: LocalHub) -> None:
    client = OxenClient(hub.url, hub.api_key)
    got = client.generate(IDEOGRAM, PROMPT, seed=1, num_images=3, response_format="b64_json")
    assert got.count == 3 and len({got.data, *(o.data for o in got.others)}) == 3
    assert got.url is None and all(o.size == got.size for o in got.others)


def test_a_count_on_a_model_of_unknown_schema_is_counted() -> None:
    plan = make_plan(
        build_spec("-m oxen:me/tuned -s 1 -p num_images=2 -p n=5", PROMPT), {"oxen:me/tuned": None}
    )
    assert [r.image for r in plan.requests] == [0, 1] and plan.requests[0].count == 2
    assert plan.requests[0].payload()["n"] == 5  # `n` is only a count where a schema says so


def test_a_comparison_with_a_count_leaves_the_other_model_one_image(hub: LocalHub, shell: Any) -> None:
    r = cell(shell, f"-m {IDEOGRAM},z-image-turbo -s 1 -p num_images=2")
    assert len(hub.generate_calls()) == 2  # one POST per model
    turbo = [i for i in r if i.request is not None and i.model == "z-image-turbo"]
    assert len(turbo) == 1 and turbo[0].ok
    assert any(i.note == "z-image-turbo makes 1 image(s) per request" for i in r)
    assert sum(1 for i in r if i.ok) == 3 and oxen_magic.spend().images == 3


def test_the_budget_counts_every_image_a_count_asks_for(hub: LocalHub, shell: Any) -> None:
    current_session().configure(max_spend=0.1)
    _, error = run_cell(shell, f"-m {IDEOGRAM} -s 1 -p num_images=2", PROMPT)
    assert error is not None and "2 new image(s) would cost about $0.120" in error
    assert posts(hub) == []
    assert cell(shell, f"-m {IDEOGRAM} -s 1 -p num_images=1")[0].ok


def test_a_gateway_error_on_a_count_may_have_billed_every_image(hub: LocalHub, shell: Any) -> None:
    hub.fail_next(1, 504, after_billing=True)
    r = cell(shell, f"-m {IDEOGRAM} -s 1 -p num_images=3")
    assert [i.status for i in r] == ["failed"] * 3 and "may have been made and billed" in (r[2].error or "")
    spend = oxen_magic.spend()
    assert (spend.images, spend.possibly) == (0, 3) and len(hub.generate_calls()) == 1


# -- 2. image inputs on the documented route -------------------------------------------------------


def test_an_input_image_goes_to_the_edit_route_whatever_the_endpoint_says(
    hub: LocalHub, shell: Any, picture: Path
) -> None:
    assert CATALOGUE["gpt-image-1-5"].endpoint == "/images/generate"
    assert cell(shell, f"-m gpt-image-1-5 -i {picture}")[0].ok
    assert paths(hub) == [(EDIT_PATH, 200)]
    hub.reset()
    assert cell(shell, "-m gpt-image-1-5", out="text")[0].ok  # text only: today's route
    assert paths(hub) == [(GENERATE_PATH, 200)]


@pytest.mark.parametrize("status", [404, 405])
def test_an_edit_model_served_only_on_generate_falls_back_once_and_is_remembered(
    hub: LocalHub, shell: Any, picture: Path, status: int
) -> None:
    hub.input_route, hub.missing_route_status = "generate", status  # the docs' other reading
    assert cell(shell, f"-m {KONTEXT} -i {picture} -s 1")[0].ok
    assert paths(hub) == [(EDIT_PATH, status), (GENERATE_PATH, 200)] and hub.billed == 1
    assert current_session().routes[hub.url] == {KONTEXT: GENERATE_PATH}
    hub.reset()
    assert cell(shell, f"-m {KONTEXT} -i {picture} -s 2", out="second")[0].ok
    assert paths(hub) == [(GENERATE_PATH, 200)]  # the session remembered the route


def test_the_fallback_works_the_other_way_too(hub: LocalHub, shell: Any, picture: Path) -> None:
    hub.input_route = "generate"
    assert cell(shell, f"-m {KONTEXT} -i {picture} -s 1")[0].ok
    hub.reset()
    hub.input_route = "edit"  # now generate refuses input images: back to the edit route
    assert cell(shell, f"-m {KONTEXT} -i {picture} -s 2", out="second")[0].ok
    assert paths(hub) == [(GENERATE_PATH, 404), (EDIT_PATH, 200)]
    assert current_session().routes[hub.url] == {KONTEXT: EDIT_PATH}


def test_a_new_session_forgets_the_routes(hub: LocalHub, shell: Any, picture: Path) -> None:
    hub.input_route = "generate"
    cell(shell, f"-m {KONTEXT} -i {picture} -s 1")
    assert current_session().routes[hub.url]
    oxen_magic.session.session.reset_session()
    assert current_session().routes == {}
    hub.reset()
    assert cell(shell, f"-m {KONTEXT} -i {picture} -s 2", out="again")[0].ok
    assert paths(hub) == [(EDIT_PATH, 404), (GENERATE_PATH, 200)]


def test_no_fallback_for_an_unknown_model_or_a_text_only_request(hub: LocalHub) -> None:
    client = OxenClient(hub.url, hub.api_key, max_retries=0)
    with pytest.raises(NotFoundError):
        client.generate_payload(
            {"model": "no-such-model", "prompt": PROMPT, "input_image": "data:x"}, path=EDIT_PATH
        )
    assert len(paths(hub)) == 1  # "Model not found" is about the model: no other route helps
    hub.reset()
    hub.input_route = "generate"
    with pytest.raises(NotFoundError):
        client.generate_payload({"model": "z-image-turbo", "prompt": PROMPT}, path=EDIT_PATH)
    assert paths(hub) == [(EDIT_PATH, 404)] and client.routes == {}


# -- 3. long jobs that are never lost --------------------------------------------------------------


def test_a_gateways_bare_503_is_not_resent_and_may_have_billed(hub: LocalHub, shell: Any) -> None:
    fast_client(shell)
    hub.fail_next(1, 503, gateway=True, after_billing=True)  # an HTML page, no Retry-After
    r = cell(shell, "-m z-image-turbo -s 1")
    assert r[0].status == "failed" and "may have been made and billed" in (r[0].error or "")
    assert [c.status for c in hub.generate_calls()] == [503] and hub.billed == 1
    spend = oxen_magic.spend()
    assert (spend.images, spend.possibly) == (0, 1) and spend.charges[0].gateway == 503
    assert "1 more may have been billed (gateway error 503, $0.002)" in spend.summary()


@pytest.mark.parametrize(
    "fault", [{"gateway": False}, {"gateway": True, "retry_after": 0}, {"retry_after": "0"}], ids=str
)
def test_a_503_that_says_it_was_not_processed_is_resent(
    hub: LocalHub, shell: Any, fault: dict[str, Any]
) -> None:
    fast_client(shell)
    hub.fail_next(2, 503, **fault)  # the API's JSON error, or any page with a Retry-After
    r = cell(shell, "-m z-image-turbo -s 1")
    assert r[0].ok and [c.status for c in hub.generate_calls()] == [503, 503, 200]
    assert oxen_magic.spend().possibly == 0


def test_a_read_timeout_after_sending_is_recorded_as_possibly_billed(hub: LocalHub, shell: Any) -> None:
    fast_client(shell, timeout=(5.0, 0.3))
    hub.latency = 0.8
    r = cell(shell, "-m z-image-turbo -s 1")
    assert "may have been made and billed" in (r[0].error or "")
    spend = oxen_magic.spend()
    assert (spend.images, spend.possibly) == (0, 1) and spend.charges[0].gateway == TIMED_OUT
    assert "1 more may have been billed (no answer, $0.002)" in spend.summary()


def test_slow_requests_get_a_longer_read_timeout(hub: LocalHub, shell: Any, picture: Path) -> None:
    fast_client(shell, timeout=(5.0, 0.3))  # text-to-image waits 0.3 s here ...
    hub.latency = 0.8
    r = cell(shell, f"-m {KONTEXT} -i {picture} -s 1")  # ... an edit waits SLOW_READ
    assert r[0].ok and r[0].request.read_timeout == SLOW_READ
    spec = build_spec("-m topazlabs-image-upscale -i https://example.invalid/a.png", "")
    upscale = make_plan(spec, {"topazlabs-image-upscale": CATALOGUE["topazlabs-image-upscale"]})
    assert upscale.requests[0].read_timeout == SLOW_READ
    text = make_plan(build_spec("-m z-image-turbo", PROMPT), {"z-image-turbo": CATALOGUE["z-image-turbo"]})
    assert text.requests[0].read_timeout is None


def test_the_read_timeout_from_the_environment(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    client = OxenClient(hub.url, hub.api_key, timeout=(5.0, 0.3), max_retries=0)
    hub.latency = 0.8
    monkeypatch.setenv("OXEN_MAGIC_READ_TIMEOUT", "30")
    assert client.generate("z-image-turbo", PROMPT, seed=1).size
    assert client.generate_payload({"model": "z-image-turbo", "prompt": PROMPT}, read_timeout=30).size
    monkeypatch.delenv("OXEN_MAGIC_READ_TIMEOUT")
    with pytest.raises(oxen_magic.core.errors.NetworkError) as info:
        client.generate("z-image-turbo", PROMPT, seed=2)
    assert info.value.maybe_billed


def test_a_502_or_504_is_marked_maybe_billed(hub: LocalHub) -> None:
    client = OxenClient(hub.url, hub.api_key, max_retries=2, backoff=0.001)
    for status in (502, 504):
        hub.fail_next(1, status)
        with pytest.raises(ServerError) as info:
            client.generate("z-image-turbo", PROMPT, seed=1)
        assert info.value.maybe_billed and info.value.billed_marker == status
    assert len(hub.generate_calls()) == 2


# -- 4. the stand-in follows the docs --------------------------------------------------------------


def test_result_links_are_presigned_by_default_and_the_client_works_both_ways(
    hub: LocalHub, shell: Any
) -> None:
    assert hub.require_auth_for_files is False
    r = cell(shell, "-m z-image-turbo -s 1")
    assert r[0].ok and requests.get(r[0].url, timeout=30).status_code == 200  # no header needed
    hub.require_auth_for_files = True  # the strict reading: the client sends the key to its origin
    strict = cell(shell, "-m z-image-turbo -s 2", out="strict")
    assert strict[0].ok and requests.get(strict[0].url, timeout=30).status_code == 401


def test_per_second_pricing_is_shown_and_named_unknown(hub: LocalHub, shell: Any) -> None:
    table = oxen_magic.models()
    row = {r[0]: r for r in table.rows()}[FINE_TUNED_ID]
    assert row[1] == "$0.0012/s"
    assert "&#36;0.0012/s" in table._repr_html_()  # a $ is written so MathJax never reads maths
    current_session().configure(max_spend=5.0)
    captured, error = run_cell(shell, f"-m {FINE_TUNED_ID} -s 1..2 --dry-run", PROMPT)
    assert error is None
    assert "priced per second (&#36;0.0012/s) and its typical duration is unknown" in shown_html(captured)
    r = cell(shell, f"-m {FINE_TUNED_ID} -s 1")
    assert any("no listed price" in n for n in r.notes)  # the budget note names it unknown


def test_per_second_pricing_is_estimated_where_a_typical_duration_is_known() -> None:
    obj = {
        "id": "oxen:me/tuned",
        "pricing": {"method": "time", "cost_per_second": 0.0012, "typical_seconds": 10},
    }
    info = ModelInfo.from_api(obj)
    assert info.price_text == "$0.0012/s" and info.estimate == pytest.approx(0.012)
    plan = make_plan(build_spec("-m oxen:me/tuned -s 1..3", PROMPT), {"oxen:me/tuned": info})
    assert plan.cost == pytest.approx(0.036) and plan.prices["oxen:me/tuned"] == pytest.approx(0.012)
    assert any("estimated at its typical 10 s per image" in n for n in plan.notes)


def test_the_local_hub_filters_the_list_and_searches(hub: LocalHub) -> None:
    auth = {"Authorization": f"Bearer {hub.api_key}"}

    def ids(query: str) -> set[str]:
        got = requests.get(hub.url + "/api/ai/models" + query, headers=auth, timeout=30).json()["data"]
        return {m["id"] for m in got}

    bfl = ids("?developer_name=black-forest-labs")
    assert bfl and all(m.startswith(("flux", "black-forest")) for m in bfl) and "z-image-turbo" not in bfl
    assert ids("?action=edit") >= {KONTEXT} and "z-image-turbo" not in ids("?action=edit")
    assert ids("/search?search=kontext") == {KONTEXT}
    assert ids("/search?search=flux&developer_name=black-forest-labs") <= bfl
    assert ids("/search?search=flux&developer_name=alibaba") == set()


def test_list_models_takes_a_search_word_and_a_developer(hub: LocalHub, shell: Any, tmp_path: Path) -> None:
    table = oxen_magic.models(search="flux", developer="black-forest-labs")
    assert table.ids and all("flux" in m for m in table.ids)
    sent = [r.path for r in hub.requests if r.path.startswith("/api/ai/models?") or "/search" in r.path]
    assert sent == ["/api/ai/models/search?search=flux&developer_name=black-forest-labs"]
    assert [m.id for m in oxen_magic.models(developer="alibaba")] == sorted(
        m.id for m in oxen_magic.models() if m.raw.get("owned_by") == "alibaba"
    )
    captured, error = run_cell(shell, "--list-models kontext --developer black-forest-labs")
    assert error is None and KONTEXT in shown_html(captured) and "z-image-turbo" not in shown_html(captured)
    _, error = run_cell(shell, "--developer alibaba -m z-image-turbo", PROMPT)
    assert error is not None and "--developer filters --list-models" in error
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    listed = subprocess.run(
        [sys.executable, "-m", "oxen_magic", "--list-models", "kontext"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0 and KONTEXT in listed.stdout and "z-image-turbo" not in listed.stdout
    assert json.dumps(hub.api_key) not in listed.stdout + listed.stderr
