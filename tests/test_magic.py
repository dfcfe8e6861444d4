"""`%%oxenimage` and `%oxenimage` end to end: a real InteractiveShell, the real client, the local hub.

Every test asserts on what the hub received (its recorded requests), on the `Results` the user
gets, and on what the notebook would show (the captured outputs), and checks that the API key
appears in none of the output.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import json
import re
import shlex
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import CapturedIO, capture_output
from PIL import Image
from support import (
    all_text,
    html_outputs,
    login_for,
    magic_of,
    run_cell,
    session_clients,
    shown_html,
    wait_for_no_oxen_threads,
)

from oxen_magic.frontends.magic import OxenMagic
from oxen_magic.localhub import GENERATE_PATH, LocalHub
from oxen_magic.results.results import Results
from oxen_magic.session.session import current_session

PROMPT = "a red cube on a white table"


# -- helpers ----------------------------------------------------------------------------------


def bodies(hub: LocalHub) -> list[dict[str, Any]]:
    """The JSON bodies of every generate call the hub received, in arrival order."""
    out = []
    for call in hub.generate_calls():
        assert call.body is not None
        out.append(call.body)
    return out


def by_seed(hub: LocalHub) -> list[dict[str, Any]]:
    return sorted(bodies(hub), key=lambda b: (b.get("model", ""), b.get("seed") or 0))


def go(shell: Any, hub: LocalHub, line: str, body: str | None = PROMPT) -> tuple[CapturedIO, str | None]:
    """Run the magic and check the key leaked nowhere a user could see it."""
    captured, error = run_cell(shell, line, body)
    assert hub.api_key is not None
    assert hub.api_key not in all_text(captured)
    if error is not None:
        assert hub.api_key not in error
        assert "\n" not in error.strip(), f"a UsageError should be one line: {error!r}"
    return captured, error


def ok(shell: Any, hub: LocalHub, line: str, body: str | None = PROMPT) -> tuple[CapturedIO, Results]:
    """Run a cell that must succeed; returns the captured output and the Results (`--out r`)."""
    shell.user_ns.pop("r", None)
    captured, error = go(shell, hub, line + " --out r", body)
    assert error is None, error
    results = shell.user_ns["r"]
    assert isinstance(results, Results)
    return captured, results


def final_html(captured: CapturedIO) -> str:
    assert html_outputs(captured), f"no HTML output captured: {captured.outputs!r}"
    return shown_html(captured)


def progress(html: str) -> str:
    match = re.search(r'class="oxen-progress"[^>]*>([^<]*)<', html)
    assert match, html[:300]
    return match.group(1)


def col_headers(html: str) -> list[str]:
    return re.findall(r'<th class="oxen-col"[^>]*>([^<]*)</th>', html)


def row_headers(html: str) -> list[str]:
    return re.findall(r'<th class="oxen-row"[^>]*>([^<]*)</th>', html)


def file_gets(hub: LocalHub) -> list[str]:
    return [r.path for r in hub.requests if r.method == "GET" and "/files/results/" in r.path]


def run_source(shell: Any, source: str) -> tuple[CapturedIO, Any]:
    """`shell.run_cell(source)`: the path a notebook cell takes, error display included."""
    with capture_output() as captured:
        result = shell.run_cell(source)
    return captured, result


def assert_one_line_usage_error(captured: CapturedIO, result: Any, *needles: str) -> str:
    text = captured.stdout + captured.stderr
    assert not result.success
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("UsageError: "), text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- the basic cell -----------------------------------------------------------------------------


def test_seed_sweep_sends_one_request_per_seed_and_shows_the_grid(shell: Any, hub: LocalHub) -> None:
    captured, r = ok(shell, hub, "--model flux-2-dev --seed 1..3")

    assert by_seed(hub) == [{"model": "flux-2-dev", "prompt": PROMPT, "seed": s} for s in (1, 2, 3)]
    assert all(c.authorization == f"Bearer {hub.api_key}" for c in hub.generate_calls())
    assert len(file_gets(hub)) == 3  # url format: each image downloaded once

    assert len(r) == 3 and r.done == 3 and r.failed == 0 and not r.interrupted
    assert [i.seed for i in r] == [1, 2, 3]
    assert r["flux-2-dev", 2].seed == 2
    for item in r:
        assert item.ok and item.image is not None
        assert item.image.size == (64, 40)  # the hub's 16:9 default, long side 64
        assert item.thumb is not None and item.thumb[:2] == b"\xff\xd8"

    displays = [o for o in captured.outputs if not o.update]
    assert len(displays) == 3  # the progress line, the column headers, the row: updated in place
    html = final_html(captured)
    assert progress(html).startswith("3/3 images")
    assert col_headers(html) == ["seed 1", "seed 2", "seed 3"]
    assert html.count("<img ") == 3
    assert "oxen-pending" not in html and "oxen-error" not in html
    assert "est. &#36;0.075" in html
    assert captured.stdout.strip() == "" and captured.stderr.strip() == ""


def test_model_option_takes_comma_lists_and_repeats(shell: Any, hub: LocalHub) -> None:
    line = "--model flux-2-dev,z-image-turbo -m black-forest-labs-flux-2-klein-4b --model flux-2-dev --seed 5"
    captured, r = ok(shell, hub, line)

    sent = sorted(b["model"] for b in bodies(hub))
    assert sent == ["black-forest-labs-flux-2-klein-4b", "flux-2-dev", "z-image-turbo"]
    assert all(b["seed"] == 5 for b in bodies(hub))
    assert [i.model for i in r] == ["flux-2-dev", "z-image-turbo", "black-forest-labs-flux-2-klein-4b"]
    html = final_html(captured)
    assert col_headers(html) == ["flux-2-dev", "z-image-turbo", "black-forest-labs-flux-2-klein-4b"]
    assert html.count("<img ") == 3
    # 0.025 + 0.002 + 0.003
    assert "est. &#36;0.030" in html


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        ("7", [7]),
        ("0", [0]),
        ("1..4", [1, 2, 3, 4]),
        ("1..10:3", [1, 4, 7, 10]),
        ("1,5,9", [1, 5, 9]),
        ("9,1..2,2", [1, 2, 9]),
        ("random:3", None),
    ],
)
def test_seed_forms(shell: Any, hub: LocalHub, seed: str, expected: list[int] | None) -> None:
    captured, r = ok(shell, hub, f"--model z-image-turbo -s {seed}")

    sent = sorted(b["seed"] for b in bodies(hub))
    assert all(isinstance(s, int) and not isinstance(s, bool) for s in sent)
    assert [i.seed for i in r] == sent  # grid columns in seed order
    html = final_html(captured)
    if expected is not None:
        assert sent == expected
        assert not any("Random seeds" in n for n in r.notes)
    else:
        assert len(set(sent)) == 3
        joined = ",".join(str(s) for s in sent)
        assert f"Random seeds: {joined}" in " ".join(r.notes)
        assert f"--seed {joined}" in html  # the notes are in the grid
    if len(sent) > 1:
        assert col_headers(html) == [f"seed {s}" for s in sent]


def test_random_seeds_can_be_replayed_from_the_note_and_hit_the_cache(shell: Any, hub: LocalHub) -> None:
    _, r = ok(shell, hub, "--model z-image-turbo --seed random:2")
    note = next(n for n in r.notes if n.startswith("Random seeds"))
    replay = re.search(r"--seed (\S+) to get", note)
    assert replay
    hub.reset()
    _, again = ok(shell, hub, f"--model z-image-turbo --seed {replay.group(1)}")
    assert bodies(hub) == []
    assert [i.seed for i in again] == [i.seed for i in r]
    assert [i.data for i in again] == [i.data for i in r]


def test_aspect_ratio_lists_comma_and_repeated(shell: Any, hub: LocalHub) -> None:
    captured, r = ok(shell, hub, "--model flux-2-dev --seed 1 -a 1:1,16:9 --aspect-ratio 3:4")

    assert sorted(b["aspect_ratio"] for b in bodies(hub)) == ["16:9", "1:1", "3:4"]
    assert all(b["seed"] == 1 for b in bodies(hub))
    sizes = {i.params["aspect_ratio"]: i.size for i in r}
    assert sizes == {"1:1": (64, 64), "16:9": (64, 40), "3:4": (48, 64)}
    html = final_html(captured)
    assert col_headers(html) == ["1:1", "16:9", "3:4"]
    assert html.count("<img ") == 3


def test_steps_lists_are_sent_as_integer_num_inference_steps(shell: Any, hub: LocalHub) -> None:
    captured, r = ok(shell, hub, "--model flux-2-dev --seed 1,2 --steps 10..30:10")

    steps = sorted(b["num_inference_steps"] for b in bodies(hub))
    assert steps == [10, 10, 20, 20, 30, 30]
    assert all(type(b["num_inference_steps"]) is int for b in bodies(hub))
    assert len(r) == 6 and r.done == 6
    html = final_html(captured)
    assert row_headers(html) == ["10 steps", "20 steps", "30 steps"]
    assert col_headers(html) == ["seed 1", "seed 2"]


def test_params_are_typed_by_the_model_schema(shell: Any, hub: LocalHub) -> None:
    line = (
        "--model flux-2-dev --seed 1 --param guidance=3.5 -p output_quality=90 "
        "-p disable_safety_checker=true -p 'resolution=0.5 MP'"
    )
    ok(shell, hub, line)
    (body,) = bodies(hub)
    assert body["guidance"] == 3.5 and type(body["guidance"]) is float
    assert body["output_quality"] == 90 and type(body["output_quality"]) is int
    assert body["disable_safety_checker"] is True
    assert body["resolution"] == "0.5 MP"

    hub.reset()
    ok(shell, hub, "--model flux-2-dev --seed 1 --param guidance=3")
    (body,) = bodies(hub)
    assert type(body["guidance"]) is float and body["guidance"] == 3.0  # "number" in the schema


@pytest.mark.parametrize(
    ("param", "needles"),
    [
        ("guidance=11", ["guidance=11.0 is out of range for flux-2-dev", "0.0 to 10.0"]),
        ("guidance=lots", ["guidance=lots must be a number for flux-2-dev"]),
        ("bogus=1", ["flux-2-dev has no parameter 'bogus'", "guidance"]),
        ("resolution=8K", ["resolution=8K is not allowed for flux-2-dev", "1 MP"]),
    ],
)
def test_param_schema_violations_are_refused_before_any_generate(
    shell: Any, hub: LocalHub, param: str, needles: list[str]
) -> None:
    _, error = go(shell, hub, f"--model flux-2-dev --seed 1 -p {param}")
    assert error is not None
    for needle in needles:
        assert needle in error
    assert bodies(hub) == []


def test_params_for_a_model_without_schema_are_parsed_json_ish(shell: Any, hub: LocalHub) -> None:
    hub.models.append(
        {
            "id": "mystery-painter",
            "object": "model",
            "capabilities": {"input": ["text"], "output": ["image"]},
            "request_schema": None,
        }
    )
    line = (
        "--model mystery-painter --seed 2 -p strength=3 -p ratio=0.5 -p tiled=true -p tags=[1,2] -p style=oil"
    )
    captured, r = ok(shell, hub, line)
    (body,) = bodies(hub)
    assert body["strength"] == 3 and type(body["strength"]) is int
    assert body["ratio"] == 0.5
    assert body["tiled"] is True
    assert body["tags"] == [1, 2]
    assert body["style"] == "oil"
    assert body["seed"] == 2
    assert r.done == 1
    assert "est. " not in final_html(captured)  # no price known


def test_format_b64_json_is_requested_and_nothing_is_downloaded(shell: Any, hub: LocalHub) -> None:
    _, r = ok(shell, hub, "--model z-image-turbo --seed 1,2 --format b64_json")
    assert [b["response_format"] for b in bodies(hub)] == ["b64_json", "b64_json"]
    assert file_gets(hub) == []
    assert r.done == 2
    assert all(i.image is not None for i in r)

    hub.reset()
    _, r = ok(shell, hub, "--model z-image-turbo --seed 3")
    assert "response_format" not in bodies(hub)[0]  # url is the API default: not sent
    assert len(file_gets(hub)) == 1


def test_namespace_is_sent_as_target_namespace(shell: Any, hub: LocalHub) -> None:
    _, r = ok(shell, hub, "--model z-image-turbo --seed 1 --namespace my-team")
    (body,) = bodies(hub)
    assert body["target_namespace"] == "my-team"
    (path,) = file_gets(hub)
    assert path.startswith("/api/repos/my-team/files/results/")
    assert "target_namespace" not in r[0].params  # a transport field, not a generation parameter


def test_host_option_overrides_the_environment(
    shell: Any, hub: LocalHub, make_hub: Callable[..., LocalHub]
) -> None:
    elsewhere = make_hub(api_key=hub.api_key, image_size=32)
    login_for(elsewhere)  # OXEN_API_KEY is the environment host's key, not elsewhere's
    _, r = ok(shell, hub, f"--model z-image-turbo --seed 4 --host {elsewhere.url}")
    assert [b["seed"] for b in bodies(elsewhere)] == [4]
    assert hub.requests == []
    assert r[0].size == (32, 32)
    # without --host the environment's hub is used again
    ok(shell, hub, "--model z-image-turbo --seed 4")
    assert [b["seed"] for b in bodies(hub)] == [4]


def test_out_stores_results_and_rejects_bad_names(shell: Any, hub: LocalHub) -> None:
    captured, error = go(shell, hub, "--model z-image-turbo --seed 1 --out grid")
    assert error is None
    grid = shell.user_ns["grid"]
    assert isinstance(grid, Results) and grid.done == 1
    shown, saved = final_html(captured), grid._repr_html_()
    assert progress(saved) == progress(shown)
    assert re.findall(r'<img src="([^"]+)"', saved) == re.findall(r'<img src="([^"]+)"', shown)

    hub.reset()
    _, error = go(shell, hub, "--model z-image-turbo --seed 1 --out 1grid")
    assert error is not None and "--out '1grid' is not a Python variable name" in error
    assert hub.requests == []


def test_cols_wraps_the_grid_rows(shell: Any, hub: LocalHub) -> None:
    captured, _ = ok(shell, hub, "--model z-image-turbo --seed 1..5 --cols 2")
    html = final_html(captured)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.DOTALL)
    assert len(rows) == 6  # three header rows, three image rows
    header_rows = [r for r in rows if "oxen-col" in r]
    image_rows = [r for r in rows if "oxen-cell" in r]
    assert [r.count('class="oxen-col"') for r in header_rows] == [2, 2, 1]
    assert [r.count('class="oxen-cell') for r in image_rows] == [2, 2, 1]
    assert col_headers(html) == [f"seed {s}" for s in range(1, 6)]

    captured, _ = ok(shell, hub, "--model z-image-turbo --seed 1..5")
    assert len(re.findall(r"<tr[ >]", final_html(captured))) == 2  # default 8 columns: no wrap


def test_size_sets_the_display_width_of_each_cell(shell: Any, hub: LocalHub) -> None:
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 1,2 --size 48")
    html = final_html(captured)
    widths = re.findall(r"<img [^>]*style=\"width:(\d+)px", html)
    assert widths == ["48", "48"]
    assert r.size == 48
    for item in r:
        assert item.thumb is not None
        assert max(Image.open(io.BytesIO(item.thumb)).size) <= 48


def test_no_cache_resends_but_still_writes_the_cache(shell: Any, hub: LocalHub) -> None:
    line = "--model z-image-turbo --seed 1..3"
    _, r = ok(shell, hub, line + " --no-cache")
    assert len(bodies(hub)) == 3 and not any(i.cached for i in r)

    hub.reset()
    _, r = ok(shell, hub, line + " --no-cache")
    assert len(bodies(hub)) == 3 and not any(i.cached for i in r)

    hub.reset()
    _, r = ok(shell, hub, line)  # the --no-cache runs wrote what they fetched
    assert bodies(hub) == []
    assert all(i.cached for i in r)


def test_concurrency_bounds_requests_in_flight(shell: Any, hub: LocalHub) -> None:
    hub.latency = 0.25
    _, r = ok(shell, hub, "--model z-image-turbo --seed 1..6 --concurrency 2")
    assert r.done == 6
    assert hub.peak_in_flight == 2

    hub.reset()
    _, r = ok(shell, hub, "--model z-image-turbo --seed 11..16 --concurrency 6")
    assert r.done == 6
    assert hub.peak_in_flight == 6


def test_save_writes_pngs_named_by_model_and_seed_with_parameters(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    folder = tmp_path / "my images"
    line = f"--model flux-2-dev,z-image-turbo --seed 1,2 --steps 4 --save {shlex.quote(str(folder))}"
    captured, r = ok(shell, hub, line)

    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "flux-2-dev_seed-1_steps-4.png",
        "flux-2-dev_seed-2_steps-4.png",
        "z-image-turbo_seed-1_steps-4.png",
        "z-image-turbo_seed-2_steps-4.png",
    ]
    assert any(f"Saved 4 PNG file(s) to {folder}" in n for n in r.notes)
    assert "Saved 4 PNG file(s)" in final_html(captured)
    for path in folder.iterdir():
        raw = path.read_bytes()
        assert raw.startswith(b"\x89PNG")
        assert hub.api_key is not None and hub.api_key.encode() not in raw
        with Image.open(path) as image:
            assert image.format == "PNG"
            params = json.loads(image.text["parameters"])
        model, seed = path.stem.split("_")[0], int(path.stem.split("_")[1].removeprefix("seed-"))
        assert params == {"model": model, "prompt": PROMPT, "seed": seed, "num_inference_steps": 4}
        assert params == r[model, seed].params


def test_max_images_refuses_before_any_request(shell: Any, hub: LocalHub) -> None:
    _, error = go(shell, hub, "--model flux-2-dev,z-image-turbo --seed 1..5 --max-images 8")
    assert error is not None
    assert "10 images" in error and "limit of 8" in error and "--max-images 10" in error
    assert hub.requests == []  # not even the model descriptions

    _, error = go(shell, hub, "--model z-image-turbo --seed 1..65")
    assert error is not None and "65 images" in error and "limit of 64" in error
    assert hub.requests == []

    _, r = ok(shell, hub, "--model z-image-turbo --seed 1..65 --max-images 65 --concurrency 16")
    assert r.done == 65 and len(bodies(hub)) == 65


def test_several_prompts_separated_by_dashes(shell: Any, hub: LocalHub) -> None:
    body = "a red cube\n---\na blue sphere\nunder a lamp\n  ---  \n a green cone "
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 1,2", body)
    prompts = sorted({b["prompt"] for b in bodies(hub)})
    assert prompts == ["a blue sphere\nunder a lamp", "a green cone", "a red cube"]
    assert len(bodies(hub)) == 6
    html = final_html(captured)
    labels = row_headers(html)
    assert labels[0] == "prompt 1: a red cube"
    assert labels[2] == "prompt 3: a green cone"
    assert r.done == 6


def test_prompt_templates_are_filled_from_user_variables(shell: Any, hub: LocalHub) -> None:
    shell.user_ns.update(animal="otter", count=3)
    ok(shell, hub, "--model z-image-turbo --seed 1", "{count} {animal}s in {{curly}} braces")
    assert bodies(hub)[0]["prompt"] == "3 otters in {curly} braces"

    hub.reset()
    _, error = go(shell, hub, "--model z-image-turbo --seed 1", "a {colour} boat")
    assert error is not None and "no variable 'colour'" in error
    assert hub.requests == []


def test_line_magic_takes_the_prompt_on_the_line(shell: Any, hub: LocalHub) -> None:
    _, r = ok(shell, hub, "--model z-image-turbo --seed 3 a tiny lighthouse", body=None)
    assert bodies(hub) == [{"model": "z-image-turbo", "prompt": "a tiny lighthouse", "seed": 3}]
    assert r.done == 1

    # the path a notebook takes
    hub.reset()
    captured, result = run_source(shell, "%oxenimage -m z-image-turbo -s 4 --out q a small boat")
    assert result.success, captured.stderr
    assert bodies(hub) == [{"model": "z-image-turbo", "prompt": "a small boat", "seed": 4}]
    assert isinstance(shell.user_ns["q"], Results)
    assert html_outputs(captured)


def test_list_models_shows_a_table_with_prices_and_ratios(shell: Any, hub: LocalHub) -> None:
    captured, error = go(shell, hub, "--list-models", body=None)
    assert error is None
    assert bodies(hub) == []
    (output,) = captured.outputs
    text = output.data["text/plain"]
    lines = text.splitlines()
    assert lines[0].split() == ["model", "price", "input", "image", "parameters"]
    flux = next(line for line in lines if line.split()[0] == "flux-2-dev")
    assert "optional (several)" in flux
    upscale = next(line for line in lines if line.split()[0] == "topazlabs-image-upscale")
    assert "required" in upscale and "several" not in upscale
    assert "text only" in next(line for line in lines if line.split()[0] == "z-image-turbo")
    assert "$0.025" in flux
    assert "aspect_ratio: 1:1|16:9|9:16|4:3|3:4|3:2|2:3|match_input_image (16:9)" in flux
    assert "num_inference_steps: int 1-50 (30)" in flux
    assert not any(line.startswith(("gpt-oss-120b", "wan-2-2")) for line in lines)  # not image models
    assert "<table" in output.data["text/html"] and "flux-2-dev" in output.data["text/html"]


def test_help_text_documents_the_seed_grammar(shell: Any, hub: LocalHub) -> None:
    doc = OxenMagic.oxenimage.__doc__ or ""
    for needle in ("1..10:3", "random:4", "1,5,9", "---", "{name}", "--aspect-ratio", "--max-images"):
        assert needle in doc
    info = shell.object_inspect("%%oxenimage")
    assert info["found"] and "random:4" in info["docstring"]

    captured, result = run_source(shell, "%%oxenimage?")
    assert result.success
    shown = captured.stdout + "".join(str(o.data) for o in captured.outputs)
    assert "random:4" in shown and "1..10:3" in shown
    assert hub.requests == []


def test_config_sets_the_defaults(shell: Any, hub: LocalHub) -> None:
    shell.run_line_magic("config", "OxenMagic.max_images = 2")
    assert magic_of(shell).max_images == 2
    _, error = go(shell, hub, "--model z-image-turbo --seed 1..3")
    assert error is not None and "limit of 2" in error and "OxenMagic.max_images = 3" in error
    assert hub.requests == []
    _, r = ok(shell, hub, "--model z-image-turbo --seed 1..3 --max-images 3")  # the line wins
    assert r.done == 3

    hub.reset()
    shell.run_line_magic("config", "OxenMagic.model = 'z-image-turbo'")
    shell.run_line_magic("config", "OxenMagic.response_format = 'b64_json'")
    shell.run_line_magic("config", "OxenMagic.display_size = 64")
    _, r = ok(shell, hub, "--seed 7")
    assert bodies(hub) == [
        {"model": "z-image-turbo", "prompt": PROMPT, "seed": 7, "response_format": "b64_json"}
    ]
    assert r.size == 64

    hub.reset()
    hub.latency = 0.1
    shell.run_line_magic("config", "OxenMagic.max_images = 64")
    shell.run_line_magic("config", "OxenMagic.concurrency = 1")
    _, r = ok(shell, hub, "--seed 11..13")
    assert r.done == 3 and hub.peak_in_flight == 1


# -- refusals: one line, nothing billed ---------------------------------------------------------


def test_empty_prompt_is_refused(shell: Any, hub: LocalHub) -> None:
    _, error = go(shell, hub, "--model flux-2-dev --seed 1", "   \n\n  ")
    assert error is not None and error.startswith("Prompt cannot be empty")
    captured, result = run_source(shell, "%%oxenimage --model flux-2-dev\n  \n")
    assert_one_line_usage_error(captured, result, "Prompt cannot be empty")
    _, error = go(shell, hub, "--seed 1", "a cube\n---\n")
    assert error is not None and "A prompt between --- lines is empty" in error
    assert hub.requests == []


def test_unknown_model_suggests_close_names(shell: Any, hub: LocalHub) -> None:
    _, error = go(shell, hub, "--model flux-2-dve --seed 1")
    assert error is not None
    assert error.startswith("Model not found: flux-2-dve; did you mean flux-2-dev")
    assert bodies(hub) == []

    captured, result = run_source(shell, "%%oxenimage --model gpt-image-15 --seed 1\na cube")
    assert_one_line_usage_error(captured, result, "Model not found: gpt-image-15", "gpt-image-1-5")
    assert bodies(hub) == []


@pytest.mark.parametrize(
    ("option", "needles"),
    [
        ("--aspect-ratio 1:1,5:1", ["aspect_ratio=5:1 is not allowed for flux-2-dev", "1:1, 16:9, 9:16"]),
        ("--steps 20,80", ["num_inference_steps=80 is out of range for flux-2-dev", "1 to 50"]),
    ],
)
def test_schema_violations_name_the_value_and_what_is_allowed(
    shell: Any, hub: LocalHub, option: str, needles: list[str]
) -> None:
    _, error = go(shell, hub, f"--model flux-2-dev --seed 1 {option}")
    assert error is not None
    for needle in needles:
        assert needle in error
    assert bodies(hub) == []

    captured, result = run_source(shell, f"%%oxenimage --model flux-2-dev --seed 1 {option}\na cube")
    assert_one_line_usage_error(captured, result, *needles)
    assert bodies(hub) == []


def test_bad_options_print_one_line_without_traceback(shell: Any, hub: LocalHub) -> None:
    captured, result = run_source(shell, "%%oxenimage --seeds 1..4\na cube")
    assert_one_line_usage_error(captured, result, "Unknown option --seeds; did you mean --seed?")
    captured, result = run_source(shell, "%%oxenimage --api-key sk-123\na cube")
    assert_one_line_usage_error(captured, result, "API keys are never taken as an option")
    captured, result = run_source(shell, "%%oxenimage --seed 4..1\na cube")
    assert_one_line_usage_error(captured, result, "runs backwards")
    assert hub.requests == []


def test_a_successful_cell_through_run_cell(shell: Any, hub: LocalHub) -> None:
    captured, result = run_source(shell, "%%oxenimage --model z-image-turbo --seed 1,2 --out res\na cube")
    assert result.success and result.result is None  # the grid is displayed, not returned
    assert "Traceback" not in captured.stdout + captured.stderr
    assert progress(final_html(captured)).startswith("2/2 images")
    assert shell.user_ns["res"].done == 2
    assert hub.api_key is not None and hub.api_key not in all_text(captured)


# -- what the plan changes ---------------------------------------------------------------------


def test_a_model_without_aspect_ratio_gets_a_note_and_requests_without_it(shell: Any, hub: LocalHub) -> None:
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 1,2 --aspect-ratio 1:1")
    assert len(bodies(hub)) == 2
    assert all("aspect_ratio" not in b for b in bodies(hub))
    assert "z-image-turbo takes no aspect_ratio; sent without it." in r.notes
    assert "z-image-turbo takes no aspect_ratio" in final_html(captured)

    # a sweep over a value the model ignores collapses to one request per distinct body
    hub.reset()
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 3 --aspect-ratio 1:1,16:9")
    assert len(bodies(hub)) == 1
    assert [i.status for i in r] == ["done", "skipped"]
    assert "same request as 1:1" in final_html(captured)


def test_a_model_without_seed_sends_one_request_for_a_seed_sweep(shell: Any, hub: LocalHub) -> None:
    captured, r = ok(shell, hub, "--model gpt-image-1-5 --seed 1..4")
    assert bodies(hub) == [{"model": "gpt-image-1-5", "prompt": PROMPT}]
    assert any("gpt-image-1-5 takes no seed; one image instead of 4" in n for n in r.notes)
    assert r.total == 1 and r.done == 1 and len(r) == 4
    html = final_html(captured)
    assert html.count("<img ") == 1
    assert html.count("oxen-skipped") == 3
    assert html.count("same request as seed 1") == 3
    assert progress(html).startswith("1/1 images")


def test_cost_estimate_is_shown_from_the_first_display(shell: Any, hub: LocalHub) -> None:
    captured, _ = ok(shell, hub, "--model flux-2-dev,z-image-turbo --seed 1,2")
    heads = [h for h in html_outputs(captured) if "oxen-progress" in h]
    # 2 x 0.025 + 2 x 0.002
    assert all("est. &#36;0.054" in h for h in heads)
    assert progress(heads[0]).startswith("0/4 images")


# -- progress, failures, interrupts -------------------------------------------------------------


def test_the_grid_fills_in_progressively_in_place(shell: Any, hub: LocalHub) -> None:
    hub.latency = 0.3
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 1..6 --concurrency 2")
    assert r.done == 6

    outputs = captured.outputs
    first = [o for o in outputs if not o.update]
    assert outputs[: len(first)] == first  # every piece shown first, then only updated in place
    ids = [o.transient["display_id"] for o in first]
    assert all(ids) and len(set(ids)) == len(ids) == 3  # progress, column headers, the row
    assert all(o.update and o.transient["display_id"] in ids for o in outputs[len(first) :])
    assert not any(o.transient["display_id"] == ids[1] for o in outputs[len(first) :])  # headers: once

    heads = [o.data["text/html"] for o in outputs if o.transient["display_id"] == ids[0]]
    counts = [int(progress(h).split("/")[0]) for h in heads]
    assert counts[0] == 0 and counts == sorted(counts)
    assert counts[-1] == 6 and progress(heads[-1]).startswith("6/6 images")
    rows = [o.data["text/html"] for o in outputs if o.transient["display_id"] == ids[2]]
    assert rows[0].count('class="oxen-pending"') == 6
    assert any("generating…" in h and "<img " in h for h in rows)  # partial progress was shown
    assert rows[-1].count("<img ") == 6
    assert "<img " not in "".join(heads)  # a new image resends its row, never the progress line


def test_one_failed_image_shows_its_error_in_place(shell: Any, hub: LocalHub) -> None:
    hub.fail_next(1, 400)  # not retried: the server rejected it
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 1..3 --concurrency 1")
    assert len(hub.generate_calls()) == 3
    assert [i.status for i in r] == ["failed", "done", "done"]
    assert r.failed == 1 and r.done == 2
    failed = r[0]
    assert failed.error is not None and "The API rejected the request" in failed.error
    html = final_html(captured)
    assert html.count('class="oxen-error"') == 1
    assert "The API rejected the request" in html
    assert html.count("<img ") == 2
    assert "2/3 images, 1 failed" in progress(html)

    # the failure was not cached; a rerun fetches only it
    hub.reset()
    _, r = ok(shell, hub, "--model z-image-turbo --seed 1..3")
    assert [b["seed"] for b in bodies(hub)] == [1]
    assert r.done == 3


def test_unusable_answers_fail_their_cells_not_the_cell(shell: Any, hub: LocalHub) -> None:
    hub.garbage = "not_image"
    captured, r = ok(shell, hub, "--model z-image-turbo --seed 1,2")
    assert r.failed == 2
    html = final_html(captured)
    assert html.count('class="oxen-error"') == 2
    assert "not an image" in html


def test_a_rate_limit_with_retry_after_is_retried(shell: Any, hub: LocalHub) -> None:
    hub.fail_next(1, 429, retry_after=0)
    _, r = ok(shell, hub, "--model z-image-turbo --seed 1..3 --concurrency 1")
    assert r.done == 3
    calls = hub.generate_calls()
    assert len(calls) == 4 and calls[0].status == 429
    assert calls[0].body == calls[1].body  # the same request, sent again


def test_interrupt_keeps_what_arrived_and_a_rerun_fetches_only_the_rest(shell: Any, hub: LocalHub) -> None:
    hub.latency = 1.0
    line = "--model z-image-turbo --seed 1..6 --concurrency 1"
    # Ctrl-C as a kernel gets it; a process started in the background (`cmd &` in a script) may
    # ignore SIGINT, which would make interrupt_main() a no-op, so install Python's handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    done = threading.Event()

    def press_stop() -> None:
        # while the third of six (1 s each) is in flight: the first answer then came a whole
        # latency ago, so the grid has taken it in (at the second's arrival it may not have yet)
        with contextlib.suppress(TimeoutError):
            hub.wait_for_calls(3, timeout=15)
        if not done.is_set():
            _thread.interrupt_main()

    timer = threading.Thread(target=press_stop, name="test-interrupter", daemon=True)
    timer.start()
    try:
        captured, r = ok(shell, hub, line)
    except KeyboardInterrupt:  # pragma: no cover - the bug this test guards against
        pytest.fail("Ctrl-C escaped the magic")
    finally:
        done.set()
        signal.signal(signal.SIGINT, previous)

    text = captured.stdout + captured.stderr
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert re.search(r"Interrupted: kept \d of 6 images", captured.stdout)
    assert r.interrupted
    kept = [i for i in r if i.status == "done"]
    assert len(kept) >= 1 and all(i.data is not None for i in kept)
    html = final_html(captured)
    assert "(interrupted)" in progress(html)
    assert "stopped" in html  # cancelled cells say so

    # the worker finishes the request in flight, then goes away
    assert wait_for_no_oxen_threads(timeout=5.0) == []
    sent = len(hub.generate_calls())
    assert 1 <= sent < 6

    hub.latency = 0.0
    hub.reset()
    _, again = ok(shell, hub, line)
    assert len(hub.generate_calls()) == 6 - sent  # what arrived (even after Ctrl-C) came from the cache
    assert again.done == 6 and not again.interrupted
    assert sum(i.cached for i in again) == sent


def test_the_client_is_reused_across_cells(shell: Any, hub: LocalHub) -> None:
    ok(shell, hub, "--model z-image-turbo --seed 1")
    ok(shell, hub, "--model z-image-turbo --seed 2")
    model_gets = [r for r in hub.requests if r.method == "GET" and r.path.startswith("/api/ai/models/")]
    assert len(model_gets) == 1  # the second cell reused the client and its model description
    assert all(r.path != GENERATE_PATH or r.method == "POST" for r in hub.requests)


# -- keys, offline, odd model ids -----------------------------------------------------------------


def test_no_key_is_one_line_unless_everything_is_cached(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(shell, hub, "--model z-image-turbo --seed 1")
    monkeypatch.delenv("OXEN_API_KEY")
    hub.reset()

    _, r = ok(shell, hub, "--model z-image-turbo --seed 1")  # all cached: no key needed
    assert r[0].cached and bodies(hub) == []

    captured, error = go(shell, hub, "--model z-image-turbo --seed 1,2")
    assert error is not None and error.startswith("No Oxen API key found")
    assert "interrupted" not in all_text(captured)  # nobody pressed Ctrl-C: the sentence says why
    assert "OXEN_API_KEY" in error and "oxen_magic.login()" in error
    assert bodies(hub) == []


def test_a_wrong_key_is_said_once_before_any_grid_without_showing_the_key(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: the model reads carry the key, so a refused key stops the cell there: one
    sentence, no grid, no image asked for."""
    wrong = "oxen-wrong-key-0123456789abcdef"
    monkeypatch.setenv("OXEN_API_KEY", wrong)
    captured, error = go(shell, hub, "--model z-image-turbo --seed 1,2 --out r")
    assert error is not None and "The API refused the key (HTTP 401" in error
    assert hub.generate_calls() == [] and html_outputs(captured) == [] and "r" not in shell.user_ns
    assert wrong not in all_text(captured) and wrong not in error


