"""Fast checks on the committed notebooks, without starting a kernel.

`pytest --nbval-lax notebooks/` runs them; this checks what a workshop hands out: each notebook is
valid, small, committed with its outputs, free of keys and machine paths, compares at least one
deterministic output under nbval, and is linked from the README (and every link resolves).
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any

import nbformat
import pytest

from oxen_magic.localhub import LocalHub

ROOT = Path(__file__).resolve().parent.parent
#: Made from workshop.ipynb by `python -m oxen_magic handout` (tests/test_handout.py): no outputs.
HANDOUTS = {"workshop_student.ipynb", "workshop_solutions.ipynb"}
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if p.name not in HANDOUTS)
NAMES = [p.name for p in NOTEBOOKS]
EXPECTED = {
    "quickstart.ipynb",
    "seed_sweeps.ipynb",
    "model_comparison.ipynb",
    "panel.ipynb",
    "workshop.ipynb",
    "image_editing.ipynb",
}
MAX_BYTES = 1_000_000
CHECK_TAG = "nbval-check-output"

#: The local hub's demo key: a key like any other, it must never be saved in a notebook.
DEMO_KEY = inspect.signature(LocalHub.__init__).parameters["api_key"].default
#: Where a machine path would come from: temp folders, home folders, the cache, a venv.
MACHINE_PATH = re.compile(
    r"/tmp/|/var/folders/|/private/var/|/root/|/home/|/Users/|[A-Za-z]:\\\\?Users|\.cache/oxen_magic|"
    r"site-packages|oxen-nb-cache-"
)
#: Inline images are base64 and may spell anything; they are not text a person reads.
BASE64_PAYLOAD = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")
IMAGE_MIME = re.compile(r"^image/")


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def _readable_text(nb: Any) -> str:
    """Everything a person could read in the notebook: sources, text outputs, metadata."""
    parts: list[str] = []
    for cell in nb.cells:
        parts.append(cell.source)
        parts.append(json.dumps(cell.metadata))
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            parts.append(str(out.get("evalue", "")))
            parts.extend(str(line) for line in out.get("traceback", []))
            for mime, value in out.get("data", {}).items():
                if not IMAGE_MIME.match(mime):
                    parts.append(value if isinstance(value, str) else json.dumps(value))
    metadata = dict(nb.metadata)
    widgets = metadata.pop("widgets", None)
    parts.append(json.dumps(metadata))
    if widgets:  # widget models' state, without their binary buffers (thumbnails)
        state = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        for model in state.values():
            parts.append(json.dumps(model.get("state", {})))
    return BASE64_PAYLOAD.sub("data:…", "\n".join(parts))


def test_the_expected_notebooks_exist() -> None:
    assert set(NAMES) >= EXPECTED, f"missing: {sorted(EXPECTED - set(NAMES))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_valid_and_small(path: Path) -> None:
    nbformat.validate(_read(path))
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size} bytes; keep thumbnails small (--size)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_committed_with_outputs_in_order(path: Path) -> None:
    """Run top to bottom (so nbval compares against a real run), without per-cell timings."""
    nb = _read(path)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert None not in counts, f"{path.name}: some code cells were not run before committing"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{path.name}: run out of order"
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert not [c for c in nb.cells if "execution" in c.metadata], f"{path.name}: timing metadata left in"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_no_key_and_no_machine_path(path: Path) -> None:
    text = _readable_text(_read(path))
    assert DEMO_KEY and DEMO_KEY not in text, f"{path.name} contains the local hub's key"
    found = MACHINE_PATH.findall(text)
    assert not found, f"{path.name} contains machine paths: {sorted(set(found))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_compares_some_deterministic_output(path: Path) -> None:
    checked = [c for c in _read(path).cells if CHECK_TAG in c.metadata.get("tags", [])]
    assert checked, f"{path.name} has no cell tagged {CHECK_TAG}"
    for cell in checked:
        assert cell.cell_type == "code" and cell.outputs, f"{path.name}: a checked cell has no output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_links_between_notebooks_resolve(path: Path) -> None:
    for cell in _read(path).cells:
        if cell.cell_type == "markdown":
            for target in re.findall(r"\]\(([^)#\s]+\.ipynb)\)", cell.source):
                assert (path.parent / target).is_file(), f"{path.name} links to missing {target}"


def test_workshop_solutions_are_tagged_with_hints() -> None:
    """Each exercise's answer is tagged `solution` with a hint, so the handout can take it out."""
    cells = _read(ROOT / "notebooks" / "workshop.ipynb").cells
    exercises = [c for c in cells if c.cell_type == "markdown" and c.source.startswith("### Exercise")]
    solutions = [c for c in cells if "solution" in c.metadata.get("tags", [])]
    assert len(exercises) == 4 and len(solutions) >= len(exercises)
    for cell in (c for c in solutions if c.cell_type == "code"):
        hint = cell.metadata.get("hint") or cell.source.startswith("# Hint:")
        assert hint, f"a solution without a hint: {cell.source[:60]!r}"


