"""The local hub's HTTP plumbing: a threading server on loopback and its request handler.

The handler reads the body, hands the request to the hub's router (`LocalHub._dispatch`), records
it, and streams the answer (padded or dripped when the reply asks for it). It knows nothing of
routes or the API: those live in `routes.py` and `generate.py`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .replies import RecordedRequest, _error_reply, _Reply

if TYPE_CHECKING:
    from .hub import LocalHub


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

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        hub = self.server.hub
        raw = self._read_body()
        body: dict[str, Any] | None = None
        if raw:
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except ValueError:
                body = None
        try:
            reply = hub._dispatch(self.command, self.path, self.headers, raw, body)
        except Exception:  # never hang a client: answer like a crashed upstream would
            if hub.verbose:
                import traceback

                traceback.print_exc()
            reply = _error_reply(500, "Internal server error")
        # Record before answering, so a client that has its answer always finds it recorded.
        hub._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers=dict(self.headers.items()),
                body=body,
                status=reply.status,
                authorization=self.headers.get("Authorization"),
            )
        )
        self._send(reply)

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
