"""Unit tests for `oxen_magic.display.render`: thumbnails, the grid HTML and the contact sheet.

No server: plans are made from the bundled catalogue and items are filled by hand.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence

import pytest
from PIL import Image

from oxen_magic.core.errors import BadResponseError
from oxen_magic.display.contact import contact_sheet
from oxen_magic.display.modeltable import ModelTable
from oxen_magic.display.render import cell_html, grid_html, thumbnail, thumbnail_of
from oxen_magic.localhub import default_catalogue
from oxen_magic.network.images import decode_image
from oxen_magic.network.model_info import ModelInfo
from oxen_magic.planning.options import Spec
from oxen_magic.planning.plan import make_plan
from oxen_magic.results.results import Item, Results

CATALOGUE = {m["id"]: ModelInfo.from_api(m) for m in default_catalogue()}


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def picture(width: int, height: int, mode: str = "RGB", colour: object = (200, 40, 40)) -> Image.Image:
    image = Image.new(mode, (width, height), colour)  # type: ignore[arg-type]
    for x in range(0, width, 7):  # some detail, so JPEG has something to do
        image.putpixel((x, x * height // max(1, width)), (0, 0, 0) if mode == "RGB" else 0)
    return image


def results_for(
    models: Sequence[str],
    seeds: Sequence[int | None] = (None,),
    *,
    prompts: Sequence[str] = ("a red cube",),
    aspect_ratios: Sequence[str | None] = (None,),
    size: int = 64,
    cols: int = 8,
) -> Results:
    spec = Spec(
        prompts=tuple(prompts),
        models=tuple(models),
        seeds=tuple(seeds),
        aspect_ratios=tuple(aspect_ratios),
        size=size,
        cols=cols,
    )
    plan = make_plan(spec, {m: CATALOGUE.get(m) for m in models})
    return Results(plan, size=size, cols=cols)


def finish(item: Item, width: int = 128, height: int = 128, size: int = 64) -> None:
    """Mark `item` done with a real image, as the runner would."""
    image = picture(width, height)
    item.data = encode(image)
    item.thumb = thumbnail(image, size)
    item.size, item.mime, item.elapsed = (width, height), "image/png", 0.4
    item.status = "done"


# -- thumbnail ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "mode", "fmt", "size", "expected"),
    [
        (300, 200, "RGB", "PNG", 64, (64, 43)),
        (200, 300, "RGB", "PNG", 64, (43, 64)),
        (2000, 1000, "RGB", "JPEG", 128, (128, 64)),  # JPEG draft + reduce path
        (1024, 1024, "RGBA", "PNG", 256, (256, 256)),
        (640, 480, "P", "PNG", 100, (100, 75)),  # palette images cannot be reduce()d as they are
        (640, 480, "P", "GIF", 100, (100, 75)),
        (500, 500, "1", "PNG", 100, (100, 100)),
        (300, 300, "L", "WEBP", 64, (64, 64)),
        (40, 30, "RGB", "PNG", 64, (40, 30)),  # never enlarged
    ],
)
def test_thumbnail_is_a_small_jpeg(
    width: int, height: int, mode: str, fmt: str, size: int, expected: tuple[int, int]
) -> None:
    colour: object = 128 if mode in ("L", "P") else (10, 120, 200, 255)[: len(mode)]
    source = Image.open(io.BytesIO(encode(picture(width, height, mode, colour), fmt)))
    data = thumbnail(source, size)
    assert data[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.mode in ("RGB", "L")
        assert max(thumb.size) <= size
        assert abs(thumb.width - expected[0]) <= 1 and abs(thumb.height - expected[1]) <= 1


def test_thumbnail_puts_transparency_on_white() -> None:
    clear = Image.new("RGBA", (100, 100), (255, 0, 0, 0))
    with Image.open(io.BytesIO(thumbnail(clear, 32))) as thumb:
        r, g, b = thumb.convert("RGB").getpixel((16, 16))
        assert min(r, g, b) > 240


def test_thumbnail_leaves_the_source_untouched() -> None:
    source = picture(300, 200)
    thumbnail(source, 50)
    assert source.size == (300, 200)


@pytest.mark.parametrize(
    ("width", "height", "fmt", "size", "decoded"),
    [
        (2048, 1024, "JPEG", 256, (256, 128)),  # 1/8 scale: exactly the thumbnail
        (1024, 1024, "JPEG", 256, (256, 256)),
        (1024, 576, "JPEG", 256, (256, 144)),
        (1000, 600, "JPEG", 256, (500, 300)),  # 1/4 would be 250 px: short of 256, so 1/2
        (200, 100, "JPEG", 256, (200, 100)),  # already small: whole
        (1024, 1024, "PNG", 256, (1024, 1024)),  # no reduced decode in Pillow: whole
        (1024, 1024, "WEBP", 256, (1024, 1024)),
    ],
)
def test_a_thumbnail_decodes_a_jpeg_no_larger_than_it_needs(
    width: int, height: int, fmt: str, size: int, decoded: tuple[int, int]
) -> None:
    data = encode(picture(width, height), fmt)
    assert decode_image(data, fit=size).size == decoded
    assert decode_image(data).size == (width, height)  # a full decode when one is asked for
    with (
        Image.open(io.BytesIO(thumbnail_of(data, size))) as reduced,
        Image.open(io.BytesIO(thumbnail(decode_image(data), size))) as whole,
    ):
        assert max(reduced.size) == max(whole.size) == min(size, max(width, height))
        assert abs(reduced.height - whole.height) + abs(reduced.width - whole.width) <= 1  # rounding
        # the same picture: the reduced decode averages the same pixels (JPEG's own scaling)
        a = reduced.convert("L").tobytes()
        b = whole.convert("L").resize(reduced.size).tobytes()
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a) < 6


def test_a_reduced_decode_keeps_the_bad_image_and_bomb_checks() -> None:
    jpeg = encode(picture(1024, 1024), "JPEG")
    with pytest.raises(BadResponseError, match=r"^The image the API returned is truncated or corrupt \("):
        thumbnail_of(jpeg[: len(jpeg) // 2], 256)
    with pytest.raises(BadResponseError, match=r"^The image the API returned is not an image \("):
        thumbnail_of(b"<html>busy</html>", 256)
    # A JPEG whose frame header claims 60000 x 60000 pixels: refused at the header, whole sentence.
    sof = jpeg.index(b"\xff\xc0")
    bomb = jpeg[: sof + 5] + (60000).to_bytes(2, "big") * 2 + jpeg[sof + 9 :]
    with pytest.raises(BadResponseError) as refused:
        thumbnail_of(bomb, 256)
    assert str(refused.value) == (
        f"The image the API returned claims to be too large to open safely ({len(bomb)} bytes)."
    )


# -- grid HTML -------------------------------------------------------------------------------------


def mixed_results() -> Results:
    """flux-2-dev over seeds 1..3 (done, failed, pending) and gpt-image-1-5 (one image, two notes)."""
    results = results_for(["flux-2-dev", "gpt-image-1-5"], seeds=(1, 2, 3), prompts=("a <b>bold</b> cube",))
    cells = {(i.row, i.col): i for i in results}
    finish(cells[(0, 0)])
    cells[(0, 1)].status, cells[(0, 1)].error = "failed", "The API rejected the request: <nope> & co."
    finish(cells[(1, 0)], 128, 96)
    return results


def test_grid_names_models_and_seeds_and_shows_each_state() -> None:
    results = mixed_results()
    page = grid_html(results)

    assert re.findall(r'<th class="oxen-row"[^>]*>([^<]*)</th>', page) == ["flux-2-dev", "gpt-image-1-5"]
    assert re.findall(r'<th class="oxen-col"[^>]*>([^<]*)</th>', page) == ["seed 1", "seed 2", "seed 3"]
    assert page.count('<th class="oxen-corner">') == 1

    assert page.count("<img ") == 2  # one per done item
    srcs = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(srcs) == 2

    assert page.count('class="oxen-error"') == 1
    assert "The API rejected the request: &lt;nope&gt; &amp; co." in page
    assert "<nope>" not in page

    assert page.count('class="oxen-pending"') == 1 and "generating…" in page

    assert page.count('class="oxen-note"') == 2
    assert page.count("same request as seed 1") == 2
    assert "gpt-image-1-5 takes no seed; one image instead of 3" in html.unescape(page)

    assert "2/4 images, 1 failed" in page
    assert "est. &#36;0.115" in page and "$" not in page  # 3 x 0.025 + 1 x 0.04, never maths
    assert "<b>bold</b>" not in page  # the prompt is escaped wherever it appears
    assert results._repr_html_() == page


def test_a_cancelled_cell_says_stopped_and_the_progress_says_interrupted() -> None:
    results = results_for(["z-image-turbo"], seeds=(1, 2))
    finish(results[0])
    results[1].status = "cancelled"
    results.interrupted = True
    page = grid_html(results)
    assert "stopped" in page and "oxen-cancelled" in page
    assert "1/2 images" in page and "(interrupted)" in page


def test_grid_wraps_at_cols_and_repeats_the_headers() -> None:
    results = results_for(["z-image-turbo"], seeds=range(1, 8), cols=3)
    page = grid_html(results)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.DOTALL)
    assert [r.count('class="oxen-col"') for r in rows if "oxen-col" in r] == [3, 3, 1]
    assert [r.count('class="oxen-cell') for r in rows if "oxen-cell" in r] == [3, 3, 1]
    assert page.count('class="oxen-pending"') == 7


def test_a_single_image_has_no_headers() -> None:
    results = results_for(["z-image-turbo"], seeds=(5,))
    finish(results[0])
    page = grid_html(results)
    assert "oxen-col" not in page and "oxen-row" not in page
    assert page.count("<img ") == 1
    assert "z-image-turbo · seed 5 · 0.4 s" in page  # the caption


def test_placeholders_follow_the_requested_aspect_ratio() -> None:
    results = results_for(["flux-2-dev"], seeds=(1,), aspect_ratios=("16:9", "3:4"), size=160)
    by_ratio = {i.params["aspect_ratio"]: i for i in results}
    assert "width:160px;height:90px" in cell_html(by_ratio["16:9"], 160)
    assert "width:160px;height:213px" in cell_html(by_ratio["3:4"], 160)
    finish(by_ratio["16:9"], 64, 40)
    assert 'style="width:160px;height:auto' in cell_html(by_ratio["16:9"], 160)


def test_no_price_means_no_estimate() -> None:
    results = results_for(["some-unknown-model"], seeds=(1,))
    assert "est. " not in grid_html(results)


def test_dollars_are_never_maths() -> None:
    """JupyterLab typesets `$...$` in HTML outputs: the grid opts out and writes `$` as an entity."""
    results = results_for(["flux-2-dev"], seeds=(1, 2), prompts=("a $5 bill and a $10 bill",))
    results[1].status, results[1].error = "failed", "Costs $0.025; $ signs everywhere"
    page = grid_html(results)
    assert "$" not in page
    assert "a &#36;5 bill and a &#36;10 bill" in page and "est. &#36;0.050" in page
    assert re.match(r'<div class="oxen-magic[^"]*\bmathjax_ignore\b[^"]*\btex2jax_ignore\b', page)
    assert html.unescape(page).count("a $5 bill and a $10 bill") >= 2
    table = ModelTable([ModelInfo.from_api(m) for m in default_catalogue()[:3]])._repr_html_()
    assert "$" not in table and "mathjax_ignore" in table and "&#36;0.0" in table


def test_a_long_error_stays_inside_its_cell_and_is_whole_on_hover() -> None:
    results = results_for(["flux-2-dev"], seeds=(1,), size=128)
    long = "The server said: " + "x" * 600 + " https://example.invalid/" + "y" * 200
    results[0].status, results[0].error = "failed", long
    cell = cell_html(results[0], 128)
    box = re.search(r'<div class="oxen-error" title="([^"]*)" style="([^"]*)">(.*?)</div></div>', cell, re.S)
    assert box, cell
    title, style, shown = box.groups()
    assert html.unescape(title).startswith(long)  # the whole message on hover
    assert "width:128px;height:128px" in style and "overflow:hidden" in style
    assert "overflow-wrap:break-word" in shown and "-webkit-line-clamp" in shown
    text = html.unescape(re.sub(r"<[^>]+>", "", shown))
    assert text.endswith("…") and len(text) <= 240


def test_an_item_says_its_position_is_not_its_seed_and_shows_full_size() -> None:
    results = results_for(["z-image-turbo"], seeds=range(1, 7))
    for item in results:
        finish(item, 300, 200)
    fifth = results[4]
    assert fifth.seed == 5 and fifth.index == 4
    assert repr(fifth) == "<Item at position 4: z-image-turbo, seed 5, done>"
    page = fifth._repr_html_()
    assert "position 4 (counting from 0)" in page and "grid[&#x27;z-image-turbo&#x27;, 5]" in page
    full = results.show("z-image-turbo", 5)._repr_html_()
    assert full == results.show(4)._repr_html_() == fifth.show()._repr_html_()
    src = re.search(r'<img src="data:image/jpeg;base64,([^"]+)"', full)
    assert src
    with Image.open(io.BytesIO(base64.b64decode(src.group(1)))) as shown:
        assert shown.size == (300, 200)  # full size, not the thumbnail
    assert "300×200" in full
    with pytest.raises(KeyError):
        results.show("z-image-turbo", 99)


# -- contact sheet --------------------------------------------------------------------------------


def test_contact_sheet_of_one_row_has_the_expected_size() -> None:
    results = results_for(["z-image-turbo"], seeds=(1, 2, 3), size=64)
    for item in results:
        finish(item, 128, 128)
    sheet = contact_sheet(results, 64)
    pad, head = 8, 28
    assert sheet.mode == "RGB"
    assert sheet.size == (3 * (64 + pad) + pad, head + (64 + head + pad) + pad)
    assert results.contact_sheet().size == sheet.size  # defaults to the grid's cell size
    # the first image is pasted at its place (its red fill, not the white page)
    r, g, b = sheet.getpixel((pad + 32, head + 5))  # type: ignore[misc]
    assert r > 150 and g < 100 and b < 100


def test_contact_sheet_with_rows_failures_and_notes() -> None:
    results = mixed_results()
    sheet = contact_sheet(results, 96)
    ncols, pad, head = 3, 8, 28
    bare = ncols * (96 + pad) + pad
    assert bare < sheet.width <= bare + 320  # plus the row labels
    # row 0 holds square images (96 high), row 1 a 4:3 image (72) next to square placeholders (96)
    assert sheet.height == head + 2 * (96 + head + pad) + pad
    assert len(results.images) == 2


# -- the model table ------------------------------------------------------------------------------


def test_model_table_lists_price_and_parameters_sorted() -> None:
    models = [CATALOGUE["z-image-turbo"], CATALOGUE["flux-2-dev"], ModelInfo(id="free-form")]
    table = ModelTable(models)
    rows = table.rows()
    assert [r[0] for r in rows] == ["flux-2-dev", "free-form", "z-image-turbo"]
    assert rows[0][1] == "$0.025" and rows[1][1] == "?" and rows[2][1] == "$0.002"
    assert "aspect_ratio: 1:1|16:9|9:16|4:3|3:4|3:2|2:3|match_input_image (16:9)" in rows[0][3]
    assert "guidance: float 0.0-10.0 (2)" in rows[0][3]
    assert rows[1][3] == "(parameters unknown)"  # no schema: nothing is known
    assert not re.search(r"(^|; )(prompt|input_image):", rows[0][3])  # not parameters to sweep
    # which models take an input image: reference images, unknown (no schema), text only
    assert [r[2] for r in rows] == ["optional (several)", "?", "text only"]
    text = repr(table)
    assert text.splitlines()[0].split() == ["model", "price", "input", "image", "parameters"]
    assert len(text.splitlines()) == 4
    assert "<code>flux-2-dev</code>" in table._repr_html_()


def test_a_long_prompt_is_shown_once_in_the_header_and_short_in_each_cell() -> None:
    prompt = "a lighthouse at dusk, " + "waves crashing on the rocks below, " * 100 + "the end"
    results = results_for(["z-image-turbo"], seeds=tuple(range(1, 9)), prompts=(prompt,))
    for item in results:
        finish(item)
    page = grid_html(results)
    assert page.count(html.escape(prompt)) == 1  # the header carries it whole, once
    assert 'class="oxen-prompt-line"' in page
    titles = re.findall(r'title="([^"]*)"', page)
    assert len(titles) == 8 and all(len(html.unescape(t)) < 200 for t in titles)
    assert all("a lighthouse at dusk" in t and "…" in t for t in titles)
    assert len(page) < len(prompt) + 8 * 2_000  # not the prompt again in every cell


def test_several_prompts_are_each_listed_once_with_their_number() -> None:
    results = results_for(["z-image-turbo"], seeds=(1, 2), prompts=("a <red> cube", "a blue cone"))
    page = grid_html(results)
    lines = re.findall(r'<div class="oxen-prompt-line"[^>]*>([^<]*)</div>', page)
    assert lines == ["prompt 1: a &lt;red&gt; cube", "prompt 2: a blue cone"]
