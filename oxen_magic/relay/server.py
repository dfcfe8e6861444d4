"""The relay's HTTP server: aiohttp on one event loop, in the foreground (the command) or in a
background thread (tests, notebooks rehearsing a room).

aiohttp because the relay holds many long requests at once (5-30 s upstream each, a whole room
pressing Run together) on one loop with keep-alive and bounded request bodies, and the same
library is the pooled client toward upstream; the package's own `http.server` stand-in is a
thread per request and was never meant to face a room.

A last middleware scrubs the upstream key out of every answer as a second line of defence: the
routes never put it there, and an upstream that echoes it is scrubbed on the way in too.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from oxen_magic.core.errors import redact
from oxen_magic.relay.dashboard import Dashboard
from oxen_magic.relay.fair import WINDOW
from oxen_magic.relay.ledger import Ledger, open_ledger
from oxen_magic.relay.routes import MAX_REQUEST_BODY, RoomRoutes
from oxen_magic.relay.upstream import Upstream

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _scrubber(key: str | None) -> Any:
    @web.middleware
    async def scrub(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        body = getattr(response, "body", None)
        if (
            key
            and isinstance(body, bytes)
            and key.encode() in body
            and not response.content_type.startswith("image/")
        ):
            assert isinstance(response, web.Response)
            response.body = redact(body.decode("utf-8", "replace"), key).encode()
        return response

    return scrub


class _AccessLog(AbstractAccessLogger):
    """One line per request with the path only: the dashboard's address carries its token in the
    query, which aiohttp's default format (the whole request line) would write to the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %.3fs", request.remote, request.method, request.path, response.status, time
        )


def make_app(db: Ledger, upstream: Upstream, window: int = WINDOW) -> tuple[web.Application, RoomRoutes]:
    app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[_scrubber(upstream.key)])
    routes = RoomRoutes(db, upstream, window)
    routes.add_to(app)
    Dashboard(db).add_to(app)

    async def not_found(request: web.Request) -> web.Response:
        """Any other route (the async queue, events: not relayed yet): the API's 404 shape."""
        return web.json_response({"error": {"message": f"Route not found: {request.path}"}}, status=404)

    app.router.add_route("*", "/{tail:.*}", not_found)

    async def start_upstream(_: web.Application) -> None:
        await upstream.start()

    async def close_upstream(_: web.Application) -> None:
        await upstream.close()

    app.on_startup.append(start_upstream)
    app.on_cleanup.append(close_upstream)
    return app, routes


class Relay:
    """A running relay: `Relay(db_path, upstream_url, key).start()` serves on a free port."""

    def __init__(
        self,
        db: str | Path | Ledger,
        upstream: str,
        key: str | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: bool = False,
        window: int = WINDOW,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._own_db = isinstance(db, (str, Path))  # closed at stop() only when opened here
        self.db: Ledger = open_ledger(db) if isinstance(db, (str, Path)) else db
        self.upstream = Upstream(upstream, key)
        self.host, self.port = host, port
        self.access_log = access_log
        self.ssl_context = ssl_context  # HTTPS (--tls-cert/--tls-key): tokens no longer in clear
        self.app, self.routes = make_app(self.db, self.upstream, window)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl_context else 'http'}://{host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The instructor's page, with the admin token (print it only to the instructor)."""
        return f"{self.url}/relay/?token={self.db.admin_token()}"

    async def _open(self) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=web.access_logger if self.access_log else None, access_log_class=_AccessLog
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = getattr(site, "_server", None)
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    def start(self) -> Relay:
        """Serve in a background thread; returns once the port is open."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="oxen-relay", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._own_db:
            self.db.close()

    def serve_forever(self) -> None:
        """The command's foreground loop, until Ctrl-C or a signal."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._open())
        print(f"Relay serving on {self.url}", flush=True)
        print(f"Dashboard (keep this address to yourself): {self.dashboard_url}", flush=True)
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()
            if self._own_db:
                self.db.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
