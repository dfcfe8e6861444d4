"""The panel's input-image control: the `--input-image` text, a file upload, and "use a result from
this panel". Both helpers only write the option's text: an upload or a picked result is put in the
user's namespace under a variable name, which the text then names, so the magic line stays the
single source of truth (and pasting it into a cell below does the same)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from oxen_magic.frontends.panel.base import _DESC
from oxen_magic.frontends.panel.display import _error
from oxen_magic.planning.required import role

if TYPE_CHECKING:
    from oxen_magic.network.model_info import ModelInfo
    from oxen_magic.results.results import Results

_NONE = "use a result from this panel…"


class InputControl:
    """`input_image` (Text), `input_upload` (FileUpload), `input_pick` (Dropdown).

    Handed where variables live (`user_ns`), the message beside the text (an upload that is not
    an image is said there) and the panel's latest results (what "use a result" offers)."""

    def __init__(
        self,
        value: str,
        *,
        user_ns: Callable[[], dict[str, Any]],
        message: widgets.HTML,
        result: Callable[[], Results | None],
    ) -> None:
        self.user_ns, self.message, self.result = user_ns, message, result
        self.input_image = widgets.Text(
            value=value,
            description="Input image",
            placeholder="none: a file, URL or variable; a,b = one each; a+b = reference images",
            style=_DESC,
            layout=widgets.Layout(width="560px"),
        )
        self.input_upload = widgets.FileUpload(
            accept="image/png,image/jpeg,image/webp,image/gif", multiple=False, description="Upload"
        )
        self.input_pick = widgets.Dropdown(
            options=[(_NONE, "")], value="", layout=widgets.Layout(width="260px")
        )
        self.input_image.add_class("oxen-input-image")
        self.input_upload.add_class("oxen-input-upload")
        self.input_pick.add_class("oxen-input-pick")
        self.input_upload.observe(self._uploaded, names="value")
        self.input_pick.observe(self._picked, names="value")
        self.helpers = widgets.HBox(
            [self.input_upload, self.input_pick], layout=widgets.Layout(margin="0 0 0 114px")
        )

    def owned(self) -> list[Any]:
        """Every widget this part made (to close them with the panel)."""
        return [self.input_image, self.input_upload, self.input_pick]

    def given(self) -> bool:
        """Whether an input image is given."""
        return bool(str(self.input_image.value or "").strip())

    def _use_input(self, name: str, value: Any) -> None:
        """Put `value` in the user's namespace as `name` and make it the (added) input image."""
        self.user_ns()[name] = value
        current = [w.strip() for w in self.input_image.value.split(",") if w.strip()]
        if name not in current:
            current.append(name)
        self.input_image.value = ",".join(current)

    def _uploaded(self, change: Mapping[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[-1]
        data = bytes(upload["content"]) if isinstance(upload, dict) else bytes(upload.content)
        filename = upload["name"] if isinstance(upload, dict) else upload.name
        stem = re.sub(r"\W+", "_", str(filename).rsplit(".", 1)[0]).strip("_").lower() or "image"
        name = "upload_" + stem
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception:
            # the file name is the user's text: escaped like every message (it could hold markup)
            self.message.value = _error(f"{filename} is not an image (PNG, JPEG, WebP or GIF).")
            return
        self._use_input(name, data)  # the bytes as uploaded: their hash is what the server gets

    def _picked(self, change: Mapping[str, Any]) -> None:
        index = change["new"]
        results = self.result()
        if index == "" or results is None:
            return
        item = results.items[int(index)]
        model = re.sub(r"\W+", "_", str(item.model)).strip("_")
        name = f"panel_{model}_seed_{item.seed}" if item.seed is not None else f"panel_{model}_{index}"
        self._use_input(name, item)
        self.input_pick.value = ""

    def refresh_picks(self) -> None:
        """Offer the images of the panel's latest grid as inputs."""
        results = self.result()
        choices: list[tuple[str, str]] = [(_NONE, "")]
        if results is not None:
            for index, item in enumerate(results.items):
                if item.ok:
                    seed = f"seed {item.seed}" if item.seed is not None else f"image {index + 1}"
                    choices.append((f"{item.model} · {seed}", str(index)))
        self.input_pick.options = choices
        self.input_pick.value = ""


def roles_note(model_ids: Sequence[str], schemas: Mapping[str, ModelInfo] | None) -> str:
    """What the chosen models do with an input image, e.g. `flux-kontext-dev needs one`."""
    words = {"required": "needs an input image", "none": "takes text only"}
    bits = []
    for model in model_ids:
        kind = role((schemas or {}).get(model))
        if kind in ("one", "several"):
            bits.append(
                f"{model} takes an optional input image" + (" (several)" if kind == "several" else "")
            )
        elif kind in words:
            bits.append(f"{model} {words[kind]}")
    return "; ".join(bits) + "." if bits else ""
