"""Which of the local hub's routes answers a request: the GET routes (`routes.py`), the image
POSTs (`generate.py`), or a 404/405 for a route not served (`input_route`, `bare_edit_route`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oxen_magic.localhub.replies import _json_bytes, _not_found, _Reply
from oxen_magic.localhub.routes import BARE_EDIT_PATH, EDIT_PATH, GENERATE_PATH

if TYPE_CHECKING:
    from oxen_magic.localhub.knobs import Knobs
    from oxen_magic.localhub.routes import ModelRoutes

#: The image routes: `(headers, raw body, parsed body, path) -> reply` (`ImageRoutes.counted`).
ImagePost = Callable[[Any, bytes, "dict[str, Any] | None", str], _Reply]


class Router:
    """Sends each request to its route. Handed the knobs (which routes are served), the GET
    routes and the image routes."""

    def __init__(self, knobs: Knobs, models: ModelRoutes, images: ImagePost) -> None:
        self.knobs, self.models, self.images = knobs, models, images

    def dispatch(
        self, method: str, target: str, headers: Any, raw: bytes, body: dict[str, Any] | None
    ) -> _Reply:
        path, _, query = target.partition("?")
        if method in ("GET", "HEAD"):
            reply = self.models.answer(path, query, headers)
            if reply is not None:
                return reply
        if method == "POST" and self._route_missing(path, body):
            if self.knobs.missing_route_status == 405:
                return _Reply(
                    405, _json_bytes({"error": {"message": "Method Not Allowed"}}), headers={"Allow": "GET"}
                )
            return _not_found(f"Not found: {path}")
        if method == "POST" and path in (GENERATE_PATH, EDIT_PATH):
            return self.images(headers, raw, body, path)
        if method == "POST" and path == BARE_EDIT_PATH and self.knobs.bare_edit_route:
            return self.images(headers, raw, body, EDIT_PATH)
        return _not_found(f"Not found: {path}")

    def _route_missing(self, path: str, body: dict[str, Any] | None) -> bool:
        """Whether `input_route` leaves this image route unserved for this request."""
        if path == EDIT_PATH:
            return self.knobs.input_route == "generate"
        carries = isinstance(body, dict) and body.get("input_image") not in (None, "", [])
        return path == GENERATE_PATH and self.knobs.input_route == "edit" and carries

    def takes_body(self, method: str, target: str, headers: Any) -> bool:
        """Whether the answer to this request can depend on its body: only a generate or edit
        POST with a valid key. Any other body is read away unparsed and unkept (an unknown path,
        a model read, a request refused 401 whatever it carries)."""
        path = target.partition("?")[0]
        routes = (GENERATE_PATH, EDIT_PATH) + ((BARE_EDIT_PATH,) if self.knobs.bare_edit_route else ())
        return method == "POST" and path in routes and self.models.authorised(headers)
