"""The local hub's routing and read routes: the model list, detail and search, and result files.

`_ModelRoutes` is the base of `LocalHub`: it declares the state every route reads, dispatches a
request to its route, and serves the GET routes of `oxen-api.md` ("GET /api/ai/models ...") and the
temporary result-file URLs. The POST routes live in `generate.py`.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from .records import RequestLog, recorded
from .replies import _error_reply, _json_bytes, _not_found, _Reply
from .storage import ResultStore

if TYPE_CHECKING:
    from .arrivals import CallWatch

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


class _ModelRoutes:
    """Routing, the model routes and the file route (mixed into `LocalHub`)."""

    api_key: str | None
    require_auth_for_files: bool
    anonymous_reads: bool
    list_schemas: bool
    schema_field: str
    private_models: set[str]
    bare_edit_route: bool
    #: Where a request carrying `input_image` is served: "both", "generate" (the edit route is
    #: not served) or "edit" (generate refuses input images); see `LocalHub`.
    input_route: str = "both"
    #: What a route not served answers: 404 (an unknown path) or 405 (method not allowed).
    missing_route_status: int = 404
    result_origin: str | None
    oversize_bytes: int | None
    drip: float | None
    requests: RequestLog
    _watch: CallWatch
    _models: list[dict[str, Any]]
    _lock: threading.Lock
    _store: ResultStore

    @property
    def url(self) -> str:
        raise NotImplementedError

    # -- routing --------------------------------------------------------------------------

    def _dispatch(
        self, method: str, target: str, headers: Any, raw: bytes, body: dict[str, Any] | None
    ) -> _Reply:
        path, _, query = target.partition("?")
        if method in ("GET", "HEAD"):
            model_route = path == MODELS_PATH or path.startswith(MODELS_PATH + "/")
            if model_route and not self.anonymous_reads and not self._authorised(headers):
                return _error_reply(401)
            asked = parse_qs(query)
            if path in (MODELS_PATH, MODELS_PATH + "/"):
                return self._list(_filtered(self._models, asked))
            if path == MODELS_PATH + "/search":
                terms = asked.get("search") or asked.get("q") or [""]
                return self._search(terms[0], asked)
            if path.startswith(MODELS_PATH + "/"):
                return self._model(unquote(path[len(MODELS_PATH) + 1 :]))
            if path.startswith(FILES_PREFIX) and "/files/results/" in path:
                return self._file(path, headers)
        if method == "POST" and self._route_missing(path, body):
            if self.missing_route_status == 405:
                return _Reply(
                    405, _json_bytes({"error": {"message": "Method Not Allowed"}}), headers={"Allow": "GET"}
                )
            return _not_found(f"Not found: {path}")
        if method == "POST" and path in (GENERATE_PATH, EDIT_PATH):
            return self._generate_counted(headers, raw, body, path)
        if method == "POST" and path == BARE_EDIT_PATH and self.bare_edit_route:
            return self._generate_counted(headers, raw, body, EDIT_PATH)
        return _not_found(f"Not found: {path}")

    def _route_missing(self, path: str, body: dict[str, Any] | None) -> bool:
        """Whether `input_route` leaves this image route unserved for this request."""
        if path == EDIT_PATH:
            return self.input_route == "generate"
        carries = isinstance(body, dict) and body.get("input_image") not in (None, "", [])
        return path == GENERATE_PATH and self.input_route == "edit" and carries

    def _generate_counted(
        self, headers: Any, raw: bytes, body: dict[str, Any] | None, path: str = GENERATE_PATH
    ) -> _Reply:
        raise NotImplementedError

    def _takes_body(self, method: str, target: str, headers: Any) -> bool:
        """Whether the answer to this request can depend on its body: only a generate or edit
        POST with a valid key. Any other body is read away unparsed and unkept (an unknown path,
        a model read, a request refused 401 whatever it carries)."""
        path = target.partition("?")[0]
        routes = (GENERATE_PATH, EDIT_PATH) + ((BARE_EDIT_PATH,) if self.bare_edit_route else ())
        return method == "POST" and path in routes and self._authorised(headers)

    def _record(
        self, method: str, target: str, headers: Any, body: dict[str, Any] | None, status: int
    ) -> None:
        """Keep a bounded record of one request (see `records.py`)."""
        record, weight = recorded(method, target, headers.items(), body, status)
        self.requests.append(record, weight)
        self._watch.note(method, target, answered=True)

    # -- models ---------------------------------------------------------------------------

    def _list(self, models: Sequence[dict[str, Any]]) -> _Reply:
        """The list shape; without `list_schemas` its items carry `"request_schema": null`, as
        the documented example does (the schema is only certain on the detail route). Private
        models are not listed."""
        items = [
            _shown(m, self.list_schemas, self.schema_field)
            for m in models
            if not (isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"] in self.private_models)
        ]
        return _Reply(200, _json_bytes({"object": "list", "data": items}))

    def _search(self, term: str, asked: dict[str, list[str]] | None = None) -> _Reply:
        """`/models/search?search=...`: the word in the id, display name or description (the
        list's filters apply too)."""
        needle = term.strip().lower()
        fields = ("id", "display_name", "description")
        found = [
            m
            for m in _filtered(self._models, asked or {})
            if isinstance(m, dict) and any(needle in str(m.get(f, "")).lower() for f in fields)
        ]
        return self._list(found)

    def _find(self, model_id: str) -> dict[str, Any] | None:
        for obj in self._models:
            if isinstance(obj, dict) and obj.get("id") == model_id:
                return obj
        return None

    def _model(self, model_id: str) -> _Reply:
        obj = self._find(model_id)
        if obj is None or model_id in self.private_models:
            return _not_found(f"Model not found: {model_id}")
        return _Reply(200, _json_bytes(_shown(obj, True, self.schema_field)))

    def _authorised(self, headers: Any) -> bool:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not token.isascii():
            return False  # a key is ASCII; compare_digest raises on anything else
        return self.api_key is None or secrets.compare_digest(token.encode(), self.api_key.encode())

    # -- result files ---------------------------------------------------------------------

    def _own_file(self, url: str) -> bytes | None:
        """The bytes behind one of this hub's result URLs (None when expired or evicted);
        `KeyError` when `url` is not one of them."""
        prefixes = tuple(f"{origin}{FILES_PREFIX}" for origin in (self.url, self.result_origin) if origin)
        if not url.startswith(prefixes) or "/files/results/" not in url:
            raise KeyError(url)
        entry = self._store.get(url.split("?")[0].rsplit("/", 1)[-1])
        return None if entry is None else entry.data

    def _file(self, path: str, headers: Any) -> _Reply:
        if self.require_auth_for_files and not self._authorised(headers):
            return _error_reply(401)
        entry = self._store.get(path.rsplit("/", 1)[-1])
        if entry is None:
            return _error_reply(404, "File not found or expired")
        return _Reply(
            200,
            entry.data,
            entry.content_type,
            {"Cache-Control": "private, no-store"},
            pad_to=self.oversize_bytes or 0,
            drip=self.drip or 0.0,
        )

    def _issue_url(self, namespace: Any, data: bytes, ext: str, content_type: str) -> str:
        token = self._store.put(data, ext, content_type)
        owner = namespace if isinstance(namespace, str) and namespace.strip() else "local"
        origin = self.result_origin or self.url
        return f"{origin}{FILES_PREFIX}{quote(owner, safe='')}/files/results/{token}"
