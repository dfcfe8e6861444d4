"""Where the API key comes from, and which host it belongs to.

Three places, in order: a `login()` of this session (its `KeyStore`), `OXEN_API_KEY` (only for
the host the environment names), then the Oxen CLI's `auth_config.toml`. The key itself stays in
memory only, held by the session that was given it (no module keeps one for the process), and
no repr shows it; `client.py` decides where it may be sent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from oxen_magic.core.validate import host_without_credentials

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_HOST = "https://hub.oxen.ai"
NO_KEY_HELP = (
    "No Oxen API key found; run oxen_magic.login(), or set the OXEN_API_KEY environment variable, "
    "or run `oxen config --auth hub.oxen.ai YOUR_KEY` (keys are on your oxen.ai profile settings page)."
)
BAD_KEY_HELP = (
    "The Oxen API key contains a space or a character a key cannot have; copy it again from your "
    "oxen.ai profile settings and run oxen_magic.login() or set OXEN_API_KEY."
)


def normalize_host(host: str) -> str:
    """`hub.oxen.ai` → `https://hub.oxen.ai`; a full URL is kept (without a trailing slash)."""
    text = host.strip()
    host_without_credentials(text)  # before any message below echoes the host
    if not text.rstrip("/"):
        raise ValueError("The Oxen host is empty; set OXEN_HOST to e.g. hub.oxen.ai.")
    if "://" not in text:
        text = "https://" + text
    text = text.rstrip("/")  # after the scheme check, so "http://" is not read as host "http"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"The Oxen host '{host}' is not a web address; use e.g. hub.oxen.ai or http://127.0.0.1:8765."
        )
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError(f"The Oxen host '{host}' has a bad port; use e.g. 127.0.0.1:8765.") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class KeyStore:
    """The keys `login()` gave, per host (its netloc), for the session that holds this store.

    A new session starts empty, so a fresh start in a notebook forgets them. Thread-safe: the
    runner's workers read while a `login()` in the kernel writes. The keys are never shown:
    the repr names the hosts only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}

    def remember(self, host: str, key: str) -> None:
        """Keep `key` for `host` (a URL or a bare host:port) while this store lives."""
        netloc = urlsplit(normalize_host(host)).netloc
        with self._lock:
            self._keys[netloc] = key

    def get(self, host: str) -> str | None:
        """The key `login()` gave for `host`, else None."""
        netloc = urlsplit(normalize_host(host)).netloc
        with self._lock:
            return self._keys.get(netloc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def __repr__(self) -> str:
        with self._lock:
            return f"KeyStore(hosts={sorted(self._keys)!r})"


def find_key(host: str, env: Mapping[str, str] | None = None, keys: KeyStore | None = None) -> str | None:
    """The key for `host`: a login() kept in `keys` (the session's), `OXEN_API_KEY`, then the
    Oxen CLI config. Without `keys` only the last two are asked (a process with no session).

    `OXEN_API_KEY` belongs to the host the environment names (`OXEN_HOST`, else hub.oxen.ai):
    a `--host` pointing elsewhere (a typo, a notebook from someone else) never receives it.
    """
    env = os.environ if env is None else env
    netloc = urlsplit(normalize_host(host)).netloc
    given = keys.get(host) if keys is not None else None
    if given is not None:
        return given
    if env.get("OXEN_API_KEY", "").strip() and netloc == env_netloc(env):
        return env["OXEN_API_KEY"].strip()
    folder = Path(env["OXEN_CONFIG_DIR"]) if env.get("OXEN_CONFIG_DIR") else None
    folder = folder or Path.home() / ".config" / "oxen"
    try:
        config = tomllib.loads((folder / "auth_config.toml").read_text())
    except (OSError, ValueError):
        return None
    for entry in config.get("host_configs") or ():
        if isinstance(entry, dict) and entry.get("host") == netloc and entry.get("auth_token"):
            return str(entry["auth_token"]).strip()
    return None


def env_netloc(env: Mapping[str, str]) -> str | None:
    """The host (netloc) `OXEN_API_KEY` belongs to: OXEN_HOST's, else hub.oxen.ai's."""
    try:
        return urlsplit(normalize_host(env.get("OXEN_HOST") or DEFAULT_HOST)).netloc
    except ValueError:
        return None
