"""The real day's test infrastructure: a TLS stand-in answering as https://hub.oxen.ai.

Everything else in the suite talks to a local hub named by `OXEN_HOST` on loopback; a room has
other configurations (a key and no `OXEN_HOST`, no key online or offline, a login after a fallback,
the Wi-Fi going down). To test them as they are, with the product's default host unchanged:

* `trustme` makes a throwaway certificate authority and a certificate for `hub.oxen.ai`; a
  `LocalHub(tls=..., public_url="https://hub.oxen.ai")` serves HTTPS with it on a loopback port;
* `tests/resolver/oxen_test_resolver.py` maps `hub.oxen.ai:443` to that port (TLS SNI, the
  certificate check and the Host header still say hub.oxen.ai), in this process (installed after
  the conftest loopback guard, which still fails any other outside connection) and, through
  `tests/resolver/sitecustomize.py` first on PYTHONPATH, in every process a test starts (the CLI,
  nbval and its kernels); there anything else past loopback is refused, so no real DNS lookup
  happens anywhere;
* the client trusts the CA only through `REQUESTS_CA_BUNDLE` (or `SSL_CERT_FILE`), as a company
  network with its own CA would set it.

A configuration is one of `CONFIGS`; `StandIn.env(config, ...)` is the environment a child process
of that configuration gets.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import trustme

from oxen_magic.localhub import LocalHub

REAL_HOST = "hub.oxen.ai"
REAL_URL = f"https://{REAL_HOST}"
RESOLVER_DIR = Path(__file__).parent / "resolver"
CHECKOUT = Path(__file__).resolve().parent.parent

#: (a) a key, OXEN_HOST unset; (b) no key, online; (c) no key, hub.oxen.ai unreachable, a pack in.
KEYED, KEYLESS, OFFLINE = "key", "no-key", "offline"
CONFIGS = (KEYED, KEYLESS, OFFLINE)


def _load_resolver() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "oxen_test_resolver", RESOLVER_DIR / "oxen_test_resolver.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


resolver = _load_resolver()


@dataclass
class StandIn:
    """The TLS stand-in for hub.oxen.ai: its hub (requests recorded), CA file and key."""

    hub: LocalHub
    ca_file: Path
    key: str
    undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def resolve(self) -> str:
        """OXEN_TEST_RESOLVE for a process that may reach the stand-in."""
        return f"{REAL_HOST}:443=127.0.0.1:{self.hub.port}"

    def go_offline(self) -> None:
        """From now on, in this process, hub.oxen.ai fails as with no network."""
        self.undo.append(resolver.install(f"{REAL_HOST}:443={resolver.OFFLINE}", refuse_outside=False))

    def env(self, config: str, home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a child process in `config`: HOME, cache and Oxen config under
        `home`, the resolver first on PYTHONPATH, the CA trusted, OXEN_HOST unset, and
        OXEN_API_KEY set only for the keyed configuration."""
        env = dict(os.environ if base is None else base)
        for name in ("OXEN_HOST", "OXEN_API_KEY", "OXEN_MAGIC_MAX_SPEND", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
            env.pop(name, None)
        for name in ("home", "cache", "oxen-config", "xdg-cache"):
            (home / name).mkdir(parents=True, exist_ok=True)
        env.update(
            HOME=str(home / "home"),
            OXEN_MAGIC_CACHE_DIR=str(home / "cache"),
            OXEN_CONFIG_DIR=str(home / "oxen-config"),
            XDG_CACHE_HOME=str(home / "xdg-cache"),
            REQUESTS_CA_BUNDLE=str(self.ca_file),
            OXEN_TEST_RESOLVE=self.resolve if config != OFFLINE else f"{REAL_HOST}:443={resolver.OFFLINE}",
            PYTHONPATH=os.pathsep.join([str(RESOLVER_DIR), str(CHECKOUT)]),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        if config == KEYED:
            env["OXEN_API_KEY"] = self.key
        return env


@contextmanager
def stand_in(folder: Path, **knobs: object) -> Iterator[StandIn]:
    """Start the stand-in (64 px images unless `image_size` is given) and map hub.oxen.ai to it in
    this process; undone on exit."""
    authority = trustme.CA()
    certificate = authority.issue_cert(REAL_HOST)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = folder / "stand-in-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    key = "oxen-real-key-" + secrets.token_hex(8)  # distinctive, so a leak is easy to spot
    settings: dict[str, object] = {"api_key": key, "image_size": 64, **knobs}
    if "allowed_hosts" in LocalHub.__init__.__code__.co_varnames:  # the Host-header check, if merged
        settings.setdefault("allowed_hosts", (REAL_HOST,))
    hub = LocalHub("127.0.0.1", 0, tls=context, public_url=REAL_URL, **settings)  # type: ignore[arg-type]
    running = StandIn(hub.start(), ca_file, key)
    running.undo.append(resolver.install(running.resolve, refuse_outside=False))
    try:
        yield running
    finally:
        for undo in reversed(running.undo):
            undo()
        hub.stop()


def hosts_seen(hub: LocalHub) -> set[str]:
    """The Host headers of every request the stand-in recorded."""
    return {str(r.headers.get("Host", "")) for r in hub.requests}
