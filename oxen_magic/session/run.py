"""One grid from its spec to its images: `Session.prepare(spec)` makes a `Run`, `execute()` sends.

Every front end (the magic, `generate()`, the panel, `oxen-image`) does the same two steps, so
they cannot drift apart:

    run = session.prepare(spec)      # everything that can refuse; nothing is sent
    run.execute(on_update, cancel)   # send what the cache cannot answer, fill the grid, bill

A run owns what the two steps share: its spec, plan, client and cache, the budget it holds, and
its `results`, which exist from `prepare` on (the grid skeleton a display draws, what a dry run
shows, `results.to_send`). The run is the only writer of its results besides the runner that
fills the items: the ledger, the exports and the cache say what happened and the run writes it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oxen_magic.core.errors import MissingKeyError
from oxen_magic.exports.exports import export
from oxen_magic.network.cache import Noted
from oxen_magic.planning.image_refs import inline_note
from oxen_magic.results.results import Item, Results
from oxen_magic.session import pipeline, runner
from oxen_magic.session.sessioncache import SessionCache

if TYPE_CHECKING:
    from oxen_magic.network.cache import Cache
    from oxen_magic.network.client import OxenClient
    from oxen_magic.planning.options import Spec
    from oxen_magic.planning.plan import Plan
    from oxen_magic.session.ledger import Ledger
    from oxen_magic.session.session import Session
    from oxen_magic.session.state import InFlight
    from oxen_magic.session.window import WindowMemory

LOCAL_HINT = 'or use the local hub, which bills nothing: --host local (or oxen_magic.connect("local")).'


class Run:
    """One prepared grid (see the module doc); made by `Run.prepare` (or `Session.prepare`)."""

    def __init__(self, planned: pipeline.Planned, client: OxenClient, cache: Cache | None) -> None:
        self.spec: Spec = planned.spec
        self.plan: Plan = planned.plan
        #: The grid, from `prepare` on: a display draws it before anything arrives.
        self.results = Results(planned.plan, size=planned.spec.size, cols=planned.spec.cols)
        self.client, self.cache = client, cache
        self.ledger: Ledger | None = None  # None: nothing is charged (no session, or its own hub)
        self.local = False  # the session's embedded hub: its pictures are marked as placeholders
        self.windows: WindowMemory | None = None  # the session's memory of each host's window
        self.in_flight: InFlight | None = None  # the session's seeded requests on their way
        self._hold: int | None = None
        self._unrun: weakref.finalize[Any, Any] | None = None
        self._started = False

    @classmethod
    def prepare(
        cls, spec: Spec, client: OxenClient, cache: Cache | None = None, *, session: Session | None = None
    ) -> Run:
        """Resolve the models and lay out the grid, then refuse what must not be sent: a missing
        or refused key, or new images that would pass the session's budget (which is then held
        for this run until it ends, or is dropped unrun). Sends no generate request.

        Without a `session` nothing is charged or held and notes given once are given each time."""
        try:
            planned = pipeline.prepare(spec, client, cache)
        except MissingKeyError as exc:
            raise MissingKeyError(with_local_hint(str(exc))) from None
        run = cls(planned, client, cache)
        run._lay_out(planned, Noted() if session is None else session.state.notes)
        if session is not None:
            session.state.grids.add(run.results)  # `latest()` and the check cells find it
        fresh = [] if spec.dry_run else run.results.to_send or []
        if fresh:  # a grid the cache answers whole needs no key
            try:
                client.check_key()
            except MissingKeyError as exc:
                raise MissingKeyError(with_local_hint(str(exc))) from None
        if session is not None and not spec.dry_run:
            run._join(session, fresh)
        return run

    def _lay_out(self, planned: pipeline.Planned, noted: Noted) -> None:
        """The grid's notes, what the cache cannot answer (`to_send`), and a dry run's plan."""
        results, spec, cache = self.results, self.spec, self.cache
        results.notes[:0] = planned.notes
        inline = inline_note(spec.input_images, noted)
        if inline:
            results.notes.append(inline)
        results.host = self.client.base
        results.prices = planned.prices
        use_cache = spec.use_cache and cache is not None
        results.to_send = [
            item
            for item in results.items
            if item.request is not None
            and not (use_cache and cache is not None and cache.has(self.client.base, item.request.key_body()))
        ]
        if spec.random_seeds:
            seeds = ",".join(str(s) for s in spec.seeds)
            results.notes.append(f"Random seeds: {seeds} (use --seed {seeds} to get these images again).")
        if spec.dry_run:
            self._plan_only()

    def _plan_only(self) -> None:
        """A dry run: every cell says "planned", and one note says how many and at what cost."""
        results = self.results
        for item in results.items:
            if item.status == "pending":
                item.status = "planned"
        cost = results.cost_line()
        cached = results.total - len(results.to_send or [])
        if cached:
            cost = f"{cached} from cache" + (f", {cost}" if cost else "")
        results.notes.append(
            f"Dry run: {results.total} image(s) planned{f' ({cost})' if cost else ''}; nothing was "
            "sent. Remove --dry-run to generate them."
        )

    def _join(self, session: Session, fresh: list[Item]) -> None:
        """Run on the session's window memory and ledger, and reserve the new images' price
        against its budget (refusing what would pass it). A bad budget value is said in a
        rehearsal too; the embedded hub bills nothing, so it is neither charged nor held."""
        self.windows, self.local = session.windows, session.embedded(self.client)
        self.in_flight = session.state.in_flight
        self.ledger = None if self.local else session.ledger
        if not fresh:
            return
        budget = session.max_spend()
        if self.ledger is None:
            return
        hold, note = self.ledger.check_budget(self.plan.prices, fresh, budget)
        if note:
            self.results.notes.append(note)
        if hold is not None:  # settled by `execute`, or released when the run is dropped unrun
            self._hold = hold
            self._unrun = weakref.finalize(self, self.ledger.release, hold)

    def execute(
        self,
        on_update: Callable[[Item | None], None] | None = None,
        cancel: threading.Event | None = None,
        *,
        exports: bool = True,
    ) -> Results:
        """Send what the cache cannot answer and fill the grid (`on_update(item)` after each
        arrival, `on_update(None)` as a tick; `cancel.set()` stops what has not started); every
        image the API answered is billed. Then the exports (`exports=False`: the caller calls
        `export` itself, as the command line does to tell a Ctrl-C while saving apart). A dry
        run sends nothing. Raises only for a missing or bad key, once the cache answered."""
        if self.spec.dry_run:
            return self.results
        if self._started:
            raise RuntimeError("This run was executed already; prepare another for the same spec.")
        self._started = True
        if self._unrun is not None:
            self._unrun.detach()
        sent: dict[int, Item] = {}
        try:
            runner.run(
                self.results,
                self.client,
                cache=self.cache,
                use_cache=self.spec.use_cache,
                concurrency=self.spec.concurrency,
                on_update=self._updates(on_update),
                cancel=cancel,
                on_billed=self._charge if self.ledger is not None else None,
                on_sent=lambda item: sent.__setitem__(id(item), item),  # a worker, before the POST
                windows=self.windows,
                in_flight=self.in_flight,
            )
        except MissingKeyError as exc:
            raise MissingKeyError(with_local_hint(str(exc))) from None
        finally:
            if self._hold is not None and self.ledger is not None:  # in flight after Stop: still held
                seconds = self.client.deadline + 60.0
                self.ledger.settle(self._hold, list(sent.values()), self.plan.prices, seconds)
        self._after()
        if exports:
            self.export()
        return self.results

    def _charge(self, item: Item, gateway: int | None) -> None:
        """`on_billed`: a worker thread, maybe after Stop (the grid no longer changes then)."""
        assert item.request is not None and self.ledger is not None
        price = self.plan.prices.get(item.request.model)
        self.ledger.charge(item, price, self.client.base, gateway, self._hold)

    def _updates(self, on_update: Callable[[Item | None], None] | None) -> Callable[[Item | None], None]:
        """The caller's `on_update`, after marking the local hub's pictures as they arrive."""

        def update(item: Item | None) -> None:
            if self.local and item is not None:
                self._mark(item)
            if on_update is not None:
                on_update(item)

        return update

    def _mark(self, item: Item) -> None:
        """A finished item from the embedded hub: a placeholder unless a pack answered it."""
        found = self.cache.origin(item) if isinstance(self.cache, SessionCache) else None
        if found is not None:
            item.placeholder, key = found
            if key is not None:
                item.key = key

    def _after(self) -> None:
        """What the run learnt beyond the items: a cache write that failed, the offline cells."""
        results = self.results
        late = self.cache.note() if self.cache is not None else None
        if late:
            results.notes.append(late)
        offline = sum(1 for item in results.items if item.offline)
        if offline:
            results.notes.append(
                f"{offline} image(s) could not reach the server and are not in this machine's cache: "
                f"rerun when the network is back, or {pipeline.OFFLINE_WAYS}"
            )
        if self.local:
            for item in results.items:
                self._mark(item)

    def export(self, *, sheet: bool = False) -> None:
        """Write the files the spec asks for (`sheet`: the contact sheet too) and say so in the
        results: the notes, each failed target in `export_failures`, a Ctrl-C while saving."""
        done = export(self.results, self.spec, sheet=sheet)
        self.results.notes.extend(done.notes)
        self.results.export_failures.extend(done.failures)
        self.results.export_interrupted = self.results.export_interrupted or done.interrupted


def with_local_hint(message: str) -> str:
    """The missing-key sentence, naming the second way on: the local hub."""
    if LOCAL_HINT in message:
        return message
    return message.rstrip(".") + "; " + LOCAL_HINT
