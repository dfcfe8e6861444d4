"""`%%oxenimage`, `%oxenimage` and `%oxenpanel`: glue between IPython and the pipeline.

Every problem a user can cause or meet (bad options, unknown model, no key, no network) is
raised as IPython's `UsageError`, which prints one line and no traceback. Heavy modules (requests,
Pillow, ipywidgets) load on first use, so `%load_ext oxen_magic` stays fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from traitlets import Enum, Int, Unicode

from . import options
from .errors import OxenError, UsageProblem

if TYPE_CHECKING:
    from .cache import Cache
    from .client import OxenClient
    from .results import Results


#: Ctrl-C while the models are being read: nothing was generated, so one line says so.
STOPPED_LOOKUP = "Stopped while looking up the models; nothing was sent. Run the cell again when ready."


@magics_class
class OxenMagic(Magics):
    """Generate image grids with the Oxen.ai API. Defaults are set with `%config OxenMagic.<name>`."""

    model = Unicode(options.DEFAULT_MODEL, help="Model used when a cell names none.").tag(config=True)
    concurrency = Int(
        0, help="At most this many requests in flight; 0 = auto (adapts to the server, up to 32)."
    ).tag(config=True)
    max_images = Int(64, help="The largest sweep a cell may send (a budget guard).").tag(config=True)
    response_format = Enum(["url", "b64_json"], "url", help="How images come back.").tag(config=True)
    display_size = Int(256, help="Display width of one grid cell, in pixels.").tag(config=True)
    cols = Int(8, help="At most this many images per grid row before wrapping.").tag(config=True)
    cache_dir = Unicode("", help="Cache folder ('' = OXEN_MAGIC_CACHE_DIR or the user cache).").tag(
        config=True
    )
    host = Unicode("", help="API host ('' = OXEN_HOST or https://hub.oxen.ai).").tag(config=True)
    upload_repo = Unicode(
        "", help="Public Oxen repository (namespace/repo) that local --input-image files are uploaded to."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._clients: dict[str, OxenClient] = {}

    # -- shared with the panel ----------------------------------------------------------------
    def defaults(self) -> options.Defaults:
        return options.Defaults(
            model=self.model,
            concurrency=self.concurrency,
            max_images=self.max_images,
            response_format=self.response_format,
            size=self.display_size,
            cols=self.cols,
            host=self.host or None,
            upload_repo=self.upload_repo or None,
        )

    def client(self, host: str | None, pool: int = 8) -> OxenClient:
        """One pooled client per host, reused across cells; a bigger pool replaces a smaller one.

        Keyed by the host as resolved now, so `oxen_magic.connect()` or a changed OXEN_HOST takes
        effect on the next cell instead of a client still talking to the old host.
        """
        from .client import DEFAULT_HOST, OxenClient, normalize_host
        from .window import CEILING

        pool = max(pool, CEILING)  # an auto window may open up to its ceiling; unused slots cost nothing

        try:
            base = normalize_host(host or os.environ.get("OXEN_HOST") or DEFAULT_HOST)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        current = self._clients.get(base)
        if current is None or current.pool_size < pool:
            if current is not None:
                current.close()
            self._clients[base] = OxenClient(base, pool_size=max(pool, 8))
        return self._clients[base]

    def cache(self) -> Cache:
        from .cache import Cache

        return Cache(self.cache_dir or None)

    def spec(self, line: str, cell: str | None) -> options.Spec:
        try:
            return options.build_spec(line, cell, self.shell.user_ns if self.shell else {}, self.defaults())
        except UsageProblem as exc:
            raise UsageError(str(exc)) from None

    # -- magics -------------------------------------------------------------------------------
    @line_cell_magic
    def oxenimage(self, line: str, cell: str | None = None) -> None:
        spec = self.spec(line, cell)
        if spec.list_models:
            self._list_models(spec)
            return
        results = self.generate(spec)
        if spec.out and self.shell is not None:
            self.shell.user_ns[spec.out] = results

    oxenimage.__doc__ = "Generate a grid of images with the Oxen.ai API.\n\n" + options.HELP

    @line_magic
    def oxenpanel(self, line: str) -> Any:
        """Show the point-and-click panel; options on the line become its initial values."""
        from .widget import Panel

        return Panel(magic=self, line=line)

    # -- the work -----------------------------------------------------------------------------
    def generate(self, spec: options.Spec) -> Results:
        """Plan, then run with a grid that fills in as images arrive; one line on any problem."""
        from IPython.display import display

        from .live import LiveGrid
        from .pipeline import execute, prepare
        from .runner import Throttled

        client = self.client(spec.host, spec.concurrency)
        cache = self.cache()
        try:
            results = prepare(spec, client, cache)
        except (UsageProblem, OxenError) as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError(STOPPED_LOOKUP) from None
        if spec.dry_run:
            display(results)
            return results
        handles: dict[int, Any] = {}

        def publish(index: int, html: str, first: bool) -> None:
            # A terminal sees only text/plain: the summary, and at the end the notes and errors.
            plain = "" if index else repr(results) if first else results.plain()
            bundle = {"text/html": html, "text/plain": plain}
            if first:
                handles[index] = display(bundle, raw=True, display_id=True)
            elif handles.get(index) is not None:
                handles[index].update(bundle, raw=True)

        view = LiveGrid(results, publish)
        view.draw()
        redraw = Throttled(view.draw)
        try:
            execute(results, spec, client, cache, on_update=redraw)
        except OxenError as exc:
            raise UsageError(str(exc)) from None
        finally:
            view.draw(force=True)
        if results.interrupted:
            print(f"Interrupted: kept {results.done} of {results.total} images; rerun to fetch the rest.")
        return results

    def _list_models(self, spec: options.Spec) -> None:
        from IPython.display import display

        from .pipeline import list_models
        from .render import ModelTable

        client = self.client(spec.host)
        try:
            models, notes = list_models(client)
        except OxenError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError(STOPPED_LOOKUP) from None
        display(ModelTable(models, notes))
