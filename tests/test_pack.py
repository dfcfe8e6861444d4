"""Offline packs (issue 14, item 4): an instructor's cached images carried to another machine.

The round trip is real: cells run through an IPython shell against a local hub with one cache
folder, the pack is exported, the hub is stopped, the pack is imported into a second, empty
cache folder, and the same cells answer from it with no request. The import side is then fed
hostile packs (paths that escape, lying sizes, entries filed under another request, bad images,
malformed manifests): each is refused in one sentence and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from support import magic_of, run_cell

import oxen_magic
from oxen_magic.exports import pack, pack_import
from oxen_magic.exports.pack import PackError, export_pack, import_pack
from oxen_magic.localhub import LocalHub
from oxen_magic.network.cache import Cache

REPO = Path(__file__).resolve().parent.parent
BOATS = ("--model flux-2-dev --seed 1..3", "a paper boat on a pond")
FOXES = ("--model z-image-turbo --seed 1,2", "a {animal} in the snow")
OTHER = ("--seed 7", "a lighthouse at dusk")


def notebook(path: Path, *cells: tuple[str, str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# the workshop")]
    nb.cells += [nbformat.v4.new_code_cell(f"%%oxenimage {line}\n{body}") for line, body in cells]
    nbformat.write(nb, str(path))
    return path


def run(shell: Any, line: str, body: str) -> Any:
    _, error = run_cell(shell, line + " --out grid", body)
    assert error is None, error
    return shell.user_ns["grid"]


def entries(folder: Path) -> int:
    return len(Cache(folder).entry_files())


@pytest.fixture
def instructor(shell: Any, hub: LocalHub, tmp_path: Path) -> dict[str, Any]:
    """The instructor's machine: three cells run online, all in the cache at tmp/cache."""
    shell.user_ns["animal"] = "fox"
    for line, body in (BOATS, FOXES, OTHER):
        grid = run(shell, line, body)
        assert grid.done == grid.total and not any(i.cached for i in grid)
    return {"cache": tmp_path / "cache", "calls": len(hub.generate_calls())}


def test_round_trip_between_two_caches_with_the_hub_stopped(
    shell: Any, hub: LocalHub, instructor: dict[str, Any], tmp_path: Path
) -> None:
    workshop = notebook(tmp_path / "workshop.ipynb", BOATS, FOXES)
    report = export_pack(
        tmp_path / "workshop.zip", host=hub.url, cache_dir=instructor["cache"], notebook=workshop
    )
    assert (report.entries, report.models) == (5, 2), report  # 3 boats + 2 foxes; not the lighthouse
    assert f"Exported 5 image(s) and 2 model description(s) for {hub.url}" in str(report)
    with zipfile.ZipFile(tmp_path / "workshop.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format"] == "oxen_magic-pack" and len(manifest["entries"]) == 5
        assert hub.api_key is not None and all(hub.api_key.encode() not in zf.read(n) for n in zf.namelist())

    hub.stop()  # the student's machine: no network to the hub at all
    student = tmp_path / "student-cache"
    magic_of(shell).cache_dir = str(student)
    report = import_pack(tmp_path / "workshop.zip", cache_dir=student)
    assert (report.entries, report.models, report.skipped) == (5, 2, 0)
    assert entries(student) == 5

    for line, body in (BOATS, FOXES):
        grid = run(shell, line, body)
        assert grid.done == grid.total and all(i.cached for i in grid), [i.error for i in grid]
    assert len(hub.generate_calls()) == instructor["calls"]  # 0 requests: answered from the pack

    # A cell the pack does not hold says what to do instead of only "cannot connect".
    captured, error = run_cell(shell, OTHER[0], OTHER[1])
    text = (error or "") + "\n".join(html for o in captured.outputs for html in o.data.values())
    assert "import" in text and "pack" in text and "--host local" in text, text

    again = import_pack(tmp_path / "workshop.zip", cache_dir=student)
    assert (again.entries, again.skipped) == (0, 5)  # importing twice changes nothing


