"""`Results.to_html`: one standalone HTML file to share a sweep in a chat, an email or a class.

Everything is inside the file (images as data: URIs, CSS and a few lines of JS), so it opens
offline and on any machine. Each image is re-encoded once as a JPEG of at most `MAX_BYTES`, which
serves both the grid and the enlarged view; the prompt and every parameter sent sit under each
image and in the enlarged view. Knows nothing of HTTP.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from oxen_magic.core.atomic import write_text_atomic
from oxen_magic.display.render import inputs_html
from oxen_magic.exports.oxen_repo import public_params
from oxen_magic.network.images import data_uri

if TYPE_CHECKING:
    from oxen_magic.results.results import Item, Results

#: At most this many bytes per embedded image (a 16-image sweep stays under ~1.6 MB).
MAX_BYTES = 100_000
#: The longest side of an embedded image, before any further shrinking to meet `MAX_BYTES`.
MAX_SIDE = 1024


def embed(image: Image.Image, max_bytes: int = MAX_BYTES, side: int = MAX_SIDE) -> bytes:
    """A JPEG of `image` no larger than `max_bytes`: lower quality first, then smaller sides."""
    if image.mode not in ("RGB", "L"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    image = image.copy()
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    while True:
        for quality in (85, 75, 65, 55, 45):
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
        if max(image.size) <= 64:
            return out.getvalue()  # cannot happen for a real image; never loop forever
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)))


def _details(item: Item) -> str:
    params = public_params(item.params)
    params.pop("prompt", None)
    lines = [
        f"{key}: {json.dumps(value) if not isinstance(value, str) else value}"
        for key, value in params.items()
    ]
    if item.elapsed is not None:
        lines.append("elapsed: cached" if item.cached else f"elapsed: {item.elapsed:.1f} s")
    return "\n".join(lines)


def _cell(item: Item, width: int) -> str:
    if item.request is None:
        return f'<td class="skip"><div class="note">{html.escape(item.note or "")}</div></td>'
    prompt = html.escape(item.prompt or "")
    details = html.escape(_details(item))
    caption = html.escape(f"{item.model} · seed {item.seed}" if item.seed is not None else str(item.model))
    image = item.image
    if image is None:
        text = html.escape(item.error or item.status)
        body = f'<div class="missing" style="width:{width}px">{text}</div>'
    else:
        uri = data_uri(embed(image))
        body = (
            f'<img src="{uri}" alt="{caption}" width="{width}" '
            f'data-prompt="{prompt}" data-details="{details}" data-caption="{caption}">'
        )
    return (
        f'<td><figure>{body}<figcaption><b>{caption}</b><div class="prompt">{prompt}</div>'
        f"<pre>{details}</pre></figcaption></figure></td>"
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 4px} .sub{font-size:13px;opacity:.75;margin-bottom:12px}
table{border-collapse:collapse} th{font-size:13px;text-align:left;padding:4px;vertical-align:middle}
td{vertical-align:top;padding:6px} figure{margin:0}
td img{display:block;height:auto;border-radius:4px;cursor:zoom-in;background:#ddd}
figcaption{font-size:12px;line-height:1.35;max-width:var(--w)} .prompt{opacity:.85;margin:2px 0}
pre{font-size:11px;white-space:pre-wrap;margin:2px 0;opacity:.7}
.missing,.note{border:1px dashed #c33;color:#c33;font-size:12px;padding:8px;min-height:80px}
.note{border-color:#bbb;color:#777}
#big{position:fixed;inset:0;background:rgba(0,0,0,.85);display:none;align-items:center;
justify-content:center;flex-direction:column;cursor:zoom-out;z-index:9}
#big.on{display:flex} #big img{width:92vw;height:78vh;object-fit:contain;cursor:zoom-out}
#big div{color:#eee;font-size:13px;max-width:92vw;white-space:pre-wrap;margin-top:8px}
"""

_JS = """
const big=document.getElementById('big'),bt=big.querySelector('div');let bi=null;
document.querySelectorAll('td img').forEach(im=>im.addEventListener('click',()=>{
 if(!bi){bi=document.createElement('img');big.prepend(bi);}
 bi.src=im.src;bt.textContent=im.dataset.caption+'\\n'+im.dataset.prompt+'\\n'+im.dataset.details;
 big.classList.add('on');}));
big.addEventListener('click',()=>big.classList.remove('on'));
document.addEventListener('keydown',e=>{if(e.key==='Escape')big.classList.remove('on');});
"""


def gallery_html(results: Results, title: str | None = None) -> str:
    """The whole page as a string: header, the labelled grid, the enlarge overlay."""
    plan = results.plan
    width = min(512, max(256, results.size))
    cells = {(i.row, i.col): i for i in results.items}
    rows: list[str] = []
    if plan.col_axis:
        corner = "<th></th>" if plan.row_axes else ""
        heads = [
            (inputs_html(plan.col_inputs[c]) if plan.col_inputs else "") + html.escape(label)
            for c, label in enumerate(plan.col_labels)
        ]
        rows.append("<tr>" + corner + "".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for r, label in enumerate(plan.row_labels):
        pics = inputs_html(plan.row_inputs[r]) if plan.row_inputs else ""
        head = f"<th>{pics}{html.escape(label)}</th>" if plan.row_axes else ""
        body = "".join(_cell(cells[(r, c)], width) for c in range(len(plan.col_labels)) if (r, c) in cells)
        rows.append(f"<tr>{head}{body}</tr>")
    prompts = list(dict.fromkeys(i.prompt for i in results.items if i.request is not None))
    heading = html.escape(title or (str(prompts[0]) if len(prompts) == 1 else f"{len(prompts)} prompts"))
    sub = html.escape(results.summary() + (f" · {results.host}" if results.host else ""))
    if plan.fixed_inputs:
        names = html.escape(" + ".join(i.label for i in plan.fixed_inputs))
        sub += f'<div class="inputs">{inputs_html(plan.fixed_inputs)}input: {names}</div>'

    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{heading}</title><style>{_CSS}:root{{--w:{width}px}}</style></head><body>"
        f'<h1>{heading}</h1><div class="sub">{sub} · made with oxen_magic</div>'
        f'<table class="gallery">{"".join(rows)}</table>'
        '<div id="big" title="click or Esc to close"><div></div></div>'
        f"<script>{_JS}</script></body></html>"
    )


def write_html(results: Results, path: str | Path, title: str | None = None) -> Path:
    """Write `gallery_html` to `path` (a folder gets `gallery.html`); returns the file written."""
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / "gallery.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(target, gallery_html(results, title))  # whole or not at all, no links
