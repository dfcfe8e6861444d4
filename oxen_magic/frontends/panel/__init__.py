"""`%oxenpanel` / `oxen_magic.panel()`: a point-and-click front end to the same pipeline.

The panel's single source of truth is the magic line. The controls are written out as the
`%%oxenimage ...` first line a learner could type (shown in `magic_line`, behind "Show code"
with the seed and step syntax and More options; the plain controls of `simple.py` write those
texts), and generating parses
that line with `options.build_spec` and runs it through `Session.prepare` / `Run.execute`,
exactly as the cell magic does. Only how progress is shown differs.

Live validation on every control change is pure: the grammar (`build_spec`) plus the model
schemas read once when the panel opens (`GET /api/ai/models`), checked with `plan.make_plan`.
No generate request is sent until Generate is pressed, and Generate stays disabled while any
control holds a problem.

Generating runs in a background thread, so the kernel stays free: the grid in `output` fills in
as images arrive, `progress` counts them, and `stop_button` cancels what has not started (what
arrived is kept). `wait()` blocks until the run ends; `running` says whether one is going.

Where widgets cannot be shown (nbviewer, a static HTML export), the panel's display carries a
`text/html` copy of the latest grid (or of its magic line before any run).
"""

from oxen_magic.frontends.panel.base import PREFIX
from oxen_magic.frontends.panel.controls import COMMON_RATIOS, ModelsText
from oxen_magic.frontends.panel.panel import Panel
from oxen_magic.frontends.panel.run import HISTORY, HistoryEntry

__all__ = ["COMMON_RATIOS", "HISTORY", "PREFIX", "HistoryEntry", "ModelsText", "Panel"]
