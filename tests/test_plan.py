"""Unit tests for `oxen_magic.planning.plan`: `Spec` + model descriptions into a `Plan`.

The model descriptions are the real ones bundled with the package (`bundled_catalogue()`), turned into
`ModelInfo` exactly as the client does. Pure and fast: no kernel, no server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from oxen_magic.core.errors import UsageProblem
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue
from oxen_magic.planning.options import DEFAULT_MODEL, build_spec
from oxen_magic.planning.plan import Cell, Plan, Request, axis_label, check_value, make_plan, suggest

CATALOGUE: dict[str, ModelInfo] = {m["id"]: ModelInfo.from_api(m) for m in bundled_catalogue()}
API_OBJECTS: dict[str, dict[str, Any]] = {m["id"]: m for m in bundled_catalogue()}

FLUX = "flux-2-dev"
KLEIN = "black-forest-labs-flux-2-klein-4b"
ZIT = "z-image-turbo"
GPT = "gpt-image-1-5"
QWEN = "qwen-image-2"
KONTEXT = "flux-kontext-dev"


def plan(line: str = "", body: str = "a cat", models: Mapping[str, ModelInfo | None] | None = None) -> Plan:
    spec = build_spec(line, body)
    return make_plan(spec, CATALOGUE if models is None else models)


def problem(line: str, body: str = "a cat", models: Mapping[str, ModelInfo | None] | None = None) -> str:
    with pytest.raises(UsageProblem) as info:
        plan(line, body, models)
    return str(info.value)


def priced(model_id: str, cost: float) -> ModelInfo:
    obj = dict(API_OBJECTS[model_id], pricing={"method": "per_image", "cost_per_image": cost})
    return ModelInfo.from_api(obj)


def grid(p: Plan) -> list[list[Cell]]:
    rows: list[list[Cell]] = [[] for _ in p.row_labels]
    for cell in p.cells:
        rows[cell.row].append(cell)
    return rows


# --- the catalogue the tests rely on -----------------------------------------------------------


def test_bundled_catalogue_describes_the_models_used_here() -> None:
    assert len(CATALOGUE) == 34
    assert all(m.makes_images and m.request_schema is not None for m in CATALOGUE.values())
    assert DEFAULT_MODEL in CATALOGUE
    assert CATALOGUE[ZIT].takes("aspect_ratio") is False
    assert CATALOGUE[GPT].takes("seed") is False
    assert CATALOGUE[GPT].takes("size") is True
    assert CATALOGUE[QWEN].properties["seed"] == {"type": "integer", "minimum": 0, "maximum": 2147483647}
    assert CATALOGUE[KONTEXT].properties["num_inference_steps"]["minimum"] == 4
    assert ModelInfo(id="x").takes("seed") is None


# --- the cartesian product and the grid --------------------------------------------------------


def test_product_count_and_order_models_prompts_seeds() -> None:
    p = plan(f"-m {FLUX},{ZIT} -s 1..3", "a cat\n---\na dog")
    assert len(p.requests) == 12
    assert [(r.model, r.prompt, r.seed) for r in p.requests] == [
        (m, prompt, s) for m in (FLUX, ZIT) for prompt in ("a cat", "a dog") for s in (1, 2, 3)
    ]
    assert p.row_axes == ("model", "prompt")
    assert p.col_axis == "seed"
    assert p.row_labels == (
        f"{FLUX} · prompt 1: a cat",
        f"{FLUX} · prompt 2: a dog",
        f"{ZIT} · prompt 1: a cat",
        f"{ZIT} · prompt 2: a dog",
    )
    assert p.col_labels == ("seed 1", "seed 2", "seed 3")
    assert [(c.row, c.col) for c in p.cells] == [(r, c) for r in range(4) for c in range(3)]
    assert all(c.note is None for c in p.cells)
    assert p.notes == ()


def test_steps_and_aspect_ratios_are_row_axes_when_seeds_vary() -> None:
    p = plan(f"-m {FLUX} -a 1:1,16:9 -n 10,20 -s 1,2")
    assert p.row_axes == ("steps", "aspect_ratio")
    assert p.col_axis == "seed"
    assert p.row_labels == ("10 steps · 1:1", "10 steps · 16:9", "20 steps · 1:1", "20 steps · 16:9")
    assert p.col_labels == ("seed 1", "seed 2")
    assert [(r.steps, r.aspect_ratio, r.seed) for r in p.requests] == [
        (n, a, s) for n in (10, 20) for a in ("1:1", "16:9") for s in (1, 2)
    ]


def test_models_by_seeds_rows_are_models_cols_are_seeds() -> None:
    p = plan(f"-m {FLUX},{KLEIN},{ZIT} -s 5,6")
    assert (p.row_axes, p.col_axis) == (("model",), "seed")
    assert p.row_labels == (FLUX, KLEIN, ZIT)
    assert p.col_labels == ("seed 5", "seed 6")
    assert [[c.request.model for c in row if c.request] for row in grid(p)] == [
        [m, m] for m in (FLUX, KLEIN, ZIT)
    ]


@pytest.mark.parametrize(
    ("line", "body", "col_axis", "col_labels"),
    [
        ("-s 1..3", "a cat", "seed", ("seed 1", "seed 2", "seed 3")),
        (f"-m {FLUX},{KLEIN}", "a cat", "model", (FLUX, KLEIN)),
        ("", "a cat\n---\na dog", "prompt", ("prompt 1: a cat", "prompt 2: a dog")),
        ("-a 1:1,16:9", "a cat", "aspect_ratio", ("1:1", "16:9")),
        ("-n 10,20", "a cat", "steps", ("10 steps", "20 steps")),
    ],
)
def test_one_varying_axis_is_the_columns(
    line: str, body: str, col_axis: str, col_labels: tuple[str, ...]
) -> None:
    p = plan(line, body)
    assert p.col_axis == col_axis
    assert p.col_labels == col_labels
    assert p.row_axes == ()
    assert p.row_labels == ("",)
    assert [(c.row, c.col) for c in p.cells] == [(0, i) for i in range(len(col_labels))]


def test_without_seeds_the_last_varying_axis_is_the_columns() -> None:
    p = plan(f"-m {FLUX},{KLEIN} -a 1:1,16:9", "a cat\n---\na dog")
    assert p.row_axes == ("model", "prompt")
    assert p.col_axis == "aspect_ratio"
    assert p.row_labels[1] == f"{FLUX} · prompt 2: a dog"
    assert len(p.requests) == 8


def test_nothing_varies_one_cell() -> None:
    p = plan()
    assert p.col_axis is None
    assert p.row_axes == ()
    assert (p.row_labels, p.col_labels) == (("",), ("",))
    assert len(p.cells) == 1
    assert p.cells[0].request == Request(model=DEFAULT_MODEL, prompt="a cat")


def test_axis_labels() -> None:
    assert axis_label("seed", None) == "random seed"
    assert axis_label("seed", 0) == "seed 0"
    assert axis_label("steps", None) == "default steps"
    assert axis_label("steps", 8) == "8 steps"
    assert axis_label("aspect_ratio", None) == "default ratio"
    assert axis_label("model", FLUX) == FLUX
    assert axis_label("prompt", "short") == "short"
    long = "x" * 50
    assert axis_label("prompt", long) == "x" * 39 + "…"
    assert axis_label("prompt", long, ["a", long]) == "prompt 2: " + "x" * 39 + "…"


# --- the request bodies ------------------------------------------------------------------------


def test_default_payload_is_minimal() -> None:
    (request,) = plan().requests
    assert request.payload() == {"model": DEFAULT_MODEL, "prompt": "a cat"}


def test_payload_carries_every_field() -> None:
    line = (
        f"-m {FLUX} -s 7 -a 16:9 -n 20 -p guidance=3 -p output_format=png -p output_quality=90 "
        "-p disable_safety_checker=yes --format b64_json --namespace my-org"
    )
    (request,) = plan(line).requests
    assert request.payload() == {
        "model": FLUX,
        "prompt": "a cat",
        "seed": 7,
        "aspect_ratio": "16:9",
        "num_inference_steps": 20,
        "guidance": 3.0,
        "output_format": "png",
        "output_quality": 90,
        "disable_safety_checker": True,
        "response_format": "b64_json",
        "target_namespace": "my-org",
    }
    assert isinstance(request.payload()["guidance"], float)  # typed by the schema: number
    assert request.params == {
        "model": FLUX,
        "prompt": "a cat",
        "seed": 7,
        "aspect_ratio": "16:9",
        "num_inference_steps": 20,
        "guidance": 3.0,
        "output_format": "png",
        "output_quality": 90,
        "disable_safety_checker": True,
    }


def test_response_format_and_namespace_reach_every_request() -> None:
    p = plan(f"-m {FLUX},{ZIT} -s 1,2 --format b64_json --namespace org")
    assert {(r.response_format, r.namespace) for r in p.requests} == {("b64_json", "org")}
    assert all(r.payload()["target_namespace"] == "org" for r in p.requests)
    p = plan("--format url")
    assert "response_format" not in p.requests[0].payload()


def test_request_payload_directly() -> None:
    request = Request(model="m", prompt="p", seed=0, extra=(("k", [1, 2]),), namespace="")
    assert request.payload() == {"model": "m", "prompt": "p", "seed": 0, "k": [1, 2]}


def test_array_params_and_dedupe_with_lists() -> None:
    # input_image is an array in flux-2-dev's schema; list values must not break deduplication.
    p = plan(f"-m {FLUX} -p input_image=a.png,b.png -s 1,2")
    assert [r.payload()["input_image"] for r in p.requests] == [["a.png", "b.png"]] * 2
    (request,) = plan(f"-m {FLUX} -p 'input_image=[\"u\"]'").requests
    assert request.payload()["input_image"] == ["u"]
    p = plan(f"-m {GPT} -s 1,2 -p input_image=a.png")
    assert len(p.requests) == 1
    assert p.cells[1].note == "same request as seed 1"


# --- validation against the schema -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            f"-m {FLUX} -a 5:7",
            f"aspect_ratio=5:7 is not allowed for {FLUX}; choose one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, "
            "match_input_image.",
        ),
        (
            f"-m {GPT} -p size=huge",
            f"size=huge is not allowed for {GPT}; choose one of auto, square, portrait, landscape.",
        ),
        (
            f"-m {KONTEXT} -n 2",
            f"num_inference_steps=2 is out of range for {KONTEXT}; allowed 4 to 50.",
        ),
        (
            f"-m {KONTEXT} -n 40..60:10",
            f"num_inference_steps=60 is out of range for {KONTEXT}; allowed 4 to 50.",
        ),
        (
            f"-m {QWEN} -s 2147483648",
            f"seed=2147483648 is out of range for {QWEN}; allowed 0 to 2147483647.",
        ),
        (f"-m {FLUX} -p guidance=11", f"guidance=11.0 is out of range for {FLUX}; allowed 0.0 to 10.0."),
        (f"-m {FLUX} -p output_quality=high", f"output_quality=high must be a whole number for {FLUX}."),
        (f"-m {FLUX} -p output_quality=1.5", f"output_quality=1.5 must be a whole number for {FLUX}."),
        (
            f"-m {FLUX} -p output_quality=101",
            f"output_quality=101 is out of range for {FLUX}; allowed 0 to 100.",
        ),
        (f"-m {FLUX} -p guidance=lots", f"guidance=lots must be a number for {FLUX}."),
        (
            f"-m {FLUX} -p disable_safety_checker=maybe",
            f"disable_safety_checker=maybe must be true or false for {FLUX}.",
        ),
        (
            f"-m {FLUX} -p output_format=gif",
            f"output_format=gif is not allowed for {FLUX}; choose one of webp, jpg, png.",
        ),
        (
            f"-m {ZIT} -p guidance=3",
            f"{ZIT} has no parameter 'guidance'; it takes: num_inference_steps (--steps), output_format, "
            "seed (--seed).",
        ),
        (
            f"-m {KLEIN} -p guidance=3",
            f"{KLEIN} has no parameter 'guidance'; it takes: aspect_ratio (--aspect-ratio), guidance_scale, "
            "input_image, num_inference_steps (--steps), output_format, output_quality, seed (--seed).",
        ),
    ],
)
def test_schema_validation_messages(line: str, message: str) -> None:
    assert problem(line) == message


def test_values_inside_the_schema_pass() -> None:
    assert plan(f"-m {QWEN} -s 0,2147483647 -a 2:1").requests[1].seed == 2147483647
    assert [r.steps for r in plan(f"-m {KONTEXT} -n 4,50 -i https://example.com/in.png").requests] == [4, 50]
    (request,) = plan(f"-m {QWEN} -p match_input_image=off -p 'negative_prompt=blurry, dark'").requests
    assert request.payload()["match_input_image"] is False
    assert request.payload()["negative_prompt"] == "blurry, dark"


def test_check_value_directly() -> None:
    check_value("m", "n", 3, {"type": "integer", "minimum": 1})
    with pytest.raises(UsageProblem, match=r"^n='3' must be a whole number for m\.$"):
        check_value("m", "n", "3", {"type": "integer"})
    with pytest.raises(UsageProblem, match="must be a whole number"):
        check_value("m", "n", True, {"type": "integer"})
    with pytest.raises(UsageProblem, match="must be a number"):
        check_value("m", "g", False, {"type": "number"})
    with pytest.raises(UsageProblem, match=r"^n=9 is out of range for m; allowed … to 5\.$"):
        check_value("m", "n", 9, {"type": "integer", "maximum": 5})
    with pytest.raises(UsageProblem, match=r"^n=-1 is out of range for m; allowed 0 to …\.$"):
        check_value("m", "n", -1, {"minimum": 0})


# --- parameters a model does not take ----------------------------------------------------------


def test_seed_sweep_over_a_model_without_seeds_is_one_request() -> None:
    p = plan(f"-m {GPT} -s 1..4")
    assert len(p.cells) == 4
    (request,) = p.requests
    assert request.payload() == {"model": GPT, "prompt": "a cat"}
    assert p.cells[0].request == request
    assert [(c.request, c.note) for c in p.cells[1:]] == [(None, "same request as seed 1")] * 3
    assert p.notes == (
        f"{GPT} takes no seed; one image instead of 4, since every seed gives the same request.",
    )


def test_single_seed_on_a_model_without_seeds() -> None:
    p = plan(f"-m {GPT} -s 5")
    assert p.requests == (Request(model=GPT, prompt="a cat"),)
    assert p.notes == (f"{GPT} takes no seed; sent without it.",)


def test_mixed_models_only_the_seedless_row_collapses() -> None:
    p = plan(f"-m {FLUX},{GPT} -s 1..3")
    assert [r.seed for r in p.requests] == [1, 2, 3, None]
    flux_row, gpt_row = grid(p)
    assert all(c.request is not None for c in flux_row)
    assert [c.note for c in gpt_row] == [None, "same request as seed 1", "same request as seed 1"]


def test_model_without_aspect_ratio_is_sent_without_it() -> None:
    p = plan(f"-m {ZIT} -a 16:9 -s 1,2")
    assert [r.payload() for r in p.requests] == [
        {"model": ZIT, "prompt": "a cat", "seed": 1},
        {"model": ZIT, "prompt": "a cat", "seed": 2},
    ]
    assert p.notes == (f"{ZIT} takes no aspect_ratio; sent without it.",)


def test_aspect_ratio_sweep_on_a_model_without_it_collapses() -> None:
    p = plan(f"-m {ZIT} -a 1:1,16:9")
    assert len(p.requests) == 1
    assert p.cells[1].note == "same request as 1:1"
    # With seeds as columns, a duplicate in another row names that row too.
    p = plan(f"-m {ZIT} -a 1:1,16:9 -s 1,2")
    assert p.row_labels == ("1:1", "16:9")
    assert [c.note for c in grid(p)[1]] == ["same request as 1:1, seed 1", "same request as 1:1, seed 2"]
    assert len(p.requests) == 2


def test_steps_on_a_model_without_steps() -> None:
    p = plan(f"-m {GPT} -n 20 -a 1:1")
    assert p.requests[0].payload() == {"model": GPT, "prompt": "a cat"}
    assert p.notes == (
        f"{GPT} takes no aspect_ratio; sent without it.",
        f"{GPT} takes no num_inference_steps; sent without it.",
    )


# --- models whose schema is unknown ------------------------------------------------------------


@pytest.mark.parametrize(
    "models",
    [
        {"oxen:me/my-finetune": None},
        {"oxen:me/my-finetune": ModelInfo.from_api({"id": "oxen:me/my-finetune", "request_schema": None})},
        {},  # not described at all
    ],
)
def test_unknown_model_sends_values_as_given(models: Mapping[str, ModelInfo | None]) -> None:
    line = (
        "-m oxen:me/my-finetune -s 3 -a 21:9 -n 999 -p cfg=7.5 -p flag=true -p name=bob -p n=3 "
        "-p 'arr=[1,2]' -p nothing=null -p 'obj={\"a\": 1}'"
    )
    p = plan(line, models=models)
    (request,) = p.requests
    assert request.payload() == {
        "model": "oxen:me/my-finetune",
        "prompt": "a cat",
        "seed": 3,
        "aspect_ratio": "21:9",
        "num_inference_steps": 999,
        "cfg": 7.5,
        "flag": True,
        "name": "bob",
        "n": 3,
        "arr": [1, 2],
        "nothing": None,
        "obj": {"a": 1},
    }
    assert p.notes == ()
    assert p.cost is None
    assert p.cost_line() is None


# --- cost --------------------------------------------------------------------------------------


def test_cost_estimate() -> None:
    p = plan(f"-m {FLUX} -s 1..4", models={FLUX: priced(FLUX, 0.025)})
    assert p.cost == pytest.approx(0.1)
    assert p.unpriced == 0
    assert p.cost_line() == "est. $0.100"
    p = plan(f"-m {FLUX} -s 1..4", models={FLUX: priced(FLUX, 0.5)})
    assert p.cost_line() == "est. $2.00"


def test_cost_counts_unpriced_images() -> None:
    p = plan(f"-m {FLUX},{KLEIN} -s 1,2", models={FLUX: priced(FLUX, 0.025), KLEIN: CATALOGUE[KLEIN]})
    assert p.cost == pytest.approx(0.05)
    assert p.unpriced == 2
    assert p.cost_line() == "est. $0.050 + 2 image(s) of unknown price"
    p = plan(f"-m {FLUX},custom -s 1,2", models={FLUX: priced(FLUX, 0.025), "custom": None})
    assert p.unpriced == 2


def test_cost_counts_requests_not_cells() -> None:
    p = plan(f"-m {GPT} -s 1..4", models={GPT: priced(GPT, 0.04)})
    assert p.cost == pytest.approx(0.04)
    assert p.cost_line() == "est. $0.040"


def test_no_price_known() -> None:
    p = plan(f"-m {FLUX} -s 1..4")
    assert (p.cost, p.unpriced, p.cost_line()) == (None, 0, None)


# --- model-name suggestions --------------------------------------------------------------------


def test_suggest_close_matches() -> None:
    ids = list(CATALOGUE)
    message = suggest("flux-2-dve", ids)
    assert message.startswith("Model not found: flux-2-dve; did you mean flux-2-dev")
    assert message.endswith("?")
    assert suggest("FLUX-2-DEV", ids).startswith("Model not found: FLUX-2-DEV; did you mean flux-2-dev")
    assert "z-image-turbo" in suggest("z-image-trubo", ids)


def test_suggest_substring_and_fallback() -> None:
    ids = list(CATALOGUE)
    assert suggest("kontext", ids) == "Model not found: kontext; did you mean flux-kontext-dev?"
    assert suggest("zzzzqqqq", ids) == (
        "Model not found: zzzzqqqq; run %oxenimage --list-models to see the image models."
    )
    assert suggest("anything", []).endswith("run %oxenimage --list-models to see the image models.")


def test_param_only_some_models_take_goes_to_those_with_a_note() -> None:
    p = plan(f"-m {FLUX},{KLEIN} -p guidance=3 -s 1")
    bodies = {r.model: r.payload() for r in p.requests}
    assert bodies[FLUX]["guidance"] == 3.0
    assert "guidance" not in bodies[KLEIN]
    assert f"{KLEIN} takes no guidance; sent without it." in p.notes
