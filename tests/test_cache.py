"""The on-disk cache: unit tests of `Cache`, and its effect on `%%oxenimage` against the local hub."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from support import all_text, files_under, login_for, read_if_there, run_cell, shown_html, wait_for

from oxen_magic.localhub import LocalHub
from oxen_magic.network.cache import MARKER, Cache, Noted, default_dir, pack, unpack
from oxen_magic.results.results import Results

HOST = "http://127.0.0.1:8765"
BODY = {"model": "z-image-turbo", "prompt": "a cube", "seed": 3}
LINE = "--model z-image-turbo --seed 1..3"
PROMPT = "a small brass robot"


def png(width: int = 64, height: int = 64, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


IMAGE = png()
THUMB = png(16, 16)


def generate_count(hub: LocalHub) -> int:
    return len(hub.generate_calls())


def magic(shell: Any, hub: LocalHub, line: str = LINE, body: str = PROMPT) -> Results:
    shell.user_ns.pop("r", None)
    captured, error = run_cell(shell, line + " --out r", body)
    assert error is None, error
    assert hub.api_key is not None and hub.api_key not in all_text(captured)
    results = shell.user_ns["r"]
    assert isinstance(results, Results)
    assert results.failed == 0
    return results


def entry_files(folder: Path, suffix: str = ".entry") -> list[Path]:
    """Cache entry files (not the saved model descriptions, not a run's spool, not temp files)."""
    if not folder.exists():
        return []
    return [
        p
        for p in files_under(folder, skip={"models", "spool"})
        if p.name.endswith(suffix) and not p.name.startswith(".tmp-")
    ]


def _parts(path: Path) -> tuple[dict[str, Any], bytes, bytes | None]:
    unit = unpack(path.read_bytes())
    assert unit is not None, path
    return unit


def _replace(path: Path, *, data: bytes | None = None, thumb: bytes | None = None, **changes: Any) -> None:
    """Rewrite one part of an entry file (its record fields, image or thumbnail), keeping the rest."""
    meta, old_data, old_thumb = _parts(path)
    meta.update(changes)
    path.write_bytes(pack(meta, data if data is not None else old_data, thumb or old_thumb))


def _record_text(path: Path, text: str) -> None:
    """Put `text` where the entry's record line is (the image stays after it)."""
    _, data, thumb = _parts(path)
    path.write_bytes(MARKER + text.encode() + b"\n" + data + (thumb or b""))


# -- unit: Cache ----------------------------------------------------------------------------------


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, THUMB, 128, mime="image/png", size=[64, 64])
    entry = cache.get(HOST, BODY, 128)
    assert entry is not None
    assert entry.data == IMAGE and entry.thumb == THUMB
    assert entry.meta["mime"] == "image/png" and entry.meta["size"] == [64, 64]
    assert not [p for p in files_under(tmp_path) if p.name.startswith(".tmp-")]  # atomic writes: none left


def test_a_thumbnail_of_another_size_is_not_returned(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, THUMB, 128)
    entry = cache.get(HOST, BODY, 256)
    assert entry is not None and entry.data == IMAGE and entry.thumb is None


def test_key_covers_host_and_every_body_field_but_not_field_order(tmp_path: Path) -> None:
    key = Cache.key(HOST, BODY)
    assert Cache.key(HOST, dict(reversed(list(BODY.items())))) == key
    assert Cache.key(HOST + "/", BODY) != key
    assert Cache.key("http://127.0.0.1:9999", BODY) != key
    for change in ({"seed": 4}, {"prompt": "a cone"}, {"num_inference_steps": 4}, {"guidance": 3.5}):
        assert Cache.key(HOST, {**BODY, **change}) != key
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def test_only_seeded_bodies_are_cacheable() -> None:
    assert Cache.cacheable(BODY)
    assert Cache.cacheable({**BODY, "seed": 0})  # seed 0 is a seed
    assert not Cache.cacheable({"model": "m", "prompt": "p"})
    assert not Cache.cacheable({"model": "m", "prompt": "p", "seed": None})


@pytest.mark.parametrize("damage", ["truncate-data", "garble-meta", "delete-meta", "delete-data"])
def test_a_damaged_entry_reads_as_absent(tmp_path: Path, damage: str) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, THUMB, 64)
    (entry,) = entry_files(tmp_path)
    blob = entry.read_bytes()
    if damage == "truncate-data":
        entry.write_bytes(blob[: blob.index(b"\n", len(MARKER)) + 37])
    elif damage == "garble-meta":
        _record_text(entry, '{"sha256": ')
    elif damage == "delete-meta":
        entry.unlink()
    else:
        entry.write_bytes(blob[: blob.index(b"\n", len(MARKER)) + 1])
    assert cache.get(HOST, BODY, 64) is None and not cache.has(HOST, BODY)


