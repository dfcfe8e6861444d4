"""The README's main job: `python -m oxen_magic.demo` on a machine with no key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_quickstart_on_the_local_hub_and_writes_html(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OXEN_API_KEY", "OXEN_HOST")}
    env.update(
        HOME=str(tmp_path),
        OXEN_CONFIG_DIR=str(tmp_path / "oxen-config"),
        OXEN_MAGIC_CACHE_DIR=str(tmp_path / "cache"),
    )
    # No notebook in the working folder: the packaged quickstart runs (as after a pip install).
    result = subprocess.run(
        [sys.executable, "-m", "oxen_magic.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No OXEN_API_KEY found: using the local Oxen hub at http://127.0.0.1:" in result.stdout
    html = (tmp_path / "quickstart.html").read_text()
    assert html.count("oxen-grid") >= 3 and "data:image/jpeg;base64," in html
    assert "local-demo-key" not in html and "local-demo-key" not in result.stdout + result.stderr


def test_the_packaged_quickstart_is_the_notebooks_one() -> None:
    """The demo runs oxen_magic/data/quickstart.ipynb; its cells must be notebooks/quickstart's
    (after editing that one: cp notebooks/quickstart.ipynb oxen_magic/data/quickstart.ipynb)."""
    import json

    def cells(path: Path) -> list[tuple[str, str]]:
        nb = json.loads(path.read_text())
        return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]

    assert cells(ROOT / "oxen_magic" / "data" / "quickstart.ipynb") == cells(
        ROOT / "notebooks" / "quickstart.ipynb"
    )
