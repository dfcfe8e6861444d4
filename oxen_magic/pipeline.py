"""The one pipeline both front ends use: resolve models → plan → run.

`prepare` does everything that can fail on bad input before anything is billed; `execute` runs
the requests. The magic and the panel differ only in how they display progress.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .cache import Cache
from .catalog import ModelInfo
from .client import OxenClient
from .errors import NetworkError, NotFoundError, OxenError, UsageProblem
from .inputs import inline_note
from .options import Spec
from .plan import make_plan, suggest
from .results import Item, Results
from .runner import run

#: Notes given once per process (the data: URI caveat), not on every cell.
_NOTED: set[str] = set()


def resolve_models(
    client: OxenClient, ids: Sequence[str], cache: Cache | None = None
) -> tuple[dict[str, ModelInfo | None], list[str]]:
    """Each model's description, so the plan can be checked; notes for what could not be read.

    Offline, the descriptions saved by an earlier run are used, so cached results still match.
    """
    found: dict[str, ModelInfo | None] = {}
    notes: list[str] = []
    for model_id in ids:
        info: ModelInfo | None
        try:
            info = client.model(model_id)
        except NotFoundError:
            try:
                known = [m.id for m in client.models()]
            except OxenError:
                known = []
            raise UsageProblem(suggest(model_id, known)) from None
        except NetworkError:
            saved = cache.get_model(client.base, model_id) if cache else None
            if saved is None:
                raise
            info = ModelInfo.from_api(saved)
            notes.append(f"Offline: using the description of {model_id} saved by an earlier run.")
        except OxenError as exc:
            info = None
            notes.append(f"Could not read {model_id}'s parameters, so they are sent unchecked: {exc}")
        else:
            if cache is not None:
                cache.put_model(client.base, model_id, info.raw)
        found[model_id] = info
    return found, notes


def prepare(spec: Spec, client: OxenClient, cache: Cache | None = None) -> Results:
    """Validate the spec against the models and lay out the grid; sends no generate request."""
    models, notes = resolve_models(client, spec.models, cache)
    plan = make_plan(spec, models)
    results = Results(plan, size=spec.size, cols=spec.cols)
    results.notes[:0] = notes
    inline = inline_note(spec.input_images, _NOTED)
    if inline:
        results.notes.append(inline)
    if spec.random_seeds:
        seeds = ",".join(str(s) for s in spec.seeds)
        results.notes.append(f"Random seeds: {seeds} (use --seed {seeds} to get these images again).")
    if spec.dry_run:
        for item in results.items:
            if item.status == "pending":
                item.status = "planned"
        cost = plan.cost_line()
        results.notes.append(
            f"Dry run: {results.total} image(s) planned{f' ({cost})' if cost else ''}; nothing was "
            "sent. Remove --dry-run to generate them."
        )
    return results


def execute(
    results: Results,
    spec: Spec,
    client: OxenClient,
    cache: Cache | None,
    *,
    on_update: Callable[[Item | None], None] | None = None,
    cancel: threading.Event | None = None,
) -> Results:
    """Run what the cache cannot answer; save PNGs when asked. Raises only for a missing or bad key
    (once the cache has answered what it can: a fully cached grid needs no key)."""
    if spec.dry_run:
        return results
    run(
        results,
        client,
        cache=cache,
        use_cache=spec.use_cache,
        concurrency=spec.concurrency,
        on_update=on_update,
        cancel=cancel,
    )
    if spec.save_dir and results.done:
        try:
            written = results.save(spec.save_dir)
        except OSError as exc:
            results.notes.append(f"Could not save the PNGs to {spec.save_dir} ({exc.strerror or exc}).")
        else:
            results.notes.append(f"Saved {len(written)} PNG file(s) to {spec.save_dir}.")
    return results