def test_filters_by_host_cells_and_model(hub: LocalHub, instructor: dict[str, Any], tmp_path: Path) -> None:
    cache = instructor["cache"]
    workshop = notebook(tmp_path / "workshop.ipynb", BOATS, FOXES, OTHER)
    one_cell = export_pack(tmp_path / "a.zip", host=hub.url, cache_dir=cache, notebook=workshop, cells=[2])
    assert one_cell.entries == 2  # cell 2 is the foxes (cell 0 is markdown)
    flux = export_pack(tmp_path / "b.zip", host=hub.url, cache_dir=cache, models=["flux-2-dev"])
    assert flux.entries == 3
    everything = export_pack(tmp_path / "c.zip", host=hub.url, cache_dir=cache)
    assert everything.entries == 6
    with pytest.raises(
        PackError, match=r"holds no images from https://hub\.oxen\.ai; run those cells online"
    ):
        export_pack(tmp_path / "d.zip", cache_dir=cache)  # the real API's images: none here
    assert not (tmp_path / "d.zip").exists()


def test_the_command_line_and_the_python_form(
    hub: LocalHub, instructor: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cli.zip"
    cmd = [sys.executable, "-m", "oxen_magic.exports.pack"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [*cmd, "export", str(out), "--host", hub.url, "--cache-dir", str(instructor["cache"])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert made.returncode == 0 and made.stdout.startswith("Exported 6 image(s)"), made
    into = tmp_path / "elsewhere"
    taken = subprocess.run(
        [*cmd, "import", str(out), "--cache-dir", str(into)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert taken.returncode == 0 and taken.stdout.startswith("Imported 6 image(s)"), taken
    refused = subprocess.run(
        [*cmd, "import", str(tmp_path / "missing.zip"), "--cache-dir", str(into)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "Cannot open the pack" in refused.stderr
    report = oxen_magic.import_pack(str(out), cache_dir=str(tmp_path / "third"))
    assert report.entries == 6


# -- hostile packs ------------------------------------------------------------------------------


def good_pack(instructor: dict[str, Any], hub: LocalHub, tmp_path: Path) -> dict[str, bytes]:
    path = tmp_path / "good.zip"
    export_pack(path, host=hub.url, cache_dir=instructor["cache"], models=["z-image-turbo"])
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def first_entry(members: dict[str, bytes]) -> str:
    return next(n for n in members if n.endswith(".img"))[len("entries/") : -len(".img")]


def _escape(m: dict[str, bytes]) -> None:
    m["../../evil.json"] = b"{}"


def _absolute(m: dict[str, bytes]) -> None:
    m["/tmp/evil.json"] = b"{}"


def _no_manifest(m: dict[str, bytes]) -> None:
    del m["manifest.json"]


def _manifest_not_json(m: dict[str, bytes]) -> None:
    m["manifest.json"] = b"{not json"


def _wrong_format(m: dict[str, bytes]) -> None:
    m["manifest.json"] = json.dumps({"format": "something-else", "version": 1, "entries": []}).encode()


def _entries_not_a_list(m: dict[str, bytes]) -> None:
    m["manifest.json"] = json.dumps({"format": "oxen_magic-pack", "version": 1, "entries": "all"}).encode()


def _bad_key(m: dict[str, bytes]) -> None:
    manifest = json.loads(m["manifest.json"])
    manifest["entries"][0]["key"] = "../x"
    m["manifest.json"] = json.dumps(manifest).encode()


def _damaged_image(m: dict[str, bytes]) -> None:
    key = first_entry(m)
    m[f"entries/{key}.img"] = m[f"entries/{key}.img"][:-10] + b"0123456789"


def _not_an_image(m: dict[str, bytes]) -> None:
    key = first_entry(m)
    data = b"<html>not a picture</html>"
    meta = json.loads(m[f"entries/{key}.json"])
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    m[f"entries/{key}.img"], m[f"entries/{key}.json"] = data, json.dumps(meta).encode()


def _filed_under_another_request(m: dict[str, bytes]) -> None:
    key = first_entry(m)
    meta = json.loads(m[f"entries/{key}.json"])
    meta["body"]["prompt"] = "something the student will type"  # the image would answer it
    m[f"entries/{key}.json"] = json.dumps(meta).encode()


def _unseeded(m: dict[str, bytes]) -> None:
    key = first_entry(m)
    meta = json.loads(m[f"entries/{key}.json"])
    del meta["body"]["seed"]
    m[f"entries/{key}.json"] = json.dumps(meta).encode()


def _missing_image(m: dict[str, bytes]) -> None:
    del m[f"entries/{first_entry(m)}.img"]


def _newer_version(m: dict[str, bytes]) -> None:
    manifest = json.loads(m["manifest.json"])
    manifest["version"] = 99
    m["manifest.json"] = json.dumps(manifest).encode()


def _misfiled_model(m: dict[str, bytes]) -> None:
    manifest = json.loads(m["manifest.json"])
    manifest["models"][0]["id"] = "flux-2-dev"
    m["manifest.json"] = json.dumps(manifest).encode()


HOSTILE = {
    "path-escape": (_escape, "unexpected file '../../evil.json'"),
    "absolute-path": (_absolute, "unexpected file '/tmp/evil.json'"),
    "no-manifest": (_no_manifest, "it has no manifest"),
    "manifest-not-json": (_manifest_not_json, "manifest.json is not JSON"),
    "wrong-format": (_wrong_format, "not an oxen_magic pack manifest"),
    "entries-not-a-list": (_entries_not_a_list, "lists no entries"),
    "bad-key": (_bad_key, "an entry without a proper key"),
    "damaged-image": (_damaged_image, "is damaged (checksum mismatch)"),
    "not-an-image": (_not_an_image, "is not an image"),
    "another-request": (_filed_under_another_request, "filed under a request it does not answer"),
    "unseeded": (_unseeded, "does not say which seeded request it answers"),
    "missing-image": (_missing_image, "has no image"),
    "newer-version": (_newer_version, "is a version 99 pack"),
    "misfiled-model": (_misfiled_model, "is missing or misfiled"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_or_broken_pack_is_refused_whole(
    case: str, hub: LocalHub, instructor: dict[str, Any], tmp_path: Path
) -> None:
    members = good_pack(instructor, hub, tmp_path)
    spoil, expected = HOSTILE[case]
    spoil(members)
    target = tmp_path / "student"
    with pytest.raises(PackError) as caught:
        import_pack(write(tmp_path / "bad.zip", members), cache_dir=target)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message
    assert not target.exists() or entries(target) == 0  # nothing written, not even the good entries
    assert not (tmp_path / "evil.json").exists() and not Path("/tmp/evil.json").exists()


def test_size_caps_hold_even_when_the_zip_lies(
    hub: LocalHub, instructor: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = good_pack(instructor, hub, tmp_path)
    monkeypatch.setattr(pack_import, "MAX_MEMBER_BYTES", 100)  # the test's images are far bigger
    with pytest.raises(PackError, match="is larger than 100 bytes"):
        import_pack(write(tmp_path / "big.zip", members), cache_dir=tmp_path / "s1")
    monkeypatch.setattr(pack_import, "MAX_MEMBER_BYTES", 64 * 1024**2)
    monkeypatch.setattr(pack_import, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(PackError, match="unpacks to more than"):
        import_pack(write(tmp_path / "big.zip", members), cache_dir=tmp_path / "s2")
    (tmp_path / "junk.zip").write_bytes(b"PK not really a zip" + bytes(100))
    with pytest.raises(PackError, match="it is not a zip file"):
        import_pack(tmp_path / "junk.zip", cache_dir=tmp_path / "s3")


def test_which_prompts_a_notebook_asks_for(tmp_path: Path) -> None:
    nb = notebook(
        tmp_path / "n.ipynb", BOATS, FOXES, ("--seed 1", "{prompt}"), ("--seed 2", "{{literal}} {x}")
    )
    nb_json = json.loads(nb.read_text())
    nb_json["cells"].append(nbformat.v4.new_code_cell("x = 1\n%oxenimage --seed 3 a lone tree"))
    nb.write_text(json.dumps(nb_json))
    patterns = pack.notebook_prompts(nb)
    assert len(patterns) == 4  # "{prompt}" alone would match every image: left out
    assert patterns[1].fullmatch("a wolf in the snow") and not patterns[1].fullmatch("a wolf in the sun")
    assert patterns[2].fullmatch("{literal} anything") and patterns[3].fullmatch("a lone tree")
    assert [p.pattern for p in pack.notebook_prompts(nb, cells=[1])] == [patterns[0].pattern]
    with pytest.raises(PackError, match="Cannot read the notebook"):
        pack.notebook_prompts(tmp_path / "nothing.ipynb")


# -- template matching in linear time (issue 20) -----------------------------------------------
ADJACENT = "{a}{b}{c}{d}{e}{f}{g}{h} in the style of {artist}!"


def _regex(prompt: str) -> Any:
    """What templates were matched with before: one lazy `.+?` per placeholder (the oracle)."""
    import re

    parts = re.split(r"(\{\{|\}\}|\{[^{}]*\})", prompt)
    return re.compile(
        "".join(
            "\\{" if p == "{{" else "\\}" if p == "}}" else ".+?" if p.startswith("{") else re.escape(p)
            for p in parts
        ),
        re.S,
    )


@pytest.mark.parametrize("length", [60, 600, 4000])
def test_adjacent_placeholders_match_in_a_bounded_number_of_steps(length: int) -> None:
    """The steps (one startswith, one find per literal piece, one endswith) do not grow with the
    prompt: a backtracking regex took 44 s on 60 characters of this."""
    template = pack.Template(ADJACENT)
    assert template.fullmatch("x" * length) is False  # no " in the style of ": the worst case
    assert template.fullmatch("y" * (length - 30) + " in the style of Monet" + "z") is False
    assert template.fullmatch("abcdefgh" * (length // 8) + " in the style of Monet!") is True
    assert template.steps <= 3 * 3  # three calls, each at most one step per literal piece (3)


def test_the_linear_matcher_agrees_with_the_regex_it_replaced() -> None:
    """Exhaustively over short templates and texts (where the regex is still quick)."""
    import itertools

    tokens = ["a", "b", "{x}", "{y}", "{{", "}}", " "]
    # every text of up to 4 characters: long enough for two placeholders around a literal
    texts = ["".join(t) for n in range(5) for t in itertools.product("ab {}", repeat=n)]
    for n in range(5):
        for combo in itertools.product(tokens, repeat=n):
            prompt = "".join(combo)
            template, oracle = pack.Template(prompt), _regex(prompt)
            for text in texts:
                assert template.fullmatch(text) == bool(oracle.fullmatch(text)), (prompt, text)


def test_pack_export_with_an_adversarial_notebook_finishes(
    shell: Any, hub: LocalHub, oxen_env: Path, tmp_path: Path
) -> None:
    """End to end, with a hard timeout of 60 s that the backtracking regex exceeds by hours (44 s at
    60 characters, about 27 times more per 20 more): a cached 90-character prompt that does not
    match the template."""
    long_prompt = "x" * 90
    run(shell, "--seed 1", long_prompt)
    run(shell, "--seed 1", "abcdefgh in the style of Monet!")
    nb = notebook(tmp_path / "nb.ipynb", ("--seed 1", ADJACENT))
    args = ["export", str(tmp_path / "p.zip"), "--host", hub.url, "--notebook", str(nb)]
    done = subprocess.run(
        [sys.executable, "-m", "oxen_magic.exports.pack", *args, "--cache-dir", str(oxen_env)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:
        prompts = [e["prompt"] for e in json.loads(zf.read("manifest.json"))["entries"]]
    assert prompts == ["abcdefgh in the style of Monet!"]
