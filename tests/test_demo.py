"""The README's main job: `python -m oxen_magic demo` on a machine with no key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import Dists

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_quickstart_on_the_local_hub_and_writes_html(tmp_path: Path, dists: Dists) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OXEN_API_KEY", "OXEN_HOST")}
    env.update(
        HOME=str(tmp_path),
        OXEN_CONFIG_DIR=str(tmp_path / "oxen-config"),
        OXEN_MAGIC_CACHE_DIR=str(tmp_path / "cache"),
    )
    # Installed as a user would: the project's wheel, unpacked into a folder of its own, run
    # from a folder that holds no checkout (the dependencies come from this environment).
    wheel = dists.wheel
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env["PYTHONPATH"] = str(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import oxen_magic.frontends.demo as d; print(d.__file__); raise SystemExit(d.main())",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No OXEN_API_KEY found: using the local Oxen hub at http://127.0.0.1:" in result.stdout
    assert result.stdout.startswith(str(site))  # the installed copy ran, not the checkout
    html = (elsewhere / "quickstart.html").read_text()
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


def test_missing_extras_hint_names_the_package_not_a_checkout(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['nbclient'] = None; "
        "import oxen_magic.frontends.demo as d; raise SystemExit(d.main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == 'The demo needs the notebook tools: pip install "oxen_magic[demo]"'
