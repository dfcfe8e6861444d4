"""How the suite's tests are shared between the xdist workers (pyproject: `--dist loadfile`,
which conftest.py answers with `FilesAndGroups`: loadfile, and the long tests first).

Each file is one unit of work, run in order on one worker: a notebook's cells share one kernel
and run in order, and a file's tests may share a module or session fixture. The long tests of
`GROUPS` leave their files: each group is one unit of its own, and the groups are handed out
first, longest first, so that no worker is given a minute-long test when the others are nearly
done. The browser tests are one group, so only one Chromium (and JupyterLab) runs at a time; the
tests that use the built sdist and wheel (`dists`) are one group, so they are built once.

The groups are named here by node id rather than by `xdist_group` marks: the controller sees only
node ids, and xdist 3.8 adds a mark's group to the id through `Item._nodeid`, which pytest 9.2
no longer reads. A renamed test only loses its place in the queue, never a run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

#: Unit name -> the node ids (or their beginnings) it holds, longest first (measured with
#: `--durations`); handed out in this order before any file.
GROUPS: dict[str, tuple[str, ...]] = {
    "realday-keyed": ("tests/test_realday.py::test_every_notebook_with_a_key_then_offline_with_its_pack",),
    "browser": ("tests/test_browser.py::", "tests/test_relay_dashboard.py::"),
    "realday-keyless": ("tests/test_realday.py::test_every_notebook_with_no_key_online",),
    "budget": ("tests/test_handout.py::test_the_budget_table_is_what_the_notebooks_make",),
    "dists": (
        "tests/test_demo.py::test_demo_runs_the_quickstart_on_the_local_hub_and_writes_html",
        "tests/test_release.py::",
    ),
    "mypy": ("tests/test_quality.py::test_mypy_is_clean",),
}


def unit_of(nodeid: str) -> str:
    """The unit a test is sent with: its group, else its file."""
    for group, starts in GROUPS.items():
        if nodeid.startswith(starts):
            return group
    return nodeid.split("::", 1)[0]


class _GroupsFirst(OrderedDict[str, Any]):
    """The work queue: `popitem(last=False)` (how the scheduler takes the next unit) gives the
    groups first, in `GROUPS`' order, then the files in the queue's own order."""

    def popitem(self, last: bool = True) -> tuple[str, Any]:
        if not last:
            for group in GROUPS:
                if group in self:
                    return group, self.pop(group)
        return super().popitem(last)


class FilesAndGroups(LoadScopeScheduling):
    """`loadfile`, except that the tests of `GROUPS` are sent as their group's unit, first."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.workqueue = _GroupsFirst()

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)
