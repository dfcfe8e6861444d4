"""Thumbnails and the grid's HTML. Knows nothing of HTTP.

The HTML is plain (a table, inline JPEG thumbnails, inline styles) so it renders the same in
JupyterLab, Notebook 7, VS Code, Colab and nbviewer, and a saved notebook carries thumbnails,
never full images. The contact-sheet PNG is in `contact.py`, the model table in `modeltable.py`,
the shared escaping in `html.py`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image

from oxen_magic.display.html import NO_MATH, _ratio, esc
from oxen_magic.network.images import decode_image

if TYPE_CHECKING:
    from oxen_magic.planning.image_refs import InputImage
    from oxen_magic.results.results import Item, Results

THUMB_QUALITY = 82
#: Quality of the on-demand full-size view (`Item.show()`): one image, asked for by name.
FULL_QUALITY = 90
#: Error text drawn in a cell is cut here (the whole message is in the cell's tooltip).
ERROR_CHARS = 240


def thumbnail_of(data: bytes, size: int) -> bytes:
    """The thumbnail of encoded image bytes, decoded once and no larger than the thumbnail needs
    (a JPEG at reduced DCT scale); a corrupt or hostile file raises `BadResponseError`."""
    return thumbnail(decode_image(data, fit=size), size)


def thumbnail(image: Image.Image, size: int) -> bytes:
    """A JPEG at most `size` px wide and high: what the notebook stores for one cell."""
    if image.format == "JPEG":
        image.draft(None, (size, size))  # not yet loaded: decode at reduced scale, much cheaper
    if image.mode in ("1", "P") or image.mode.startswith("I;"):
        image = image.convert("RGBA")  # reduce() refuses these modes (palette PNGs, GIFs)
    # Box-reduce by the largest whole factor that keeps the fitted size (cheap, and a proper
    # average), so the bilinear step below only covers the last, less-than-2x, stretch.
    factor = max(1, max(image.width, image.height) // size)
    small = image.reduce(factor) if factor > 1 else image
    if small.mode not in ("RGB", "L"):
        background = Image.new("RGB", small.size, "white")
        rgba = small.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        small = background
    small = small.copy() if small is image else small
    small.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMB_QUALITY, optimize=False)
    return out.getvalue()


def _caption(item: Item, model: bool = True) -> str:
    params = item.params
    bits = [str(item.model)] if model else []
    bits.append(f"seed {item.seed}" if item.seed is not None else "random seed")
    if "num_inference_steps" in params:
        bits.append(f"{params['num_inference_steps']} steps")
    if "aspect_ratio" in params:
        bits.append(str(params["aspect_ratio"]))
    if item.elapsed is not None:
        bits.append("cached" if item.cached else f"{item.elapsed:.1f} s")
    if item.placeholder:
        bits.append("placeholder")
    return " · ".join(bits)


#: How much of the prompt a cell's tooltip repeats; the grid's header carries each prompt whole, once.
SHORT_PROMPT = 80


def _short(prompt: str | None) -> str:
    text = " ".join((prompt or "").split())
    return text if len(text) <= SHORT_PROMPT else text[: SHORT_PROMPT - 1] + "…"


_BOX = "display:flex;align-items:center;justify-content:center;text-align:center;box-sizing:border-box;"


def cell_html(item: Item, size: int, model_in_caption: bool = True) -> str:
    """One cell: the thumbnail, a placeholder while it runs, or the error in place."""
    height = round(size * _ratio(item))
    if item.request is None:
        body = (
            f'<div class="oxen-note" style="{_BOX}width:{size}px;height:{height}px;'
            f'border:1px dashed #bbb;opacity:.6;font-size:12px;padding:6px">'
            f"{esc(item.note or '')}</div>"
        )
        return f'<td class="oxen-cell oxen-skipped">{body}</td>'
    text = _caption(item)  # made once: a redraw formats every cell again
    caption = esc(text)
    title = esc(text + "\n" + _short(item.prompt))
    if item.thumb is not None:
        src = item.thumb_uri
        body = (
            f'<img src="{src}" alt="{caption}" title="{title}" '
            f'style="width:{size}px;height:auto;display:block;border-radius:4px">'
        )
        state = "oxen-done"
    elif item.status == "failed":
        body = error_box(item.error or "failed", size, height, text + "\n" + _short(item.prompt))
        state = "oxen-failed"
    else:
        word = {"cancelled": "stopped", "planned": "not sent (dry run)"}.get(item.status, "generating…")
        body = (
            f'<div class="oxen-pending" title="{title}" style="{_BOX}width:{size}px;height:{height}px;'
            f'border:1px dashed #999;opacity:.6;font-size:12px;border-radius:4px">{word}</div>'
        )
        state = "oxen-" + item.status
    short = caption if model_in_caption else esc(_caption(item, model=False))
    caption = (
        f'<div style="font-size:11px;opacity:.75;max-width:{size}px;text-align:left;'
        f'line-height:1.3;overflow-wrap:break-word">{short}</div>'
    )
    return (
        f'<td class="oxen-cell {state}" style="vertical-align:top;padding:4px;text-align:left;'
        f'background:transparent">{body}{caption}</td>'
    )


def inputs_html(group: Sequence[InputImage]) -> str:
    """An input group as small thumbnails (what a row, column or whole grid was made from)."""
    bits = []
    for image in group:
        label = esc(image.label)
        src = image.thumb_uri
        pic = (
            f'<img src="{src}" alt="{label}" style="height:40px;width:auto;display:block;'
            'border-radius:3px;margin:0 auto 2px 0">'
            if src
            else ""
        )
        bits.append(
            f'<span class="oxen-input" title="{esc(image.record)}" style="display:inline-block;'
            f'margin-right:6px;vertical-align:top">{pic}</span>'
        )
    return f'<div style="white-space:nowrap">{"".join(bits)}</div>' if bits else ""  # label below


def error_box(message: str, width: int, height: int, context: str = "") -> str:
    """An error drawn inside its cell: wrapped, cut to the lines that fit, whole on hover.

    A long server message (a URL, a JSON body) must not push the grid apart or spill over the
    next cell, so the box has a fixed size, breaks anywhere, hides the overflow, and clamps the
    lines; the `title` tooltip carries the full text.
    """
    lines = max(2, (height - 16) // 15)
    shown = message if len(message) <= ERROR_CHARS else message[: ERROR_CHARS - 1].rstrip() + "…"
    tip = message + ("\n\n" + context if context.strip() else "")
    clamp = (
        f"display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:{lines};line-clamp:{lines};"
        "overflow:hidden;overflow-wrap:break-word;max-width:100%;max-height:100%"
    )
    return (
        f'<div class="oxen-error" title="{esc(tip)}" style="{_BOX}width:{width}px;height:{height}px;'
        "overflow:hidden;border:1px solid #d33;color:#d33;font-size:12px;line-height:15px;padding:8px;"
        f'border-radius:4px"><div class="oxen-error-message" style="{clamp}">{esc(shown)}</div></div>'
    )


def item_html(item: Item) -> str:
    """`grid[4]` shown on its own: its thumbnail and a caption saying which image it is.

    Position and seed are easy to confuse (`boats[4]` is the fifth image, often seed 5), so
    the caption spells out both and how to find an image by seed instead.
    """
    what = esc(_caption(item)) if item.request is not None else "an empty cell"
    size = max(64, min(256, item.size[0] if item.size else 256))
    if item.thumb is not None:
        body = f'<img src="{item.thumb_uri}" alt="{what}" style="width:{size}px;height:auto;display:block">'
    elif item.status == "failed":
        body = error_box(item.error or "failed", size, round(size * _ratio(item)))
    else:
        body = ""
    where = (
        f"position {item.index} (counting from 0): {what}"
        if item.request is None or item.seed is None
        else f"position {item.index} (counting from 0) is {what}; by seed: "
        f"grid[{esc(repr(item.model))}, {item.seed}]"
    )
    return (
        f'<div class="oxen-item {NO_MATH}">{body}'
        f'<div style="font-size:11px;opacity:.75;overflow-wrap:break-word">{where}; '
        ".show() for full size</div></div>"
    )


def full_html(item: Item) -> str:
    """One image at full resolution, on demand (`item.show()`); the grid itself keeps thumbnails.

    Re-encoded as a JPEG (the PNG would be several times bigger in the saved notebook) unless
    the API already sent a JPEG or WebP.
    """
    data, mime = item.data, item.mime or ""
    if data is None:
        return f'<div class="oxen-full {NO_MATH}">No image: {esc(item.error or item.status)}</div>'
    image = item.image
    assert image is not None
    if mime not in ("image/jpeg", "image/webp"):
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=FULL_QUALITY)
        data, mime = out.getvalue(), "image/jpeg"
    uri = f"data:{mime};base64," + base64.b64encode(data).decode()
    caption = f"{_caption(item)} · {image.width}×{image.height}"
    return (
        f'<figure class="oxen-full {NO_MATH}" style="margin:0">'
        f'<img src="{uri}" alt="{esc(caption)}" title="{esc(caption + chr(10) + (item.prompt or ""))}" '
        f'style="max-width:100%;width:{image.width}px;height:auto;display:block">'
        f'<figcaption style="font-size:11px;opacity:.75">{esc(caption)}</figcaption></figure>'
    )


_NOTE = "font-size:12px;opacity:.8"
_TH = "padding:4px;font-size:12px;text-align:left;font-weight:600"
_TR = '<tr style="background:transparent">'


def _table_rows(results: Results) -> list[tuple[int, str, int]]:
    """The grid's table rows in order, as (cells, html, chunk): a column-header row has 0 cells.

    Columns wrap every `results.cols`; each chunk of columns gets its header row, then every row.
    """
    plan = results.plan
    wrap = max(1, results.cols)
    ncols = len(plan.col_labels)
    cells: dict[tuple[int, int], Item] = {(i.row, i.col): i for i in results.items}
    model_on_axis = "model" in plan.row_axes or plan.col_axis == "model"
    out: list[tuple[int, str, int]] = []
    for chunk, start in enumerate(range(0, ncols, wrap)):
        span = range(start, min(ncols, start + wrap))
        if plan.col_axis:
            pics = [inputs_html(plan.col_inputs[c]) if plan.col_inputs else "" for c in range(ncols)]
            heads = "".join(
                f'<th class="oxen-col" style="{_TH}">{pics[c]}{esc(plan.col_labels[c])}</th>' for c in span
            )
            corner = '<th class="oxen-corner"></th>' if plan.row_axes else ""
            out.append((0, f"{_TR}{corner}{heads}</tr>", chunk))
        for r, label in enumerate(plan.row_labels):
            pic = inputs_html(plan.row_inputs[r]) if plan.row_inputs else ""
            head = (
                f'<th class="oxen-row" style="{_TH};vertical-align:middle">{pic}{esc(label)}</th>'
                if plan.row_axes
                else ""
            )
            row = [cells[(r, c)] for c in span if (r, c) in cells]
            body = "".join(cell_html(item, results.size, not model_on_axis) for item in row)
            out.append((max(1, len(row)), f"{_TR}{head}{body}</tr>", chunk))
    return out


def grid_pages(results: Results, cells: int) -> list[list[tuple[int, str, int]]]:
    """The table rows cut into pages of at most `cells` images (a row is never split); a page
    repeats its chunk's column headers."""
    rows = _table_rows(results)
    headers = {chunk: text for n, text, chunk in rows if n == 0}
    pages: list[list[tuple[int, str, int]]] = []
    page: list[tuple[int, str, int]] = []
    count = 0
    for n, text, chunk in rows:
        if n == 0:
            continue
        if page and count + n > cells:
            pages.append(page)
            page, count = [], 0
        if chunk in headers and not any(c == chunk and m == 0 for m, _, c in page):
            page.append((0, headers[chunk], chunk))
        page.append((n, text, chunk))
        count += n
    return [*pages, page] if page else pages or [[]]


