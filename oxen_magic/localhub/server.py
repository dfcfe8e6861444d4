"""The local hub's HTTP plumbing: a threading server on loopback and its request handler.

The handler checks the `Host` header (`hosts.py`) and the body's framing before reading a byte
of it (`bodies.py`: over the cap is 413, a bad length 400, both answered at once and hung up),
reads the body only when the answer can depend on it (an authorised generate or edit POST; any
other is read away in small pieces), hands the request to the hub's router
(`LocalHub._dispatch`), records it (bounded, `records.py`), and streams the answer (padded or
dripped when the reply asks for it). It knows nothing of routes or the API: those live in
`routes.py` and `generate.py`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from oxen_magic.localhub.bodies import BodyProblem, framing, parse_json, read_body
from oxen_magic.localhub.hosts import REFUSED
from oxen_magic.localhub.replies import _error_reply, _Reply

if TYPE_CHECKING:
    from oxen_magic.localhub.hub import LocalHub

#: After refusing a body: how long, and how many of its bytes, to read away before hanging up.
_LINGER_SECONDS, _LINGER_BYTES = 0.5, 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when many clients connect at once, and the
    # kernel retries them only after a second: concurrency tests and benchmarks would see stalls.
    request_queue_size = 128
    hub: LocalHub

    def __init__(self, address: tuple[str, int], hub: LocalHub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on kept-alive clients so a stopped hub serves nothing more."""
        with self._conn_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.hub.verbose:
            super().handle_error(request, client_address)


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalOxenHub/1.0"
    timeout = 120  # an idle kept-alive connection is closed after this many seconds
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:
            super().log_message(format, *args)

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: a body that would be refused is refused before the client
        is told to send it."""
        hub = self.server.hub
        if not hub._host_ok(self.headers.get_all("Host")):
            self._refuse(403, REFUSED)
            return False
        try:
            framing(self.headers, hub.max_body_bytes)
        except BodyProblem as problem:
            self._refuse(problem.status, problem.title)
            return False
        return super().handle_expect_100()

    def _handle(self) -> None:
        hub = self.server.hub
        hub.watch.note(self.command, self.path)  # arrived: tests wait on this, not on a sleep
        if not hub._host_ok(self.headers.get_all("Host")):
            self._refuse(403, REFUSED)
            return
        try:
            length = framing(self.headers, hub.max_body_bytes)
            keep = hub._takes_body(self.command, self.path, self.headers)
            raw = read_body(self.rfile, length, hub.max_body_bytes, keep)
        except BodyProblem as problem:
            self._refuse(problem.status, problem.title)
            return
        body, _ = parse_json(raw)
        try:
            reply = hub._dispatch(self.command, self.path, self.headers, raw, body)
        except Exception:  # never hang a client: answer like a crashed upstream would
            if hub.verbose:
                import traceback

                traceback.print_exc()
            reply = _error_reply(500, "Internal server error")
        del raw
        # Record before answering, so a client that has its answer always finds it recorded.
        hub._record(self.command, self.path, self.headers, body, reply.status)
        self._send(reply)

    def _refuse(self, status: int, title: str) -> None:
        """Answer a request whose body will not be read, and hang up: what is left of the body
        is thrown away for a moment (so the client can read the answer before the connection
        resets), never read to its end."""
        self.server.hub._record(self.command, self.path, self.headers, None, status)
        reply = _error_reply(status, title)
        reply.headers["Connection"] = "close"
        self.close_connection = True
        self._send(reply)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_LINGER_SECONDS)
            left = _LINGER_BYTES
            while left > 0:
                piece = self.connection.recv(min(65536, left))
                if not piece:
                    break
                left -= len(piece)

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(reply.length))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                if reply.drip > 0:
                    self._drip(reply)
                else:
                    for chunk in reply.chunks():
                        self.wfile.write(chunk)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drip(self, reply: _Reply) -> None:
        """One byte at a time, `reply.drip` seconds apart; a stopping hub hangs up instead."""
        self.wfile.flush()
        stopping = self.server.hub._stopping
        for chunk in reply.chunks(4096):
            for index in range(len(chunk)):
                if stopping.wait(reply.drip):
                    self.close_connection = True
                    return
                self.wfile.write(chunk[index : index + 1])
                self.wfile.flush()

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_HEAD = _handle
    do_OPTIONS = _handle
