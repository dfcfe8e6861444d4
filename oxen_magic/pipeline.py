"""The one pipeline both front ends use: resolve models → plan → run.

`prepare` does everything that can fail on bad input before anything is billed; `execute` runs
the requests. The magic and the panel differ only in how they display progress.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from .cache import Cache
from .catalog import ModelInfo
from .client import OxenClient
from .errors import AuthError, NetworkError, NotFoundError, OxenError, UsageProblem
from .exports import check_targets, export
from .input_images import resolve_inputs
from .inputs import inline_note
from .options import Spec
from .plan import make_plan, suggest
from .results import Item, Results
from .runner import Billed, Sent, run
from .window import WindowMemory

#: Notes given once per process (the data: URI caveat), not on every cell.
_NOTED: set[str] = set()

#: What to do without a network for what the cache cannot answer (issue 14: offline packs).
OFFLINE_WAYS = (
    "import the workshop's offline pack (python -m oxen_magic.pack import FILE), "
    "or use the local hub (--host local)."
)


def resolve_models(
    client: OxenClient, ids: Sequence[str], cache: Cache | None = None
) -> tuple[dict[str, ModelInfo | None], list[str]]:
    """Each model's description (read in parallel from the detail route, the only one sure to
    carry a schema), so the plan can be checked; notes for what could not be read.

    When a description cannot be read (offline, refused), the one saved by an earlier run is
    used, so cached results still match. A fine-tuned `oxen:` id the detail route does not know
    is sent with its parameters unchecked (generate may still know it); a plain unknown id gets
    "did you mean".
    """
    found: dict[str, ModelInfo | None] = {}
    notes: list[str] = []
    for model_id, got in client.models_detailed(ids).items():
        if isinstance(got, ModelInfo):
            if cache is not None:
                cache.put_model(client.base, model_id, got.raw)
            found[model_id] = got
            notes.extend(f"{model_id}: {note}." for note in got.notes)
            continue
        if isinstance(got, NotFoundError):
            if model_id.startswith("oxen:"):
                found[model_id] = None
                notes.append(
                    f"{model_id} has no public description (a fine-tuned or private model?), so "
                    "its parameters are sent unchecked."
                )
                continue
            try:
                known = [m.id for m in client.models()]
            except OxenError:
                known = []
            raise UsageProblem(suggest(model_id, known))
        if isinstance(got, AuthError) and got.status == 401 and _usable_key(client):
            raise got  # a refused key: said before any grid is drawn, not as "sent unchecked"
        saved = cache.get_model(client.base, model_id) if cache else None
        info = _saved(saved)
        if info is not None:
            found[model_id] = info
            where = "Offline" if isinstance(got, NetworkError) else f"Could not read {model_id} ({got})"
            notes.append(f"{where}: using the description of {model_id} saved by an earlier run.")
        elif isinstance(got, NetworkError):
            raise NetworkError(
                f"{got} Nothing for {model_id} is cached on this machine: {OFFLINE_WAYS}"
            ) from None
        else:
            found[model_id] = None
            notes.append(f"Could not read {model_id}'s parameters, so they are sent unchecked: {got}")
    return found, notes


def _usable_key(client: OxenClient) -> bool:
    """Whether a key went with the reads (else a 401 only says none did: the missing or malformed
    key is reported by the key check, in its own words, once the cache has answered what it can)."""
    try:
        client.check_key()
    except AuthError:
        return False
    return True


def _saved(obj: object) -> ModelInfo | None:
    """A description saved by an earlier run, or None when there is none (or it is damaged)."""
    if not isinstance(obj, dict):
        return None
    try:
        return ModelInfo.from_api(obj)
    except Exception:  # a damaged file on disk is no description
        return None


def list_models(
    client: OxenClient, *, search: str | None = None, developer: str | None = None
) -> tuple[list[ModelInfo], list[str]]:
    """What `--list-models` and the panel show: the list, with each model's detail filled in
    where it can be read (the list may carry no schemas). One failing detail costs only that
    model's parameters, never the listing; the notes say which."""
    listed = client.models(search=search, developer=developer)
    details = client.models_detailed([m.id for m in listed if m.request_schema is None])
    missing = [m for m, got in details.items() if not isinstance(got, ModelInfo)]
    models = [d if isinstance(d := details.get(m.id), ModelInfo) else m for m in listed]
    notes = [f"{m.id}: {note}." for m in models for note in m.notes]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        notes.append(f"Could not read the parameters of {shown}; they are sent unchecked.")
    return models, notes


