"""Release hygiene: what a user installs is what we mean to ship.

The sdist and wheel are built offline once per session (`dists` in conftest.py; the wheel is
built from the sdist), then opened and read: the package's modules and data are all there, no
tests, virtual environments or caches ride along, and the metadata names the version (from its
one place, `oxen_magic.__version__`), the Python floor and the extras. `twine check` reads the
metadata as PyPI would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import PurePosixPath

from support import ROOT, Dists

import oxen_magic

#: Parts of a path that must never be shipped: caches, environments, VCS and build leftovers.
UNWANTED = {
    "__pycache__",
    ".venv",
    "venv",
    ".git",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "dist",
    "tests",
    "notebooks",
    "benchmarks",
}
EXTRAS = {"demo", "oxen", "relay", "fast", "test", "lab"}


def _wheel_names(dists: Dists) -> list[str]:
    with zipfile.ZipFile(dists.wheel) as wheel:
        return wheel.namelist()


def _sdist_names(dists: Dists) -> list[str]:
    """The sdist's paths below its top folder (`oxen_magic-X.Y.Z/`)."""
    with tarfile.open(dists.sdist) as sdist:
        names = [m.name for m in sdist.getmembers() if m.isfile()]
    return [name.split("/", 1)[1] for name in names if "/" in name]


def _metadata(dists: Dists) -> Message:
    with zipfile.ZipFile(dists.wheel) as wheel:
        (path,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(wheel.read(path).decode())


def _shipped_sources() -> set[str]:
    """What the wheel must hold of the checkout: every module and every file package-data names."""
    package = ROOT / "oxen_magic"
    wanted = [*package.rglob("*.py"), package / "py.typed"]
    wanted += [*(package / "data").glob("*.json"), *(package / "data").glob("*.ipynb")]
    return {p.relative_to(ROOT).as_posix() for p in wanted if "__pycache__" not in p.parts}


def test_the_wheel_holds_every_module_and_the_package_data(dists: Dists) -> None:
    names = set(_wheel_names(dists))
    missing = _shipped_sources() - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    for needed in ("oxen_magic/py.typed", "oxen_magic/data/quickstart.ipynb"):
        assert needed in names
    assert any(n.startswith("oxen_magic/data/") and n.endswith(".json") for n in names)


def test_nothing_unwanted_is_shipped(dists: Dists) -> None:
    for kind, names in (("wheel", _wheel_names(dists)), ("sdist", _sdist_names(dists))):
        for name in names:
            parts = set(PurePosixPath(name).parts)
            assert not parts & UNWANTED, f"{kind} ships {name}"
            assert not name.endswith((".pyc", ".pyo", ".sqlite", ".whl", ".tar.gz")), f"{kind} ships {name}"
    wheel_tops = {PurePosixPath(n).parts[0] for n in _wheel_names(dists)}
    assert wheel_tops == {"oxen_magic", f"oxen_magic-{oxen_magic.__version__}.dist-info"}


def test_the_sdist_builds_the_same_package(dists: Dists) -> None:
    """The sdist holds the sources, README, CHANGELOG and pyproject.toml (the wheel in `dists`
    was built from it, so nothing the package needs is left out of it)."""
    names = set(_sdist_names(dists))
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "PKG-INFO"} <= names
    missing = _shipped_sources() - names
    assert not missing, f"missing from the sdist: {sorted(missing)}"


def test_the_metadata_names_version_python_and_extras(dists: Dists) -> None:
    meta = _metadata(dists)
    assert meta["Name"] == "oxen_magic"
    assert meta["Version"] == oxen_magic.__version__
    assert dists.wheel.name == f"oxen_magic-{oxen_magic.__version__}-py3-none-any.whl"
    assert dists.sdist.name == f"oxen_magic-{oxen_magic.__version__}.tar.gz"
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "MIT"
    assert set(meta.get_all("Provides-Extra") or []) == EXTRAS
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("ipython") and "extra" not in r for r in requires)
    assert any(r.startswith("aiohttp") and 'extra == "relay"' in r for r in requires)
    assert meta.get_content_type() == "text/plain"  # a header block; the README is its body
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "%%oxenimage" in meta.get_payload()
    assert "`project.license`" not in dists.log  # no setuptools deprecation warning for it


def test_the_version_is_written_once() -> None:
    """pyproject.toml reads the version from `oxen_magic.__version__`; no second copy to drift."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M)
    assert 'version = { attr = "oxen_magic.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", oxen_magic.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(oxen_magic.__version__)}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M)


def test_twine_check_passes(dists: Dists) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout
