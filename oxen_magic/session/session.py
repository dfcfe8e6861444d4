"""The session: what one Python process shares across every front end.

The magic, the panel, `oxen_magic.generate()` and the `oxen-image` command are front ends: they
parse input and show progress. Everything that outlives one cell lives here, once per process
(`current_session()`): the defaults (pushed in by `%config OxenMagic` when there is a shell,
else from arguments and the environment), one pooled client per host, the cache, the embedded
local hub when `host = "local"`, and the ledger of what was billed. So a budget set once holds
for the magic and the panel alike, and a `generate()` in the same process reuses their clients.

Every front end does the same steps: `spec()` (the magic's grammar with these defaults), then
`prepare()`, which returns a `run.Run` once everything that can refuse before anything is sent
has been checked (unknown models, a missing or refused key, a budget the new images would pass),
then `run.execute()` (send, fill the grid, record spend), then it shows the run's results.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxen_magic.core.errors import UsageProblem
from oxen_magic.network.keys import KeyStore
from oxen_magic.network.modelreads import ModelDetails
from oxen_magic.planning import options
from oxen_magic.session.ledger import Ledger, Spend
from oxen_magic.session.sessioncache import LOCAL, SessionCache
from oxen_magic.session.state import ProcessState
from oxen_magic.session.window import WindowMemory

if TYPE_CHECKING:
    from oxen_magic.network.client import OxenClient
    from oxen_magic.session.run import Run

#: The environment variable an instructor sets to cap what each session may spend (USD).
MAX_SPEND_ENV = "OXEN_MAGIC_MAX_SPEND"


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


class Session:
    """Defaults, clients, cache, local hub and spend for this process (see the module doc)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings()
        self.configure(**settings)
        #: This kernel's name in the user's ledger (its own spend is told apart from the others').
        self.name = uuid.uuid4().hex
        self._ledgers: dict[str, Ledger] = {}
        #: Where each host's congestion window ended, so the next sweep starts there (window.py).
        self.windows = WindowMemory()
        #: Requests in flight, recent grids, exercises, cache notes: this process's (state.py).
        self.state = ProcessState()
        self._clients: dict[str, OxenClient] = {}
        self._lock = threading.RLock()
        self._local_hub: Any = None
        #: Per host, model id -> the image route that served its input images (see client.py).
        self.routes: dict[str, dict[str, str]] = {}
        self.details = ModelDetails()  # model details read, per host, shared by the clients
        self.keys = KeyStore()  # the keys login() gave, for this session only

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
        """The budget in USD (0: none): the setting, else the environment variable. A value that
        is not a finite amount of at least 0 (nan, inf, -5, "abc") is refused in one sentence."""
        value: Any = self.settings.max_spend
        if value is not None:
            return _budget(value, f"max_spend = {value!r}", "%config OxenMagic.max_spend = 2.5")
        text = os.environ.get(MAX_SPEND_ENV, "").strip()
        if not text:
            return 0.0
        return _budget(text.lstrip("$"), f"{MAX_SPEND_ENV}={text!r}", f"{MAX_SPEND_ENV}=2.50")

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
        from oxen_magic.network.client import DEFAULT_HOST, normalize_host

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
                from oxen_magic.localhub import LocalHub

                key = "local-" + secrets.token_hex(12)
                self._local_hub = LocalHub(api_key=key, image_size=512).start()
                self.keys.remember(self._local_hub.url, key)
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
        from oxen_magic.network.client import OxenClient
        from oxen_magic.session.window import CEILING

        pool = max(pool, CEILING)  # an auto window may open up to its ceiling; unused slots cost nothing
        base = self.base_url(host)
        with self._lock:
            current = self._clients.get(base)
            if current is None or current.pool_size < pool:
                if current is not None:
                    current.close()
                routes = self.routes.setdefault(base, {})
                self._clients[base] = OxenClient(
                    base, pool_size=max(pool, 8), routes=routes, details=self.details, keys=self.keys
                )
            return self._clients[base]

    def cache(self) -> SessionCache:
        if self._local_hub is None:
            return SessionCache(self.settings.cache_dir or None, {}, noted=self.state.notes)
        names = {self._local_hub.url: LOCAL}
        return SessionCache(self.settings.cache_dir or None, names, self.real_host(), self.state.notes)

    def real_host(self) -> str | None:
        """The API a keyless fallback stands in for (OXEN_HOST, else hub.oxen.ai), while no key
        for it is known: its cached images (an imported pack) answer before the local hub draws."""
        from oxen_magic.network.client import DEFAULT_HOST, find_key, normalize_host

        try:
            real = normalize_host(os.environ.get("OXEN_HOST") or DEFAULT_HOST)
        except ValueError:
            return None
        local = self._local_hub.url if self._local_hub is not None else None
        return None if real == local or find_key(real, keys=self.keys) else real

    def real_api(self, host: str | None = None) -> str:
        """The API a key is for: `host`, else the session's host unless it is the local hub,
        else OXEN_HOST, else hub.oxen.ai (never the local hub: its key is its own)."""
        from oxen_magic.network.client import DEFAULT_HOST

        chosen = host or (self.settings.host if self.settings.host.strip().lower() != LOCAL else "")
        name = chosen or os.environ.get("OXEN_HOST") or DEFAULT_HOST
        if name.strip().lower() == LOCAL or (self._local_hub is not None and name == self._local_hub.url):
            name = DEFAULT_HOST
        return self.base_url(name)

    def use_key(self, host: str, key: str) -> None:
        """`login()`: keep `key` for `host` in this process and send the next cells there."""
        self.keys.remember(host, key)
        self.configure(host=host)

    def where(self) -> str:
        """Where the next cell goes, as a base URL (the local hub's when it is in use); code that
        needs the API's address asks this instead of reading OXEN_HOST."""
        return self.base_url()

    @property
    def ledger(self) -> Ledger:
        """The user's spend ledger, in the cache folder (so every kernel and process of the user
        that uses this folder shares it); one per folder, should `cache_dir` change."""
        folder = self.cache().folder
        with self._lock:
            ledger = self._ledgers.get(str(folder))
            if ledger is None:
                ledger = self._ledgers[str(folder)] = Ledger(folder, self.name)
            return ledger

    # -- the two steps ------------------------------------------------------------------------
    def prepare(self, spec: options.Spec) -> Run:
        """The run of `spec` on this session's client, cache, budget and ledger: everything that
        can refuse has been checked and nothing was sent (see `run.Run.prepare`); its
        `execute(on_update, cancel)` sends."""
        from oxen_magic.session.run import Run

        return Run.prepare(spec, self.client(spec.host, spec.concurrency), self.cache(), session=self)

    def embedded(self, client: OxenClient) -> bool:
        """Whether `client` talks to this session's embedded local hub, which bills nothing: its
        images are never charged nor held against the budget, which is for real money (the
        user's ledger is shared and durable, so a rehearsal must not use up the workshop's)."""
        return self._local_hub is not None and client.base == self._local_hub.url

    def spend(self) -> Spend:
        """What this kernel and the user's ledger were billed for, with the budget and what is
        left (see `ledger.Spend`); a budget value that is refused is said in the summary."""
        try:
            budget, problem = self.max_spend(), None
        except UsageProblem as exc:
            budget, problem = 0.0, str(exc)
        spent = self.ledger.spend(budget)
        if problem:
            problem = (spent.problem + "; " if spent.problem else "") + problem.rstrip(".")
            spent = dataclasses.replace(spent, problem=problem)
        return spent

    def close(self) -> None:
        """Close the clients and stop the embedded hub (tests; a process simply exits)."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            if self._local_hub is not None:
                self._local_hub.stop()
                self._local_hub = None


def _budget(value: Any, said: str, example: str) -> float:
    """A budget value as dollars, or the one sentence refusing it (0 means no budget)."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        amount = math.nan
    if isinstance(value, bool) or not math.isfinite(amount) or amount < 0:
        raise UsageProblem(f"{said} is not an amount of dollars; set it like {example} (0 for no budget).")
    return amount


#: The one module-level root of process state, and the only one: a front end (a magic, the
#: panel, `generate()`, a check cell) must find this process's session without being handed it.
#: Everything else the process remembers hangs off the session (`Session.state`, `windows`, ...).
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