def prepare(spec: Spec, client: OxenClient, cache: Cache | None = None) -> Results:
    """Validate the spec against the models and lay out the grid; sends no generate request.

    Export targets are checked first (`exports.check_targets`), so a `--save`, `--to-html` or
    `--to-oxen` target that cannot be written, or a cache path that cannot be a folder, is refused
    before any request (not after the images were billed).

    `results.to_send` lists the items the cache cannot answer: what a run would send and pay for.
    """
    spec = resolve_inputs(spec)  # files read, images checked: refused here, before any request
    check_targets(spec)
    cache_note = cache.check() if cache is not None else None
    models, notes = resolve_models(client, spec.models, cache)
    if cache_note:
        notes.append(cache_note)
    plan = make_plan(spec, models)
    if spec.upload_repo and any(i.inline for g in spec.input_images if g for i in g):
        spec, note = _upload(spec)
        plan = make_plan(spec, models)  # validated above, before anything was uploaded
        notes.append(note)
    results = Results(plan, size=spec.size, cols=spec.cols)
    results.notes[:0] = notes
    inline = inline_note(spec.input_images, _NOTED)
    if inline:
        results.notes.append(inline)
    results.host = client.base
    results.prices = {m: i.cost_per_image for m, i in models.items() if i and i.cost_per_image is not None}
    results.to_send = [
        item
        for item in results.items
        if item.request is not None
        and not (spec.use_cache and cache is not None and cache.has(client.base, item.request.key_body()))
    ]
    if spec.random_seeds:
        seeds = ",".join(str(s) for s in spec.seeds)
        results.notes.append(f"Random seeds: {seeds} (use --seed {seeds} to get these images again).")
    if spec.dry_run:
        for item in results.items:
            if item.status == "pending":
                item.status = "planned"
        cost = results.cost_line()
        cached = results.total - len(results.to_send)
        if cached:
            cost = f"{cached} from cache" + (f", {cost}" if cost else "")
        results.notes.append(
            f"Dry run: {results.total} image(s) planned{f' ({cost})' if cost else ''}; nothing was "
            "sent. Remove --dry-run to generate them."
        )
    return results


def _upload(spec: Spec) -> tuple[Spec, str]:
    """Local input images into the upload repository (not on a dry run, which sends nothing)."""
    if spec.dry_run:
        return spec, f"Dry run: local input images would be uploaded to {spec.upload_repo}; none were."
    from .oxen_repo import upload_inputs

    assert spec.upload_repo is not None
    groups, note = upload_inputs(spec.input_images, spec.upload_repo)
    return replace(spec, input_images=groups), note or ""


def execute(
    results: Results,
    spec: Spec,
    client: OxenClient,
    cache: Cache | None,
    *,
    on_update: Callable[[Item | None], None] | None = None,
    cancel: threading.Event | None = None,
    on_billed: Billed | None = None,
    on_sent: Sent | None = None,
    windows: WindowMemory | None = None,
) -> Results:
    """Run what the cache cannot answer; save PNGs when asked. Raises only for a missing or bad key
    (once the cache has answered what it can: a fully cached grid needs no key). `on_billed` and
    `on_sent`: see `runner.run` (the session's spend ledger); `windows`: the session's window per
    host."""
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
        on_billed=on_billed,
        on_sent=on_sent,
        windows=windows,
    )
    late = cache.note() if cache is not None else None  # a write that failed during the run
    if late:
        results.notes.append(late)
    offline = sum(1 for item in results.items if item.offline)
    if offline:
        results.notes.append(
            f"{offline} image(s) could not reach the server and are not in this machine's cache: rerun "
            f"when the network is back, or {OFFLINE_WAYS}"
        )
    export(results, spec)
    return results
