"""Where the API key comes from, and which host it belongs to.

Three places, in order: a `login()` of this process, `OXEN_API_KEY` (only for the host the
environment names), then the Oxen CLI's `auth_config.toml`. The key itself stays in memory only;
`client.py` decides where it may be sent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .validate import host_without_credentials

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
_KEY_LOCK = threading.Lock()
_SESSION_KEYS: dict[str, str] = {}


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


def remember_key(host: str, key: str) -> None:
    """Keep a key for this process only (what `oxen_magic.login()` stores)."""
    with _KEY_LOCK:
        _SESSION_KEYS[urlsplit(normalize_host(host)).netloc] = key


def find_key(host: str, env: Mapping[str, str] | None = None) -> str | None:
    """The key for `host`: a login() of this session, `OXEN_API_KEY`, then the Oxen CLI config.

    `OXEN_API_KEY` belongs to the host the environment names (`OXEN_HOST`, else hub.oxen.ai):
    a `--host` pointing elsewhere (a typo, a notebook from someone else) never receives it.
    """
    env = os.environ if env is None else env
    netloc = urlsplit(normalize_host(host)).netloc
    with _KEY_LOCK:
        if netloc in _SESSION_KEYS:
            return _SESSION_KEYS[netloc]
    if env.get("OXEN_API_KEY", "").strip() and netloc == _env_netloc(env):
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


def _env_netloc(env: Mapping[str, str]) -> str | None:
    try:
        return urlsplit(normalize_host(env.get("OXEN_HOST") or DEFAULT_HOST)).netloc
    except ValueError:
        return None
