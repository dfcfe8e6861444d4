"""The two documented image routes, and the once-only fallback between them.

Text-to-image requests go to generate, requests with an input image to edit. Some models are
served on only one of them: a request with an input image that its route answers 404 or 405
(nothing made, nothing billed) is sent once to the other route, and the route that served it
is remembered for that model, so the next request goes there first. A 404 that names the model
("Model not found") is about the model, not the route: no other route would help.

The paths live here, the lowest layer that sends them, so the planner (which picks a request's
route) and the client share one spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar

from oxen_magic.core.errors import OxenError

GENERATE_PATH = "/api/ai/images/generate"
EDIT_PATH = "/api/ai/images/edit"
#: The two documented image routes: a 404/405 from one (nothing billed) is tried once on the other.
OTHER_ROUTE = {GENERATE_PATH: EDIT_PATH, EDIT_PATH: GENERATE_PATH}

T = TypeVar("T")


def send_routed(
    post: Callable[[str], T], payload: Mapping[str, Any], path: str, routes: MutableMapping[str, str]
) -> T:
    """`post(path)`, or for a request with an input image, `post` to the route `routes` remembers
    for its model, falling back once to the other route on a 404/405 (and remembering it)."""
    model = payload.get("model")
    if "input_image" not in payload or path not in OTHER_ROUTE or not isinstance(model, str):
        return post(path)
    path = routes.get(model, path)
    try:
        return post(path)
    except OxenError as exc:
        if exc.status not in (404, 405) or names_model(exc):
            raise
        other = OTHER_ROUTE[path]
        try:
            answer = post(other)
        except OxenError as second:
            if second.status in (404, 405):
                raise exc from None  # neither route knows it: the first answer says why
            raise
        routes[model] = other
        return answer


def names_model(exc: OxenError) -> bool:
    """A 404 about the model ("Model not found: x"), not about the route: no other route helps."""
    return exc.status == 404 and "model not found" in exc.message.lower()
