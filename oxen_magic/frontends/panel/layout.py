"""Where the panel's widgets go and the CSS classes that name them (the browser test, a
notebook's own styling and the static copy find controls by these classes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from oxen_magic.frontends.panel.controls import ModelsText

if TYPE_CHECKING:
    from oxen_magic.frontends.panel.panel import Panel


def arrange(panel: Panel) -> list[widgets.Widget]:
    """The panel's rows, top to bottom; also makes `panel.code_box` (the command-line syntax,
    shown on request by "Show code")."""

    def row(control: Any, name: str) -> widgets.Box:
        return widgets.HBox([control, panel.messages[name]], layout=widgets.Layout(align_items="center"))

    panel.code_box = widgets.VBox(
        [
            row(panel.seeds, "seeds"),
            row(panel.steps, "steps"),
            row(panel.extra_options, "extra_options"),
            panel.magic_line,
        ],
        layout=widgets.Layout(display="none"),
    )
    panel.code_box.add_class("oxen-code")
    return [
        row(panel.prompt, "prompt"),
        panel.kind,
        row(panel.models, "models"),
        panel.about_models,
        panel.simple.box,
        row(panel.aspect_ratio, "aspect_ratio"),
        row(panel.input_image, "input_image"),
        panel.inputs.helpers,
        panel.show_code,
        panel.code_box,
        widgets.HBox(
            [panel.generate_button, panel.stop_button, panel.progress, panel.status],
            layout=widgets.Layout(align_items="center"),
        ),
        # the grid is fitted to about this width; anything wider scrolls inside the panel
        widgets.Box([panel.output], layout=widgets.Layout(width="100%", overflow="auto")),
        widgets.HBox(
            [panel.save_folder, panel.save_button, panel.spend],
            layout=widgets.Layout(align_items="center"),
        ),
        panel.history,
    ]


def mark(panel: Panel) -> None:
    """Give each widget of the panel its CSS class."""
    for widget, css in (
        (panel.prompt, "oxen-prompt"),
        (panel.models, "oxen-models"),
        (panel.seeds, "oxen-seeds"),
        (panel.aspect_ratio, "oxen-aspect-ratio"),
        (panel.steps, "oxen-steps"),
        (panel.extra_options, "oxen-extra-options"),
        (panel.magic_line, "oxen-magic-line"),
        (panel.generate_button, "oxen-generate"),
        (panel.stop_button, "oxen-stop"),
        (panel.progress, "oxen-progress"),
        (panel.status, "oxen-status"),
        (panel.output, "oxen-output"),
        (panel.history, "oxen-history"),
        (panel.kind, "oxen-kind"),
        (panel.save_folder, "oxen-save-folder"),
        (panel.save_button, "oxen-save"),
        (panel.spend, "oxen-spend"),
        (panel.about_models, "oxen-about-models"),
    ):
        widget.add_class(css)
    panel.progress.add_class("oxen-panel-progress")  # the grid HTML has an .oxen-progress too
    if isinstance(panel.models, ModelsText):
        panel.models.add_class("oxen-models-text")
        panel.models.text.add_class("oxen-models-input")
    for name, message in panel.messages.items():
        message.add_class("oxen-message")
        message.add_class(f"oxen-{name.replace('_', '-')}-message")
    panel.add_class("oxen-panel")
