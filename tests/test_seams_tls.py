"""Seams on the real day's default host (the TLS stand-in for https://hub.oxen.ai, no OXEN_HOST):
the edit route's fallback is remembered for that host, the result files are presigned, the key
reaches only hub.oxen.ai, and the durable ledger counts each image once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from realday_support import REAL_URL, StandIn, hosts_seen
from test_realday import hub, oxen_env, real  # noqa: F401  (the real day's fixtures)

import oxen_magic
from oxen_magic.session.session import current_session

KONTEXT = "flux-kontext-dev"  # an edit model: needs an input image


def test_an_edit_falls_back_once_on_the_default_host_and_is_billed_once(
    real: StandIn,  # noqa: F811
    oxen_env: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "1.00")
    picture = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (20, 120, 200)).save(picture)
    real.hub.input_route, real.hub.missing_route_status = "generate", 405  # the docs' other reading
    first: Any = oxen_magic.generate("paint it blue", model=KONTEXT, input_image=str(picture), seed=1)
    assert first.done == 1
    second: Any = oxen_magic.generate("paint it red", model=KONTEXT, input_image=str(picture), seed=1)
    assert second.done == 1
    posts = [(r.path, r.status) for r in real.hub.requests if r.method == "POST"]
    assert posts == [
        ("/api/ai/images/edit", 405),
        ("/api/ai/images/generate", 200),
        ("/api/ai/images/generate", 200),  # remembered for hub.oxen.ai
    ]
    assert current_session().routes[REAL_URL] == {KONTEXT: "/api/ai/images/generate"}
    assert hosts_seen(real.hub) <= {"hub.oxen.ai"}
    spent = oxen_magic.spend()
    assert spent.user_images == 2 and real.hub.billed == 2 and spent.held == 0
    cache_files = [p.read_bytes() for p in oxen_env.rglob("*") if p.is_file()]
    assert not any(real.key.encode() in blob for blob in cache_files)
