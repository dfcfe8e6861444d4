"""The contact sheet: a whole grid as one labelled PNG (column headers, row labels, inputs).

Split from `render.py` (the grid's HTML) because it draws with Pillow rather than writing HTML.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from oxen_magic.display.html import _ratio

if TYPE_CHECKING:
    from oxen_magic.planning.image_refs import InputImage
    from oxen_magic.planning.plan import Plan
    from oxen_magic.results.results import Item, Results


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


_PAD, _HEAD = 8, 28


def contact_sheet(results: Results, cell: int = 256) -> Image.Image:
    """One labelled PIL image of the grid: column headers on top, row labels on the left (with
    the input images each was made from, as in the grid's headers)."""
    plan = results.plan
    font = _font(14)
    label_w = _label_width(plan, font)
    band = _INPUT_PX + 8 if plan.fixed_inputs else 0  # the inputs every image shares, on top
    top = band + _HEAD + (_INPUT_PX + 4 if plan.col_inputs else 0)
    thumbs, heights = _thumbs(results, cell)
    width = label_w + len(plan.col_labels) * (cell + _PAD) + _PAD
    height = top + sum(h + _HEAD + _PAD for h in heights.values()) + _PAD
    names = "input: " + " + ".join(i.label for i in plan.fixed_inputs)
    if plan.fixed_inputs:  # room for the shared inputs' line
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        wide = _PAD + len(plan.fixed_inputs) * (2 * _INPUT_PX + 4) + int(probe.textlength(names, font=font))
        width = max(width, wide + 2 * _PAD)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if plan.fixed_inputs:
        x = _paste_inputs(sheet, plan.fixed_inputs, _PAD, 4)
        draw.text((x + 4, 4 + _INPUT_PX // 2 - 8), names, fill="black", font=font)
    for c, label in enumerate(plan.col_labels):
        x = label_w + _PAD + c * (cell + _PAD)
        draw.text((x, band + 6), label, fill="black", font=font)
        if plan.col_inputs:
            _paste_inputs(sheet, plan.col_inputs[c], x, band + _HEAD - 4)
    y = top
    for r in sorted(heights):
        if plan.row_axes:
            draw.text((_PAD, y + heights[r] // 2), plan.row_labels[r][:40], fill="black", font=font)
            if plan.row_inputs:
                _paste_inputs(sheet, plan.row_inputs[r], _PAD, y + heights[r] // 2 + 20)
        for item in (i for i in results.items if i.row == r):
            x = label_w + _PAD + item.col * (cell + _PAD)
            _draw_cell(sheet, draw, item, thumbs.get((item.row, item.col)), (x, y), (cell, heights[r]))
        y += heights[r] + _HEAD + _PAD
    return sheet


def _label_width(plan: Plan, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    """The width of the row labels' column (with the rows' input thumbnails); 0 with no rows."""
    if not plan.row_axes:
        return 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = min(320, max(int(probe.textlength(lbl, font=font)) for lbl in plan.row_labels) + 2 * _PAD)
    if plan.row_inputs:
        width = max(width, max(len(g) for g in plan.row_inputs) * (_INPUT_PX + 4) + 2 * _PAD)
    return width


def _thumbs(results: Results, cell: int) -> tuple[dict[tuple[int, int], Image.Image], dict[int, int]]:
    """Each image fitted in a `cell` square, by (row, col), and each row's height (a cell with
    no image keeps its expected aspect ratio)."""
    heights = {i.row: 0 for i in results.items}
    thumbs: dict[tuple[int, int], Image.Image] = {}
    for item in results.items:
        image = item.image
        if image is not None:
            image = image.convert("RGB")
            image.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            thumbs[(item.row, item.col)] = image
        h = image.height if image is not None else round(cell * _ratio(item))
        heights[item.row] = max(heights[item.row], h)
    return thumbs, heights


def _draw_cell(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    item: Item,
    thumb: Image.Image | None,
    at: tuple[int, int],
    size: tuple[int, int],
) -> None:
    """One cell: its image and caption (cached, or seconds taken), or its error in a frame."""
    (x, y), (cell, height) = at, size
    if thumb is not None:
        sheet.paste(thumb, (x, y))
        caption = "cached" if item.cached else f"{item.elapsed or 0:.1f} s"
    else:
        draw.rectangle((x, y, x + cell - 1, y + height - 1), outline="#bbbbbb")
        text = item.error or item.note or item.status
        draw.multiline_text((x + 6, y + 6), _wrap(text, cell // 8), fill="#aa2222", font=_font(12))
        caption = item.status
    draw.text((x, y + height + 4), caption, fill="#555555", font=_font(12))


#: Height of an input image's thumbnail in a contact sheet's header.
_INPUT_PX = 40


def _paste_inputs(sheet: Image.Image, group: Sequence[InputImage], x: int, y: int) -> int:
    """Paste each input's thumbnail in a row from (x, y); returns the x after the last."""
    for image in group:
        if image.thumb is None:
            continue
        with Image.open(io.BytesIO(image.thumb)) as small:
            pic = small.convert("RGB")
        pic.thumbnail((_INPUT_PX * 2, _INPUT_PX))
        sheet.paste(pic, (x, y))
        x += pic.width + 4
    return x


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:8])
