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
    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "quickstart.ipynb"
    notebook.write_bytes((ROOT / "notebooks" / "quickstart.ipynb").read_bytes())
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
