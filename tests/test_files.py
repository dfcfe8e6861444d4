"""Files written whole or not at all, never through a link, never over an earlier run's file
(issue 20): `atomic.py` on its own, then `--save`, `grid.save()` and `--to-html` through the
pipeline against the local hub, and the export targets refused before anything is billed.

A full disk is a real OS error: a subprocess lowers RLIMIT_FSIZE, so a write past that size fails
with EFBIG exactly where a full disk would fail with ENOSPC.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import run_cell

from oxen_magic.core import atomic
from oxen_magic.core.validate import shown
from oxen_magic.exports.saving import save_pngs
from oxen_magic.localhub import LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.planning.options import build_spec
from oxen_magic.results.results import Results
from oxen_magic.session.run import Run

ROOT = Path(__file__).resolve().parent.parent


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind (there must never be any)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def sweep(hub: LocalHub, line: str, prompt: str) -> Results:
    client = OxenClient(hub.url)
    try:
        spec = build_spec(line, prompt)
        return Run.prepare(spec, client).execute()
    finally:
        client.close()


# -- atomic.py -----------------------------------------------------------------------------------
def test_write_replaces_whole_and_refuses_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    target.write_text("old")
    atomic.write_text_atomic(target, "new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "link.html"
    link.symlink_to(victim)
    with pytest.raises(atomic.SymlinkRefused, match="symbolic link") as exc:
        atomic.write_bytes_atomic(link, b"PNG")
    assert isinstance(exc.value, OSError)
    assert victim.read_text() == "precious" and link.is_symlink() and leftovers(tmp_path) == []


def test_a_write_that_fails_part_way_keeps_the_old_file(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the write fails with EFBIG after 64 KB, as on a full disk."""
    target = tmp_path / "image.png"
    target.write_bytes(b"the earlier image")
    script = (
        "import resource, signal, sys\n"
        "from oxen_magic.core.atomic import write_bytes_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    write_bytes_atomic(sys.argv[1], b'x' * 1_000_000)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "27"  # EFBIG: a real failed write
    assert target.read_bytes() == b"the earlier image" and leftovers(tmp_path) == []


def test_an_interrupted_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "gallery.html"
    target.write_text("old")

    def stopped(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", stopped)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_text_atomic(target, "new" * 1000)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_write_new_keeps_what_is_there(tmp_path: Path) -> None:
    first = atomic.write_new(tmp_path / "a.png", b"one")
    assert first == tmp_path / "a.png"
    assert atomic.write_new(tmp_path / "a.png", b"one") == first  # the same bytes: kept as is
    second = atomic.write_new(tmp_path / "a.png", b"two")
    assert second == tmp_path / "a_2.png" and first.read_bytes() == b"one"
    (tmp_path / "b.png").symlink_to(tmp_path / "victim")
    third = atomic.write_new(tmp_path / "b.png", b"three")
    assert third == tmp_path / "b_2.png" and not (tmp_path / "victim").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_2.png", "b.png", "b_2.png"]


# -- --save and grid.save() ----------------------------------------------------------------------
def test_a_second_run_never_replaces_the_first_runs_images(
    hub: LocalHub, oxen_env: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "ow"
    cat = sweep(hub, "--seed 1,2", "a cat")
    cat_files = cat.save(folder)
    before = {p.name: p.read_bytes() for p in cat_files}
    dog = save_pngs(sweep(hub, "--seed 1,2", "a dog"), folder)
    assert {p.name: p.read_bytes() for p in cat_files} == before  # the cat is still there
    assert [p.name for p in dog.renamed] == [n.replace(".png", "_2.png") for n in sorted(before)]
    assert "2 name(s) already held other images, which were kept" in dog.note()
    again = save_pngs(cat, folder)  # the same images again: nothing new, nothing renamed
    assert again.renamed == [] and len(list(folder.iterdir())) == 4 and leftovers(folder) == []
    for _, path in dog.files:
        with Image.open(path) as png:
            assert "a dog" in png.text["parameters"]


def test_a_link_in_the_save_folder_is_not_written_through(
    hub: LocalHub, oxen_env: Path, tmp_path: Path
) -> None:
    results = sweep(hub, "--seed 1", "a cube")
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    name = results.items[0].filename() + ".png"
    (folder / name).symlink_to(victim)
    saved = save_pngs(results, folder)
    assert victim.read_text() == "precious" and (folder / name).is_symlink()
    assert [p.name for p in saved.renamed] == [name.replace(".png", "_2.png")]
    with Image.open(saved.files[0][1]) as png:
        assert png.size == results.items[0].size


def test_the_gallery_replaces_its_file_whole_and_says_so(shell: Any, hub: LocalHub, tmp_path: Path) -> None:
    page = tmp_path / "g.html"
    page.write_text("an earlier gallery")
    captured, error = run_cell(shell, f"--seed 1 --to-html {page}", "a lamp")
    assert error is None, error
    assert f"Wrote the gallery to {page} (replacing the earlier file)." in captured.stdout + str(
        [o.data for o in captured.outputs]
    )
    assert page.read_text().startswith("<!doctype html>") and leftovers(tmp_path) == []


# -- every export target checked before anything is billed ---------------------------------------
def _targets(tmp_path: Path) -> list[tuple[str, str]]:
    afile = tmp_path / "afile"
    afile.write_text("x")
    victim = tmp_path / "victim.html"
    victim.write_text("precious")
    (tmp_path / "link.html").symlink_to(victim)
    (tmp_path / "plain").mkdir()
    return [
        ("--to-html /proc/nope/x.html", "--to-html"),
        (f"--to-html {afile}/x.html", "is a file"),
        (f"--to-html {tmp_path / 'link.html'}", "symbolic link"),
        (f"--to-oxen {afile}", "is a file"),
        (f"--to-oxen {afile}/repo", "--to-oxen"),
        (f"--to-oxen {tmp_path / 'plain'} --push", "no remote to push to"),
        ("--save /proc/nope", "--save"),
    ]


def test_unwritable_export_targets_are_refused_before_anything_is_sent(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    for option, expect in _targets(tmp_path):
        _, error = run_cell(shell, f"--seed 1 {option}", "a lamp")
        assert error is not None and expect in error, (option, error)
        assert "\n" not in error.strip() and hub.generate_calls() == [], option
    assert (tmp_path / "victim.html").read_text() == "precious"
    assert not (tmp_path / "plain" / ".oxen").exists()


def test_a_failed_export_is_one_sentence_in_the_notes(hub: LocalHub, oxen_env: Path, tmp_path: Path) -> None:
    """Targets that became unwritable after the check: a file now stands where the folder was."""
    from oxen_magic.exports.exports import export

    results = sweep(hub, "--seed 1,2", "a cube")
    folder = tmp_path / "gone"
    spec = build_spec(f"--seed 1,2 --save {folder} --to-html {folder}/g.html", "a cube")
    Run.prepare(spec, OxenClient(hub.url))  # the check passes now
    folder.write_text("a file in the way")
    done = export(results, spec)  # says what happened; the run writes it into the results
    assert len(done.failures) == 2 and not done.interrupted
    assert done.failures[0].startswith(f"Could not save the PNGs to {folder} (File exists)")
    # (a long path is clipped in the middle, as a message shows it: tmp_path's length varies)
    assert done.failures[1].startswith(f"The --to-html folder {shown(str(folder))} is a file")
    assert all(f in done.notes for f in done.failures)
    assert folder.read_text() == "a file in the way"


def test_save_buffers_decode_once(hub: LocalHub, oxen_env: Path, tmp_path: Path) -> None:
    """PNGs are encoded in memory and written whole: each file decodes to the item's pixels."""
    results = sweep(hub, "--seed 1..3", "a cube")
    for item, path in save_pngs(results, tmp_path).files:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as png, item.image as image:  # type: ignore[union-attr]
            assert png.convert("RGB").tobytes() == image.convert("RGB").tobytes()
