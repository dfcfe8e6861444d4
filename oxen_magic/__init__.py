"""oxen_magic: generate image grids from notebooks with the Oxen.ai inference API.

%load_ext oxen_magic

%%oxenimage --model flux-2-dev,black-forest-labs-flux-2-klein-4b --seed 1..4
a red cube on a white background
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from oxen_magic.core.errors import UsageProblem
    from oxen_magic.exports.pack import PackReport
    from oxen_magic.frontends.doctor import doctor
    from oxen_magic.frontends.exercises import check, exercise
    from oxen_magic.frontends.panel import Panel
    from oxen_magic.frontends.python_api import generate, models, spend
    from oxen_magic.results.results import Results
    from oxen_magic.session.session import Session, current_session

#: Loaded on first use, so `%load_ext oxen_magic` does not pay for Pillow and requests.
_LAZY = {
    "generate": "frontends.python_api",
    "check": "frontends.exercises",
    "exercise": "frontends.exercises",
    "doctor": "frontends.doctor",
    "models": "frontends.python_api",
    "spend": "frontends.python_api",
    "UsageProblem": "core.errors",
    "Results": "results.results",
    "Session": "session.session",
    "current_session": "session.session",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Results",
    "Session",
    "UsageProblem",
    "check",
    "connect",
    "current_session",
    "doctor",
    "exercise",
    "generate",
    "load_ipython_extension",
    "login",
    "models",
    "panel",
    "spend",
]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext oxen_magic`: register the magics and make them `%config`-urable."""
    from oxen_magic.frontends.magic import OxenMagic

    magic = OxenMagic(shell=ipython, parent=ipython)
    ipython.register_magics(magic)
    if magic not in ipython.configurables:
        ipython.configurables.append(magic)


def connect(host: str | None = None) -> str:
    """Say in one line where cells will go; `"local"`, or no key anywhere, starts the local hub.

    The local hub draws labelled placeholder images on this machine and bills nothing, so a
    workshop can rehearse offline; it has its own key, kept for this process only. Images this
    machine's cache holds for the real API (an imported offline pack) still answer first: only
    what they cannot answer is drawn, and the grid marks those cells "placeholder". Its results
    are cached under the name "local", so they are reused after a restart. `login()` later
    switches the session back to the real API.

    Returns the base URL in use (also `current_session().where()`). Nothing is written to
    `os.environ`: OXEN_HOST and OXEN_API_KEY stay what the user set, so no other code finds a
    local hub's address or key there after a login moved the session on.
    """
    from oxen_magic.network.client import find_key
    from oxen_magic.session.session import LOCAL, current_session

    session = current_session()
    if not (host and host.strip().lower() == LOCAL):
        # the real API even when an earlier connect() fell back: rerunning a setup cell after a
        # login() must not call the local hub "the Oxen API", nor leave the session on it
        target = session.real_api(host)
        if host or session.settings.host.strip().lower() == LOCAL:
            session.configure(host=target)
        if find_key(target, keys=session.keys):
            print(f"Cells go to the Oxen API at {target} (your key is used; images are billed).")
            return target
    url = session.local_hub_url()
    session.configure(host=LOCAL)
    why = "" if host else "No OXEN_API_KEY found: "
    real = session.real_host()
    if real is None:  # a key is known: the local hub was asked for by name
        print(f"{why}using the local Oxen hub at {url} (placeholder images, nothing billed).")
        return url
    print(
        f"{why}using the local Oxen hub at {url}: cached images of {real} (an imported pack) first, "
        f"placeholders for the rest, nothing billed; oxen_magic.login() switches to {real}."
    )
    return url


def login(host: str | None = None) -> None:
    """Ask for the API key without echoing it, keep it for this Python process only, and send the
    next cells to that API (the session leaves the local hub a `connect()` fell back to).

    The host is the one given, else the API the session would use without the local hub
    (`%config OxenMagic.host`, else OXEN_HOST, else https://hub.oxen.ai); the prompt names it.
    """
    import getpass

    from oxen_magic.session.session import current_session

    session = current_session()
    target = session.real_api(host)
    key = getpass.getpass(f"Oxen API key for {target} (from your oxen.ai profile settings): ").strip()
    if not key:
        print("No key entered; nothing changed.")
        return
    session.use_key(target, key)
    print(f"Key saved for this session only (not written anywhere); cells now go to {target}.")


def panel(**defaults: Any) -> Panel:
    """The point-and-click panel; keyword arguments are initial values (model=..., seed=...)."""
    from IPython import get_ipython

    from oxen_magic.frontends.panel import Panel

    return Panel(shell=get_ipython(), **defaults)


def export_pack(path: str, **filters: Any) -> PackReport:
    """Write what the cache holds for some cells as one offline pack (a zip); see `pack.export_pack`.

    `oxen_magic.export_pack("workshop.zip", notebook="workshop.ipynb")` keeps the images of
    hub.oxen.ai whose prompts that notebook's cells write.
    """
    from oxen_magic.exports.pack import export_pack as export

    return export(path, **filters)


def import_pack(path: str, **options: Any) -> PackReport:
    """Add an offline pack's images to this machine's cache (checked first); see `pack.import_pack`."""
    from oxen_magic.exports.pack import import_pack as import_

    return import_(path, **options)


def latest(**fields: Any) -> Results:
    """The most recent grid made in this session, whatever it was named (see `state.RecentGrids`).

    `oxen_magic.latest(prompt="a paper boat on a pond")`: the newest grid with that prompt.
    """
    from oxen_magic.session.session import current_session

    return current_session().state.grids.latest(**fields)
