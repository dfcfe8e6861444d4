"""The one pipeline both front ends use: resolve models → plan → run.

`prepare` does everything that can fail on bad input before anything is billed; `execute` runs
the requests. The magic and the panel differ only in how they display progress.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .cache import Cache
from .catalog import ModelInfo
from .client import OxenClient
from .errors import NetworkError, NotFoundError, OxenError, UsageProblem
from .options import Spec
from .plan import make_plan, suggest
from .results import Item, Results
from .runner import run


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
        except NetworkError as exc:
            info = _saved_model(cache, model_id)
            if info is None:
                raise
            notes.append(f"Offline ({exc}); using the saved description of {model_id}.")
        except OxenError as exc:
            info = None
            notes.append(f"Could not read {model_id}'s parameters ({exc}); values sent unchecked.")
        else:
            _save_model(cache, model_id, client.model(model_id))
        found[model_id] = info
    return found, notes


def _model_path(cache: Cache, model_id: str) -> Path:
    return cache.folder / "models" / (Cache.key("model", {"id": model_id}) + ".json")


def _saved_model(cache: Cache | None, model_id: str) -> ModelInfo | None:
    if cache is None:
        return None
    try:
        return ModelInfo.from_api(json.loads(_model_path(cache, model_id).read_text()))
    except (OSError, ValueError):
        return None


def _save_model(cache: Cache | None, model_id: str, info: ModelInfo) -> None:
    if cache is None or _model_path(cache, model_id).exists():
        return
    obj = {
        "id": info.id,
        "display_name": info.display_name,
        "endpoint": info.endpoint,
        "capabilities": {"input": list(info.inputs), "output": list(info.outputs)},
        "pricing": info.pricing,
        "request_schema": info.request_schema,
    }
    path = _model_path(cache, model_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
    except OSError:
        pass


def prepare(spec: Spec, client: OxenClient, cache: Cache | None = None) -> Results:
    """Validate the spec against the models and lay out the grid; sends no generate request."""
    models, notes = resolve_models(client, spec.models, cache)
    plan = make_plan(spec, models)
    results = Results(plan, size=spec.size, cols=spec.cols)
    results.notes[:0] = notes
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
