"""The session: what one Python process shares across every front end.

The magic, the panel, `oxen_magic.generate()` and the `oxen-image` command are front ends: they
parse input and show progress. Everything that outlives one cell lives here, once per process
(`current_session()`): the defaults (pushed in by `%config OxenMagic` when there is a shell,
else from arguments and the environment), one pooled client per host, the cache, the embedded
local hub when `host = "local"`, and the ledger of what was billed. So a budget set once holds
for the magic and the panel alike, and a `generate()` in the same process reuses their clients.

Every front end does the same three steps: `spec()` (the magic's grammar with these defaults),
`prepare()` (everything that can refuse before anything is sent: unknown models, a missing or
refused key, a budget the new images would pass) and `run()` (send, fill the grid, record spend).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import options
from .cache import Cache
from .errors import MissingKeyError, UsageProblem
from .ledger import Ledger, Spend

if TYPE_CHECKING:
    from .client import OxenClient
    from .results import Item, Results

#: `host = "local"` (or `--host local`): the embedded hub, started on first use.
LOCAL = "local"
#: The environment variable an instructor sets to cap what each session may spend (USD).
MAX_SPEND_ENV = "OXEN_MAGIC_MAX_SPEND"
LOCAL_HINT = 'or use the local hub, which bills nothing: --host local (or oxen_magic.connect("local")).'


@dataclass
class Settings:
    """The session's defaults; the names are those of `%config OxenMagic.<name>`."""

    # the grammar's own defaults, so the two never drift apart
    model: str = options.Defaults.model
    concurrency: int = options.Defaults.concurrency  # 0: auto
    max_images: int = options.Defaults.max_images
    response_format: str = options.Defaults.response_format
    display_size: int = options.Defaults.size
    cols: int = options.Defaults.cols
    cache_dir: str = ""
    host: str = ""
    max_spend: float | None = None  # None: read OXEN_MAGIC_MAX_SPEND; 0: no budget
    namespace: str = ""
    upload_repo: str = ""


SETTINGS = tuple(f.name for f in dataclasses.fields(Settings))


