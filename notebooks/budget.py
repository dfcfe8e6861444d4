"""`python notebooks/budget.py [--write]`: what the workshop costs per student, measured.

Runs every notebook of the workshop's agenda top to bottom, in agenda order, in one kernel
environment against one local hub and one fresh cache (as a student would), and counts the
images each notebook makes (the generate and edit requests the hub answered).

Prices per image: Oxen documents only a few (`DOCUMENTED_PRICES` of the local hub's catalogue);
the local hub's other prices are guesses, and the output lists them as `guessed` (the table marks
them `*`). `--prices-from hub.oxen.ai` reads the prices from that API's own model list instead
(its `pricing.cost_per_image`; a model read, with your key, nothing billed): only a model that
list gives no price for is then a guess. `--write` puts the counts, prices and guesses into the
workshop notebook's cell tagged `budget` (then rerun that notebook to refresh its output).

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
# top to bottom in agenda order against the local hub with one fresh cache; USD per image
# ({source}). GUESSED: prices nobody published, so totals that use them are marked *.
IMAGES = {images}
PRICES = {prices}
GUESSED = {guessed}
students = 30

print(f"{{'notebook':<24}}{{'images':>7}}{{'USD each':>10}}{{f'USD x {{students}}':>12}}")
for notebook, made in IMAGES.items():
    cost = sum(n * PRICES[model] for model, n in made.items())
    mark = "*" if set(made) & set(GUESSED) else ""
    print(f"{{notebook:<24}}{{sum(made.values()):>7}}{{cost:>10.3f}}{{cost * students:>12.2f}}{{mark}}")
images = sum(sum(made.values()) for made in IMAGES.values())
cost = sum(n * PRICES[m] for made in IMAGES.values() for m, n in made.items())
mark = "*" if GUESSED else ""
print(f"{{'all notebooks':<24}}{{images:>7}}{{cost:>10.3f}}{{cost * students:>12.2f}}{{mark}}")
if GUESSED:
    print(f"* uses {{len(GUESSED)}} guessed price(s) of {{len(PRICES)}}: {{', '.join(GUESSED)}}")"""


def measure(timeout: int = 300) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """Images per notebook and model, and the local hub's price of each model used."""
    import nbformat
    from nbclient import NotebookClient

    from oxen_magic.localhub import LocalHub
    from oxen_magic.network.client import OxenClient

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


def api_prices(host: str) -> dict[str, float]:
    """The per-image prices an API's model list gives (`pricing.cost_per_image`): a model read."""
    from oxen_magic.network.client import OxenClient

    client = OxenClient(host)
    try:
        return {m.id: float(m.cost_per_image) for m in client.models() if m.cost_per_image is not None}
    finally:
        client.close()


def price(
    made: dict[str, dict[str, int]], hub_prices: dict[str, float], real: dict[str, float] | None
) -> tuple[dict[str, float], list[str], str]:
    """(price per model used, the guessed ones, where the prices come from)."""
    from oxen_magic.localhub.models import DOCUMENTED_PRICES

    used = sorted({m for per in made.values() for m in per})
    if real is None:
        guessed = [m for m in used if m not in DOCUMENTED_PRICES]
        return hub_prices, guessed, "the prices Oxen documents, the local hub's guesses for the others"
    guessed = [m for m in used if m not in real]
    prices = {m: real.get(m, hub_prices[m]) for m in used}
    return prices, guessed, "the API's model list; the local hub's guesses where it gives none"


def write(made: dict[str, dict[str, int]], prices: dict[str, float], guessed: list[str], source: str) -> None:
    import nbformat

    nb = nbformat.read(str(WORKSHOP), as_version=4)
    cell = next(c for c in nb.cells if BUDGET_TAG in c.metadata.get("tags", []))
    cell.source = CELL.format(
        images=json.dumps(made, indent=4), prices=json.dumps(prices, indent=4), guessed=json.dumps(guessed),
        source=source,
    )  # fmt: skip
    nbformat.write(nb, str(WORKSHOP))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the workshop notebook's budget cell")
    parser.add_argument(
        "--prices-from", metavar="HOST", help="read prices from this API's model list (with a key)"
    )
    args = parser.parse_args()
    real = None
    if args.prices_from:  # before measuring, which points OXEN_HOST at the local hub
        from oxen_magic.core.errors import OxenError

        try:
            real = api_prices(args.prices_from)
        except (OxenError, ValueError) as exc:
            print(f"Cannot read the prices from {args.prices_from}: {exc}", file=sys.stderr)
            return 2
    made, hub_prices = measure()
    prices, guessed, source = price(made, hub_prices, real)
    print(json.dumps({"images": made, "prices": prices, "guessed": guessed, "source": source}, indent=1))
    if guessed:
        print(f"guessed prices (not published): {', '.join(guessed)}", file=sys.stderr)
    if args.write:
        write(made, prices, guessed, source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
