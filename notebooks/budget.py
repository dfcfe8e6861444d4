"""`python notebooks/budget.py [--write]`: what the workshop costs per student, measured.

Runs every notebook of the workshop's agenda top to bottom, in agenda order, in one kernel
environment against one local hub and one fresh cache (as a student would), and counts the
images each notebook makes (the generate and edit requests the hub answered). Prices per image
are those the local hub serves: the bundled model catalogue. `--write` puts the counts and
prices into the workshop notebook's cell tagged `budget` (then rerun that notebook to refresh
its output).

The notebooks run in a temporary copy of this folder, so nothing they save lands here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
AGENDA = (
    "quickstart.ipynb",
    "seed_sweeps.ipynb",
    "model_comparison.ipynb",
    "image_editing.ipynb",
    "panel.ipynb",
    "workshop.ipynb",
)
WORKSHOP = HERE / "workshop.ipynb"
BUDGET_TAG = "budget"
IMAGE_ROUTES = ("/api/ai/images/generate", "/api/ai/images/edit")

CELL = """\
# Written by `python notebooks/budget.py`: the images each notebook makes for one student, run
# top to bottom in agenda order against the local hub with one fresh cache; USD per image.
IMAGES = {images}
PRICES = {prices}
students = 30

print(f"{{'notebook':<24}}{{'images':>7}}{{'USD each':>10}}{{f'USD x {{students}}':>12}}")
for notebook, made in IMAGES.items():
    cost = sum(n * PRICES[model] for model, n in made.items())
    print(f"{{notebook:<24}}{{sum(made.values()):>7}}{{cost:>10.3f}}{{cost * students:>12.2f}}")
images = sum(sum(made.values()) for made in IMAGES.values())
cost = sum(n * PRICES[m] for made in IMAGES.values() for m, n in made.items())
print(f"{{'all notebooks':<24}}{{images:>7}}{{cost:>10.3f}}{{cost * students:>12.2f}}")"""


def measure(timeout: int = 300) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """Images per notebook and model, and the price of each model used."""
    import nbformat
    from nbclient import NotebookClient

    from oxen_magic.client import OxenClient
    from oxen_magic.localhub import LocalHub

    made: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="oxen-budget-") as tmp, LocalHub(image_size=256) as hub:
        work = Path(tmp) / "notebooks"
        shutil.copytree(HERE, work, ignore=shutil.ignore_patterns("out", "__pycache__", ".ipynb_checkpoints"))
        os.environ.update(
            OXEN_HOST=hub.url,
            OXEN_API_KEY=hub.api_key or "local-demo-key",
            OXEN_MAGIC_CACHE_DIR=str(Path(tmp) / "cache"),
        )
        seen = 0
        for name in AGENDA:
            if not (work / name).is_file():
                continue
            nb = nbformat.read(str(work / name), as_version=4)
            NotebookClient(nb, timeout=timeout, resources={"metadata": {"path": str(work)}}).execute()
            calls = [r for r in hub.requests if r.method == "POST" and r.path.split("?")[0] in IMAGE_ROUTES]
            answered = [r for r in calls[seen:] if r.status == 200 and r.body]
            seen = len(calls)
            made[name] = dict(sorted(Counter(str(r.body["model"]) for r in answered if r.body).items()))
            print(f"{name}: {sum(made[name].values())} images", file=sys.stderr)
        models = {m.id: m.cost_per_image for m in OxenClient(hub.url).models()}
    used = sorted({m for per in made.values() for m in per})
    prices = {m: float(models.get(m) or 0.0) for m in used}
    return made, prices


def write(made: dict[str, dict[str, int]], prices: dict[str, float]) -> None:
    import nbformat

    nb = nbformat.read(str(WORKSHOP), as_version=4)
    cell = next(c for c in nb.cells if BUDGET_TAG in c.metadata.get("tags", []))
    cell.source = CELL.format(images=json.dumps(made, indent=4), prices=json.dumps(prices, indent=4))
    nbformat.write(nb, str(WORKSHOP))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the workshop notebook's budget cell")
    args = parser.parse_args()
    made, prices = measure()
    print(json.dumps({"images": made, "prices": prices}, indent=1))
    if args.write:
        write(made, prices)
    return 0


if __name__ == "__main__":
    sys.exit(main())
