"""`oxen_magic.doctor()`: the one short report a student runs at 0:05 of a workshop.

It answers the questions an instructor otherwise walks the room to ask: which host cells go to,
where the key came from and whether that host accepted it, whether the host can be reached at
all, how many images the cache holds for hub.oxen.ai (what an imported pack put there), the
budget and what is left of it, the cache folder, and the version. The only request it sends is
one model read (`GET /api/ai/models`), which the API does not bill; it never generates, and the
key itself is never shown (only where it came from).

(Named `checkup`, not `doctor`: a submodule named like the function would replace
`oxen_magic.doctor` with the module once imported.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from oxen_magic.core.errors import AuthError, NetworkError, OxenError, UsageProblem
from oxen_magic.display.html import NO_MATH, esc

if TYPE_CHECKING:
    from oxen_magic.network.keys import KeyStore

#: How long the reachability check may take: a lost network should answer in seconds.
TIMEOUT = (4.0, 15.0)
DEADLINE = 20.0
OK, BAD, INFO = "✓", "✗", "·"


@dataclass(frozen=True)
class Line:
    mark: str
    label: str
    text: str


@dataclass
class Report:
    """The doctor's findings, one line each; `ok` is False when something needs fixing."""

    version: str
    lines: list[Line] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(line.mark != BAD for line in self.lines)

    def add(self, mark: str, label: str, text: str) -> None:
        self.lines.append(Line(mark, label, text))

    def __repr__(self) -> str:
        width = max(len(line.label) for line in self.lines) if self.lines else 0
        head = f"oxen_magic {self.version}: " + ("all good." if self.ok else "something needs fixing (✗).")
        return "\n".join([head, *(f"{ln.mark} {ln.label:<{width}}  {ln.text}" for ln in self.lines)])

    __str__ = __repr__

    def _repr_html_(self) -> str:
        head = esc(repr(self).splitlines()[0])
        rows = "".join(
            f"<tr><td>{esc(ln.mark)}</td><th style='text-align:left'>{esc(ln.label)}</th>"
            f"<td style='text-align:left'>{esc(ln.text)}</td></tr>"
            for ln in self.lines
        )
        return f'<div class="{NO_MATH}"><b>{head}</b><table>{rows}</table></div>'


def key_source(host: str, env: Mapping[str, str] | None = None, keys: KeyStore | None = None) -> str | None:
    """Where the key for `host` comes from (never the key): login(), OXEN_API_KEY, the Oxen CLI
    config, or None. Asks `find_key` with each later source taken away, so the order is its own."""
    from oxen_magic.network.keys import find_key

    env = dict(os.environ if env is None else env)
    if find_key(host, env, keys) is None:
        return None
    nowhere = {"OXEN_CONFIG_DIR": os.devnull}  # a "folder" no config file can be read from
    if find_key(host, nowhere, keys) is not None:
        return "oxen_magic.login()"
    if find_key(host, {**env, **nowhere}) is not None:
        return "the OXEN_API_KEY variable"
    return "the Oxen CLI config (auth_config.toml)"


def _cached_images(folder: object, host: str) -> int:
    """Sound cache entries filed under `host` (a pack's images, or an earlier run's)."""
    from oxen_magic.exports.pack import _hosts
    from oxen_magic.network.cache import Cache

    cache = Cache(str(folder))
    hosts = _hosts(host)
    count = 0
    for meta_path in cache.entry_files():
        entry = cache.read_entry(meta_path)
        if entry is not None and entry.meta.get("host") in hosts:
            count += 1
    return count


