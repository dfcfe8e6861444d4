"""`oxen_magic.doctor()` (issue 19, item 5): the 0:05 report, run in a real IPython shell
against the local hub, with a good key, a wrong key, no key and an unreachable host.

Each case checks what the report says, that it never shows the key, and that the hub saw
model reads only: nothing billable (no generate or edit request) is ever sent.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output
from support import all_text

import oxen_magic
from oxen_magic.localhub import LocalHub
from oxen_magic.network.cache import Cache


def _doctor(shell: Any) -> tuple[str, str]:
    """Run the cell a student runs; (everything shown, the HTML)."""
    with capture_output() as out:
        result = shell.run_cell("import oxen_magic\noxen_magic.doctor()")
    assert result.error_in_exec is None and result.error_before_exec is None
    html = shell.display_formatter.format(result.result)[0]["text/html"]  # what a notebook shows
    assert "Traceback" not in out.stdout + out.stderr
    return all_text(out), html


def _billable(hub: LocalHub) -> list[Any]:
    return [r for r in hub.requests if r.method != "GET" or "/images/" in r.path]


def test_a_good_key_is_accepted_by_a_model_read_and_nothing_is_billed(shell: Any, hub: LocalHub) -> None:
    text, html = _doctor(shell)
    netloc = hub.url.split("://")[1]
    assert "✓ key" in text and "from the OXEN_API_KEY variable" in text and f"{netloc} accepted it" in text
    assert f"✓ host          {netloc} answered:" in text and "image models listed" in text
    assert "all good" in text and f"cells go to   {hub.url}" in text
    assert f"oxen_magic {oxen_magic.__version__}" in text
    assert hub.api_key and hub.api_key not in text
    assert [r.path.split("?")[0] for r in hub.requests] == ["/api/ai/models"]
    assert not _billable(hub)
    assert "<table>" in html and "✓" in html


def test_a_wrong_key_says_the_host_refused_it(
    shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXEN_API_KEY", "wrong-key-d0c70r")
    text, _ = _doctor(shell)
    assert "refused it (HTTP 401); run oxen_magic.login() again" in text
    assert "✗ key" in text and "something needs fixing" in text
    assert "wrong-key-d0c70r" not in text
    assert not _billable(hub)


def test_no_key_says_none_found(shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    text, _ = _doctor(shell)
    assert "✗ key" in text and "none found for" in text and "oxen_magic.login()" in text
    assert "✓ host" in text  # it answered (a 401 is an answer)
    assert not _billable(hub)


def test_an_unreachable_host_is_one_line_and_no_traceback(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OXEN_HOST", f"http://127.0.0.1:{port}")
    text, _ = _doctor(shell)
    host_lines = [line for line in text.splitlines() if line.startswith("✗ host")]
    assert len(host_lines) == 1 and f"Cannot connect to http://127.0.0.1:{port}" in host_lines[0]
    assert "from the OXEN_API_KEY variable; not checked" in text


def test_key_sources_pack_images_budget_and_cache(
    shell: Any, hub: LocalHub, oxen_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hub.api_key
    monkeypatch.delenv("OXEN_API_KEY")
    netloc = hub.url.split("://")[1]
    config = tmp_path / "oxen-config" / "auth_config.toml"
    config.write_text(f'[[host_configs]]\nhost = "{netloc}"\nauth_token = "{hub.api_key}"\n')
    assert "from the Oxen CLI config" in _doctor(shell)[0]
    oxen_magic.current_session().keys.remember(hub.url, hub.api_key)
    assert "from oxen_magic.login()" in _doctor(shell)[0]
    # two images of hub.oxen.ai in the cache (a pack's), one of another host
    cache = Cache(oxen_env)
    png = (Path(__file__).parent.parent / "docs" / "grid.png").read_bytes()
    for seed in (1, 2):
        cache.put("https://hub.oxen.ai", {"model": "m", "prompt": "p", "seed": seed}, png, None, 64)
    cache.put(hub.url, {"model": "m", "prompt": "p", "seed": 3}, png, None, 64)
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "2")
    text, _ = _doctor(shell)
    assert "✓ offline pack  2 image(s) cached for hub.oxen.ai" in text
    assert "$2.00 left of $2.00 (spent $0.000)" in text
    assert f"✓ cache folder  {oxen_env} (writable)" in text
    monkeypatch.setenv("OXEN_MAGIC_MAX_SPEND", "lots")
    text, _ = _doctor(shell)
    assert "✗ budget" in text and "is not an amount of dollars" in text
    assert hub.api_key not in text and not _billable(hub)


def test_everything_in_the_html_is_escaped(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "<b>cache&co</b>"
    monkeypatch.setenv("OXEN_MAGIC_CACHE_DIR", str(odd))
    _, html = _doctor(shell)
    assert "<b>cache" not in html and "&lt;b&gt;cache&amp;co&lt;/b&gt;" in html


def test_after_a_fallback_to_the_local_hub_it_says_so(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    monkeypatch.delenv("OXEN_HOST")
    shell.run_cell("import oxen_magic")
    with capture_output():
        shell.run_cell('oxen_magic.connect("local")')
    text, _ = _doctor(shell)
    hub = oxen_magic.current_session().local_hub
    assert f"cells go to      {hub.url} (the local hub: placeholder images, nothing billed)" in text
    assert "from the local hub's own key (connect())" in text and "accepted it" in text
    assert "hub.oxen.ai key  none found; oxen_magic.login() to use it" in text
    assert hub.api_key not in text
    assert not [r for r in hub.requests if r.method != "GET" or "/images/" in r.path]
