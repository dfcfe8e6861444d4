"""Test-only name resolution: `hub.oxen.ai` answered by a loopback stand-in, nothing else outside.

`OXEN_TEST_RESOLVE="hub.oxen.ai:443=127.0.0.1:PORT"` (comma-separated for several) makes
`socket.getaddrinfo` answer that (name, port) with the loopback address and port, so a client
connects to the stand-in while TLS SNI, certificate checks and the Host header still say
`hub.oxen.ai`; `hub.oxen.ai:443=offline` makes that name fail as with no network. Every other
name or address past loopback is refused at once, as offline: no real DNS lookup and no outside
connection happens in a process that installed this.

`sitecustomize.py` next to this file installs it in every Python process started with this
folder first on PYTHONPATH and `OXEN_TEST_RESOLVE` set (even to ""): the CLI, nbval and the
kernels nbval starts. The test process itself calls `install()` (tests/realday_support.py), after
the suite's own loopback guard, which then sees only loopback addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

ENV = "OXEN_TEST_RESOLVE"


OFFLINE = "offline"


def parse(text: str) -> dict[tuple[str, int], tuple[str, int] | None]:
    """`name:port=address:port,...` → {(name, port): (address, port)}; `=offline` → None."""
    table: dict[tuple[str, int], tuple[str, int] | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        source, target = part.split("=")
        name, port = source.rsplit(":", 1)
        if target.strip() == OFFLINE:
            table[(name.lower(), int(port))] = None
            continue
        address, to_port = target.rsplit(":", 1)
        table[(name.lower(), int(port))] = (address, int(to_port))
    return table


def loopback(host: object) -> bool:
    """True for a loopback address literal or `localhost` (anything else would leave the machine)."""
    if not isinstance(host, str):
        return True  # AF_UNIX paths, interface indexes
    name = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name.lower() in ("localhost", "")


def install(text: str, refuse_outside: bool = True) -> Callable[[], None]:
    """Map names per `text`; returns the undo. `refuse_outside`: refuse every other name and
    address off loopback here (a child process); False leaves them to the guard already in
    place (the test process, whose conftest guard records them and fails the test)."""
    table = parse(text)
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            number = int(port) if port is not None else 0
        except (TypeError, ValueError):
            number = {"https": 443, "http": 80}.get(str(port), 0)
        if isinstance(name, str) and (name.lower(), number) in table:
            target = table[(name.lower(), number)]
            if target is None:
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            return lookup(target[0], target[1], *args, **kwargs)
        if refuse_outside and not loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return lookup(host, port, *args, **kwargs)

    def guarded(self: socket.socket, address: Any) -> Any:
        outside = self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0])
        if refuse_outside and outside:
            raise ConnectionRefusedError(111, "Connection refused (the tests use loopback only)")
        return connect(self, address)

    socket.getaddrinfo = resolve
    socket.socket.connect = guarded  # type: ignore[method-assign]

    def undo() -> None:
        socket.getaddrinfo = lookup
        socket.socket.connect = connect  # type: ignore[method-assign]

    return undo
