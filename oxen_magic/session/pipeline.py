"""The first half of `Run.prepare`: read the models, check the spec against them, make the plan.

`prepare` does what can fail on bad input before anything is billed (unknown models, export
targets that cannot be written, parameters a model does not take); `run.Run` lays the plan out as
a grid, holds the budget and sends. `list_models` is what `--list-models` and the panel show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from oxen_magic.core.errors import AuthError, NetworkError, NotFoundError, OxenError, UsageProblem
from oxen_magic.exports.exports import check_targets
from oxen_magic.network.cache import Cache
from oxen_magic.network.client import OxenClient
from oxen_magic.network.model_info import ModelInfo
from oxen_magic.planning.options import Spec
from oxen_magic.planning.plan import Plan, make_plan, suggest
from oxen_magic.session.input_images import resolve_inputs

#: What to do without a network for what the cache cannot answer (issue 14: offline packs).
OFFLINE_WAYS = (
    "import the workshop's offline pack (python -m oxen_magic pack import FILE), "
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


@dataclass(frozen=True)
class Planned:
    """What `prepare` found: the spec as it will be sent (local input images uploaded), its plan,
    the notes to show above the grid, and each model's per-image price where the API lists one."""

    spec: Spec
    plan: Plan
    notes: list[str]
    prices: dict[str, float]


def prepare(spec: Spec, client: OxenClient, cache: Cache | None = None) -> Planned:
    """Validate the spec against the models and make its plan; sends no generate request (the
    first step of `Run.prepare`, which lays out the grid and holds the budget).

    Export targets are checked first (`exports.check_targets`), so a `--save`, `--to-html` or
    `--to-oxen` target that cannot be written, or a cache path that cannot be a folder, is refused
    before any request (not after the images were billed).
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
    prices = {m: i.cost_per_image for m, i in models.items() if i and i.cost_per_image is not None}
    return Planned(spec, plan, notes, prices)


def _upload(spec: Spec) -> tuple[Spec, str]:
    """Local input images into the upload repository (not on a dry run, which sends nothing)."""
    if spec.dry_run:
        return spec, f"Dry run: local input images would be uploaded to {spec.upload_repo}; none were."
    from oxen_magic.exports.oxen_repo import upload_inputs

    assert spec.upload_repo is not None
    groups, note = upload_inputs(spec.input_images, spec.upload_repo)
    return replace(spec, input_images=groups), note or ""