def test_a_write_failure_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = Cache(blocker)
    cache.put(HOST, BODY, b"data", b"thumb", 64)  # must not raise
    assert cache.get(HOST, BODY, 64) is None


def test_a_damaged_thumbnail_is_dropped_but_the_image_kept(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, THUMB, 64)
    (path,) = entry_files(tmp_path)
    _replace(path, thumb=THUMB[:30])
    entry = cache.get(HOST, BODY, 64)
    assert entry is not None and entry.data == IMAGE and entry.thumb is None


def _rewrite(path: Path, **changes: Any) -> None:
    _replace(path, **changes)


WRONG_TYPES: dict[str, dict[str, Any]] = {
    "sha256-a-number": {"sha256": 12345},
    "sha256-null": {"sha256": None},
    "thumb-size-text": {"thumb_size": "64"},
    "thumb-size-bool": {"thumb_size": True},
    "thumb-size-negative": {"thumb_size": -64},
    "thumb-sha-a-list": {"thumb_sha256": ["x"]},
    "mime-a-number": {"mime": 5},
    "size-text": {"size": "64x64"},
    "size-one-number": {"size": [64]},
    "size-text-items": {"size": [64, "64"]},
    "size-floats": {"size": [64.0, 64.0]},
    "size-disagrees": {"size": [128, 64]},
    "size-zero": {"size": [0, 0]},
    "created-text": {"created": "yesterday"},
    "created-bool": {"created": False},
}


@pytest.mark.parametrize("change", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_an_entry_with_wrong_types_is_damaged_and_dropped(tmp_path: Path, change: dict[str, Any]) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, THUMB, 64, mime="image/png", size=[64, 64], created=1775090372)
    (meta,) = entry_files(tmp_path)
    _rewrite(meta, **change)
    assert cache.get(HOST, BODY, 64) is None and not cache.has(HOST, BODY)
    # Not deleted by the reader (another process may just have rewritten it): the next write
    # replaces it whole.
    cache.put(HOST, BODY, IMAGE, THUMB, 64, mime="image/png", size=[64, 64])
    assert cache.get(HOST, BODY, 64) is not None


@pytest.mark.parametrize("record", ["[]", '"text"', "null", "42", '{"sha256": {"nested": 1}}'])
def test_a_record_that_is_not_an_object_is_damaged(tmp_path: Path, record: str) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, THUMB, 64)
    (meta,) = entry_files(tmp_path)
    _record_text(meta, record)
    assert cache.get(HOST, BODY, 64) is None


@pytest.mark.parametrize("data", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b""])
def test_an_image_that_does_not_decode_is_damaged_even_with_a_matching_checksum(
    tmp_path: Path, data: bytes
) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, data, THUMB, 64)  # a checksum of bad bytes still matches them
    assert cache.get(HOST, BODY, 64) is None


def test_a_thumbnail_that_does_not_decode_is_dropped(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, IMAGE, b"not a jpeg", 64)
    entry = cache.get(HOST, BODY, 64)
    assert entry is not None and entry.data == IMAGE and entry.thumb is None