def grid_head(results: Results, shown: int | None = None, page: int = 1, pages: int = 1) -> str:
    """The progress line, the notes, and (for a big grid) which part is shown and how to see more."""
    status = esc(results.summary())
    cost = results.cost_line()
    if cost:
        status += " · " + esc(cost)
    notes = list(results.notes)
    if pages > 1:
        later = f"results.page({page + 1}) shows the next ones, " if page < pages else ""
        notes.append(
            f"Showing page {page} of {pages} ({shown} of {results.total} images); {later}"
            "results.save(folder) writes them all (--out NAME keeps the results in a variable)."
        )
    prompts = list(dict.fromkeys(i.prompt for i in results.items if i.request is not None and i.prompt))
    inputs = "".join(  # each prompt whole, once: the cells' tooltips carry only a short form
        '<div class="oxen-prompt-line" style="font-size:12px;opacity:.8;white-space:pre-wrap;'
        f'max-height:6em;overflow:auto">{f"prompt {n}: " if len(prompts) > 1 else ""}{esc(p)}</div>'
        for n, p in enumerate(prompts, 1)
    )
    if results.plan.fixed_inputs:
        names = esc(" + ".join(i.label for i in results.plan.fixed_inputs))
        inputs += (
            f'<div class="oxen-inputs" style="font-size:12px;margin:2px 0">'
            f"{inputs_html(results.plan.fixed_inputs)}<div>input: {names}</div></div>"
        )
    return (
        f'<div class="oxen-progress" style="font-size:12px;opacity:.8;margin:2px 0">{status}</div>'
        + "".join(f'<div class="oxen-notice" style="{_NOTE}">{esc(n)}</div>' for n in notes)
        + inputs
    )


#: A grid shows at most this many cells at once (about 12 KB each in a saved notebook); the
#: rest are a `page()` away.
PAGE_CELLS = 64


def grid_html(results: Results, page: int = 1, cells: int | None = None) -> str:
    """The grid (one page of it when it holds more than `cells` images): progress, notes, table."""
    pages = grid_pages(results, cells or PAGE_CELLS)
    page = min(max(1, page), len(pages))
    rows = pages[page - 1]
    shown = sum(n for n, _, _ in rows)
    return (
        f'<div class="oxen-magic {NO_MATH}">'
        + grid_head(results, shown, page, len(pages))
        + f'<table class="oxen-grid {NO_MATH}" style="border-collapse:collapse">'
        + "".join(t for _, t, _ in rows)
        + "</table></div>"
    )
