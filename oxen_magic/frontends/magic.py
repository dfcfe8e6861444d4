"""`%%oxenimage`, `%oxenimage` and `%oxenpanel`: glue between IPython and the session.

The magic is a front end: it parses the cell with the session's defaults, shows the grid as it
fills in, and turns every problem a user can cause or meet (bad options, unknown model, no key,
no network, a budget) into IPython's `UsageError`, which prints one line and no traceback. It
holds no state: `%config OxenMagic.<name>` values are pushed into the process's `Session`, which
the panel, `oxen_magic.generate()` and the command line share. Heavy modules (requests, Pillow,
ipywidgets) load on first use, so `%load_ext oxen_magic` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from traitlets import Enum, Float, Int, Unicode, observe

from oxen_magic.display.notebook import showing
from oxen_magic.frontends.problems import STOPPED_LOOKUP, as_usage_error
from oxen_magic.planning import options
from oxen_magic.session.session import SETTINGS, Session, current_session

if TYPE_CHECKING:
    from oxen_magic.network.client import OxenClient
    from oxen_magic.results.results import Results


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
    host = Unicode(
        "", help="API host ('' = OXEN_HOST or https://hub.oxen.ai; 'local' = the embedded local hub)."
    ).tag(config=True)
    max_spend = Float(
        None,
        allow_none=True,
        help="Budget in USD for the new images of all your notebooks (0 = none; unset: "
        "OXEN_MAGIC_MAX_SPEND); a cell whose new images would pass it is refused before anything is sent.",
    ).tag(config=True)
    namespace = Unicode("", help="target_namespace (the user or organisation billed) for every cell.").tag(
        config=True
    )
    upload_repo = Unicode(
        "", help="Public Oxen repository (namespace/repo) that local --input-image files are uploaded to."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        # What %config set before this magic existed (or a profile's config) reaches the session;
        # later changes arrive through _push. Unset traits leave the session's values alone.
        configured = self.config.get("OxenMagic", {})
        values = {name: getattr(self, name) for name in SETTINGS if name in configured}
        if values:
            self.session.configure(**values)

    @observe(*SETTINGS)
    def _push(self, change: Any) -> None:
        self.session.configure(**{change["name"]: change["new"]})

    @property
    def session(self) -> Session:
        return current_session()

    # -- shared with the other front ends (the session holds the state) --------------------------
    def client(self, host: str | None, pool: int = 8) -> OxenClient:
        with as_usage_error():
            return self.session.client(host, pool)

    def spec(self, line: str, cell: str | None) -> options.Spec:
        with as_usage_error():
            return self.session.spec(line, cell, self.shell.user_ns if self.shell else {})

    # -- magics -------------------------------------------------------------------------------
    @line_cell_magic
    def oxenimage(self, line: str, cell: str | None = None) -> None:
        if cell is None and "--spend" in line.split():
            self._show_spend(line)
            return
        spec = self.spec(line, cell)
        if spec.list_models:
            self._list_models(spec)
            return
        results = self.generate(spec)
        if spec.out and self.shell is not None:
            self.shell.user_ns[spec.out] = results

    oxenimage.__doc__ = (
        "Generate a grid of images with the Oxen.ai API.\n\n"
        + options.HELP
        + "\n%oxenimage --spend shows what this session was billed for."
    )

    @line_magic
    def oxenpanel(self, line: str) -> Any:
        """Show the point-and-click panel; options on the line become its initial values."""
        from oxen_magic.frontends.panel import Panel

        return Panel(shell=self.shell, line=line)

    # -- the work -----------------------------------------------------------------------------
    def generate(self, spec: options.Spec) -> Results:
        """Plan (refusing what must not be sent), then run with a grid that fills in as images
        arrive; one line on any problem."""
        with as_usage_error(stopped=STOPPED_LOOKUP):
            run = self.session.prepare(spec)
        with as_usage_error(), showing(run.results, planned=spec.dry_run) as redraw:
            results = run.execute(on_update=redraw)
        if results.interrupted:
            print(f"Interrupted: kept {results.done} of {results.total} images; rerun to fetch the rest.")
        return results

    def _list_models(self, spec: options.Spec) -> None:
        from IPython.display import display

        from oxen_magic.frontends.python_api import models

        with as_usage_error(stopped=STOPPED_LOOKUP):
            table = models(host=spec.host, search=spec.search, developer=spec.developer)
        display(table)

    def _show_spend(self, line: str) -> None:
        from IPython.display import display

        if options.split_words(line) != ["--spend"]:
            raise UsageError("%oxenimage --spend takes no other options or prompt.")
        with as_usage_error():
            spent = self.session.spend()
        display(spent)
