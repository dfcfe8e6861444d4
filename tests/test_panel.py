"""The `%oxenpanel` widget panel, driven from Python against the local hub over loopback.

The controls are set as a user would, `generate_button.click()` starts a background run, and
`panel.wait()` blocks until it ends. Every test checks that no panel or runner thread outlives it.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import importlib
import io
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

import oxen_magic
from oxen_magic.display.live import live_parts
from oxen_magic.frontends.magic import OxenMagic
from oxen_magic.frontends.panel import ModelsText, Panel
from oxen_magic.localhub import LocalHub
from oxen_magic.localhub.placeholder import input_sha_of
from oxen_magic.session.session import current_session

PROMPT = "a red cube on a white background"
KLEIN = "black-forest-labs-flux-2-klein-4b"  # the default model: aspect ratios 1:1 16:9 9:16 4:3 3:4
DEV = "flux-2-dev"  # aspect ratios also 3:2 2:3 match_input_image; steps 1-50
TURBO = "z-image-turbo"  # no aspect_ratio; steps 1-50


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("oxen-panel", "oxen-magic"))]


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    for thread in _our_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not _our_threads(), "a panel or runner thread outlived the test"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_hub: Callable[..., LocalHub]) -> LocalHub:
    running = make_hub(image_size=64)
    monkeypatch.setenv("OXEN_HOST", running.url)
    monkeypatch.setenv("OXEN_API_KEY", running.api_key or "")
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path / "cache"))
    return running


@pytest.fixture
def shell() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture
def magic(shell: InteractiveShell) -> Iterator[OxenMagic]:
    made = OxenMagic(shell=shell)  # joins shell.configurables, so %config reaches it
    shell.register_magics(made)
    yield made
    shell.config.pop("OxenMagic", None)  # a test's %config must not become the next one's default
    while made in shell.configurables:
        shell.configurables.remove(made)


@pytest.fixture
def panels() -> Iterator[list[Panel]]:
    """Panels made in a test are closed (any run stopped) at its end."""
    made: list[Panel] = []
    yield made
    for panel in made:
        panel.close()


@pytest.fixture
def make(magic: OxenMagic, panels: list[Panel]):  # type: ignore[no-untyped-def]
    def build(line: str = "", **initial: object) -> Panel:
        panel = Panel(magic.shell, line=line, **initial)
        panels.append(panel)
        return panel

    return build


def _fill(panel: Panel, models: tuple[str, ...] = (KLEIN, DEV), seeds: str = "1..2") -> None:
    panel.prompt.value = PROMPT
    panel.models.value = models
    panel.seeds.value = seeds


def _run(panel: Panel) -> None:
    assert not panel.generate_button.disabled, panel.errors
    panel.generate_button.click()
    assert panel.wait(15), "the run did not finish"


# -- generating ------------------------------------------------------------------------------------
def test_generate_fills_grid_in_background(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    hub.latency = 0.1
    _fill(panel)
    panel.generate_button.click()
    assert panel.running  # the click returned while the run goes on
    assert panel.generate_button.disabled and not panel.stop_button.disabled
    assert panel.wait(15)
    assert not panel.running
    result = panel.result
    assert result is not None and result.total == 4 and result.done == 4
    assert {(i.model, i.seed) for i in result} == {(m, s) for m in (KLEIN, DEV) for s in (1, 2)}
    assert len(hub.generate_calls()) == 4
    assert panel.output.value.count("<img") == 4
    assert panel.progress.value == 4 and panel.progress.description == "4/4"
    assert not panel.generate_button.disabled and panel.stop_button.disabled
    assert len(panel.history.children) == 1 and len(panel.entries) == 1
    bundle = panel._repr_mimebundle_()
    assert bundle is not None and "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("<img") == 4  # what nbviewer and static exports show


def test_double_click_while_running_is_ignored(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    hub.latency = 0.3
    _fill(panel)
    panel.generate_button.click()
    panel.generate_button.click()
    assert panel.generate() is False
    assert "Already generating" in panel.status.value
    assert panel.wait(15)
    assert panel.result.done == 4
    assert len(hub.generate_calls()) == 4  # the plan's size, never doubled


def test_stop_keeps_what_arrived(hub: LocalHub, magic: OxenMagic, make) -> None:  # type: ignore[no-untyped-def]
    magic.concurrency = 1
    panel = make()
    hub.latency = 0.5
    _fill(panel, models=(TURBO,), seeds="1..6")
    panel.generate_button.click()
    # re-checked at each request's arrival, admission and answer, which go on while it runs
    hub.wait_until(lambda: panel.result is not None and panel.result.done >= 1, timeout=10)
    panel.stop_button.click()
    assert panel.wait(10)
    result = panel.result
    assert result.interrupted
    assert 1 <= result.done < 6
    assert all(i.data for i in result if i.status == "done")  # kept
    assert {i.status for i in result} <= {"done", "cancelled"}
    assert panel.output.value.count("<img") == result.done
    assert "Stopped" in panel.status.value
    for thread in _our_threads():  # the request in flight at Stop finishes in the background
        thread.join(5)
    assert len(hub.generate_calls()) < 6


def test_uses_config_concurrency(hub: LocalHub, shell: InteractiveShell, magic: OxenMagic, make) -> None:  # type: ignore[no-untyped-def]
    shell.run_line_magic("config", "OxenMagic.concurrency = 2")
    assert magic.concurrency == 2
    panel = make()
    hub.latency = 0.15
    _fill(panel, models=(TURBO,), seeds="1..6")
    _run(panel)
    assert panel.result.done == 6
    assert 1 <= hub.peak_in_flight <= 2


def test_a_filling_grid_is_redrawn_by_row_not_whole(  # type: ignore[no-untyped-def]
    hub: LocalHub, shell: InteractiveShell, magic: OxenMagic, make
) -> None:
    """Issue 22: the panel resends only the rows that changed, as the magic does (live.py), so a
    sweep does not push its whole grid through the comm at every redraw."""
    shell.run_line_magic("config", "OxenMagic.concurrency = 2")  # images arrive in 8 waves
    panel = make()
    hub.latency = 0.15
    _fill(panel, models=(KLEIN, DEV), seeds="1..8")
    sent: list[int] = []  # bytes of every value the browser would be sent, per piece

    def watch(change: dict[str, object]) -> None:
        for child in change["new"]:  # type: ignore[attr-defined]
            if not getattr(child, "_watched", False):
                child._watched = True
                sent.append(len(child.value))
                child.observe(lambda c: sent.append(len(c["new"])), names="value")

    panel.output.observe(watch, names="children")
    _run(panel)
    assert panel.result.done == 16 and panel.output.value.count("<img") == 16
    rows = len(live_parts(panel.result)) - 1  # table rows (wrapped at the fitted column count)
    assert rows > 2 and len(panel.output.children) == 1 + rows  # the progress line, then a row each
    final = len(panel.output.value)
    assert len(sent) > 1 + rows  # rows were redrawn while filling ...
    assert sum(sent) <= 3 * final, (sum(sent), final)  # ... without resending the whole grid


def test_seeded_rerun_comes_from_the_cache(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(TURBO,), seeds="1..2")
    _run(panel)
    _run(panel)
    assert len(hub.generate_calls()) == 2
    assert all(i.cached for i in panel.result)
    assert len(panel.entries) == 2


def test_history_restore(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(TURBO,), seeds="1")
    _run(panel)
    first = panel.result
    _fill(panel, models=(DEV,), seeds="2..3")
    panel.aspect_ratio.value = "1:1"
    _run(panel)
    assert len(panel.history.children) == 2
    entry = panel.history.children[1]  # newest first
    assert "--model z-image-turbo --seed 1" in entry.children[1].value
    assert entry.children[0].value  # the thumbnail
    restore = entry.children[2]
    assert "oxen-restore" in restore._dom_classes
    restore.click()
    assert panel.result is first
    assert panel.models.value == (TURBO,) and panel.seeds.value == "1" and panel.aspect_ratio.value == ""
    assert panel.magic_line.value == "%%oxenimage --model z-image-turbo --seed 1"
    assert panel.output.value.count("<img") == 1


def test_prompt_template_uses_the_users_variables(hub: LocalHub, shell: InteractiveShell, make) -> None:  # type: ignore[no-untyped-def]
    shell.user_ns["animal"] = "otter"
    panel = make()
    _fill(panel, models=(TURBO,), seeds="1")
    panel.prompt.value = "a {animal} in a hat"
    _run(panel)
    assert panel.result[0].prompt == "a otter in a hat"
    panel.prompt.value = "a {nosuchname}"
    assert "no variable 'nosuchname'" in panel.errors["prompt"]
    assert "but no variable &#x27;nosuchname&#x27; is defined" in panel.messages["prompt"].value
    assert panel.generate_button.disabled


def test_out_option_stores_the_result(hub: LocalHub, shell: InteractiveShell, make) -> None:  # type: ignore[no-untyped-def]
    panel = make("--out grid_from_panel")
    _fill(panel, models=(TURBO,), seeds="1")
    assert panel.extra_options.value == "--out grid_from_panel"
    _run(panel)
    assert shell.user_ns.pop("grid_from_panel") is panel.result


# -- the magic line --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("controls", "line"),
    [
        ({}, f"%%oxenimage --model {KLEIN}"),
        ({"models": (KLEIN, DEV), "seeds": "1..2"}, f"%%oxenimage --model {KLEIN},{DEV} --seed 1..2"),
        (
            {"models": (DEV,), "seeds": "1..10:3", "aspect_ratio": "1:1", "steps": "20"},
            f"%%oxenimage --model {DEV} --seed 1..10:3 --aspect-ratio 1:1 --steps 20",
        ),
        ({"models": (TURBO,), "steps": " 10,20 "}, f"%%oxenimage --model {TURBO} --steps 10,20"),
        ({"models": (TURBO,), "seeds": "1, 5"}, f"%%oxenimage --model {TURBO} --seed '1, 5'"),
        (
            {"models": (TURBO,), "seeds": "random:4", "extra_options": "--size 128 --no-cache"},
            f"%%oxenimage --model {TURBO} --seed random:4 --size 128 --no-cache",
        ),
        ({"models": ()}, "%%oxenimage"),
    ],
)
def test_magic_line(hub: LocalHub, make, controls: dict[str, object], line: str) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    panel.prompt.value = PROMPT
    for name, value in controls.items():
        getattr(panel, name).value = value
    assert panel.magic_line.value == line
    assert panel.cell_text == f"{line}\n{PROMPT}"


def test_magic_line_is_read_only(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    panel.magic_line.value = "%%oxenimage --model something-else"
    assert panel.magic_line.value == f"%%oxenimage --model {KLEIN}"


def test_oxenpanel_line_sets_initial_values(hub: LocalHub, shell: InteractiveShell, panels) -> None:  # type: ignore[no-untyped-def]
    panel = shell.run_line_magic("oxenpanel", "--model z-image-turbo --seed 3")
    panels.append(panel)
    assert isinstance(panel, Panel)
    assert panel.models.value == (TURBO,)
    assert panel.seeds.value == "3"
    assert panel.magic_line.value == "%%oxenimage --model z-image-turbo --seed 3"
    assert panel.errors == {"prompt": "Write a prompt first."}

    other = shell.run_line_magic(
        "oxenpanel", "-m flux-2-dev -a 3:2 -n 12 --size 128 --no-cache --param guidance=3 a small boat"
    )
    panels.append(other)
    assert other.prompt.value == "a small boat"
    assert (other.models.value, other.aspect_ratio.value, other.steps.value) == ((DEV,), "3:2", "12")
    # a model without guidance keeps the parameter in the line, where it is flagged
    turbo = shell.run_line_magic("oxenpanel", "-m z-image-turbo --param guidance=3 a kite")
    panels.append(turbo)
    assert not turbo.guidance_knob.number and turbo.extra_options.value == "--param guidance=3"
    assert "z-image-turbo has no parameter 'guidance'" in turbo.errors["extra_options"]
    # guidance goes to its slider (not "More options"); steps 12 shows on the steps slider
    assert other.extra_options.value == "--size 128 --no-cache"
    assert other.guidance_knob.number == 3.0 and other.steps_knob.number == 12
    assert other.magic_line.value == (
        "%%oxenimage --model flux-2-dev --aspect-ratio 3:2 --steps 12 "
        "--param guidance=3 --size 128 --no-cache"
    )


def test_panel_function_keyword_values(
    hub: LocalHub, shell: InteractiveShell, magic: OxenMagic, panels
) -> None:  # type: ignore[no-untyped-def]
    panel = oxen_magic.panel(model=[TURBO, DEV], seed=range(1, 5), steps=8, prompt="a kite", size=128)
    panels.append(panel)
    assert panel.shell is shell and panel.session is current_session()
    assert panel.prompt.value == "a kite"
    assert panel.magic_line.value == f"%%oxenimage --model {TURBO},{DEV} --seed 1..4 --steps 8 --size 128"
    assert not panel.errors and not panel.generate_button.disabled
    with pytest.raises(TypeError, match="colour"):
        oxen_magic.panel(colour="red")
    importlib.import_module("oxen_magic.frontends.panel")  # importing the module must not shadow the function

    again = oxen_magic.panel(model=TURBO)
    panels.append(again)
    assert callable(oxen_magic.panel) and again.models.value == (TURBO,)


def test_unusable_line_is_refused(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="never taken as an option"):
        make("--api-key abc")
    with pytest.raises(UsageError, match="did you mean --seed"):
        make("--seeds 3")


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("control", "value", "where", "words"),
    [
        ("prompt", "   ", "prompt", "Write a prompt"),
        ("seeds", "1..x", "seeds", "'1..x' is not a seed number or range"),
        ("seeds", "5..1", "seeds", "runs backwards"),
        ("models", (), "models", "Pick at least one model"),
        ("aspect_ratio", "3:2", "aspect_ratio", f"aspect_ratio=3:2 is not allowed for {KLEIN}"),
        ("steps", "60", "steps", "num_inference_steps=60 is out of range"),
        ("steps", "ten", "steps", "'ten' is not a steps number"),
        ("extra_options", "--seed 4", "extra_options", "Set --seed with the Seeds control"),
        ("extra_options", "--colour red", "extra_options", "Unknown option --colour"),
    ],
)
def test_invalid_input_is_shown_and_blocks_generate(  # type: ignore[no-untyped-def]
    hub: LocalHub, make, control: str, value: object, where: str, words: str
) -> None:
    panel = make()
    _fill(panel, models=(DEV, KLEIN) if control == "aspect_ratio" else (DEV,))
    assert not panel.errors and not panel.generate_button.disabled
    if control == "aspect_ratio":  # 3:2 was offered for flux-2-dev alone, then klein was added
        panel.models.value = (DEV,)
        panel.aspect_ratio.value = value
        panel.models.value = (DEV, KLEIN)
    else:
        getattr(panel, control).value = value
    assert words in panel.errors[where]
    message = panel.messages[where]
    assert words.replace("'", "&#x27;") in message.value
    assert f"oxen-{where.replace('_', '-')}-message" in message._dom_classes
    assert panel.generate_button.disabled
    panel.generate_button.click()
    assert not panel.running and panel.result is None
    assert hub.generate_calls() == []


def test_fixing_the_problem_enables_generate(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(TURBO,), seeds="1..x")
    assert panel.generate_button.disabled
    panel.seeds.value = "1..2"
    assert not panel.errors and panel.messages["seeds"].value == ""
    assert not panel.generate_button.disabled
    assert "Ready: 2 images" in panel.status.value


def test_too_many_images_is_refused_before_sending(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(TURBO,), seeds="1..100")
    assert "more than the limit of 64" in panel.errors["general"]
    assert panel.generate_button.disabled


def test_aspect_ratio_choices_follow_the_models(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    panel.models.value = (DEV,)
    values = [v for _label, v in panel.aspect_ratio.options]
    assert values == ["", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"]  # no match_input_image
    panel.models.value = (DEV, KLEIN)
    values = [v for _label, v in panel.aspect_ratio.options]
    assert values == ["", "1:1", "16:9", "9:16", "4:3", "3:4"]
    panel.models.value = ("bytedance-seedream-4",)  # takes no aspect_ratio at all
    assert [v for _label, v in panel.aspect_ratio.options] == [""]
    assert panel.aspect_ratio.disabled
    assert panel.steps.placeholder == "not used by these models"
    panel.models.value = (TURBO, DEV)
    assert panel.steps.placeholder.startswith("1–50")


def test_unlisted_model_is_noted_not_blocked(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make("--model flux2-dev --seed 1 a cat")
    assert "flux2-dev" in [value for _label, value in panel.models.options]
    assert "Model not found: flux2-dev; did you mean flux-2-dev" in panel.messages["models"].value
    assert not panel.errors  # a private model may exist without being listed
    _run(panel)  # the pipeline asks the API, which says no: shown, nothing generated
    assert "Model not found: flux2-dev" in panel.status.value
    assert panel.result is None and hub.generate_calls() == []


# -- no model list ---------------------------------------------------------------------------------
def test_unreachable_host_falls_back_to_typed_model_ids(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OXEN_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OXEN_API_KEY", "unused")
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path))
    panel = make("--model z-image-turbo")
    assert isinstance(panel.models, ModelsText)
    assert "Could not fetch the model list" in panel.messages["models"].value
    assert panel.models.value == (TURBO,)
    panel.models.text.value = f"{TURBO}, {DEV},{TURBO}"
    assert panel.models.value == (TURBO, DEV)
    panel.prompt.value = PROMPT
    panel.seeds.value = "1"
    assert panel.magic_line.value == f"%%oxenimage --model {TURBO},{DEV} --seed 1"
    assert not panel.errors
    panel.models.value = (DEV,)
    assert panel.models.text.value == DEV
    # no list, but the bundled catalogue still knows flux-2-dev: its guidance and plain words
    assert _shown(panel.guidance_knob)
    panel.guidance_knob.slider.value = 3.0
    assert panel.magic_line.value == f"%%oxenimage --model {DEV} --seed 1 --param guidance=3"
    assert (
        "flux-2-dev (FLUX.2 [dev]): from text or reference images; 30 steps by default; price unknown."
        in (html.unescape(panel.about_models.value))
    )
    assert [v for _label, v in panel.aspect_ratio.options][:3] == ["", "1:1", "16:9"]


def test_unreachable_host_at_generate_is_reported(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OXEN_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OXEN_API_KEY", "unused")
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path))
    panel = make("--model z-image-turbo --seed 1 a cat")
    client = panel.session.client(None, 8)
    client.transport.max_retries = 0  # keep the test fast; the panel itself never waits on the kernel
    panel.generate_button.click()
    assert panel.wait(15)
    assert "oxen-error-text" in panel.status.value
    assert panel.result is None and not panel.running
    assert not panel.generate_button.disabled


# -- static fallback -------------------------------------------------------------------------------
def test_static_copy_before_any_run_shows_the_magic_line(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make("--model z-image-turbo --seed 3")
    bundle = panel._repr_mimebundle_()
    assert bundle is not None
    assert "%%oxenimage --model z-image-turbo --seed 3" in bundle["text/html"]
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.model_id


def test_css_classes_for_the_browser_test(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    for name, css in (
        ("prompt", "oxen-prompt"),
        ("models", "oxen-models"),
        ("seeds", "oxen-seeds"),
        ("aspect_ratio", "oxen-aspect-ratio"),
        ("steps", "oxen-steps"),
        ("generate_button", "oxen-generate"),
        ("stop_button", "oxen-stop"),
        ("magic_line", "oxen-magic-line"),
        ("output", "oxen-output"),
        ("progress", "oxen-progress"),
        ("history", "oxen-history"),
        ("status", "oxen-status"),
    ):
        assert css in getattr(panel, name)._dom_classes, name
    assert "oxen-panel" in panel._dom_classes
    assert panel.prompt.description == "Prompt" and panel.generate_button.description == "Generate"


def test_stop_then_generate_again_bills_each_image_once(hub: LocalHub, magic: OxenMagic, make) -> None:  # type: ignore[no-untyped-def]
    # The requests in flight at Stop are still running when Generate is pressed again: the new
    # run waits for them (and reads their images from the cache) instead of sending them twice.
    magic.concurrency = 4
    panel = make()
    hub.latency = 0.6
    _fill(panel, models=(TURBO,), seeds="1..4")
    panel.generate_button.click()
    hub.wait_until(lambda: hub.in_flight >= 4, timeout=5)
    assert hub.in_flight == 4 and hub.generate_calls() == []  # all four sent, none answered
    panel.stop_button.click()
    assert panel.wait(10) and panel.result.interrupted
    _run(panel)
    assert panel.result.done == 4 and not panel.result.interrupted
    seeds = sorted(r.body["seed"] for r in hub.generate_calls() if r.body and r.status == 200)
    assert seeds == [1, 2, 3, 4]


def test_dry_run_in_more_options_sends_nothing(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(TURBO,), seeds="1..3")
    panel.extra_options.value = "--dry-run"
    assert panel.magic_line.value.endswith("--dry-run")
    _run(panel)
    assert hub.generate_calls() == []
    assert {i.status for i in panel.result} == {"planned"}
    assert "Dry run: 3 image(s) planned" in panel.output.value


# -- the input-image control ----------------------------------------------------------------------
KONTEXT = "flux-kontext-dev"


def test_the_models_message_says_what_they_do_with_an_image(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    # a model that needs an input image is offered only once one is given (issue 14, item 6);
    # one already named (a line, a restored run) stays chosen and is explained
    panel = make(f"--model {KONTEXT},z-image-turbo,flux-2-dev")
    panel.prompt.value = "paint it blue"
    assert panel.models.value == (KONTEXT, "z-image-turbo", "flux-2-dev")
    message = panel.messages["models"].value
    assert "flux-kontext-dev needs an input image" in message
    assert "z-image-turbo takes text only" in message
    assert "flux-2-dev takes an optional input image (several)" in message
    # the missing image is named next to the input control, and blocks Generate
    assert panel.errors["input_image"].startswith("flux-kontext-dev needs an input image")
    assert panel.generate_button.disabled


def test_a_result_from_the_panel_becomes_the_next_input(hub: LocalHub, shell, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    panel.prompt.value = "a red cube"
    panel.models.value = ("flux-2-dev",)
    panel.seeds.value = "1..2"
    _run(panel)
    labels = [label for label, _ in panel.input_pick.options]
    assert labels[1:] == ["flux-2-dev · seed 1", "flux-2-dev · seed 2"]
    panel.input_pick.value = "1"  # seed 2
    assert panel.input_image.value == "panel_flux_2_dev_seed_2"
    assert shell.user_ns["panel_flux_2_dev_seed_2"] is panel.result[1]
    assert "--input-image panel_flux_2_dev_seed_2" in panel.magic_line.value
    source = panel.result[1]
    panel.kind.value = "Edit or reference"  # offered now that an input image is given
    panel.models.value = (KONTEXT,)
    panel.seeds.value = "4"
    panel.prompt.value = "paint it blue"
    _run(panel)
    (edit,) = hub.edit_calls()
    assert edit.body["input_image"] == source.url
    assert input_sha_of(panel.result[0].data) == hashlib.sha256(source.data).hexdigest()


def test_an_upload_needs_no_prompt_for_an_upscaler(hub: LocalHub, shell, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    out = io.BytesIO()
    Image.new("RGB", (20, 20), "teal").save(out, format="PNG")
    data = out.getvalue()
    panel.input_upload.value = (
        {
            "name": "My Photo.png",
            "type": "image/png",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )
    assert panel.input_image.value == "upload_my_photo"
    assert shell.user_ns["upload_my_photo"] == data
    panel.kind.value = "Upscale"  # upscalers are offered once an image is given
    panel.models.value = ("topazlabs-image-upscale",)
    assert "prompt" not in panel.errors
    _run(panel)
    assert input_sha_of(panel.result[0].data) == hashlib.sha256(data).hexdigest()


def test_a_bad_upload_and_a_bad_name_are_shown(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    panel.prompt.value = "x"
    panel.models.value = ("flux-2-dev",)
    panel.input_upload.value = (
        {
            "name": "notes.txt",
            "type": "text/plain",
            "size": 5,
            "content": memoryview(b"hello"),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )
    assert "notes.txt is not an image" in panel.messages["input_image"].value
    panel.input_image.value = "nothing_here"
    assert "no variable or file named 'nothing_here'" in panel.errors["input_image"]
    assert panel.generate_button.disabled
    panel.extra_options.value = "--input-image x"
    assert panel.errors["extra_options"] == "Set --input-image with the Input image control above, not here."


# -- for people who do not code (issue 14, item 6) ---------------------------------------------------
def _offered(panel: Panel) -> dict[str, str]:
    return {value: label for label, value in panel.models.options}


def test_models_are_grouped_by_what_they_do_with_their_price(hub: LocalHub, make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    assert panel.kind.value == "Text to image" and panel.kind.options == (
        "Text to image",
        "Edit or reference",
        "Upscale",
    )
    offered = _offered(panel)
    # plain words beside each id: what it is for, its speed (default steps), its price
    assert offered[DEV] == "flux-2-dev · from text or reference images · 30 steps · $0.025 per image"
    assert offered[TURBO] == "z-image-turbo · from text · quick (8 steps) · $0.002 per image"
    assert "flux-kontext-dev" not in offered and "topazlabs-image-upscale" not in offered
    assert "gpt-oss-120b" not in offered  # makes text, not images

    panel.kind.value = "Upscale"  # no input image yet: nothing to offer, and it says why
    assert panel.models.value == () and _offered(panel) == {}
    assert "need an input image" in panel.messages["models"].value
    assert panel.generate_button.disabled

    picture = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), "teal").save(picture)
    panel.input_image.value = str(picture)
    offered = _offered(panel)
    assert "topazlabs-image-upscale" in offered and DEV not in offered
    assert panel.models.value == (next(iter(offered)),)  # the group's first model, picked for you
    panel.kind.value = "Edit or reference"
    offered = _offered(panel)
    assert {"flux-kontext-dev", "qwen-image-edit", DEV} <= set(offered)  # DEV as a reference model
    panel.kind.value = "Text to image"
    panel.input_image.value = ""
    assert "flux-kontext-dev" not in _offered(panel)


def test_save_writes_pngs_and_a_contact_sheet(hub: LocalHub, make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make(f"--model {TURBO} --seed 1..3")
    panel.prompt.value = PROMPT
    assert panel.save_button.disabled  # nothing to save yet
    _run(panel)
    assert not panel.save_button.disabled
    panel.save_folder.value = str(tmp_path / "saved")
    panel.save_button.click()
    names = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert names == ["contact-sheet.png", *(f"z-image-turbo_seed-{s}.png" for s in (1, 2, 3))]
    assert "Saved 3 PNG(s) and contact-sheet.png" in panel.status.value
    (tmp_path / "file").write_text("not a folder")
    assert panel.save(tmp_path / "file" / "below") == []
    assert "Could not save to" in panel.status.value and "oxen-error-text" in panel.status.value


def test_the_grid_fits_the_output_and_the_spend_is_shown(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    def spent() -> tuple[int, float]:
        """(images, USD) the spend line shows: the session's ledger, or this panel's own tally."""
        text = html.unescape(panel.spend.value)
        found = re.search(r"This session: (\d+) image\(s\) generated, est. \$([\d.]+)", text)
        assert found, panel.spend.value
        return int(found.group(1)), float(found.group(2))

    panel = make(f"--model {TURBO} --seed 1..6")
    panel.prompt.value = PROMPT
    panel._show_spend()
    images, cost = spent()
    _run(panel)
    assert panel.result is not None and panel.result.cols == 3  # 3 x 256 px fit; 6 would not
    assert spent()[0] == images + 6 and spent()[1] == pytest.approx(cost + 0.012)
    _run(panel)  # the same grid again: from the cache, nothing spent
    assert all(i.cached for i in panel.result)
    assert spent()[0] == images + 6
    panel.extra_options.value = "--cols 6"
    _run(panel)
    assert panel.result.cols == 6  # asked for: kept


# -- for people who do not code, second round (issue 19, item 7) -------------------------------------
def _shown(widget: object) -> bool:
    return widget.layout.display != "none"  # type: ignore[attr-defined]


def test_guidance_sends_each_model_its_own_parameter(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(KLEIN, DEV), seeds="1")
    knob = panel.guidance_knob
    assert _shown(knob) and knob.number is None  # klein: guidance_scale, flux-2-dev: guidance
    assert "guidance and guidance_scale" in knob.note.value
    # their default steps differ (28, 30): the slider cannot show one, so the note names each
    assert f"each model&#x27;s own default: {KLEIN} 28, {DEV} 30" in panel.steps_knob.note.value
    assert "--param" not in panel.magic_line.value  # the models' defaults until it is moved
    knob.slider.value = 3.5  # moving the slider unticks "model default"
    assert knob.number == 3.5 and not knob.auto.value
    assert panel.magic_line.value == (
        f"%%oxenimage --model {KLEIN},{DEV} --seed 1 --param guidance=3.5 --param guidance_scale=3.5"
    )
    assert not panel.errors and "takes no guidance" not in panel.status.value
    _run(panel)
    bodies = {r.body["model"]: r.body for r in hub.generate_calls() if r.body}
    assert bodies[DEV]["guidance"] == 3.5 and "guidance_scale" not in bodies[DEV]
    assert bodies[KLEIN]["guidance_scale"] == 3.5 and "guidance" not in bodies[KLEIN]

    panel.models.value = (DEV, TURBO)  # a model without guidance still says so
    assert "z-image-turbo takes no guidance; sent without it." in panel.status.value
    panel.models.value = (TURBO,)  # takes no guidance: the control hides and nothing is sent
    assert not _shown(knob) and "--param" not in panel.magic_line.value
    panel.models.value = (DEV,)
    assert _shown(knob) and panel.magic_line.value.endswith("--param guidance=3.5")
    knob.auto.value = True  # back to the model's default (flux-2-dev: 2)
    assert "--param" not in panel.magic_line.value and knob.slider.value == 2.0


def test_pictures_and_steps_need_no_command_line_syntax(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make(f"--model {TURBO}")
    panel.prompt.value = PROMPT
    assert not _shown(panel.code_box)  # seeds, steps, More options and the line: behind Show code
    assert (panel.seed_mode.value, panel.seed_count.value) == ("new", 1)  # the server picks one
    panel.seed_mode.value = "same"
    panel.seed_count.value = 4
    panel.seed_start.value = 3
    assert (
        panel.seeds.value == "3..6" and panel.magic_line.value == f"%%oxenimage --model {TURBO} --seed 3..6"
    )
    assert "Ready: 4 images" in panel.status.value
    panel.seed_mode.value = "new"
    assert panel.seeds.value == "random:4" and panel.seed_start.disabled
    panel.seed_count.value = 1
    assert panel.seeds.value == "" and "--seed" not in panel.magic_line.value

    panel.seeds.value = "2..5"  # typed in the code: the controls follow
    assert (panel.seed_mode.value, panel.seed_count.value, panel.seed_start.value) == ("same", 4, 2)
    panel.seeds.value = "1,5,9"  # not a count from a start: kept, and said so
    assert "Set in the code (seeds 1,5,9)" in panel.seed_note.value
    assert panel.magic_line.value == f"%%oxenimage --model {TURBO} --seed 1,5,9"

    steps = panel.steps_knob
    assert (steps.slider.min, steps.slider.max, steps.slider.value) == (1, 50, 8)  # z-image-turbo
    assert steps.number is None and panel.steps.value == ""
    steps.slider.value = 12
    assert panel.steps.value == "12" and panel.magic_line.value.endswith("--steps 12")
    steps.auto.value = True
    assert panel.steps.value == "" and "--steps" not in panel.magic_line.value
    panel.models.value = ("bytedance-seedream-4",)  # no steps at all: the slider hides
    assert not _shown(steps)

    panel.show_code.value = True
    assert _shown(panel.code_box)
    panel.show_code.value = False
    assert not _shown(panel.code_box)


def test_plain_words_on_the_chosen_models(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make(f"--model {TURBO},{KONTEXT}")
    about = html.unescape(panel.about_models.value)
    assert "z-image-turbo (Z-Image-Turbo): from text; 8 steps by default, quick; $0.002 per image." in about
    assert "flux-kontext-dev (FLUX.1-Kontext [dev]): changes an input image; 28 steps by default;" in about


def test_more_options_are_checked_against_the_chosen_models(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    panel = make()
    _fill(panel, models=(DEV,), seeds="1")
    for typed in ("--guidance 3", "--param guidance=3", "--guidance-scale=3"):
        panel.extra_options.value = typed  # flux-2-dev takes `guidance`, the default model `guidance_scale`
        problem = panel.errors["extra_options"]
        assert problem.startswith("Set guidance with the Guidance slider above"), problem
        assert "guidance_scale" not in problem and panel.generate_button.disabled
    panel.models.value = ("ideogram-v4",)  # a parameter only this model has
    panel.extra_options.value = "--num-images 2"
    assert panel.errors["extra_options"] == "Unknown option --num-images; did you mean --param num_images=2?"
    panel.extra_options.value = "--param num_images=2"
    assert "extra_options" not in panel.errors
    panel.models.value = (TURBO,)  # a parameter the chosen model does not take
    assert "z-image-turbo has no parameter 'num_images'" in panel.errors["extra_options"]


def test_the_status_says_why_generate_is_off(hub: LocalHub, make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make(f"--model {TURBO}")
    status = html.unescape(panel.status.value)
    assert panel.generate_button.disabled
    assert "Ready" not in status and "Generate is off until this is fixed: Write a prompt first." in status
    panel.prompt.value = PROMPT
    assert not panel.generate_button.disabled and "Ready: 1 image" in panel.status.value
    panel.seeds.value = "5..1"
    assert panel.generate_button.disabled and "Ready" not in panel.status.value
    assert "Generate is off until this is fixed" in panel.status.value and "backwards" in panel.status.value
    panel.seeds.value = ""
    panel.kind.value = "Upscale"
    assert panel.generate_button.disabled
    assert "Generate is off until this is fixed: Upscale models need an input image" in panel.status.value


def test_spend_left_of_the_budget_and_a_refusal_in_plain_words(hub: LocalHub, make) -> None:  # type: ignore[no-untyped-def]
    def text(widget: object) -> str:
        return html.unescape(widget.value)  # type: ignore[attr-defined]

    session = current_session()
    before, kept = session.spend().total, session.settings.max_spend
    session.configure(max_spend=before + 0.010)
    try:
        panel = make(f"--model {TURBO} --seed 1..3")
        assert panel.session is session
        assert "$0.010 left of $" in text(panel.spend)  # shown from the start
        panel.prompt.value = PROMPT
        _run(panel)  # 3 x $0.002
        found = re.search(r"\$(\d+\.\d+) left of \$(\d+\.\d+)", text(panel.spend))
        assert found, text(panel.spend)
        assert float(found.group(1)) == pytest.approx(0.004, abs=0.001)
        assert float(found.group(2)) == pytest.approx(before + 0.010, abs=0.001)
        sent = len(hub.generate_calls())
        panel.seeds.value = "10..15"  # 6 new images, $0.012: more than is left
        before_click = text(panel.status)  # said before the click, not "Ready"
        assert "Ready" not in before_click and "more than the $0.004 left of the budget" in before_click
        assert not panel.generate_button.disabled  # pictures made before would be free: a warning
        panel.generate_button.click()
        assert panel.wait(15)
        status = text(panel.status)
        assert "Not enough budget left for these pictures" in status, status
        assert "ask your instructor to raise the budget" in status and "%config" not in status
        assert len(hub.generate_calls()) == sent  # nothing was sent
    finally:
        session.configure(max_spend=kept)


MARKUP = "<img src=x onerror=alert(1)>"


def _html_values(widget: object) -> list[str]:
    """The value of every HTML widget inside `widget` (what a browser sets as innerHTML)."""
    import ipywidgets as widgets

    found = [widget.value] if isinstance(widget, (widgets.HTML, widgets.HTMLMath)) else []
    for child in getattr(widget, "children", ()):
        found += _html_values(child)
    return found


def test_markup_in_every_field_stays_text(hub: LocalHub, shell, make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 20: whatever text reaches the panel (a file name, a model's description, a prompt, a
    variable, a typed value, a server's error, a folder) is escaped in every HTML widget."""
    listed = next(m for m in hub.models if m["id"] == TURBO)
    hub.models.insert(0, {**listed, "id": "markup-model", "display_name": MARKUP, "description": MARKUP})
    shell.user_ns["markup_var"] = MARKUP
    panel = make("--model " + shlex.quote(MARKUP))  # an unlisted id: the note, then the server's 404
    seen: list[str] = []

    def look() -> None:
        values = _html_values(panel)
        assert not [v for v in values if "<img src=x" in v], [v for v in values if "<img src=x" in v]
        seen.extend(values)

    panel.prompt.value = f"{MARKUP} and {{markup_var}}"
    look()
    _run(panel)  # Model not found: <img ...>
    assert "Model not found" in panel.status.value
    look()
    panel.models.value = ("markup-model", TURBO)
    look()
    for name in ("seeds", "steps", "input_image"):
        getattr(panel, name).value = MARKUP
        look()
        getattr(panel, name).value = ""
    panel.extra_options.value = f"--out {shlex.quote(MARKUP)}"
    look()
    panel.extra_options.value = MARKUP
    look()
    folder = tmp_path / MARKUP
    panel.extra_options.value = f"--save {shlex.quote(str(folder))}"  # in the history's line too
    panel.seeds.value = "1"
    _run(panel)
    assert panel.result is not None and panel.result.done == 2 and len(panel.entries) == 1
    look()
    panel.save(folder)
    assert "Saved 2 PNG(s)" in panel.status.value
    look()
    panel.input_upload.value = (
        {
            "name": f"{MARKUP}.png",
            "type": "image/png",
            "size": 5,
            "content": memoryview(b"hello"),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )
    assert "is not an image" in panel.messages["input_image"].value
    look()
    bundle = panel._repr_mimebundle_()
    assert bundle is not None and "<img src=x" not in bundle["text/html"]
    # the markup did reach the widgets, as text: the test looked at the right places
    shown = "\n".join(seen)
    assert shown.count("&lt;img src=x onerror=alert(1)&gt;") >= 8


def test_the_panel_parts_work_without_a_panel() -> None:
    """The parts are small classes handed the widgets they read and the calls they make: the
    seed controls write the seeds text and read a hand-written one back, the input control puts
    an upload in the namespace it is given, with no Panel (and no hub) around them."""
    import ipywidgets as widgets

    from oxen_magic.frontends.panel.base import Quiet
    from oxen_magic.frontends.panel.input_control import InputControl
    from oxen_magic.frontends.panel.simple import SimpleControls
    from oxen_magic.network.model_info import ModelInfo, bundled_catalogue

    schemas = {str(m["id"]): ModelInfo.from_api(dict(m)) for m in bundled_catalogue()}
    seeds, steps = widgets.Text(value=""), widgets.Text(value="")
    models = ModelsText(value=("z-image-turbo",))
    refreshed: list[bool] = []
    simple = SimpleControls(
        None,
        seeds=seeds,
        steps=steps,
        models=models,
        schemas=schemas,
        quiet=Quiet(),
        refresh=lambda: refreshed.append(True),
    )
    simple.seed_mode.value = "same"
    simple.seed_count.value = 3
    assert seeds.value == "1..3"
    seeds.value = "5..6"
    simple.sync()
    assert (simple.seed_mode.value, simple.seed_count.value, simple.seed_start.value) == ("same", 2, 5)
    quiet = Quiet()
    with quiet:  # the panel writing its own controls: no event is taken for the user's
        simple.quiet = quiet
        simple.seed_count.value = 4
    assert seeds.value == "5..6"

    namespace: dict[str, object] = {}
    message = widgets.HTML(value="")
    inputs = InputControl("", user_ns=lambda: namespace, message=message, result=lambda: None)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    inputs.input_upload.value = (
        {
            "name": "My Photo.png",
            "type": "image/png",
            "size": len(png.getvalue()),
            "content": memoryview(png.getvalue()),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )
    assert inputs.input_image.value == "upload_my_photo" and namespace["upload_my_photo"] == png.getvalue()
    assert message.value == "" and inputs.given()
