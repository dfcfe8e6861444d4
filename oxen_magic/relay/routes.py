"""The documented Oxen API as a seat sees it: model reads, generate/edit, and the room's files.

Every route needs a seat token (`Authorization: Bearer <token>`); anything else is the documented
401. An image request is, in order: served from the room's store (a seeded request someone has
already paid for: free), or joined to the identical request in flight (one upstream request for
the whole room: free), or priced from the upstream model, reserved against the seat's budget
(402 with what is left, nothing sent) and sent upstream with the instructor's key. Its images are
stored in the room's db and answered as URLs on the relay's own origin (or `b64_json`).

The ledger's writes (each a commit that waits for the disk) run in worker threads, off the one
event loop every seat shares; its reads use their own connection and stay on the loop. The
store/flight/gate checks have no `await` between them, and a request being reserved holds a
gate its identical requests wait on, so two of them cannot both become the one that goes upstream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from oxen_magic.core.money import dollars
from oxen_magic.relay.fair import WINDOW, FairWindow
from oxen_magic.relay.ledger import Ledger, Refusal, Seat, off_loop
from oxen_magic.relay.pricing import ModelMemory, price_of, share_key
from oxen_magic.relay.upstream import Answer, Upstream

GENERATE_PATH = "/api/ai/images/generate"
EDIT_PATH = "/api/ai/images/edit"
FILES_PREFIX = "/relay/files/"
#: Times a request refused with 429 is sent before the 429 is passed on, and the longest wait.
RATE_TRIES = 6
MOST_WAIT = 30.0
#: Largest request body a seat may send (an `input_image` data URI counts).
MAX_REQUEST_BODY = 32 * 1024 * 1024
_TYPES = {400: "invalid_params", 401: "unauthenticated", 402: "budget_exceeded", 404: "resource_not_found"}
_NO_KEY = "The upstream API refused the relay's key; tell your instructor (the relay's key needs fixing)."


@dataclass(frozen=True)
class Failure:
    """An answer to pass on, kept as data: every seat that waited on it gets its own copy."""

    status: int
    body: bytes
    content_type: str = "application/json"

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers={"Content-Type": self.content_type})


def failure(status: int, title: str) -> Failure:
    """The documented error body: `{"error": {"type", "title"}, "status", "status_message"}`."""
    kind = _TYPES.get(status, "unknown_error")
    body = {"error": {"type": kind, "title": title}, "status": "error", "status_message": kind}
    return Failure(status, json.dumps(body).encode())


def error(status: int, title: str) -> web.Response:
    return failure(status, title).response()


def budget_title(refusal: Refusal) -> str:
    """The 402's title: one sentence saying what is left of the seat's budget."""
    return (
        f"Seat budget reached: {dollars(refusal.left)} of {dollars(refusal.budget)} left and this "
        f"request costs {dollars(refusal.cost)}; ask your instructor for more"
    )


@dataclass
class Outcome:
    """What one upstream request came to: stored images, or the answer to pass on."""

    rids: list[str] = field(default_factory=list)
    failure: Failure | None = None
    cost: float = 0.0


class RoomRoutes:
    """The handlers, bound to one room (db), one upstream and the requests in flight."""

    def __init__(self, db: Ledger, upstream: Upstream, window: int = WINDOW) -> None:
        self.db = db
        self.upstream = upstream
        self.window = FairWindow(window)
        self.models = ModelMemory()
        self.flights: dict[str, asyncio.Task[Outcome]] = {}
        #: Keys whose request is being reserved right now (the ledger's write runs off the loop).
        self.gates: dict[str, asyncio.Future[None]] = {}
        self.upstream_requests = 0

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/api/ai/models", self.read_models)
        app.router.add_get("/api/ai/models/{tail:.*}", self.read_models)
        app.router.add_post(GENERATE_PATH, self.generate)
        app.router.add_post(EDIT_PATH, self.edit)
        app.router.add_get(FILES_PREFIX + "{rid}", self.file)

    def seat_of(self, request: web.Request) -> Seat | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.db.seat_for(token.strip())

    @staticmethod
    def unauthenticated() -> web.Response:
        return error(401, "Unauthenticated: this relay needs your seat token as the API key")

    # -- reads ------------------------------------------------------------------------------

    async def read_models(self, request: web.Request) -> web.Response:
        if self.seat_of(request) is None:
            return self.unauthenticated()
        try:
            answer = await self.upstream.get(request.raw_path)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return error(502, "The relay could not reach the upstream API; try again in a minute")
        return self._pass_on(answer).response()

    @staticmethod
    def _pass_on(answer: Answer) -> Failure:
        """An upstream answer for the seat (a refused key is the relay's problem, not theirs)."""
        if answer.status in (401, 403):
            return failure(502, _NO_KEY)
        if not answer.body:
            return failure(502, "The upstream API's answer could not be read; nothing was charged")
        return Failure(answer.status, answer.body, answer.content_type or "application/json")

    async def file(self, request: web.Request) -> web.StreamResponse:
        seat = self.seat_of(request)
        if seat is None:
            return self.unauthenticated()
        image = self.db.image(request.match_info["rid"])
        if image is None or not (image.shared or image.seat == seat.seat):
            return web.json_response({"error": {"message": "File not found"}}, status=404)
        headers = {"X-Content-Type-Options": "nosniff"}
        return web.Response(body=image.data, content_type=image.mime, headers=headers)

    # -- images -----------------------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.Response:
        return await self._images(request, GENERATE_PATH)

    async def edit(self, request: web.Request) -> web.Response:
        return await self._images(request, EDIT_PATH)

    async def _images(self, request: web.Request, path: str) -> web.Response:
        seat = self.seat_of(request)
        if seat is None:
            return self.unauthenticated()
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            limit = MAX_REQUEST_BODY // (1024 * 1024)
            return error(413, f"The request body is larger than the relay's {limit} MB limit")
        except (ValueError, UnicodeDecodeError):
            return error(400, "The request body is not JSON")
        if not isinstance(body, dict):
            return error(400, "The request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            return error(400, "model is required")
        key = share_key(self.upstream.base, path, body)
        early = await self._shared_or_wait(request, seat, path, body, key)
        if early is not None:
            return early
        price = await self._price(model, body)
        if isinstance(price, web.Response):
            return price
        early = await self._shared_or_wait(request, seat, path, body, key)  # filled meanwhile?
        if early is not None:
            return early
        gate: asyncio.Future[None] | None = None
        if key is not None:  # set before any await: identical requests now wait for this one
            gate = self.gates[key] = asyncio.get_running_loop().create_future()
        # Shielded: a seat that hangs up mid-reservation cannot leave a reservation with no request.
        launched = await asyncio.shield(self._launch(seat, path, body, key, price, gate))
        if isinstance(launched, Refusal):
            return error(402, budget_title(launched))
        task = launched
        outcome = await asyncio.shield(task)
        if outcome.failure is not None:
            return outcome.failure.response()
        return self._reply(request, body, outcome.rids)

    async def _launch(
        self,
        seat: Seat,
        path: str,
        body: dict[str, Any],
        key: str | None,
        price: float,
        gate: asyncio.Future[None] | None,
    ) -> asyncio.Task[Outcome] | Refusal:
        """Reserve (off the loop) and start the upstream request, or the reason it is refused.

        While the reservation is written, identical requests wait at the key's gate; the flight is
        registered before the gate opens, so they follow it (or, refused, reserve in their turn).
        """
        model = str(body["model"])
        try:
            reserved = await off_loop(lambda: self.db.reserve(seat.seat, path, model, key, price))
            if isinstance(reserved, Refusal):
                return reserved
            task = asyncio.ensure_future(self._lead(seat.seat, reserved, path, body, price))
            if key is not None:
                self.flights[key] = task
                task.add_done_callback(lambda done: self._land(key, done))
            return task
        finally:
            if key is not None and gate is not None:
                if self.gates.get(key) is gate:
                    del self.gates[key]
                gate.set_result(None)

    def _land(self, key: str, task: asyncio.Task[Outcome]) -> None:
        if self.flights.get(key) is task:
            del self.flights[key]

    async def _shared_or_wait(
        self, request: web.Request, seat: Seat, path: str, body: dict[str, Any], key: str | None
    ) -> web.Response | None:
        """A free answer (store or flight), waiting out an identical request being reserved;
        None when this request must be paid for (and no identical one is being reserved)."""
        while True:
            early = self._shared(request, seat, path, body, key)
            if early is not None:
                return await early
            gate = self.gates.get(key) if key is not None else None
            if gate is None:
                return None
            await asyncio.shield(gate)  # then the store, a flight, or (refused) our own turn

    def _shared(
        self, request: web.Request, seat: Seat, path: str, body: dict[str, Any], key: str | None
    ) -> asyncio.Future[web.Response] | None:
        """A free answer from the store or a flight, or None (this request must be paid for).

        Synchronous up to the returned awaitable: the caller decides without yielding the loop.
        """
        if key is None:
            return None
        rids, saved = self.db.shared_results(key)
        flight = None if rids else self.flights.get(key)
        if not rids and flight is None:
            return None
        model = str(body["model"])

        async def follow() -> web.Response:
            nonlocal rids, saved
            if flight is not None:
                outcome = await asyncio.shield(flight)
                if outcome.failure is not None:
                    return outcome.failure.response()
                rids, saved = outcome.rids, outcome.cost
            await off_loop(lambda: self.db.record_shared(seat.seat, path, model, key, saved))
            return self._reply(request, body, rids)

        return asyncio.ensure_future(follow())

    async def _price(self, model: str, body: dict[str, Any]) -> float | web.Response:
        obj = self.models.get(model)
        if obj is None:
            try:
                answer = await self.upstream.model(model)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return error(502, "The relay could not reach the upstream API to price this request")
            if answer.status != 200:
                return self._pass_on(answer).response()
            try:
                obj = json.loads(answer.body)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                return error(502, "The upstream API's model description could not be read")
            self.models.put(model, obj)
        price = price_of(obj, body)
        if price is None:
            return error(
                400, f"The relay cannot price model {model}, so it cannot keep your budget; pick another"
            )
        return price

    async def _lead(
        self, seat: int, request_id: int, path: str, body: dict[str, Any], cost: float
    ) -> Outcome:
        """The one upstream request, in the seat's turn: charge and store on a 200, release on
        anything else."""
        try:
            answer = await self._send(seat, path, body)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await off_loop(lambda: self.db.release(request_id, 502))
            return Outcome(
                failure=failure(502, "The relay could not reach the upstream API; nothing was charged")
            )
        except BaseException:
            self.db.release(request_id, 500)
            raise
        if answer.status == 200 and answer.images:
            images = answer.images
            return Outcome(rids=await off_loop(lambda: self.db.finish(request_id, images)), cost=cost)
        await off_loop(lambda: self.db.release(request_id, answer.status))
        return Outcome(failure=self._pass_on(answer))

    async def _send(self, seat: int, path: str, body: dict[str, Any]) -> Answer:
        """Send in the seat's turn; a 429 (the request was not taken) shrinks the room's window
        and is sent again after the wait it asks (or a backoff), so seats do not see it."""
        for attempt in range(RATE_TRIES):
            await self.window.acquire(seat)
            try:
                self.upstream_requests += 1
                answer = await self.upstream.images(path, body)
                if answer.status == 429:
                    self.window.refused()
                else:
                    self.window.answered()
            finally:
                self.window.release()
            wait = answer.retry_after if answer.retry_after is not None else 0.25 * 2**attempt
            if answer.status != 429 or attempt == RATE_TRIES - 1 or wait > MOST_WAIT:
                break
            await asyncio.sleep(wait)
        return answer

    def _reply(self, request: web.Request, body: dict[str, Any], rids: list[str]) -> web.Response:
        """The documented generate answer, with URLs on the relay's own origin (or the bytes)."""
        if body.get("response_format") == "b64_json":
            images = []
            for rid in rids:
                stored = self.db.image(rid)
                data = stored.data if stored else b""
                images.append({"b64_json": base64.b64encode(data).decode()})
        else:
            origin = f"{request.scheme}://{request.host}"
            images = [{"url": f"{origin}{FILES_PREFIX}{rid}"} for rid in rids]
        return web.json_response({"model": body["model"], "created": int(time.time()), "images": images})
