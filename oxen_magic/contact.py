"""The contact sheet: a whole grid as one labelled PNG (column headers, row labels, inputs).

Split from `render.py` (the grid's HTML) because it draws with Pillow rather than writing HTML;
`render.contact_sheet` still names it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from .cells import _ratio

if TYPE_CHECKING:
    from .inputs import InputImage
    from .results import Results


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def contact_sheet(results: Results, cell: int = 256) -> Image.Image:
    """One labelled PIL image of the grid: column headers on top, row labels on the left (with
    the input images each was made from, as in the grid's headers)."""
    plan = results.plan
    pad, head = 8, 28
    font = _font(14)
    label_w = 0
    if plan.row_axes:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        label_w = min(320, max(int(probe.textlength(lbl, font=font)) for lbl in plan.row_labels) + 2 * pad)
        if plan.row_inputs:
            label_w = max(label_w, max(len(g) for g in plan.row_inputs) * (_INPUT_PX + 4) + 2 * pad)
    band = _INPUT_PX + 8 if plan.fixed_inputs else 0  # the inputs every image shares, on top
    top = band + head + (_INPUT_PX + 4 if plan.col_inputs else 0)
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
    ncols = len(plan.col_labels)
    width = label_w + ncols * (cell + pad) + pad
    height = top + sum(h + head + pad for h in heights.values()) + pad
    names = "input: " + " + ".join(i.label for i in plan.fixed_inputs)
    if plan.fixed_inputs:  # room for the shared inputs' line
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        wide = pad + len(plan.fixed_inputs) * (2 * _INPUT_PX + 4) + int(probe.textlength(names, font=font))
        width = max(width, wide + 2 * pad)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if plan.fixed_inputs:
        x = _paste_inputs(sheet, plan.fixed_inputs, pad, 4)
        draw.text((x + 4, 4 + _INPUT_PX // 2 - 8), names, fill="black", font=font)
    for c, label in enumerate(plan.col_labels):
        x = label_w + pad + c * (cell + pad)
        draw.text((x, band + 6), label, fill="black", font=font)
        if plan.col_inputs:
            _paste_inputs(sheet, plan.col_inputs[c], x, band + head - 4)
    y = top
    for r in sorted(heights):
        if plan.row_axes:
            draw.text((pad, y + heights[r] // 2), plan.row_labels[r][:40], fill="black", font=font)
            if plan.row_inputs:
                _paste_inputs(sheet, plan.row_inputs[r], pad, y + heights[r] // 2 + 20)
        for item in (i for i in results.items if i.row == r):
            x = label_w + pad + item.col * (cell + pad)
            thumb = thumbs.get((item.row, item.col))
            if thumb is not None:
                sheet.paste(thumb, (x, y))
                caption = "cached" if item.cached else f"{item.elapsed or 0:.1f} s"
            else:
                draw.rectangle((x, y, x + cell - 1, y + heights[r] - 1), outline="#bbbbbb")
                text = item.error or item.note or item.status
                draw.multiline_text((x + 6, y + 6), _wrap(text, cell // 8), fill="#aa2222", font=_font(12))
                caption = item.status
            draw.text((x, y + heights[r] + 4), caption, fill="#555555", font=_font(12))
        y += heights[r] + head + pad
    return sheet


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
