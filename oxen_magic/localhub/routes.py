"""The local hub's routing and read routes: the model list, detail and search, and result files.

`ModelRoutes` serves the GET routes of `oxen-api.md` ("GET /api/ai/models ...") and the temporary
result-file URLs; `router.py` sends each request to it or to the POST routes (`generate.py`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from oxen_magic.localhub.replies import _error_reply, _json_bytes, _not_found, _Reply

if TYPE_CHECKING:
    from oxen_magic.localhub.knobs import Knobs
    from oxen_magic.localhub.storage import ResultStore

GENERATE_PATH = "/api/ai/images/generate"
EDIT_PATH = "/api/ai/images/edit"
#: The editing reference page's examples write the route without `/ai` (knob `bare_edit_route`).
BARE_EDIT_PATH = "/api/images/edit"
MODELS_PATH = "/api/ai/models"
FILES_PREFIX = "/api/repos/"


def _shown(obj: dict[str, Any], schema: bool, field: str) -> dict[str, Any]:
    """A model as served: its schema under `field` (or null when `schema` is False)."""
    if not isinstance(obj, dict) or (schema and field == "request_schema"):
        return obj
    copy = dict(obj)
    value = copy.pop("request_schema", None)
    value = copy.pop("json_request_schema", value)
    copy[field] = value if schema else None
    return copy


def _action(obj: dict[str, Any]) -> set[str]:
    """What `action=` matches for a model (the docs name the filter, not its values): its own
    `action` field when it has one, its `model_type`, and its endpoint's verb (`generate`,
    `edit`)."""
    found = {str(obj.get("action") or ""), str(obj.get("model_type") or "")}
    endpoint = str(obj.get("endpoint") or "")
    found.add(endpoint.rstrip("/").rsplit("/", 1)[-1])
    return {a.lower() for a in found if a}


def _filtered(models: Sequence[Any], asked: dict[str, list[str]]) -> list[Any]:
    """The list route's documented filters: `developer_name` (the model's `developer_name`, else
    its `owned_by`) and `action`, both case-insensitive; absent or empty: no filter."""
    developer = (asked.get("developer_name") or [""])[0].strip().lower()
    action = (asked.get("action") or [""])[0].strip().lower()
    out = []
    for obj in models:
        if not isinstance(obj, dict):
            out.append(obj)
            continue
        owner = str(obj.get("developer_name") or obj.get("owned_by") or "").lower()
        if developer and owner != developer:
            continue
        if action and action not in _action(obj):
            continue
        out.append(obj)
    return out


class ModelRoutes:
    """The GET routes (the model list, detail and search, result files), the key check, and the
    result URLs the image routes issue.

    Handed the knobs (read on every request), the catalogue served (a live list: edits show up in
    the next answer), the result store and the hub's own base URL (known once it started)."""

    def __init__(
        self, knobs: Knobs, models: list[dict[str, Any]], store: ResultStore, url: Callable[[], str]
    ) -> None:
        self.knobs, self.models, self.store, self.url = knobs, models, store, url

    def answer(self, path: str, query: str, headers: Any) -> _Reply | None:
        """The answer to a GET or HEAD of a model route or a result file; None for another path."""
        model_route = path == MODELS_PATH or path.startswith(MODELS_PATH + "/")
        if model_route and not self.knobs.anonymous_reads and not self.authorised(headers):
            return _error_reply(401)
        asked = parse_qs(query)
        if path in (MODELS_PATH, MODELS_PATH + "/"):
            return self._list(_filtered(self.models, asked))
        if path == MODELS_PATH + "/search":
            terms = asked.get("search") or asked.get("q") or [""]
            return self._search(terms[0], asked)
        if path.startswith(MODELS_PATH + "/"):
            return self._model(unquote(path[len(MODELS_PATH) + 1 :]))
        if path.startswith(FILES_PREFIX) and "/files/results/" in path:
            return self._file(path, headers)
        return None

    # -- models ---------------------------------------------------------------------------

    def _list(self, models: Sequence[dict[str, Any]]) -> _Reply:
        """The list shape; without `list_schemas` its items carry `"request_schema": null`, as
        the documented example does (the schema is only certain on the detail route). Private
        models are not listed."""
        hidden = self.knobs.private_models
        items = [
            _shown(m, self.knobs.list_schemas, self.knobs.schema_field)
            for m in models
            if not (isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"] in hidden)
        ]
        return _Reply(200, _json_bytes({"object": "list", "data": items}))

    def _search(self, term: str, asked: dict[str, list[str]] | None = None) -> _Reply:
        """`/models/search?search=...`: the word in the id, display name or description (the
        list's filters apply too)."""
        needle = term.strip().lower()
        fields = ("id", "display_name", "description")
        found = [
            m
            for m in _filtered(self.models, asked or {})
            if isinstance(m, dict) and any(needle in str(m.get(f, "")).lower() for f in fields)
        ]
        return self._list(found)

    def find(self, model_id: str) -> dict[str, Any] | None:
        """The served model with this id (private ones too), or None."""
        for obj in self.models:
            if isinstance(obj, dict) and obj.get("id") == model_id:
                return obj
        return None

    def _model(self, model_id: str) -> _Reply:
        obj = self.find(model_id)
        if obj is None or model_id in self.knobs.private_models:
            return _not_found(f"Model not found: {model_id}")
        return _Reply(200, _json_bytes(_shown(obj, True, self.knobs.schema_field)))

    def authorised(self, headers: Any) -> bool:
        """Whether the request carries the hub's key as a bearer token (any token when the hub
        has no key)."""
        value = headers.get("Authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not token.isascii():
            return False  # a key is ASCII; compare_digest raises on anything else
        key = self.knobs.api_key
        return key is None or secrets.compare_digest(token.encode(), key.encode())

    # -- result files ---------------------------------------------------------------------

    def own_file(self, url: str) -> bytes | None:
        """The bytes behind one of this hub's result URLs (None when expired or evicted);
        `KeyError` when `url` is not one of them."""
        origins = (self.url(), self.knobs.result_origin)
        prefixes = tuple(f"{origin}{FILES_PREFIX}" for origin in origins if origin)
        if not url.startswith(prefixes) or "/files/results/" not in url:
            raise KeyError(url)
        entry = self.store.get(url.split("?")[0].rsplit("/", 1)[-1])
        return None if entry is None else entry.data

    def _file(self, path: str, headers: Any) -> _Reply:
        if self.knobs.require_auth_for_files and not self.authorised(headers):
            return _error_reply(401)
        entry = self.store.get(path.rsplit("/", 1)[-1])
        if entry is None:
            return _error_reply(404, "File not found or expired")
        return _Reply(
            200,
            entry.data,
            entry.content_type,
            {"Cache-Control": "private, no-store"},
            pad_to=self.knobs.oversize_bytes or 0,
            drip=self.knobs.drip or 0.0,
        )

    def issue_url(self, namespace: Any, data: bytes, ext: str, content_type: str) -> str:
        """Keep a result in the store and give its temporary URL."""
        token = self.store.put(data, ext, content_type)
        owner = namespace if isinstance(namespace, str) and namespace.strip() else "local"
        origin = self.knobs.result_origin or self.url()
        return f"{origin}{FILES_PREFIX}{quote(owner, safe='')}/files/results/{token}"