class SessionCache(Cache):
    """The cache, filing the local hub's results under "local" instead of its (random) port, so
    a rerun after the hub restarted still answers from the cache."""

    def __init__(self, folder: str | Path | None, names: Mapping[str, str]) -> None:
        super().__init__(folder)
        self.names = dict(names)

    def _name(self, host: str) -> str:
        return self.names.get(host, host)

    def get(self, host: str, body: dict[str, Any], thumb_size: int) -> Any:
        return super().get(self._name(host), body, thumb_size)

    def put(self, host: str, body: dict[str, Any], *args: Any, **meta: Any) -> None:
        super().put(self._name(host), body, *args, **meta)

    def put_thumb(self, host: str, body: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().put_thumb(self._name(host), body, *args, **kwargs)

    def get_model(self, host: str, model_id: str) -> dict[str, Any] | None:
        return super().get_model(self._name(host), model_id)

    def put_model(self, host: str, model_id: str, obj: dict[str, Any]) -> None:
        super().put_model(self._name(host), model_id, obj)

    def has(self, host: str, body: dict[str, Any]) -> bool:
        return super().has(self._name(host), body)


class Session:
    """Defaults, clients, cache, local hub and spend for this process (see the module doc)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings()
        self.configure(**settings)
        self.ledger = Ledger()
        self._clients: dict[str, OxenClient] = {}
        self._lock = threading.RLock()
        self._local_hub: Any = None
        #: Per host, model id -> the image route that served its input images (see client.py).
        self.routes: dict[str, dict[str, str]] = {}

    # -- defaults -----------------------------------------------------------------------------
    def configure(self, **values: Any) -> None:
        """Set defaults by their `%config OxenMagic` names (unknown names are a `TypeError`)."""
        for name, value in values.items():
            if name not in SETTINGS:
                raise TypeError(f"Unknown session setting {name!r}; known: {', '.join(SETTINGS)}.")
            setattr(self.settings, name, value)

    def defaults(self) -> options.Defaults:
        s = self.settings
        return options.Defaults(
            model=s.model,
            concurrency=s.concurrency,
            max_images=s.max_images,
            response_format=s.response_format,
            size=s.display_size,
            cols=s.cols,
            host=s.host or None,
            upload_repo=s.upload_repo or None,
        )

    def max_spend(self) -> float:
        """The budget in USD (0: none): the setting, else the environment variable."""
        if self.settings.max_spend is not None:
            return max(0.0, float(self.settings.max_spend))
        text = os.environ.get(MAX_SPEND_ENV, "").strip()
        if not text:
            return 0.0
        try:
            value = float(text.lstrip("$"))
        except ValueError:
            raise UsageProblem(
                f"{MAX_SPEND_ENV}={text!r} is not an amount of dollars; set it like 2.50 (0 for no budget)."
            ) from None
        return max(0.0, value)

    def spec(
        self, line: str, body: str | None = None, variables: Mapping[str, Any] | None = None
    ) -> options.Spec:
        """The magic's grammar with this session's defaults (and its billing namespace)."""
        spec = options.build_spec(line, body, variables or {}, self.defaults())
        if spec.namespace is None and self.settings.namespace:
            spec = dataclasses.replace(spec, namespace=self.settings.namespace)
        return spec

    # -- hosts, clients, cache ----------------------------------------------------------------
    def base_url(self, host: str | None = None) -> str:
        """The API base URL for `host` (None: the default); "local" starts the embedded hub."""
        from .client import DEFAULT_HOST, normalize_host

        name = (host or self.settings.host or os.environ.get("OXEN_HOST") or DEFAULT_HOST).strip()
        if name.lower() == LOCAL:
            return self.local_hub_url()
        try:
            return normalize_host(name)
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None

    def local_hub_url(self) -> str:
        """Start the embedded hub once (its own random key, remembered for this process only)."""
        with self._lock:
            if self._local_hub is None:
                from .client import remember_key
                from .localhub import LocalHub

                key = "local-" + secrets.token_hex(12)
                self._local_hub = LocalHub(api_key=key, image_size=512).start()
                remember_key(self._local_hub.url, key)
            return str(self._local_hub.url)

    @property
    def local_hub(self) -> Any:
        """The embedded hub, once `host = "local"` has started it (else None)."""
        return self._local_hub

    def client(self, host: str | None = None, pool: int = 8) -> OxenClient:
        """One pooled client per base URL, reused across cells; a bigger pool replaces a smaller.

        Keyed by the host as resolved now, so `connect()` or a changed OXEN_HOST takes effect on
        the next cell instead of a client still talking to the old host.
        """
        from .client import OxenClient
        from .window import CEILING

        pool = max(pool, CEILING)  # an auto window may open up to its ceiling; unused slots cost nothing
        base = self.base_url(host)
        with self._lock:
            current = self._clients.get(base)
            if current is None or current.pool_size < pool:
                if current is not None:
                    current.close()
                routes = self.routes.setdefault(base, {})
                self._clients[base] = OxenClient(base, pool_size=max(pool, 8), routes=routes)
            return self._clients[base]

    def cache(self) -> SessionCache:
        names = {self._local_hub.url: LOCAL} if self._local_hub is not None else {}
        return SessionCache(self.settings.cache_dir or None, names)

    # -- the three steps ----------------------------------------------------------------------
    def prepare(self, spec: options.Spec) -> tuple[Results, OxenClient, SessionCache]:
        """Resolve the models and lay out the grid, then refuse what must not be sent: a missing
        or refused key, or new images that would pass the budget. Sends no generate request."""
        from .pipeline import prepare

        client = self.client(spec.host, spec.concurrency)
        cache = self.cache()
        try:
            results = prepare(spec, client, cache)
        except MissingKeyError as exc:
            raise MissingKeyError(_with_local_hint(str(exc))) from None
        fresh = results.to_send or []
        if fresh and not spec.dry_run:
            try:
                client.check_key()
            except MissingKeyError as exc:
                raise MissingKeyError(_with_local_hint(str(exc))) from None
            self.ledger.check_budget(results, fresh, self.max_spend())
        return results, client, cache

    def run(
        self,
        results: Results,
        spec: options.Spec,
        client: OxenClient,
        cache: SessionCache,
        *,
        on_update: Callable[[Item | None], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Results:
        """Send what the cache cannot answer; every image that arrived from the API is billed."""
        from .pipeline import execute

        prices, host = results.plan.prices, client.base

        def billed(item: Item, gateway: int | None) -> None:  # a worker thread, maybe after Stop
            assert item.request is not None
            self.ledger.charge(item, prices.get(item.request.model), host, gateway)

        try:
            return execute(results, spec, client, cache, on_update=on_update, cancel=cancel, on_billed=billed)
        except MissingKeyError as exc:
            raise MissingKeyError(_with_local_hint(str(exc))) from None

    def spend(self) -> Spend:
        """What this session was billed for, with the budget (see `ledger.Spend`)."""
        return self.ledger.spend(self.max_spend())

    def close(self) -> None:
        """Close the clients and stop the embedded hub (tests; a process simply exits)."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            if self._local_hub is not None:
                self._local_hub.stop()
                self._local_hub = None


def _with_local_hint(message: str) -> str:
    """The missing-key sentence, naming the second way on: the local hub."""
    if LOCAL_HINT in message:
        return message
    return message.rstrip(".") + "; " + LOCAL_HINT


_CURRENT: Session | None = None
_CURRENT_LOCK = threading.Lock()


def current_session() -> Session:
    """This process's session, made on first use."""
    global _CURRENT
    with _CURRENT_LOCK:
        if _CURRENT is None:
            _CURRENT = Session()
        return _CURRENT


def reset_session(**settings: Any) -> Session:
    """Close the current session and start a new one (tests, or a fresh start in a notebook)."""
    global _CURRENT
    with _CURRENT_LOCK:
        old, _CURRENT = _CURRENT, Session(**settings)
    if old is not None:
        old.close()
    return _CURRENT
