"""nbval runs each notebook in a real kernel; point those kernels at a local hub.

The hub is started when this conftest is imported (before nbval starts any kernel), so every
kernel inherits OXEN_HOST and OXEN_API_KEY; the cache goes to a temporary folder.
`OXEN_NOTEBOOK_HUB=off` leaves the environment as it is (tests/test_realday.py runs the notebooks
in each configuration of the real day, against a stand-in for https://hub.oxen.ai).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from oxen_magic.localhub import LocalHub

#: Handouts are made from workshop.ipynb (tests/test_handout.py checks them) and have no outputs
#: to compare; budget.py runs the notebooks itself.
collect_ignore = ["workshop_student.ipynb", "workshop_solutions.ipynb", "budget.py"]

_hub: LocalHub | None = None
_cache: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _hub, _cache
    if os.environ.get("OXEN_NOTEBOOK_HUB") == "off":
        return
    _hub = LocalHub(image_size=512).start()
    _cache = tempfile.mkdtemp(prefix="oxen-nb-cache-")
    os.environ["OXEN_HOST"] = _hub.url
    os.environ["OXEN_API_KEY"] = _hub.api_key or "local-demo-key"
    os.environ["OXEN_MAGIC_CACHE_DIR"] = _cache


def pytest_unconfigure(config: pytest.Config) -> None:
    if _hub is not None:
        _hub.stop()
    if _cache:
        shutil.rmtree(_cache, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    """Fail a cell that printed a UsageError unless it is tagged `raises-exception`.

    IPython shows a UsageError as one stderr line and sends no error output, so nbval alone
    would pass a notebook whose magic cells all fail.
    """
    outcome = yield
    outputs = getattr(item, "test_outputs", None)
    cell = getattr(item, "cell", None)
    if outcome.excinfo is not None or outputs is None or cell is None:
        return
    if "raises-exception" in cell.metadata.get("tags", []):
        return
    for out in outputs:
        if out.get("name") == "stderr" and "UsageError:" in out.get("text", ""):
            pytest.fail(f"cell printed a UsageError: {out['text'].strip()}", pytrace=False)