def _readme_links() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"\]\((notebooks/[^)#\s]+\.ipynb)\)", readme)


def test_readme_links_resolve() -> None:
    for link in _readme_links():
        assert (ROOT / link).is_file(), f"README links to missing {link}"


def test_readme_links_every_notebook() -> None:
    linked = {Path(link).name for link in _readme_links()}
    assert set(NAMES) | {"workshop_student.ipynb"} <= linked, (
        f"not linked from the README: {sorted(set(NAMES) - linked)}"
    )


def test_workshop_exercises_have_a_start_cell_and_a_check_that_passed() -> None:
    """Issue 19, item 6: each exercise starts with `oxen_magic.exercise("N")` and ends with a
    check cell that judges only grids made since then; the committed run shows each ✓."""
    cells = _read(ROOT / "notebooks" / "workshop.ipynb").cells
    headings = [
        i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("### Exercise")
    ]
    for n, index in enumerate(headings, start=1):
        start = cells[index + 1]
        assert start.cell_type == "code" and start.source == f'oxen_magic.exercise("{n}")', start.source
        end = headings[n] if n < len(headings) else len(cells)
        checks = [c for c in cells[index:end] if c.cell_type == "code" and "oxen_magic.check(" in c.source]
        assert len(checks) == 1 and f'"{n}"' in checks[0].source and CHECK_TAG in checks[0].metadata["tags"]
        shown = json.dumps([o.get("text") or o.get("data", {}).get("text/plain") for o in checks[0].outputs])
        assert f"✓ Exercise {n}" in json.loads(shown)[0], shown


def test_every_param_a_cell_sends_is_one_its_models_take() -> None:
    """Issue 19, item 9: a `--param` in a cell is a parameter of every model of that cell
    (the default model's when none is named), by the bundled catalogue's schemas."""
    from oxen_magic.network.model_info import bundled_catalogue
    from oxen_magic.planning.options import DEFAULT_MODEL

    schemas = {
        m["id"]: set((m.get("request_schema") or {}).get("properties", {})) for m in bundled_catalogue()
    }
    seen = 0
    for path in NOTEBOOKS:
        for cell in _read(path).cells:
            first = cell.source.partition("\n")[0]
            if (
                cell.cell_type != "code"
                or not first.startswith("%")
                or "--param" not in first
                or "$" in first
            ):
                continue
            words = shlex.split(first)
            after = {w: words[i + 1] for i, w in enumerate(words[:-1])}
            models = (after.get("--model") or after.get("-m") or DEFAULT_MODEL).split(",")
            keys = [words[i + 1].split("=")[0] for i, w in enumerate(words[:-1]) if w in ("--param", "-p")]
            for model in models:
                for key in keys:
                    seen += 1
                    assert key in schemas[model], f"{path.name}: {model} takes no {key}: {first}"
    assert seen >= 2  # the workshop's guidance cell and the editing notebook's upscale cell