def test_a_folder_that_cannot_be_written_later_is_noted_once(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    noted = Noted()  # the session's (ProcessState.notes), shared by every cache it makes
    cache = Cache(folder, noted)
    assert cache.check() is None and cache.problem is None  # writable now
    folder.rmdir()
    folder.write_text("the disk changed under us")  # every write now fails
    cache.put(HOST, BODY, IMAGE, THUMB, 64)
    note = cache.note()
    assert note is not None and note.startswith("Results will not be cached: cannot write to ")
    assert "OXEN_MAGIC_CACHE_DIR" in note and "\n" not in note
    assert cache.note() is None  # once per session
    later = Cache(folder, noted)  # the next cell's cache, the same folder: nothing said again
    later.put(HOST, BODY, IMAGE, THUMB, 64)
    assert later.problem is not None and later.note() is None


def test_the_session_says_the_not_cached_note_once_across_its_caches(tmp_path: Path) -> None:
    from oxen_magic.session.session import current_session, reset_session

    folder = tmp_path / "cache"
    folder.write_text("not a folder")  # every write fails
    session = current_session()
    session.configure(cache_dir=str(folder))
    first, second = session.cache(), session.cache()
    for cache in (first, second):
        cache.put(HOST, BODY, IMAGE, THUMB, 64)
    assert first.note() is not None and second.note() is None
    fresh = reset_session(cache_dir=str(folder)).cache()  # a new session (a restarted kernel)
    fresh.put(HOST, BODY, IMAGE, THUMB, 64)
    assert fresh.note() is not None  # says it again


def test_a_path_that_cannot_be_a_cache_folder_is_refused(tmp_path: Path) -> None:
    from oxen_magic.core.errors import UsageProblem

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for folder, words in (
        (blocker, "is a file, not a folder"),
        (blocker / "inside", "is inside a file, not a folder"),
        (tmp_path / ("x" * 300), "is too long a path"),
        (str(tmp_path / "nul\x00here"), "contains a NUL character"),
    ):
        with pytest.raises(UsageProblem) as info:
            Cache(folder).check()
        message = str(info.value)
        assert message.startswith("The cache folder '") and words in message, message
        assert "%config OxenMagic.cache_dir" in message


def test_default_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(tmp_path / "here"))
    assert default_dir() == tmp_path / "here"
    assert Cache().folder == tmp_path / "here"
    monkeypatch.delenv("OXEN_MAGIC_CACHE_DIR")
    if os.name != "nt" and os.uname().sysname != "Darwin":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_dir() == tmp_path / "xdg" / "oxen_magic"


# -- through the magic ------------------------------------------------------------------------------


