"""Which `Host` headers the hub answers: the guard against DNS rebinding.

A web page open in the same browser as a notebook can make its own name resolve to 127.0.0.1
and then post to the hub as if it were its own origin; the browser still sends the page's name
in `Host`. So the hub answers only:

* loopback names and addresses on its own port (`127.0.0.1:<port>`, `localhost:<port>`,
  `[::1]:<port>`);
* any other IP address literal on its port (a hub bound beyond loopback for a room is reached
  by its address; a page cannot rebind an address, only a name);
* the names it was configured with (`allowed_hosts`, e.g. `hub.oxen.ai` when it stands in for
  the real hub behind TLS, and the host of `result_origin`), on any port; `"*"` allows all.

A request without `Host` (HTTP/1.0, hand-made) is answered: no browser sends one so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

#: The one sentence a refused Host gets (it names no host, port or path of this machine).
REFUSED = (
    "Host not allowed: this hub answers its loopback address, an IP address on its port, "
    "or a name given in allowed_hosts (--allow-host)"
)


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host value, lower-cased and without brackets; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, close, rest = value[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_ = value.rpartition(":")
        if not colon:
            name, port_text_ = value, ""
        if ":" in name:
            return None
        port_text = port_text_ if colon else None
    if port_text is not None and not (port_text.isdigit() and port_text.isascii() and len(port_text) <= 5):
        return None
    if not name:
        return None
    return name.rstrip("."), int(port_text) if port_text is not None else None


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def configured_names(allowed: Iterable[str], origins: Iterable[str | None]) -> frozenset[str]:
    """The names from `allowed_hosts` entries ("name" or "name:port") and origin URLs."""
    names = set()
    for entry in allowed:
        parsed = split_host(entry) if entry.strip() != "*" else ("*", None)
        if parsed is not None:
            names.add(parsed[0])
    for origin in origins:
        host = urlsplit(origin).hostname if origin else None
        if host:
            names.add(host.lower().rstrip("."))
    return frozenset(names)


def host_allowed(values: list[str] | None, port: int, names: frozenset[str]) -> bool:
    """Whether a request with these Host header values may be answered by a hub on `port`."""
    if not values:
        return True
    if len(values) > 1:
        return False
    parsed = split_host(values[0])
    if parsed is None:
        return False
    name, given_port = parsed
    if "*" in names or name in names:
        return True
    on_port = given_port == port or (given_port is None and port in (80, 443))
    return on_port and (name == "localhost" or _address(name) is not None)


class HostCheck:
    """The hub's Host check: loopback names and IP addresses on its port, the `allowed_hosts`
    entries, and the host of the origin results are issued on (read live: `origin()`)."""

    def __init__(self, allowed: Iterable[str], origin: Callable[[], str | None]) -> None:
        self.allowed = tuple(allowed)
        self.origin = origin
        self._key: tuple[tuple[str, ...], str | None] | None = None
        self._names: frozenset[str] = frozenset()

    def ok(self, values: list[str] | None, port: int) -> bool:
        """Whether a request carrying these `Host` header values is answered."""
        key = (self.allowed, self.origin())
        if key != self._key:  # the names are worked out again only when a knob changed
            self._names, self._key = configured_names(key[0], (key[1],)), key
        return host_allowed(values, port, self._names)
