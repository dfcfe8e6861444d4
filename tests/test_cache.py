"""The on-disk cache: unit tests of `Cache`, and its effect on `%%oxenimage` against the local hub."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import all_text, login_for, run_cell, shown_html

from oxen_magic.cache import Cache, default_dir
from oxen_magic.localhub import LocalHub
from oxen_magic.results import Results

HOST = "http://127.0.0.1:8765"
BODY = {"model": "z-image-turbo", "prompt": "a cube", "seed": 3}
LINE = "--model z-image-turbo --seed 1..3"
PROMPT = "a small brass robot"


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


def entry_files(folder: Path, suffix: str) -> list[Path]:
    """Cache entry files (not the saved model descriptions, not a run's spool, not temp files)."""
    if not folder.exists():
        return []
    return sorted(
        p
        for p in folder.rglob("*" + suffix)
        if p.is_file()
        and not {"models", "spool"} & set(p.relative_to(folder).parts)
        and not p.name.startswith(".tmp-")
    )


# -- unit: Cache ----------------------------------------------------------------------------------


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, b"image bytes", b"thumb bytes", 128, mime="image/png", size=[64, 64])
    entry = cache.get(HOST, BODY, 128)
    assert entry is not None
    assert entry.data == b"image bytes" and entry.thumb == b"thumb bytes"
    assert entry.meta["mime"] == "image/png" and entry.meta["size"] == [64, 64]
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temp files


def test_a_thumbnail_of_another_size_is_not_returned(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, b"image bytes", b"thumb", 128)
    entry = cache.get(HOST, BODY, 256)
    assert entry is not None and entry.data == b"image bytes" and entry.thumb is None


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
    cache.put(HOST, BODY, b"0123456789" * 10, b"thumb", 64)
    (meta,) = entry_files(tmp_path, ".json")
    (data,) = entry_files(tmp_path, ".img")
    if damage == "truncate-data":
        data.write_bytes(data.read_bytes()[:37])
    elif damage == "garble-meta":
        meta.write_text('{"sha256": ')
    elif damage == "delete-meta":
        meta.unlink()
    else:
        data.unlink()
    assert cache.get(HOST, BODY, 64) is None


def test_a_write_failure_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = Cache(blocker)
    cache.put(HOST, BODY, b"data", b"thumb", 64)  # must not raise
    assert cache.get(HOST, BODY, 64) is None


def test_a_damaged_thumbnail_is_dropped_but_the_image_kept(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.put(HOST, BODY, b"image bytes", b"thumbnail bytes", 64)
    (thumb,) = entry_files(tmp_path, ".thumb")
    thumb.write_bytes(b"thumbnail byt")
    entry = cache.get(HOST, BODY, 64)
    assert entry is not None and entry.data == b"image bytes" and entry.thumb is None


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
    assert len(entry_files(oxen_env, ".json")) == 3

    hub.reset()
    started = time.monotonic()
    shell.user_ns.pop("r", None)
    captured, error = run_cell(shell, LINE + " --out r", PROMPT)
    took = time.monotonic() - started
    assert error is None
    again = shell.user_ns["r"]
    assert generate_count(hub) == 0
    assert took < 1.0
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


def test_the_cache_is_per_host(shell: Any, hub: LocalHub) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1")
    with LocalHub(api_key=hub.api_key, image_size=32) as other:
        login_for(other)
        r = magic(shell, hub, f"--model z-image-turbo --seed 1 --host {other.url}")
        assert generate_count(other) == 1 and not r[0].cached


@pytest.mark.parametrize("damage", ["truncate-image", "garble-meta", "delete-meta"])
def test_a_corrupted_entry_is_fetched_again_then_served(
    shell: Any, hub: LocalHub, oxen_env: Path, damage: str
) -> None:
    first = magic(shell, hub, "--model z-image-turbo --seed 1")
    (data,) = entry_files(oxen_env, ".img")
    (meta,) = entry_files(oxen_env, ".json")
    if damage == "truncate-image":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "garble-meta":
        meta.write_bytes(b"\x00\xffnot json")
    else:
        meta.unlink()

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 1
    assert r.done == 1 and not r[0].cached and r[0].data == first[0].data

    hub.reset()
    r = magic(shell, hub, "--model z-image-turbo --seed 1")
    assert generate_count(hub) == 0 and r[0].cached and r[0].data == first[0].data


def test_a_corrupted_thumbnail_is_rebuilt_from_the_image(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    magic(shell, hub, "--model z-image-turbo --seed 1")
    (thumb,) = entry_files(oxen_env, ".thumb")
    thumb.write_bytes(thumb.read_bytes()[:20])

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
    (meta,) = entry_files(oxen_env, ".json")
    assert json.loads(meta.read_text())["thumb_size"] == 40
    (thumb,) = entry_files(oxen_env, ".thumb")
    r = magic(shell, hub, "--model z-image-turbo --seed 1 --size 40")
    assert r[0].thumb == thumb.read_bytes()
    assert generate_count(hub) == 1


def test_unseeded_requests_are_not_cached(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    first = magic(shell, hub, "--model z-image-turbo")
    second = magic(shell, hub, "--model z-image-turbo")
    assert generate_count(hub) == 2
    assert all("seed" not in c.body for c in hub.generate_calls() if c.body is not None)
    assert not first[0].cached and not second[0].cached
    assert entry_files(oxen_env, ".json") == [] and entry_files(oxen_env, ".img") == []


def test_the_api_key_is_never_written_to_the_cache(shell: Any, hub: LocalHub, oxen_env: Path) -> None:
    magic(shell, hub, "--model z-image-turbo,flux-2-dev --seed 1,2")
    magic(shell, hub, "--model z-image-turbo --seed 3 --format b64_json --namespace team")
    files = [p for p in oxen_env.rglob("*") if p.is_file()]
    assert len(entry_files(oxen_env, ".img")) == 5
    assert any("models" in p.parts for p in files)  # the saved descriptions are checked too
    assert hub.api_key is not None
    key = hub.api_key.encode()
    for path in files:
        assert key not in path.read_bytes(), path
        assert hub.api_key not in str(path)