def test_a_rerun_is_answered_from_the_cache(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    first = magic(shell, hub)
    assert generate_count(hub) == 3
    assert not any(i.cached for i in first)
    assert len(entry_files(oxen_env)) == 3

    hub.reset()
    shell.user_ns.pop("r", None)
    captured, error = run_cell(shell, LINE + " --out r", PROMPT)
    assert error is None
    again = shell.user_ns["r"]
    assert generate_count(hub) == 0 and hub.requests == []  # nothing asked of the hub at all
    assert again.done == 3 and all(i.cached for i in again)
    assert [i.data for i in again] == [i.data for i in first]
    assert [i.size for i in again] == [i.size for i in first]
    html = shown_html(captured)
    assert "3 from cache" in html
    assert html.count("<img ") == 3 and "cached" in html


def test_a_changed_request_misses_the_cache(shell: Any, hub: LocalHub) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1,2")
    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 2,3")
    assert [c.body["seed"] for c in hub.generate_calls() if c.body] == [3]
    assert [i.cached for i in r] == [True, False]

    hub.reset()
    magic(shell, hub, "--model z-image-turbo --seed 2 --steps 4")  # another field: another entry
    magic(shell, hub, "--model z-image-turbo --seed 2", "another prompt")
    magic(shell, hub, "--model z-image-turbo --seed 2 --namespace team")
    assert generate_count(hub) == 3


def test_the_cache_is_per_host(shell: Any, hub: LocalHub, make_hub: Callable[..., LocalHub]) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1")
    other = make_hub(api_key=hub.api_key, image_size=32)
    login_for(other)
    r = magic(shell, hub, f"--model z-image-turbo --seed 1 --host {other.url}")
    assert generate_count(other) == 1 and not r[0].cached


@pytest.mark.parametrize("damage", ["truncate-image", "garble-meta", "delete-meta"])
def test_a_corrupted_entry_is_fetched_again_then_served(
    shell: Any, hub: LocalHub, oxen_env: Path, damage: str
) -> None:
    first = magic(shell, hub, "--model z-image-turbo --seed 1")
    (entry,) = entry_files(oxen_env)
    if damage == "truncate-image":
        blob = entry.read_bytes()
        start = blob.index(b"\n", len(MARKER)) + 1  # the image follows the record line
        entry.write_bytes(blob[: start + _parts(entry)[0]["data_bytes"] // 2])
    elif damage == "garble-meta":
        entry.write_bytes(b"\x00\xffnot json")
    else:
        entry.unlink()

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 1
    assert r.done == 1 and not r[0].cached and r[0].data == first[0].data

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 0 and r[0].cached and r[0].data == first[0].data


def test_a_corrupted_thumbnail_is_rebuilt_from_the_image(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1")
    (entry,) = entry_files(oxen_env)
    _replace(entry, thumb=(_parts(entry)[2] or b"")[:20])

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 0 and r[0].cached
    assert r[0].thumb is not None
    with Image.open(io.BytesIO(r[0].thumb)) as image:
        image.load()  # a whole JPEG, not the damaged bytes
        assert image.format == "JPEG"


def test_a_thumbnail_cached_at_another_size_is_remade(shell: Any, hub: LocalHub) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1 --size 200")
    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1 --size 40")
    assert generate_count(hub) == 0 and r[0].cached
    assert r[0].thumb is not None
    assert max(Image.open(io.BytesIO(r[0].thumb)).size) <= 40


def test_a_remade_thumbnail_is_kept_for_the_next_rerun(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1 --size 200")
    magic(shell, hub, "--model z-image-turbo --seed 1 --size 40")
    (entry,) = entry_files(oxen_env)
    record, _, thumb = _parts(entry)
    assert record["thumb_size"] == 40
    r = magic(shell, hub, "--model z-image-turbo --seed 1 --size 40")
    assert r[0].thumb == thumb
    assert generate_count(hub) == 1


def test_unseeded_requests_are_not_cached(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    first = magic(shell, hub, "--model z-image-turbo")
    second = magic(shell, hub, "--model z-image-turbo")
    assert generate_count(hub) == 2
    assert all("seed" not in c.body for c in hub.generate_calls() if c.body is not None)
    assert not first[0].cached and not second[0].cached
    assert entry_files(oxen_env) == []


def test_the_api_key_is_never_written_to_the_cache(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    magic(shell, hub, "--model z-image-turbo,flux-2-dev --seed 1,2")
    magic(shell, hub, "--model z-image-turbo --seed 3 --format b64_json --namespace team")
    files = files_under(oxen_env)  # the runs' spool files too: they may go while we read
    assert len(entry_files(oxen_env)) == 5
    assert any("models" in p.parts for p in files)  # the saved descriptions are checked too
    assert hub.api_key is not None
    key = hub.api_key.encode()
    for path in files:
        assert key not in (read_if_there(path) or b""), path
        assert hub.api_key not in str(path)


def _unwritable_folder() -> Path:
    """A folder no one may write, not even root: sysfs refuses new files (Linux only)."""
    folder = Path("/sys") / f"oxen-magic-test-{os.getpid()}-{time.monotonic_ns()}"
    if not Path("/sys").is_dir():
        pytest.skip("needs Linux sysfs")
    return folder


def test_an_unwritable_cache_is_noted_once_and_the_images_still_come(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _unwritable_folder()
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(folder))
    first = magic(shell, hub, "--model z-image-turbo --seed 1")
    notes = [n for n in first.notes if n.startswith("Results will not be cached")]
    assert len(notes) == 1 and str(folder) in notes[0], first.notes
    assert first.done == 1 and generate_count(hub) == 1

    second = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert not [n for n in second.notes if n.startswith("Results will not be cached")]  # said once
    assert second.done == 1 and not second[0].cached and generate_count(hub) == 2
    assert not folder.exists()


def test_a_cache_path_with_a_file_in_the_way_is_refused_before_sending(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    shell.run_line_magic("config", f"OxenMagic.cache_dir = {str(blocker)!r}")
    captured, error = run_cell(shell, LINE, PROMPT)
    assert error is not None and "The cache folder" in error and "is a file, not a folder" in error
    assert generate_count(hub) == 0 and "Traceback" not in all_text(captured)


@pytest.mark.parametrize("change", [{"size": ["64", 64]}, {"mime": 7}, {"sha256": 1}, {"thumb_size": "x"}])
def test_an_entry_with_wrong_types_is_fetched_again_then_served(
    shell: Any, hub: LocalHub, oxen_env: Path, change: dict[str, Any]
) -> None:
    first = magic(shell, hub, "--model z-image-turbo --seed 1")
    (meta,) = entry_files(oxen_env)
    _rewrite(meta, **change)

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 1 and not r[0].cached and r[0].data == first[0].data

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 0 and r[0].cached


def test_an_entry_whose_image_is_not_an_image_is_fetched_again(
    shell: Any, hub: LocalHub, oxen_env: Path
) -> None:
    import hashlib

    first = magic(shell, hub, "--model z-image-turbo --seed 1")
    (meta,) = entry_files(oxen_env)
    lie = b"<html>not the picture</html>"
    _replace(meta, data=lie, sha256=hashlib.sha256(lie).hexdigest())  # consistent lie

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 1 and not r[0].cached and r[0].data == first[0].data


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["sha256", "thumb_size", "thumb_sha256", "mime", "size", "created", "other"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=4))
def test_any_json_in_a_record_reads_as_an_entry_or_as_damaged(changes: dict[str, Any]) -> None:
    """Whatever a record holds, `get` returns an entry whose fields the runner can use, or None."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        cache = Cache(folder)
        cache.put(HOST, BODY, IMAGE, THUMB, 64, mime="image/png", size=[64, 64], created=1)
        (meta,) = entry_files(Path(folder))
        _rewrite(meta, **changes)
        entry = cache.get(HOST, BODY, 64)
        if entry is not None:
            size = entry.meta.get("size")
            assert size is None or (isinstance(size, list) and [int(n) for n in size] == [64, 64])
            assert isinstance(entry.meta.get("mime"), (str, type(None)))
            assert entry.data == IMAGE


# -- several processes on one key (two notebooks running the same cell) ----------------------------

#: One process writing its own image under a shared key and reading the key back, over and over:
#: every read must find a whole entry (its own image or another's), never a mix or nothing.
HAMMER = r"""
import io, sys
from PIL import Image
from oxen_magic.network.cache import Cache

folder, who, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HOST, BODY = "http://127.0.0.1:8765", {"model": "z-image-turbo", "prompt": "a cube", "seed": 3}


def png(side, colour):
    out = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(out, format="PNG")
    return out.getvalue()


colours = ["red", "green", "blue", "white"]
mine, thumb = png(40 + who, colours[who]), png(8 + who, colours[who])
known = {png(40 + n, colours[n]): n for n in range(4)}
cache = Cache(folder)
torn = 0
for _ in range(rounds):
    cache.put(HOST, BODY, mine, thumb, 64, mime="image/png", size=[40 + who, 40 + who])
    entry = cache.get(HOST, BODY, 64)
    if entry is None or entry.data not in known or entry.meta.get("size") != [40 + known[entry.data]] * 2:
        torn += 1
print(torn)
"""


def hammer(folder: Path, processes: int, rounds: int) -> list[int]:
    """Run HAMMER in `processes` processes at once on one key; each one's count of torn reads."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(folder), str(n), str(rounds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    counts = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        counts.append(int(out.strip()))
    return counts


def test_processes_writing_and_reading_one_key_always_see_a_whole_entry(tmp_path: Path) -> None:
    """The three-file layout tore here (the record of one write with the image of another, or
    the record deleted by a reader that saw such a mix): thousands of failed reads, each a paid
    refetch. One file per entry, renamed into place, cannot tear."""
    assert hammer(tmp_path / "cache", processes=3, rounds=400) == [0, 0, 0]
    entry = Cache(tmp_path / "cache").get(HOST, BODY, 64)
    assert entry is not None and entry.thumb is not None  # whole, thumbnail included


#: Another notebook answering the same request: rewrite one key with its own image until told to stop.
WRITER = r"""
import io, json, sys
from pathlib import Path
from PIL import Image
from oxen_magic.network.cache import Cache

folder, host, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
who, stop = int(sys.argv[4]), Path(sys.argv[5])


def png(side, colour):
    out = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(out, format="PNG")
    return out.getvalue()


data, thumb = png(50 + who, ["blue", "green"][who]), png(12, "black")
cache = Cache(folder)
while not stop.exists():
    cache.put(host, body, data, thumb, 256, mime="image/png", size=[50 + who, 50 + who])
    stop.with_name(f"ready-{who}").touch()
"""


def test_a_damaged_entry_is_billed_once_while_other_processes_rewrite_it(
    hub: LocalHub, oxen_env: Path, tmp_path: Path
) -> None:
    """A damaged entry is fetched (and billed) at most once; while two other processes keep
    rewriting the same key (other notebooks running the cell), every rerun after that is answered
    from the cache: a race never makes a sound entry look damaged, so it is never billed again."""
    import oxen_magic

    grid = oxen_magic.generate(PROMPT, model="z-image-turbo", seed=1)
    (path,) = entry_files(oxen_env)
    _, data, _ = _parts(path)
    _replace(path, data=data[: len(data) // 2])  # damaged on disk
    assert grid[0].request is not None
    body = json.dumps(grid[0].request.key_body())
    stop = tmp_path / "stop"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(oxen_env), hub.url, body, str(n), str(stop)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    hub.reset()
    posts = []
    try:

        def ready(n: int) -> bool:
            assert writers[n].poll() is None, writers[n].communicate()[1]
            return (tmp_path / f"ready-{n}").exists()

        for n in range(2):  # both writers are at it
            wait_for(lambda n=n: ready(n), what=f"writer {n} starting")
        for _ in range(25):
            again = oxen_magic.generate(PROMPT, model="z-image-turbo", seed=1)
            assert again.done == 1
            posts.append(generate_count(hub))
    finally:
        stop.touch()
        errors = [w.communicate(timeout=60)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    assert posts[-1] <= 1, posts  # the damaged entry at most once, never again