def _key_and_host(report: Report, target: str, local: bool, keys: KeyStore) -> None:
    """The key's source, then one model read: reachable? accepted?"""
    from oxen_magic.network.client import OxenClient

    netloc = urlsplit(target).netloc
    source = "the local hub's own key (connect())" if local else key_source(target, keys=keys)
    other = os.environ.get("OXEN_API_KEY", "").strip() and source is None
    client = OxenClient(target, pool_size=1, timeout=TIMEOUT, max_retries=1, deadline=DEADLINE, keys=keys)
    try:
        listed = len(client.models())
    except AuthError as exc:
        report.add(OK, "host", f"{netloc} answered.")
        if source is None:
            text = f"none found for {netloc}, and it refuses keyless reads; run oxen_magic.login()."
            report.add(BAD, "key", text)
        else:
            text = f"from {source}: {netloc} refused it (HTTP {exc.status}); run oxen_magic.login() again."
            report.add(BAD, "key", text)
        return
    except NetworkError as exc:
        report.add(BAD, "host", f"{exc} (cached cells still answer)")
        if source:
            report.add(INFO, "key", f"from {source}; not checked (no answer from {netloc}).")
        else:
            report.add(BAD, "key", f"none found for {netloc}; run oxen_magic.login() when back online.")
        return
    except OxenError as exc:
        report.add(BAD, "host", f"{netloc} answered with an error: {exc}")
        return
    finally:
        client.close()
    report.add(OK, "host", f"{netloc} answered: {listed} image models listed.")
    if source is None:
        why = "OXEN_API_KEY is set, but for another host; " if other else ""
        report.add(BAD, "key", f"none found for {netloc}; {why}run oxen_magic.login() (images need one).")
    else:
        report.add(OK, "key", f"from {source}; {netloc} accepted it (a model read, not billed).")


def doctor(host: str | None = None) -> Report:
    """Check this kernel's setup for a workshop: key, host, packs, budget, cache, version.

    `host`: check another host than the one cells go to. Sends one model read, nothing billed.
    """
    from oxen_magic import __version__
    from oxen_magic.core.money import dollars, left_of
    from oxen_magic.network.client import DEFAULT_HOST
    from oxen_magic.session.session import current_session

    report = Report(__version__)
    session = current_session()
    try:
        target = session.base_url(host)
    except UsageProblem as exc:
        report.add(BAD, "cells go to", str(exc))
        target = ""
    if target:
        hub = session.local_hub
        local = hub is not None and target == hub.url
        what = " (the local hub: placeholder images, nothing billed)" if local else ""
        report.add(INFO, "cells go to", target + what)
        _key_and_host(report, target, local, session.keys)
        if local:  # the real API's key matters for the next cell after a login()
            real = key_source(DEFAULT_HOST, keys=session.keys)
            found = f"from {real} (not checked)" if real else "none found; oxen_magic.login() to use it"
            report.add(INFO, "hub.oxen.ai key", found)
    cache_dir = session.cache().folder
    try:
        packed = _cached_images(cache_dir, DEFAULT_HOST)
    except OSError as exc:
        packed = 0
        report.add(BAD, "offline pack", f"cannot read the cache ({exc.strerror or exc}).")
    else:
        report.add(
            OK if packed else INFO,
            "offline pack",
            f"{packed} image(s) cached for hub.oxen.ai (from a pack or earlier runs)"
            + ("" if packed else "; python -m oxen_magic pack import FILE adds a pack's."),
        )
    try:
        budget = session.max_spend()
    except UsageProblem as exc:
        report.add(BAD, "budget", str(exc))
    else:
        spent = session.spend().total
        if budget:
            left = max(0.0, budget - spent)
            text = f"{left_of(left, budget)} (spent {dollars(spent)})."
            report.add(OK if left else BAD, "budget", text)
        else:
            text = f"none set (spent {dollars(spent)}); %config OxenMagic.max_spend = 2.5 sets one."
            report.add(INFO, "budget", text)
    _cache_line(report, cache_dir)
    return report


def _cache_line(report: Report, folder: object) -> None:
    from oxen_magic.core.validate import folder_problem

    try:
        problem = folder_problem(str(folder), "cache", keep=True)
    except UsageProblem as exc:
        report.add(BAD, "cache folder", str(exc))
        return
    if problem:
        report.add(BAD, "cache folder", f"{folder} cannot be written ({problem}); set OXEN_MAGIC_CACHE_DIR.")
    else:
        report.add(OK, "cache folder", f"{folder} (writable)")
