"""`--save` and `grid.save()`: a grid's images as PNG files, and its contact sheet, in a folder.

Each file is written whole (see `atomic.py`), so a full disk or a Ctrl-C never leaves a truncated
PNG, and no earlier file is ever replaced: names are `flux-2-dev_seed-3.png` as before, and when
that name already holds a different image (an earlier run with another prompt, say) the new one is
saved as `flux-2-dev_seed-3_2.png` and the caller says so. A file holding exactly the same bytes
(the same image saved again) is left as it is.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import PngImagePlugin

from oxen_magic.core.atomic import write_new

if TYPE_CHECKING:
    from oxen_magic.results.results import Item, Results

#: The contact sheet's name in a `--save` folder.
SHEET = "contact-sheet.png"


@dataclass
class Saved:
    """What a save wrote: each item's file, and how many names were taken by other files."""

    folder: Path
    total: int = 0  # images there were to save
    files: list[tuple[Item, Path]] = field(default_factory=list)
    renamed: list[Path] = field(default_factory=list)  # saved under another name: theirs was taken

    def note(self) -> str:
        """`Saved 4 PNG file(s) to out.` plus a word on files that kept their names."""
        text = f"Saved {len(self.files)} PNG file(s) to {self.folder}"
        if not self.renamed:
            return text + "."
        first = self.renamed[0].name
        return (
            f"{text}; {len(self.renamed)} name(s) already held other images, which were kept, so "
            f"the new ones have a number added (like {first})."
        )


class SaveFailed(OSError):
    """A file could not be written; `saved` says what was written before it (each file whole)."""

    def __init__(self, saved: Saved, cause: OSError, path: Path) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.saved = saved


class SaveInterrupted(KeyboardInterrupt):
    """Ctrl-C while saving; `saved` says what was written before it (each file whole)."""

    def __init__(self, saved: Saved) -> None:
        super().__init__()
        self.saved = saved


def png_bytes(item: Item) -> bytes | None:
    """The item's image as PNG bytes with its parameters in the `parameters` text chunk."""
    from oxen_magic.exports.oxen_repo import public_params

    image = item.image
    if image is None:
        return None
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", json.dumps(public_params(item.params), sort_keys=True))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def save_pngs(results: Results, folder: str | Path) -> Saved:
    """Write each finished image of `results` into `folder` (made if needed), never replacing a file.

    Raises `SaveFailed` (an OSError) or `SaveInterrupted` (a KeyboardInterrupt) carrying what was
    saved before the problem.
    """
    target = Path(folder).expanduser()  # as --to-oxen and --to-html, and as --save was checked
    target.mkdir(parents=True, exist_ok=True)
    items = [i for i in results.items if i.ok]
    saved = Saved(target, total=len(items))
    prompts = list(dict.fromkeys(i.prompt for i in results.items if i.request is not None))
    names: set[str] = set()
    path = target
    try:
        for item in items:
            data = png_bytes(item)
            if data is None:
                continue
            number = prompts.index(item.prompt) + 1 if len(prompts) > 1 else None
            name = stem = item.filename(number)
            while name in names:  # same parameters twice (an unknown model's params): keep both
                name = f"{stem}_{len(names)}"
            names.add(name)
            path = target / f"{name}.png"
            written = write_new(path, data)
            if written != path:
                saved.renamed.append(written)
            saved.files.append((item, written))
    except KeyboardInterrupt:
        raise SaveInterrupted(saved) from None
    except OSError as exc:
        raise SaveFailed(saved, exc, path) from None
    return saved


def save_contact_sheet(results: Results, folder: str | Path, name: str = SHEET) -> Path:
    """The contact sheet as `folder/contact-sheet.png`, or `contact-sheet_2.png` when an earlier,
    different sheet is there (returned, so the caller can say which)."""
    out = io.BytesIO()
    results.contact_sheet().save(out, format="PNG")
    return write_new(Path(folder).expanduser() / name, out.getvalue())
