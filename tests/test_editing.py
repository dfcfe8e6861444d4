"""`--input-image` end to end: a real IPython shell against the local hub's edit route.

The hub draws a result made from input images visibly derived from them and marks it with the
sha256 of the input bytes it fetched (`oxen-input-sha`), so each test traces an image back to
exactly the input it was made from: a file, a PIL image, an earlier cell's result, a URL.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import all_text, html_outputs, run_cell

from oxen_magic.localhub import LocalHub
from oxen_magic.localhub.placeholder import input_sha_of
from oxen_magic.network.model_info import ModelInfo, bundled_catalogue
from oxen_magic.planning.required import role

CATALOGUE = {m["id"]: ModelInfo.from_api(m) for m in bundled_catalogue()}
TAKES = sorted(m for m, info in CATALOGUE.items() if info.takes("input_image"))
REQUIRES = {m for m, info in CATALOGUE.items() if role(info) == "required"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def posts(hub: LocalHub) -> list[Any]:
    return hub.generate_calls() + hub.edit_calls()


def body(record: Any) -> dict[str, Any]:
    return dict(record.body)


def make(shell: Any, line: str, cell: str | None = "a red fox", out: str = "r") -> Any:
    _, error = run_cell(shell, f"{line} --out {out}", cell)
    assert error is None, error
    return shell.user_ns[out]


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (20, 120, 200)).save(path)
    return path


# -- every model of the catalogue -------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(CATALOGUE))
def test_every_model_from_a_text_prompt_generates_or_is_refused_unsent(
    shell: Any, hub: LocalHub, model: str
) -> None:
    captured, error = run_cell(shell, f"-m {model}", "a lighthouse at dusk")
    if model in REQUIRES:
        assert error is not None and error.startswith(f"{model} needs an input image; add --input-image")
        assert posts(hub) == []
    else:
        assert error is None and "1/1 images" in all_text(captured)
        assert [r.path for r in posts(hub)] == ["/api/ai/images/generate"]


@pytest.mark.parametrize("model", TAKES)
def test_every_input_taking_model_makes_an_image_traced_to_its_input(
    shell: Any, hub: LocalHub, model: str, picture: Path
) -> None:
    r = make(shell, f"-m {model} -i {picture}", "make it autumn")
    assert r[0].ok, r[0].error
    assert input_sha_of(r[0].data) == sha(picture.read_bytes())
    (record,) = posts(hub)
    assert record.path == "/api/ai/images/edit"  # the documented route, whatever `endpoint` says
    sent = body(record)["input_image"]
    assert isinstance(sent, list) == (CATALOGUE[model].properties["input_image"]["type"] == "array")


# -- kinds of input ---------------------------------------------------------------------------


def test_a_chain_across_cells_passes_the_result_url(shell: Any, hub: LocalHub) -> None:
    grid = make(shell, "-m flux-2-dev -s 1..4", "a red cube", out="grid")
    shell.user_ns["best"] = grid["flux-2-dev", 3]
    captured, error = run_cell(shell, "-m flux-kontext-dev -i best -s 7 --out edited", "paint it blue")
    assert error is None, error
    edited = shell.user_ns["edited"]
    best = shell.user_ns["best"]
    assert input_sha_of(edited[0].data) == sha(best.data)
    (edit,) = hub.edit_calls()
    assert body(edit)["input_image"] == best.url and best.url.startswith(hub.url)
    text = all_text(captured)
    assert "data:" not in json.dumps(edited[0].params) and "documents input images" not in text
    page = "".join(html_outputs(captured))  # the progress line, then one output per row
    assert 'class="oxen-inputs"' in page and "input: best: flux-2-dev seed 3" in page

    # the chain reruns from the cache; the input's identity is its own request
    hub.reset()
    again = make(shell, "-m flux-kontext-dev -i best -s 7", "paint it blue")
    assert again[0].cached and again[0].data == edited[0].data and posts(hub) == []


def test_a_cached_result_still_passes_on_its_url(shell: Any, hub: LocalHub) -> None:
    make(shell, "-m flux-2-dev -s 3", "a red cube")
    cached = make(shell, "-m flux-2-dev -s 3", "a red cube")
    assert cached[0].cached and cached[0].url and cached[0].url.startswith(hub.url)


def test_a_file_input_goes_inline_with_a_note_once(shell: Any, hub: LocalHub, picture: Path) -> None:
    captured, error = run_cell(shell, f"-m flux-2-dev -i {picture} -s 1", "add snow")
    assert error is None, error
    assert "as a data: URI; the API documents input images as public URLs" in all_text(captured)
    assert body(hub.edit_calls()[0])["input_image"][0].startswith("data:image/png;base64,")
    captured, error = run_cell(shell, f"-m flux-2-dev -i {picture} -s 2", "add snow")
    assert error is None and "data: URI" not in all_text(captured)


def test_a_pil_image_variable(shell: Any, hub: LocalHub) -> None:
    shell.user_ns["photo"] = Image.new("RGB", (16, 16), "orange")
    r = make(shell, "-m qwen-image-edit -i photo", "add a hat")
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "orange").save(out, format="PNG")
    assert input_sha_of(r[0].data) == sha(out.getvalue())


def test_a_url_input_the_hubs_own_result(shell: Any, hub: LocalHub) -> None:
    source = make(shell, "-m z-image-turbo -s 5", "a teapot")
    url = source[0].url
    r = make(shell, f"-m sam-3-image -i {url}", "the teapot")
    assert body(hub.edit_calls()[0])["input_image"] == url
    assert input_sha_of(r[0].data) == sha(source[0].data)


def test_an_input_axis_and_reference_images(shell: Any, hub: LocalHub, tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.new("RGB", (20, 20), "red").save(a)
    Image.new("RGB", (20, 20), "green").save(b, format="JPEG")
    axis = make(shell, f"-m flux-2-dev -i {a},{b} -s 1,2", "a still life")
    assert axis.plan.row_axes == ("input_image",) and len(posts(hub)) == 4
    assert [input_sha_of(i.data) for i in axis] == [sha(a.read_bytes())] * 2 + [sha(b.read_bytes())] * 2
    page = axis._repr_html_()
    assert page.count('class="oxen-input"') == 2

    hub.reset()
    refs = make(shell, f"-m nano-banana -i {a}+{b}", "combine them")
    (record,) = posts(hub)
    assert len(body(record)["input_image"]) == 2
    assert input_sha_of(refs[0].data) == f"{sha(a.read_bytes())},{sha(b.read_bytes())}"


def test_an_upscale_needs_no_prompt(shell: Any, hub: LocalHub, picture: Path) -> None:
    r = make(shell, f"-m topazlabs-image-upscale -i {picture} -p upscale_factor=4x", None)
    assert r[0].ok and "prompt" not in body(hub.edit_calls()[0])


def test_an_expired_result_url_says_how_to_recover(shell: Any, hub: LocalHub) -> None:
    grid = make(shell, "-m flux-2-dev -s 3", "a red cube", out="grid")
    shell.user_ns["best"] = grid[0]
    hub.expire_urls()
    _, error = run_cell(shell, "-m flux-kontext-dev -i best --out r", "paint it blue")
    assert error is None
    item = shell.user_ns["r"][0]
    assert item.status == "failed"
    assert item.error.startswith("The server could not fetch the input image best: flux-2-dev seed 3 (")
    assert "403 Client Error: Forbidden for url" in item.error
    assert "rerun that cell with --no-cache" in item.error and "--input-image input.png" in item.error
    # the advice works: a fresh URL from the source cell, and the edit goes through
    make(shell, "-m flux-2-dev -s 3 --no-cache", "a red cube", out="grid")
    shell.user_ns["best"] = shell.user_ns["grid"][0]
    assert make(shell, "-m flux-kontext-dev -i best", "paint it blue")[0].ok


def test_saved_pngs_record_the_input_never_a_data_uri(
    shell: Any, hub: LocalHub, picture: Path, tmp_path: Path
) -> None:
    make(shell, f"-m flux-2-dev -i {picture} -s 1 --save {tmp_path / 'out'}", "add snow")
    (path,) = (tmp_path / "out").glob("*.png")
    with Image.open(path) as png:
        params = json.loads(png.text["parameters"])
    assert params["input_image"] == ["sha256:" + sha(picture.read_bytes())]
    assert "in-photo.png" in path.name


def test_refusals_send_nothing(shell: Any, hub: LocalHub, picture: Path) -> None:
    for line, needle in [
        (f"-m z-image-turbo -i {picture}", "z-image-turbo does not take an input image"),
        (f"-m flux-kontext-dev -i {picture}+{picture}x", "no such file"),
        ("-m flux-2-dev -i nothing_here", "no variable or file named 'nothing_here'"),
        ("-m flux-2-dev -i s3://bucket/photo.png", "the API fetches only http(s) URLs, not s3://"),
        ("-m flux-2-dev -i https://me:hunter2@example.com/a.png", "has a user name or password in it"),
    ]:
        _, error = run_cell(shell, line, "x")
        assert error is not None and needle in error and "hunter2" not in error
    assert posts(hub) == []


def test_input_files_are_read_when_the_run_is_prepared_before_any_request(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    """The line is parsed without reading its files; `prepare` reads them before the models."""
    later = tmp_path / "later.png"
    _, error = run_cell(shell, f"-m flux-2-dev -i {later}", "x")
    assert error == f"--input-image {later}: no such file; check the path, or give an https:// URL."
    assert list(hub.requests) == []  # refused before even the model lookup
    Image.new("RGB", (12, 12), "purple").save(later)
    r = make(shell, f"-m flux-2-dev -i {later}", "x")
    assert input_sha_of(r[0].data) == sha(later.read_bytes())


def test_an_upscaler_with_nothing_given_asks_for_the_image_not_a_prompt(shell: Any, hub: LocalHub) -> None:
    """An upscaler takes no prompt: "Prompt cannot be empty" would send the user the wrong way."""
    _, error = run_cell(shell, "-m topazlabs-image-upscale -p upscale_factor=4x", None)
    assert error is not None and error.startswith("topazlabs-image-upscale needs an input image;")
    assert "--input-image" in error and "prompt" not in error
    _, error = run_cell(shell, "-m flux-kontext-dev", None)  # needs both: one sentence names both
    assert error is not None and error.startswith("flux-kontext-dev needs an input image and a prompt;")
    _, error = run_cell(shell, "-m flux-2-dev", None)  # an image is optional there: the prompt is missing
    assert error is not None and error.startswith("Prompt cannot be empty")
    assert list(hub.requests) == []  # refused before even the model lookup


def test_a_server_that_refuses_data_uris_gets_advice(shell: Any, hub: LocalHub, picture: Path) -> None:
    hub.data_uris = False  # the docs promise only public URLs: the other reading
    _, error = run_cell(shell, f"-m flux-kontext-dev -i {picture} --out r", "paint it blue")
    assert error is None
    item = shell.user_ns["r"][0]
    assert item.status == "failed"
    assert item.error.startswith("The server refused the input image photo.png sent inline as a data: URI (")
    assert "upload_repo" in item.error and ";base64," not in item.error  # the bytes are not echoed


def test_a_b64_json_result_goes_on_inline(shell: Any, hub: LocalHub) -> None:
    grid = make(shell, "-m flux-2-dev -s 2 --format b64_json", "a red cube", out="grid")
    assert grid[0].url is None
    shell.user_ns["best"] = grid[0]
    captured, error = run_cell(shell, "-m qwen-image-edit -i best --out r", "paint it blue")
    assert error is None and "Sent best: flux-2-dev seed 2 inline as a data: URI" in all_text(captured)
    assert body(hub.edit_calls()[0])["input_image"].startswith("data:image/")
    assert input_sha_of(shell.user_ns["r"][0].data) == sha(grid[0].data)


def test_an_edit_of_a_rerolled_result_is_not_served_the_old_edit(shell: Any, hub: LocalHub) -> None:
    """A seedless model rerun with --no-cache makes a new image under the same request; an edit of
    it is an edit of that new image, never the cached edit of the one it replaced."""
    first = make(shell, "-m nano-banana", "a red cube", out="grid")[0]
    shell.user_ns["best"] = first
    old_edit = make(shell, "-m flux-kontext-dev -i best -s 7", "paint it blue")[0]
    assert input_sha_of(old_edit.data) == sha(first.data)

    again = make(shell, "-m nano-banana --no-cache", "a red cube", out="grid")[0]
    assert again.data != first.data  # no seed: a new image for the same request
    shell.user_ns["best"] = again
    hub.reset()
    new_edit = make(shell, "-m flux-kontext-dev -i best -s 7", "paint it blue")[0]
    assert not new_edit.cached and len(hub.edit_calls()) == 1
    assert input_sha_of(new_edit.data) == sha(again.data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_each_documented_file_type_goes_in_and_is_traced(
    shell: Any, hub: LocalHub, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (24, 18), (200, 90, 20)).save(path, format=fmt)
    r = make(shell, f"-m qwen-image-edit -i {path}", "add a hat")
    assert r[0].ok, r[0].error
    assert input_sha_of(r[0].data) == sha(path.read_bytes())  # the file's own bytes, not re-encoded
    sent = body(hub.edit_calls()[0])["input_image"]
    assert sent.startswith(f"data:image/{fmt.lower()};base64,")


def test_a_file_changed_in_place_is_a_new_input(shell: Any, hub: LocalHub, tmp_path: Path) -> None:
    """The cache keys a file input on its bytes, not its path: editing the file asks again."""
    path = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), "red").save(path)
    make(shell, f"-m qwen-image-edit -i {path}", "add a hat")
    Image.new("RGB", (16, 16), "blue").save(path)
    r = make(shell, f"-m qwen-image-edit -i {path}", "add a hat")
    assert not r[0].cached and len(hub.edit_calls()) == 2
    assert input_sha_of(r[0].data) == sha(path.read_bytes())


def test_string_list_and_selection_variables(shell: Any, hub: LocalHub, picture: Path) -> None:
    grid = make(shell, "-m flux-2-dev -s 1,2", "a red cube", out="grid")
    shell.user_ns["where"] = str(picture)
    shell.user_ns["url"] = grid[0].url
    shell.user_ns["mixed"] = [str(picture), grid[1]]
    shell.user_ns["picked"] = grid.select(seed=2)
    one = make(shell, "-m qwen-image-edit -i where", "add a hat")
    assert input_sha_of(one[0].data) == sha(picture.read_bytes())
    two = make(shell, "-m qwen-image-edit -i url", "add a hat")
    assert input_sha_of(two[0].data) == sha(grid[0].data)
    axis = make(shell, "-m qwen-image-edit -i mixed", "add a hat")
    assert [input_sha_of(i.data) for i in axis] == [sha(picture.read_bytes()), sha(grid[1].data)]
    picked = make(shell, "-m qwen-image-edit -i picked", "add a hat")
    assert [input_sha_of(i.data) for i in picked] == [sha(grid[1].data)]


def test_a_terminal_sees_the_notes_and_the_failed_cells(shell: Any, hub: LocalHub, picture: Path) -> None:
    """Terminal IPython shows only text/plain: the last one says what the grid says in HTML."""
    hub.expire_urls()
    gone = f"{hub.url}/api/repos/local/files/results/gone.png"
    captured, error = run_cell(shell, f"-m qwen-image-edit -i {picture},{gone}", "add a hat")
    assert error is None, error
    plains = [o.data["text/plain"] for o in captured.outputs if o.data.get("text/plain")]
    assert plains[0] == "<Results 0/2 images, 0.0 s>"  # while running: the summary only
    last = plains[-1].splitlines()
    assert last[0].startswith("<Results 1/2 images, 1 failed")
    assert last[1].startswith("Sent photo.png inline as a data: URI")
    assert last[2].startswith("[1] qwen-image-edit: The server could not fetch the input image gone.png")


def test_a_comma_list_of_urls_is_an_axis_and_plus_joins_them(shell: Any, hub: LocalHub) -> None:
    """`-i URL1,URL2` as the README promises for any comma list (a comma inside one URL stays)."""
    grid = make(shell, "-m z-image-turbo -s 1,2,3", "a teapot", out="grid")
    one, two, three = (item.url for item in grid)
    hub.reset()
    axis = make(shell, f"-m qwen-image-edit -i {one},{two}", "add a hat")
    assert sorted(body(r)["input_image"] for r in hub.edit_calls()) == sorted([one, two])  # sent in parallel
    assert [input_sha_of(i.data) for i in axis] == [sha(grid[0].data), sha(grid[1].data)]
    hub.reset()
    make(shell, f"-m nano-banana -i {one}+{two},{three}", "combine them")
    assert sorted(map(str, (body(r)["input_image"] for r in posts(hub)))) == sorted(
        [str([one, two]), str([three])]
    )
