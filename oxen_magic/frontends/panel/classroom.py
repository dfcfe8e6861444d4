"""What the panel offers people who do not code: the model list by what a model does (with its
price), Save (PNGs and a contact sheet into a folder), a grid that fits the output, the spend.

A part of `Panel`, like the others: the model list it regroups is handed to its methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from oxen_magic.core.errors import UsageProblem
from oxen_magic.display.html import NO_MATH, esc
from oxen_magic.exports.saving import save_contact_sheet
from oxen_magic.frontends.panel.base import _DESC, Quiet
from oxen_magic.frontends.panel.display import _error
from oxen_magic.frontends.panel.model_groups import (
    EDIT,
    KINDS,
    TEXT,
    UPSCALE,
    kind_of,
    model_options,
    needs_input,
    spend_line,
)
from oxen_magic.planning import options
from oxen_magic.results.results import Results

if TYPE_CHECKING:
    from oxen_magic.network.model_info import ModelInfo
    from oxen_magic.session.session import Session

#: The width (px) a grid is fitted to: what a notebook's output area shows without scrolling.
FIT_WIDTH = 900
#: Where Save writes when the folder box is empty (relative to the notebook's folder).
SAVE_FOLDER = "oxen-images"


class Classroom:
    """Model groups (`kind`), Save (`save_folder`, `save_button`), the fitted grid and `spend`.

    Handed the session (what was spent), the schemas read at open, the model ids chosen at open
    (the group shown first), the panel's `quiet` flag and where status sentences go."""

    def __init__(
        self,
        session: Session,
        schemas: dict[str, ModelInfo] | None,
        chosen: Sequence[str],
        *,
        quiet: Quiet,
        set_status: Callable[..., None],
    ) -> None:
        self.session, self.schemas, self.quiet, self.set_status = session, schemas, quiet, set_status
        infos = [schemas[m] for m in chosen if schemas and m in schemas]
        self.kind = widgets.ToggleButtons(
            options=KINDS,
            value=kind_of(infos[0]) if infos else TEXT,
            description="What",
            tooltips=["Make a picture from a prompt", "Change or follow an input image", "Enlarge an image"],
            style=_DESC,
        )
        if schemas is None:
            self.kind.disabled = True
            self.kind.layout.display = "none"  # no list to group: model ids are typed
        self.save_folder = widgets.Text(
            value=SAVE_FOLDER, description="Save to", style={"description_width": "110px"}
        )
        self.save_folder.placeholder = "a folder next to this notebook"
        self.save_folder.layout.width = "360px"
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.save_button.tooltip = "Write the grid's PNGs and a contact sheet into the folder"
        self.spend = widgets.HTML(value="")

    def owned(self) -> list[Any]:
        """Every widget this part made (to close them with the panel)."""
        return [self.kind, self.save_folder, self.save_button, self.spend]

    # -- the model list ----------------------------------------------------------------------------
    def set_model_choices(self, models: Any, has_input: bool, *, kind_changed: bool = False) -> None:
        """Offer the chosen group's models (those needing an input image only when one is given).

        Switching group keeps the chosen models that belong to it, else picks its first model.
        """
        if self.schemas is None or not isinstance(models, widgets.SelectMultiple):
            return
        kind = self.kind.value
        chosen = tuple(models.value)
        if kind_changed:
            offered = model_options(self.schemas, kind, has_input)
            ids = [v for _l, v in offered]
            chosen = tuple(m for m in chosen if m in ids) or tuple(ids[:1])
        else:
            offered = model_options(self.schemas, kind, has_input, chosen)
            if not chosen and not models.options and offered:  # the group just became usable
                chosen = (offered[0][1],)
        with self.quiet:
            if list(models.options) != offered:
                models.options = offered
            models.value = chosen

    def no_models_reason(self, chosen: Sequence[str], has_input: bool) -> str:
        """Why nothing can be picked: the group's models all need an input image, and none is given."""
        if self.schemas is None or chosen or has_input:
            return ""
        kind = self.kind.value
        if kind in (EDIT, UPSCALE) and any(needs_input(i) for i in self.schemas.values()):
            what = "Edit" if kind == EDIT else "Upscale"
            return f"{what} models need an input image: give one in Input image (a file, or Upload)."
        return ""

    # -- the grid ------------------------------------------------------------------------------------
    @staticmethod
    def fitted(spec: options.Spec, line: str) -> options.Spec:
        """The spec with as many columns as fit the output (unless the line sets --cols)."""
        if "--cols" in options.split_words(line):
            return spec
        fit = max(1, FIT_WIDTH // (spec.size + 12))
        return dataclasses.replace(spec, cols=min(spec.cols, fit))

    # -- save ----------------------------------------------------------------------------------------
    def save(self, results: Results | None, folder: str | Path | None = None) -> list[Path]:
        """What the Save button does: the latest grid's PNGs and `contact-sheet.png` into a folder."""
        if results is None or not results.done:
            self.set_status("Nothing to save yet: generate a grid first.", error=True)
            return []
        target = Path(folder or self.save_folder.value.strip() or SAVE_FOLDER)
        try:
            written = results.save(target)
            sheet = save_contact_sheet(results, target)  # whole, never over an earlier sheet
        except OSError as exc:
            self.set_status(
                f"Could not save to {target} ({exc.strerror or exc}); choose another folder.", error=True
            )
            return []
        self.set_status(f"Saved {len(written)} PNG(s) and {sheet.name} to {target}.", error=False)
        return [*written, sheet]

    # -- spend ---------------------------------------------------------------------------------------
    def show_spend(self) -> None:
        """What this panel's session was billed for (its ledger; cached images never count)."""
        try:
            spent = self.session.spend()
        except UsageProblem as exc:  # a budget in the environment that is not an amount
            self.spend.value = _error(str(exc))
            return
        left = getattr(spent, "left", None)  # a durable ledger may say it; else budget - total
        text = spend_line(
            spent.images,
            spent.total,
            spent.unpriced,
            spent.budget,
            left if isinstance(left, (int, float)) else None,
        )
        self.spend.value = (
            f'<span class="oxen-spend-text {NO_MATH}" style="font-size:12px;opacity:.8">{esc(text)}</span>'
        )


__all__ = ["FIT_WIDTH", "KINDS", "SAVE_FOLDER", "Classroom"]
