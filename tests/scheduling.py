"""How the suite's tests are shared between the xdist workers (pyproject: `--dist loadgroup`).

Each file is one unit of work, run in order on one worker: a notebook's cells share one kernel
and run in order, and a file's tests may share a module fixture. A test marked
`@pytest.mark.xdist_group("name")` leaves its file: every test of that group is one unit of its
own. The groups are the suite's long tests (the notebooks under nbval in the real day's
configurations, the browser tests, the budget measurement); they start first, in `FIRST`'s order
(longest first), so that no worker is handed a minute-long test when the others are nearly done.
The browser tests share the group `browser`, so only one Chromium runs at a time.

(xdist's own `loadgroup` sends every ungrouped *test* anywhere, which would split a notebook's
cells between kernels; `loadfile` cannot send a long test away from the rest of its file.)
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling

#: The groups, longest first (measured with `--durations`): they are started in this order.
FIRST = ("realday-keyed", "browser", "realday-keyless", "budget", "demo", "mypy")


class FilesAndGroups(LoadScopeScheduling):
    """`loadfile`, except that a test of an `xdist_group` is sent with its group, not its file."""

    def _split_scope(self, nodeid: str) -> str:
        # `--dist loadgroup` appends "@group" to a grouped test's id (after any parameters)
        if nodeid.rfind("@") > nodeid.rfind("]"):
            return nodeid.rsplit("@", 1)[1]
        return nodeid.split("::", 1)[0]


def group_of(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0]) if mark is not None and mark.args else None


def heavy_first(items: list[pytest.Item]) -> None:
    """Put the grouped tests first, in `FIRST`'s order (with `--no-loadscope-reorder` the units
    are handed out in the order their first test was collected). Stable otherwise."""

    def rank(item: pytest.Item) -> int:
        group = group_of(item)
        if group is None:
            return len(FIRST) + 1
        return FIRST.index(group) if group in FIRST else len(FIRST)

    items.sort(key=rank)