def test_offline_rerun_uses_the_cache_and_the_saved_model_description(shell: Any, hub: LocalHub) -> None:
    _, first = ok(shell, hub, "--model flux-2-dev --seed 1,2")
    hub.stop()
    magic = magic_of(shell)
    session_clients().clear()  # a new session: no model descriptions in memory
    current_session().details.clear()
    client = magic.client(None, 8)
    client.transport.backoff = 0.001  # a refused connection is retried; keep the test fast
    _, r = ok(shell, hub, "--model flux-2-dev --seed 1,2")
    assert r.done == 2 and all(i.cached for i in r)
    assert [i.data for i in r] == [i.data for i in first]
    assert "Offline: using the description of flux-2-dev saved by an earlier run." in r.notes

    _, error = go(shell, hub, "--model flux-2-dev --seed 1 --aspect-ratio 5:1")  # still validated
    assert error is not None and "aspect_ratio=5:1 is not allowed" in error


def test_a_fine_tuned_model_id_is_encoded_and_saved_under_a_safe_name(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    model = "oxen:tutorials/cyberpunkart-ft_img_gen_12345"
    out = tmp_path / "out"
    _, r = ok(shell, hub, f"--model {model} --seed 1 --save {out}")
    assert [b["model"] for b in bodies(hub)] == [model]
    assert any(
        q.path == "/api/ai/models/oxen%3Atutorials%2Fcyberpunkart-ft_img_gen_12345" for q in hub.requests
    )
    assert [p.name for p in out.iterdir()] == ["oxen-tutorials-cyberpunkart-ft-img-gen-12345_seed-1.png"]
    assert r.done == 1


def test_save_keeps_one_file_per_prompt(shell: Any, hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok(shell, hub, f"--model z-image-turbo --seed 1,10 --save {out}", "a cube\n---\na cone")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "z-image-turbo_p1_seed-1.png",
        "z-image-turbo_p1_seed-10.png",
        "z-image-turbo_p2_seed-1.png",
        "z-image-turbo_p2_seed-10.png",
    ]
    prompts = set()
    for path in out.iterdir():
        with Image.open(path) as image:
            params = json.loads(image.text["parameters"])
        prompts.add((params["prompt"], params["seed"]))
    assert prompts == {("a cube", 1), ("a cube", 10), ("a cone", 1), ("a cone", 10)}


def test_dry_run_shows_the_plan_and_cost_and_sends_nothing(hub: LocalHub, shell: Any) -> None:
    captured, error = run_cell(
        shell, "--model flux-2-dev,z-image-turbo --seed 1..3 --dry-run --out r", "a red cube"
    )
    assert error is None
    assert hub.generate_calls() == []
    r = shell.user_ns["r"]
    assert {i.status for i in r.items} == {"planned"} and r.total == 6
    page = final_html(captured)
    assert "Dry run: 6 image(s) planned (est. &#36;0.081); nothing was sent." in page
    assert page.count("not sent (dry run)") == 6


def test_select_finds_items_by_any_field(shell: Any, hub: LocalHub) -> None:
    ok(shell, hub, "--model z-image-turbo,flux-2-dev --seed 1,2", "a cube\n---\na cone")
    r = shell.user_ns["r"]
    cones = r.select(prompt="a cone")
    assert len(cones) == 4 and {i.prompt for i in cones} == {"a cone"}
    (one,) = r.select(model="flux-2-dev", seed=2, prompt="a cube")
    assert one.ok and one.params["seed"] == 2
    assert r["flux-2-dev", 2] is r.select(model="flux-2-dev", seed=2)[0]


def test_a_changed_oxen_host_takes_effect_on_the_next_cell(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch, make_hub: Callable[..., LocalHub]
) -> None:
    # As after oxen_magic.connect() moved OXEN_HOST: the next cell must not reuse the old client.
    ok(shell, hub, "--model z-image-turbo --seed 1")
    other = make_hub(api_key=hub.api_key, image_size=32)
    monkeypatch.setenv("OXEN_HOST", other.url)
    _, r = ok(shell, hub, "--model z-image-turbo --seed 2")
    assert [b["seed"] for b in bodies(other)] == [2]
    assert r[0].size == (32, 32)
    assert [b["seed"] for b in bodies(hub)] == [1]


def test_save_to_a_home_folder_expands_the_tilde(
    shell: Any, hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    ok(shell, hub, "--model z-image-turbo --seed 1 --save ~/pngs")
    assert len(list((tmp_path / "home" / "pngs").glob("*.png"))) == 1
    assert not (tmp_path / "~").exists()  # not a folder literally named ~


def test_save_to_an_unusable_folder_is_refused_before_anything_is_sent(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    captured, error = go(shell, hub, f"--model z-image-turbo --seed 1 --save {blocker} --out r")
    assert error is not None and "is a file, not a folder; choose another path." in error
    assert hub.generate_calls() == [] and "r" not in shell.user_ns  # nothing billed for PNGs never saved
    assert "Traceback" not in all_text(captured)


def test_no_key_is_said_before_any_grid_is_drawn(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a missing key is one sentence naming both ways on, before a grid is drawn."""
    ok(shell, hub, "--model z-image-turbo --seed 1,2")
    hub.reset()
    monkeypatch.delenv("OXEN_API_KEY")
    shell.user_ns.pop("r", None)
    captured, error = go(shell, hub, "--model z-image-turbo --seed 1..3 --out r")
    assert error is not None and error.startswith("No Oxen API key found; run oxen_magic.login()")
    assert "--host local" in error and "local hub" in error
    assert hub.generate_calls() == []
    assert html_outputs(captured) == [] and "r" not in shell.user_ns
    # a fully cached grid needs no key at all
    captured, error = go(shell, hub, "--model z-image-turbo --seed 1,2 --out r")
    assert error is None and all(i.cached for i in shell.user_ns["r"])
