"""`--input-image`: the grammar, how each kind of input becomes something to send, and the plan.

Pure and fast (no server): the option's text and the user's variables go through `build_spec`
(references only: nothing read), `resolve_inputs` (what `pipeline.prepare` does first: files read,
images checked) and `make_plan` against the real bundled catalogue. The end-to-end half (a real
shell against the local hub's edit route) is in test_editing.py.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from oxen_magic.core.errors import UsageProblem
from oxen_magic.display.modeltable import ModelTable
from oxen_magic.display.render import grid_html
from oxen_magic.network.cache import Noted
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue
from oxen_magic.planning import image_refs as inputs
from oxen_magic.planning import required
from oxen_magic.planning.image_refs import BytesRef, FileRef, InputImage, UrlRef, ValueRef
from oxen_magic.planning.options import build_spec
from oxen_magic.planning.plan import Plan, make_plan
from oxen_magic.planning.required import EDIT_PATH, GENERATE_PATH
from oxen_magic.results.results import Item, Results
from oxen_magic.session.input_images import locate, resolve_inputs

CATALOGUE: dict[str, ModelInfo] = {m["id"]: ModelInfo.from_api(m) for m in bundled_catalogue()}
TAKES = sorted(m for m, info in CATALOGUE.items() if info.takes("input_image"))
REQUIRES = sorted(m for m, info in CATALOGUE.items() if required.role(info) == "required")
TEXT_ONLY = sorted(m for m in CATALOGUE if m not in TAKES)
URL = "https://hub.oxen.ai/api/repos/ox/demo/file/main/cat.png"


def png(colour: str = "red", size: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def plan(line: str, body: str | None = "a cat", variables: dict[str, Any] | None = None) -> Plan:
    return make_plan(resolve_inputs(build_spec(line, body, variables or {})), CATALOGUE)


def problem(line: str, body: str | None = "a cat", variables: dict[str, Any] | None = None) -> str:
    with pytest.raises(UsageProblem) as info:
        plan(line, body, variables)
    return str(info.value)


def test_the_catalogue_counts_match_the_docs() -> None:
    assert len(TAKES) == 27 and len(REQUIRES) == 11
    assert {required.role(CATALOGUE[m]) for m in TEXT_ONLY} == {"none"}


# -- what each kind of input becomes ---------------------------------------------------------


def test_a_url_passes_as_is(tmp_path: Path) -> None:
    (request,) = plan(f"-m flux-kontext-dev -i {URL}").requests
    assert request.payload()["input_image"] == URL  # a string: flux-kontext-dev's schema says so
    assert request.path == EDIT_PATH
    assert request.key_body()["input_image"] == "url:" + URL
    assert request.params["input_image"] == URL


def test_a_file_goes_inline_keyed_by_its_content(tmp_path: Path) -> None:
    data = png()
    (tmp_path / "in.png").write_bytes(data)
    (request,) = plan(f"-m flux-2-dev -i {tmp_path / 'in.png'}").requests
    (uri,) = request.payload()["input_image"]  # a list: flux-2-dev takes reference images
    assert uri == "data:image/png;base64," + base64.b64encode(data).decode()
    sha = "sha256:" + hashlib.sha256(data).hexdigest()
    assert request.key_body()["input_image"] == [sha]
    assert request.params["input_image"] == [sha]  # what a saved PNG records: never the data URI
    assert "data:" not in str(request.params)


def test_a_pil_image_a_list_and_bytes_from_variables() -> None:
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    p = plan("-m flux-2-dev -i pics", variables={"pics": [red, blue]})
    assert p.col_axis == "input_image" and p.col_labels == ("pics[0]", "pics[1]")
    assert len(p.requests) == 2 and all(len(c) == 1 and c[0].thumb for c in p.col_inputs)
    (request,) = plan("-m flux-2-dev -i raw", variables={"raw": png("green")}).requests
    assert request.payload()["input_image"][0].startswith("data:image/png;base64,")


def test_a_result_item_passes_on_its_url_and_is_keyed_by_its_request() -> None:
    source = plan("-m flux-2-dev -s 3").requests[0]
    results = Results(plan("-m flux-2-dev -s 3"))
    item = results[0]
    item.status, item.data, item.mime = "done", png("blue"), "image/png"
    item.url, item.key = "http://127.0.0.1:9/files/abc.png", "k" * 64
    assert item.request == source
    (request,) = plan("-m qwen-image-edit -i best", "make it red", {"best": item}).requests
    assert request.payload()["input_image"] == "http://127.0.0.1:9/files/abc.png"
    assert request.key_body()["input_image"] == "request:" + "k" * 64
    # a whole Results is an axis of its images; an item without a URL goes inline
    item.url = None
    (inline,) = plan("-m qwen-image-edit -i grid", "x", {"grid": results}).requests
    assert inline.payload()["input_image"].startswith("data:image/png;base64,")


def test_a_result_without_an_image_is_refused() -> None:
    item = Item(plan("-m flux-2-dev -s 3").requests[0], 0, 0, status="failed", error="boom")
    assert "that result has no image (boom); rerun its cell first" in problem(
        "-m flux-2-dev -i it", "x", {"it": item}
    )


@pytest.mark.parametrize(
    ("line", "variables", "needle"),
    [
        ("-i nothere", {}, "no variable or file named 'nothere'"),
        ("-i ./nothere.png", {}, "no such file"),
        ("-i n", {"n": 42}, "'n' holds an int, not an image"),
        ("-i d", {"d": {}}, "'d' holds a dict, not an image"),
        ("-i ftp://example.com/a.png", {}, "the API fetches only http(s) URLs, not ftp://"),
        ("-i empty", {"empty": []}, "'empty' is empty"),
        ("-i a,,b", {}, "Empty item in the --input-image list"),
        ("-i 'a++b'", {}, "has an empty part"),
        ("-i junk", {"junk": b"not an image"}, "not a PNG, JPEG, WebP or GIF image"),
    ],
)
def test_bad_inputs_are_one_sentence(line: str, variables: dict[str, Any], needle: str) -> None:
    message = problem("-m flux-2-dev " + line, "x", variables)
    assert needle in message and message.count(". ") == 0 and message.endswith(".")


def test_a_text_file_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a PNG, JPEG, WebP or GIF image" in problem(f"-m flux-2-dev -i {tmp_path / 'notes.txt'}")


# -- parsing is pure: the run's preparation reads --------------------------------------------


def _done_item() -> Item:
    item = Results(plan("-m flux-2-dev -s 3"))[0]
    item.status, item.data, item.mime = "done", png("blue"), "image/png"
    item.url, item.key = "http://127.0.0.1:9/files/abc.png", "k" * 64
    return item


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("parsing touched a file, an image or the network")


#: Every way to look at a file, decode or encode an image, or open a connection.
IO: list[tuple[Any, str]] = [
    (builtins, "open"),
    (io, "open"),
    (os, "open"),
    (os, "stat"),
    (os, "lstat"),
    (Path, "read_bytes"),
    (Path, "stat"),
    (socket, "socket"),
    (socket, "create_connection"),
    (Image, "open"),
    (Image.Image, "save"),
    (Image.Image, "tobytes"),
]


def test_building_a_spec_reads_no_file_decodes_no_image_and_opens_no_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later, best = tmp_path / "later.png", _done_item()
    ns = {"photo": Image.new("RGB", (8, 8), "red"), "raw": png("green"), "where": str(tmp_path / "w.png")}
    line = f"-m flux-2-dev -i {later},{URL},photo,raw,where,best,nothere,./missing.png"
    with monkeypatch.context() as m:
        for owner, name in IO:
            m.setattr(owner, name, _refuse)
        spec = build_spec(line, "a cat", {**ns, "best": best})
        laid_out = make_plan(spec, CATALOGUE)  # the panel's live check plans it too, as purely
    assert [g[0] for g in spec.input_images if g] == [
        FileRef(str(later), whole=line.split("-i ")[1]),
        UrlRef(URL, whole=line.split("-i ")[1]),
        ValueRef("photo", ns["photo"], whole=line.split("-i ")[1]),
        BytesRef(ns["raw"], "raw", "raw", whole=line.split("-i ")[1]),
        FileRef(str(tmp_path / "w.png"), typed=False, whole=line.split("-i ")[1]),
        ValueRef("best", best, whole=line.split("-i ")[1]),
        FileRef("nothere", whole=line.split("-i ")[1]),
        FileRef("./missing.png", whole=line.split("-i ")[1]),
    ]
    assert len(laid_out.requests) == 8 and laid_out.col_labels[-1] == "missing.png"
    assert laid_out.col_labels[5] == "best: flux-2-dev seed 3"
    with pytest.raises(ValueError, match="not resolved"):  # a plan of references is never sent
        laid_out.requests[0].payload()


def test_a_file_written_after_parsing_is_what_is_sent(tmp_path: Path) -> None:
    later = tmp_path / "later.png"
    spec = build_spec(f"-m flux-2-dev -i {later}", "a cat", {})
    data = png("blue")
    later.write_bytes(data)
    (request,) = make_plan(resolve_inputs(spec), CATALOGUE).requests
    assert request.key_body()["input_image"] == ["sha256:" + hashlib.sha256(data).hexdigest()]
    assert request.payload()["input_image"] == ["data:image/png;base64," + base64.b64encode(data).decode()]


@pytest.mark.parametrize(
    ("line", "variables", "sentence"),
    [
        (
            "-i nothere",
            {},
            "--input-image nothere: no variable or file named 'nothere'; run the cell that sets it, "
            "or give a file path or an https:// URL.",
        ),
        (
            "-i ./gone.png",
            {},
            "--input-image ./gone.png: no such file; check the path, or give an https:// URL.",
        ),
        (
            "-i where",
            {"where": "./gone.png"},
            "--input-image ./gone.png: cannot read the file (No such file or directory).",
        ),
        ("-i raw", {"raw": b"junk"}, "--input-image raw: not a PNG, JPEG, WebP or GIF image."),
    ],
)
def test_what_cannot_be_read_is_refused_when_the_run_is_prepared(
    line: str, variables: dict[str, Any], sentence: str
) -> None:
    spec = build_spec("-m flux-2-dev " + line, "x", variables)  # the line itself is well formed
    with pytest.raises(UsageProblem) as info:
        resolve_inputs(spec)
    assert str(info.value) == sentence and info.value.field == "input_image"


def test_the_panel_checks_that_named_files_exist_without_reading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    there = tmp_path / "there.png"
    there.write_bytes(png())
    spec = build_spec(f"-m flux-2-dev -i {there}", "x", {})
    with monkeypatch.context() as m:
        for owner, name in [(builtins, "open"), (io, "open"), (os, "open"), (Image, "open")]:
            m.setattr(owner, name, _refuse)
        assert locate(spec) == spec
        with pytest.raises(UsageProblem, match="no variable or file named 'nothere'"):
            locate(build_spec("-m flux-2-dev -i nothere", "x", {}))


def test_resolving_gives_what_is_sent_for_every_kind(tmp_path: Path) -> None:
    data, best = png("red", 80), _done_item()
    (tmp_path / "in.png").write_bytes(data)
    sha = "sha256:" + hashlib.sha256(data).hexdigest()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    ns = {"raw": data, "best": best, "where": str(tmp_path / "in.png")}
    spec = resolve_inputs(
        build_spec(f"-m flux-2-dev -i {tmp_path / 'in.png'} -i raw,best,where,{URL}", "x", ns)
    )
    images = [g[0] for g in spec.input_images if g]
    assert [(i.url, i.identity, i.label) for i in images] == [
        (uri, sha, "in.png"),
        (uri, sha, "raw"),
        (best.url, "request:" + "k" * 64, "best: flux-2-dev seed 3"),
        (URL, "url:" + URL, "cat.png"),
    ]
    assert all(isinstance(i, InputImage) for i in images) and images[-1].thumb is None
    widths = [Image.open(io.BytesIO(i.thumb)).size[0] for i in images[:3] if i.thumb]
    assert widths == [64, 64, 24]  # a header thumbnail: HEAD_THUMB pixels at most
    assert len(spec.input_images) == 4  # the file given twice (path, `where`) is one value
    assert resolve_inputs(spec) == spec  # resolving twice changes nothing


@pytest.mark.parametrize("name", ["a+b.png", "x,y.png"])
def test_a_file_whose_name_holds_a_separator_is_one_image(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(png())
    spec = build_spec(f"-m flux-2-dev -i {tmp_path / name}", "x", {})
    whole = str(tmp_path / name)  # the grammar splits it, as it cannot look at the disk
    assert {r.whole for g in spec.input_images if g for r in g if not isinstance(r, InputImage)} == {whole}
    (group,) = resolve_inputs(spec).input_images
    assert group is not None and [i.label for i in group] == [name]


# -- grammar: axis (comma) versus reference images (+) ------------------------------------------


def test_comma_is_an_axis_and_plus_joins_reference_images() -> None:
    a, b = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    ns = {"a": a, "b": b}
    axis = plan("-m flux-2-dev -i a,b -s 1,2", variables=ns)
    assert axis.row_axes == ("input_image",) and axis.col_axis == "seed"
    assert len(axis.requests) == 4 and [len(g) for g in axis.row_inputs] == [1, 1]
    (refs,) = plan("-m flux-2-dev -i a+b", variables=ns).requests
    assert len(refs.payload()["input_image"]) == 2
    assert plan("-m flux-2-dev -i a+b", variables=ns).fixed_inputs[1].label == "b"
    (joined,) = plan("-m flux-2-dev -i +both", variables={"both": [a, b]}).requests
    assert joined.key_body()["input_image"] == refs.key_body()["input_image"]


def test_one_image_models_refuse_reference_images() -> None:
    ns = {"a": Image.new("RGB", (8, 8), "red"), "b": Image.new("RGB", (8, 8), "blue")}
    message = problem("-m flux-kontext-dev -i a+b", "x", ns)
    assert message == (
        "flux-kontext-dev takes one input image per request; separate images with commas (one "
        "request each) instead of joining them with +."
    )


# -- the plan: required fields, text-only models, where requests go -----------------------------


@pytest.mark.parametrize("model", REQUIRES)
def test_models_that_need_an_input_image_are_refused_from_text(model: str) -> None:
    message = problem(f"-m {model}")
    assert message.startswith(f"{model} needs an input image; add --input-image")


@pytest.mark.parametrize("model", TEXT_ONLY)
def test_text_only_models_refuse_an_input_image(model: str) -> None:
    assert problem(f"-m {model} -i {URL}").startswith(f"{model} does not take an input image;")
    (request,) = plan(f"-m {model}").requests
    assert request.path == GENERATE_PATH and "input_image" not in request.payload()


@pytest.mark.parametrize("model", TAKES)
def test_input_taking_models_send_the_schemas_shape_to_their_endpoint(model: str) -> None:
    info = CATALOGUE[model]
    (request,) = plan(f"-m {model} -i {URL}").requests
    sent = request.payload()["input_image"]
    assert sent == ([URL] if info.properties["input_image"]["type"] == "array" else URL)
    assert request.path == "/api/ai/images/edit"  # even gpt-image-1-5, whose endpoint says generate


def test_an_upscaler_needs_no_prompt_and_sends_none() -> None:
    (request,) = plan(f"-m topazlabs-image-upscale -i {URL}", None).requests
    assert request.payload() == {"model": "topazlabs-image-upscale", "input_image": URL}
    p = plan(f"-m topazlabs-image-upscale -i {URL}", "sharper")
    assert p.requests[0].payload().get("prompt") is None
    assert "topazlabs-image-upscale takes no prompt; sent without it." in p.notes


def test_an_empty_prompt_is_refused_where_a_model_needs_one() -> None:
    assert problem(f"-m flux-kontext-dev -i {URL}", None) == (
        "flux-kontext-dev needs a prompt; write one in the cell body (or on the %oxenimage line)."
    )
    assert problem("-m flux-2-dev", "").startswith("Prompt cannot be empty")  # unchanged


def test_the_same_input_on_two_lines_is_one_request() -> None:
    a = Image.new("RGB", (8, 8), "red")
    p = plan("-m flux-2-dev -i a,a2", variables={"a": a, "a2": a.copy()})
    assert len(p.requests) == 1  # same content, same identity: the second is deduplicated


# -- display: header thumbnails, model table ----------------------------------------------------


def test_the_grid_shows_each_input_in_its_header() -> None:
    ns = {"a": Image.new("RGB", (8, 8), "red"), "b": Image.new("RGB", (8, 8), "blue")}
    page = grid_html(Results(plan("-m flux-2-dev -i a,b -s 1,2", variables=ns)))
    assert page.count('class="oxen-input"') == 2 and page.count("data:image/jpeg;base64,") == 2
    single = grid_html(Results(plan("-m flux-2-dev -i a", variables=ns)))
    assert 'class="oxen-inputs"' in single and "input: a" in single
    assert "data:image/png" not in page + single  # the inputs' own bytes are never in the page


def test_the_model_table_says_which_models_need_an_image() -> None:
    rows = {r[0]: r[2] for r in ModelTable(list(CATALOGUE.values())).rows()}
    assert {m for m, v in rows.items() if v.startswith("required")} == set(REQUIRES)
    assert {m for m, v in rows.items() if v == "text only"} == set(TEXT_ONLY)
    assert rows["qwen-image-edit-plus"] == "required (several)"
    assert rows["flux-2-dev"] == "optional (several)" and rows["qwen-image-2"] == "optional"


def test_the_inline_note_is_given_once() -> None:
    noted = Noted()  # the session's (ProcessState.notes)
    group = plan("-m flux-2-dev -i a", variables={"a": Image.new("RGB", (8, 8))}).fixed_inputs
    first = inputs.inline_note([group], noted)
    assert first is not None and "documents input images as public URLs" in first
    assert inputs.inline_note([group], noted) is None
    assert inputs.inline_note([None], Noted()) is None


def test_the_help_documents_the_input_grammar() -> None:
    from oxen_magic.planning.options import HELP

    for needle in ("--input-image", "a.png+b.png", "-i +refs", "one request each"):
        assert needle in HELP


def test_the_contact_sheet_shows_the_inputs_too() -> None:
    ns = {"a": Image.new("RGB", (64, 64), "red"), "b": Image.new("RGB", (64, 64), "blue")}
    plain = Results(plan("-m flux-2-dev -s 1,2"), size=96).contact_sheet()
    shared = Results(plan("-m flux-2-dev -i a+b -s 1,2", variables=ns), size=96).contact_sheet()
    assert shared.height == plain.height + 48  # a band on top for the inputs every image shares
    pixels = shared.convert("RGB")
    assert pixels.getpixel((20, 20)) == pytest.approx((254, 0, 0), abs=8)  # a's thumbnail
    rows = Results(plan("-m flux-2-dev -i a,b -s 1,2", variables=ns), size=96).contact_sheet()
    assert rows.width > plain.width  # the row labels' column holds the input thumbnails
