"""The session behind every front end, the plain-Python API, spend, budgets, namespace and the
local hub one word away. Against the real local hub over loopback, through a real shell where a
notebook user would meet it."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import html_outputs, run_cell, shown_html, wait_for_no_oxen_threads

import oxen_magic
from oxen_magic.core.errors import UsageProblem
from oxen_magic.localhub import LocalHub
from oxen_magic.session.session import current_session, reset_session

PROMPT = "a red cube on a white background"
TURBO, DEV = "z-image-turbo", "flux-2-dev"  # $0.002 and $0.025 per image on the local hub


def bodies(hub: LocalHub) -> list[dict[str, Any]]:
    return sorted(
        (r.body or {} for r in hub.generate_calls()), key=lambda b: (b["model"], b.get("seed") or 0)
    )


# -- generate() and models(): no IPython needed --------------------------------------------------
def test_generate_takes_python_values_and_the_magic_strings(oxen_env: Path, hub: LocalHub) -> None:
    grid = oxen_magic.generate(PROMPT, model=[TURBO, DEV], seed=range(1, 3), aspect_ratio="1:1")
    assert isinstance(grid, oxen_magic.Results)
    assert grid.done == 4 and grid.failed == 0
    assert grid[DEV, 2].params == {"model": DEV, "prompt": PROMPT, "aspect_ratio": "1:1", "seed": 2}
    first = bodies(hub)
    hub.reset()
    again = oxen_magic.generate(PROMPT, model=f"{TURBO},{DEV}", seed="1..2", aspect_ratio="1:1")
    assert all(i.cached for i in again) and hub.generate_calls() == []
    assert [i.data for i in again] == [i.data for i in grid]
    hub.reset()
    fresh = oxen_magic.generate(PROMPT, model=[TURBO, DEV], seeds=[1, 2], aspect_ratio="1:1", no_cache=True)
    assert bodies(hub) == first and fresh.done == 4


def test_generate_options_and_prompts(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    grid = oxen_magic.generate(
        ["a {brace} cube", "a kite"],
        model=DEV,
        seed=7,
        steps=[4, 8],
        param={"guidance": 3},
        save=tmp_path / "o",
    )
    assert grid.done == 4
    assert {i.prompt for i in grid} == {"a {brace} cube", "a kite"}  # braces literal without variables
    assert {b["num_inference_steps"] for b in bodies(hub)} == {4, 8}
    assert len(list((tmp_path / "o").glob("*.png"))) == 4
    filled = oxen_magic.generate("a {colour} kite", variables={"colour": "red"}, model=TURBO, seed=1)
    assert filled[0].prompt == "a red kite"


def test_generate_bad_input_is_one_sentence_and_sends_nothing(oxen_env: Path, hub: LocalHub) -> None:
    with pytest.raises(UsageProblem, match=r"^The seed range '4\.\.1' runs backwards") as info:
        oxen_magic.generate(PROMPT, seed="4..1")
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(UsageProblem, match="Model not found"):
        oxen_magic.generate(PROMPT, model="flux-2-devv", seed=1)
    with pytest.raises(UsageProblem, match="empty"):
        oxen_magic.generate(PROMPT, seed=range(3, 3))
    with pytest.raises(TypeError, match="colour"):
        oxen_magic.generate(PROMPT, colour="red")
    with pytest.raises(UsageProblem, match="API keys are never taken"):
        oxen_magic.generate(PROMPT, api_key="x")
    assert hub.generate_calls() == []


def test_generate_dry_run_and_show_in_a_plain_process(
    oxen_env: Path, hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = oxen_magic.generate(PROMPT, model=TURBO, seed="1..3", dry_run=True)
    assert plan.done == 0 and any("Dry run: 3 image(s)" in n for n in plan.notes)
    assert hub.generate_calls() == []
    oxen_magic.generate(PROMPT, model=TURBO, seed="1..2")
    assert capsys.readouterr().err == ""  # nothing shown unless asked
    oxen_magic.generate(PROMPT, model=TURBO, seed="1..3", show=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "from cache" in err


def test_models_is_a_list_with_prices(oxen_env: Path, hub: LocalHub) -> None:
    table = oxen_magic.models()
    assert len(table) > 10 and DEV in table.ids
    dev = next(m for m in table if m.id == DEV)
    assert dev.cost_per_image == 0.025
    assert "$0.025" in repr(table) and "<table" in table._repr_html_()


# -- spend ----------------------------------------------------------------------------------------
def test_spend_counts_billed_images_not_cached_ones(shell: Any, hub: LocalHub) -> None:
    _, error = run_cell(shell, f"--model {TURBO},{DEV} --seed 1..2", PROMPT)
    assert error is None
    spent = oxen_magic.spend()
    assert spent.images == 4 and spent.total == pytest.approx(2 * 0.002 + 2 * 0.025)
    _, error = run_cell(shell, f"--model {TURBO},{DEV} --seed 1..3 --out r", PROMPT)  # 4 cached, 2 new
    assert error is None
    spent = oxen_magic.spend()
    assert spent.images == 6 and spent.total == pytest.approx(3 * 0.002 + 3 * 0.025)
    assert [(m, n) for m, n, _, _ in spent.by_model()] == [(DEV, 3), (TURBO, 3)]
    assert "$0.081" in repr(spent) and "6 image(s) billed" in repr(spent)
    captured, error = run_cell(shell, "--spend")
    assert error is None and "&#36;0.081" in html_outputs(captured)[0]
    assert "$" not in html_outputs(captured)[0]  # JupyterLab would read $...$ as maths


def test_a_gateway_error_after_billing_is_shown_as_possibly_billed(shell: Any, hub: LocalHub) -> None:
    hub.fail_next(1, 504, after_billing=True)  # the image is made (billed), then a gateway 504
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2 --concurrency 1", PROMPT)
    assert error is None and hub.billed == 2
    spent = oxen_magic.spend()
    assert spent.images == 1 and spent.total == pytest.approx(0.025)  # only what arrived
    assert spent.possibly == 1 and spent.possible_total == pytest.approx(0.025)
    assert "1 more may have been billed (gateway error 504, $0.025)" in repr(spent)
    captured, error = run_cell(shell, "--spend")
    assert error is None and "1 more may have been billed (gateway error 504" in html_outputs(captured)[0]


def test_an_image_arriving_after_stop_is_recorded_once(oxen_env: Path, hub: LocalHub) -> None:
    hub.latency = 0.6
    stop = threading.Event()

    def stop_once_sent() -> None:  # Stop while the first request is in flight
        hub.wait_until(lambda: hub.in_flight >= 1)
        stop.set()

    threading.Thread(target=stop_once_sent, daemon=True).start()
    results = oxen_magic.generate(PROMPT, model=DEV, seed="1..3", concurrency=1, cancel=stop, show=False)
    assert results.interrupted and results.done == 0  # the grid froze before the image came
    assert wait_for_no_oxen_threads(timeout=5.0) == []
    assert hub.billed == 1
    spent = oxen_magic.spend()
    assert spent.images == 1 and spent.total == pytest.approx(0.025) and spent.possibly == 0
    hub.latency = 0.0
    again = oxen_magic.generate(PROMPT, model=DEV, seed="1..3", show=False)  # 1 cached, 2 new
    assert again.done == 3 and hub.billed == 3
    assert oxen_magic.spend().images == 3


def test_cost_line_counts_only_what_will_be_sent(shell: Any, hub: LocalHub) -> None:
    run_cell(shell, f"--model {TURBO} --seed 1..11", PROMPT)
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..12 --dry-run --out plan", PROMPT)
    assert error is None
    assert any(
        "12 image(s) planned (11 from cache, est. $0.002 for 1 new)" in n for n in shell.user_ns["plan"].notes
    )
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..12", PROMPT)
    page = shown_html(captured)
    assert "11 from cache" in page and "est. &#36;0.002 for 1 new" in page


# -- budgets --------------------------------------------------------------------------------------
def test_budget_refuses_before_sending_and_says_what_is_left(shell: Any, hub: LocalHub) -> None:
    shell.run_line_magic("config", "OxenMagic.max_spend = 0.06")
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2", PROMPT)  # $0.05
    assert error is None
    hub.reset()
    captured, error = run_cell(shell, f"--model {DEV} --seed 1..4", PROMPT)  # 2 cached + 2 new = $0.05
    assert error is not None and error.count(".") <= 6 and "\n" not in error
    assert "$0.050" in error and "$0.010 left" in error and "max_spend" in error
    assert hub.generate_calls() == [] and html_outputs(captured) == []
    _, error = run_cell(shell, f"--model {DEV} --seed 1..2", PROMPT)  # all cached: free
    assert error is None
    _, error = run_cell(shell, f"--model {TURBO} --seed 1..5", PROMPT)  # $0.010 fits exactly
    assert error is None and len(hub.generate_calls()) == 5
    shell.run_line_magic("config", "OxenMagic.max_spend = 0")  # 0: no budget
    _, error = run_cell(shell, f"--model {DEV} --seed 5", PROMPT)
    assert error is None


def test_budget_from_the_environment(oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "0.03")
    with pytest.raises(UsageProblem, match=r"the \$0\.030 left of your \$0\.030 budget"):
        oxen_magic.generate(PROMPT, model=DEV, seed="1..2")
    assert hub.generate_calls() == []
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "lots")
    with pytest.raises(UsageProblem, match="OXEN_MAGIC_MAX_SPEND='lots' is not an amount"):
        oxen_magic.generate(PROMPT, model=DEV, seed=1)


def test_budget_says_unknown_prices(shell: Any, hub: LocalHub) -> None:
    for model in hub.models:
        if model["id"] == TURBO:
            model.pop("pricing", None)
    shell.run_line_magic("config", "OxenMagic.max_spend = 1")
    _, error = run_cell(shell, f"--model {TURBO} --seed 1..2 --out r", PROMPT)
    assert error is None
    assert any("2 new image(s) have no listed price" in n for n in shell.user_ns["r"].notes)
    assert oxen_magic.spend().images == 2 and oxen_magic.spend().unpriced == 2


# -- namespace --------------------------------------------------------------------------------------
def test_namespace_config_reaches_every_front_end(shell: Any, hub: LocalHub) -> None:
    shell.run_line_magic("config", "OxenMagic.namespace = 'the-class'")
    run_cell(shell, f"--model {TURBO} --seed 1", PROMPT)
    oxen_magic.generate(PROMPT, model=TURBO, seed=2)
    run_cell(shell, f"--model {TURBO} --seed 3 --namespace mine", PROMPT)  # the line wins
    assert [b.get("target_namespace") for b in bodies(hub)] == ["the-class", "the-class", "mine"]


# -- the local hub one word away ---------------------------------------------------------------------
def test_host_local_needs_no_environment(oxen_env: Path, shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXEN_HOST")
    monkeypatch.delenv("OXEN_API_KEY")
    _, error = run_cell(shell, f"--host local --model {TURBO} --seed 1..2 --out r", PROMPT)
    assert error is None and shell.user_ns["r"].done == 2
    local = current_session().local_hub
    assert local is not None and len(local.generate_calls()) == 2
    shell.run_line_magic("config", "OxenMagic.host = 'local'")
    _, error = run_cell(shell, f"--model {TURBO} --seed 1..3 --out r", PROMPT)
    assert error is None and sum(i.cached for i in shell.user_ns["r"]) == 2
    assert len(local.generate_calls()) == 3  # the same hub, reused


def test_local_results_are_cached_across_hub_restarts(
    oxen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    oxen_magic.connect("local")
    first = oxen_magic.generate(PROMPT, model=TURBO, seed="1..2")
    url = current_session().local_hub.url
    assert first.done == 2 and not any(i.cached for i in first)
    reset_session()  # a new kernel: a new hub on another port
    oxen_magic.connect("local")
    assert current_session().local_hub.url != url
    again = oxen_magic.generate(PROMPT, model=TURBO, seed="1..2")
    assert all(i.cached for i in again) and current_session().local_hub.generate_calls() == []


def test_no_key_names_both_ways_on(oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    with pytest.raises(oxen_magic.core.errors.MissingKeyError) as info:  # type: ignore[attr-defined]
        oxen_magic.generate(PROMPT, model=TURBO, seed=1)
    text = str(info.value)
    assert "oxen_magic.login()" in text and "--host local" in text and "\n" not in text
    assert hub.generate_calls() == []


def test_refused_key_is_said_before_any_grid(
    shell: Any, monkeypatch: pytest.MonkeyPatch, make_hub: Callable[..., LocalHub]
) -> None:
    """Model reads carry the key (the documented reading), so a refused key stops the cell at
    the first read, before a grid is drawn or an image is asked for."""
    if "anonymous_reads" not in inspect.signature(LocalHub).parameters:
        pytest.skip("needs the hub's anonymous_reads knob (issue 11)")
    strict = make_hub(image_size=64, api_key="the-right-key", anonymous_reads=False)
    monkeypatch.setenv("OXEN_HOST", strict.url)
    monkeypatch.setenv("OXEN_API_KEY", "not-the-key")
    captured, error = run_cell(shell, f"--model {TURBO} --seed 1..2", PROMPT)
    assert error is not None and "\n" not in error and "not-the-key" not in error
    assert html_outputs(captured) == [] and strict.generate_calls() == []
