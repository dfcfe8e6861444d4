"""Proof that the browser harness works: JupyterLab + ipywidgets in headless Chromium.

Runs a notebook with an HTML table of 4 data-URI thumbnails and a small widget panel,
then drives the widgets like a user.  Screenshots go to ``$OXEN_BROWSER_ARTIFACTS`` if
set, else to the test's tmp dir (the path is printed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_harness import (
    ProcId,
    assert_images_loaded,
    assert_no_output_errors,
    chromium_available,
    chromium_browser,
    click_widget_button,
    descendants,
    execution_counts,
    fill_text_widget,
    jupyter_lab,
    new_lab_page,
    open_notebook,
    run_all_cells,
    running,
    save_screenshot,
    select_multiple,
    wait_widget_text,
    write_notebook,
)

pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not chromium_available(),
        reason="/usr/bin/chromium is missing (install it with `bash .ci/install-browser`)",
    ),
]

TABLE_CELL = """\
import base64, io
from IPython.display import HTML, display
from PIL import Image

def thumb(color, size=(48, 32)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

colors = ["red", "green", "blue", "orange"]
header = "".join(f"<th>Prompt {c}</th>" for c in colors)
row = "".join(f'<td><img src="{thumb(c)}" alt="{c}"></td>' for c in colors)
display(HTML(f'<table class="harness-grid"><tr>{header}</tr><tr>{row}</tr></table>'))
"""

WIDGET_CELL = """\
import io
import ipywidgets as widgets
from IPython.display import Image as IPyImage, display
from PIL import Image

prompt = widgets.Textarea(description="Prompt")
models = widgets.SelectMultiple(options=["a", "b", "c"], description="Models")
models.add_class("harness-models")
go = widgets.Button(description="Generate")
status = widgets.Label(value="idle")
status.add_class("harness-status")
out = widgets.Output()
out.add_class("harness-out")

def png(color):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(buf, format="PNG")
    return buf.getvalue()

def on_click(_):
    with out:
        out.clear_output()
        for color in ["purple", "teal"]:
            display(IPyImage(data=png(color)))
    status.value = f"{prompt.value}|{','.join(models.value)}|2 images"

go.on_click(on_click)
widgets.VBox([prompt, models, go, status, out])
"""

NOTEBOOK = "harness_proof.ipynb"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    base = os.environ.get("OXEN_BROWSER_ARTIFACTS")
    folder = Path(base) / "test_browser_harness" if base else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def leftover_check() -> Iterator[set[ProcId]]:
    """Collects servers, kernels and browsers; fails if any outlives the test."""
    processes: set[ProcId] = set()
    yield processes
    deadline = time.monotonic() + 5
    while running(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(processes), f"processes left behind: {running(processes)}"


def test_lab_runs_notebook_and_drives_widgets(
    tmp_path: Path, artifacts: Path, leftover_check: set[ProcId]
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - started, 2)

    root = tmp_path / "lab"
    write_notebook(root / NOTEBOOK, [("markdown", "# Harness proof"), TABLE_CELL, WIDGET_CELL])

    with jupyter_lab(root, {"OXEN_HARNESS": "1"}) as url, chromium_browser() as browser:
        mark("lab+browser up")
        page = new_lab_page(browser)
        open_notebook(page, url, NOTEBOOK)
        mark("notebook open, kernel idle")

        run_all_cells(page, NOTEBOOK)
        mark("run all")
        leftover_check.update(descendants(os.getpid()))
        assert_no_output_errors(page)
        assert execution_counts(page, NOTEBOOK) == [1, 2]

        grid = ".jp-OutputArea-output table.harness-grid"
        images = assert_images_loaded(page, grid, expected=4)
        assert all(img.src.startswith("data:image/png;base64,") for img in images)
        headers = page.locator(f"{grid} th").all_inner_texts()
        assert headers == [f"Prompt {c}" for c in ["red", "green", "blue", "orange"]]
        shots = [
            save_screenshot(page, artifacts, "01-run-all"),
            save_screenshot(page, artifacts, "01-grid", selector=grid),
        ]

        fill_text_widget(page, "a cat", label="Prompt")
        select_multiple(page, ["b", "c"], css_class="harness-models")
        click_widget_button(page, "Generate")
        wait_widget_text(page, "harness-status", "a cat|b,c|2 images")
        assert_images_loaded(page, ".harness-out", expected=2)
        assert_no_output_errors(page)
        mark("widgets driven")
        shots.append(save_screenshot(page, artifacts, "02-widgets"))
        shots.append(save_screenshot(page, artifacts, "03-panel", selector=".widget-vbox"))
        assert all(s.stat().st_size > 1000 for s in shots)
        print(f"screenshots: {artifacts}")
    mark("torn down")
    print(f"timings (s since test start): {timings}; {len(leftover_check)} processes tracked")
