"""oxen_magic: generate image grids from notebooks with the Oxen.ai inference API.

%load_ext oxen_magic

%%oxenimage --model flux-2-dev,black-forest-labs-flux-2-klein-4b --seed 1..4
a red cube on a white background
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .pack import PackReport
    from .results import Results
    from .widget import Panel


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext oxen_magic`: register the magics and make them `%config`-urable."""
    from .magic import OxenMagic

    magic = OxenMagic(shell=ipython, parent=ipython)
    ipython.register_magics(magic)
    if magic not in ipython.configurables:
        ipython.configurables.append(magic)


_local_hub: Any = None


def connect(host: str | None = None) -> str:
    """Say which API this session uses; with no key anywhere, start the local hub and use it.

    The local hub draws labelled placeholder images on this machine and bills nothing, so a
    workshop can rehearse offline. Returns the base URL in use.
    """
    import os

    from .client import DEFAULT_HOST, find_key, normalize_host

    global _local_hub
    target = normalize_host(host or os.environ.get("OXEN_HOST") or DEFAULT_HOST)
    if host:
        os.environ["OXEN_HOST"] = target
    if find_key(target):
        print(f"Using the Oxen API at {target}.")
        return target
    if _local_hub is None:
        from .localhub import LocalHub

        _local_hub = LocalHub(image_size=512).start()
    os.environ["OXEN_HOST"] = _local_hub.url
    os.environ["OXEN_API_KEY"] = _local_hub.api_key or "local-demo-key"
    print(
        f"No OXEN_API_KEY found: using the local Oxen hub at {_local_hub.url} "
        "(placeholder images, nothing billed)."
    )
    return str(_local_hub.url)


def login(host: str | None = None) -> None:
    """Ask for the API key without echoing it; it is kept for this Python process only."""
    import getpass
    import os

    from .client import DEFAULT_HOST, remember_key

    target = host or os.environ.get("OXEN_HOST") or DEFAULT_HOST
    key = getpass.getpass(f"Oxen API key for {target} (from your oxen.ai profile settings): ").strip()
    if not key:
        print("No key entered; nothing changed.")
        return
    remember_key(target, key)
    print(f"Key saved for this session ({target}); it is not written anywhere.")


def panel(**defaults: Any) -> Panel:
    """The point-and-click panel; keyword arguments are initial values (model=..., seed=...)."""
    from IPython import get_ipython

    from .magic import OxenMagic
    from .widget import Panel

    shell = get_ipython()
    magic = None
    if shell is not None:
        magic = next((m for m in shell.configurables if isinstance(m, OxenMagic)), None)
    return Panel(magic=magic or OxenMagic(shell=shell), **defaults)


def export_pack(path: str, **filters: Any) -> PackReport:
    """Write what the cache holds for some cells as one offline pack (a zip); see `pack.export_pack`.

    `oxen_magic.export_pack("workshop.zip", notebook="workshop.ipynb")` keeps the images of
    hub.oxen.ai whose prompts that notebook's cells write.
    """
    from .pack import export_pack as export

    return export(path, **filters)


def import_pack(path: str, **options: Any) -> PackReport:
    """Add an offline pack's images to this machine's cache (checked first); see `pack.import_pack`."""
    from .pack import import_pack as import_

    return import_(path, **options)


def latest(**fields: Any) -> Results:
    """The most recent grid made in this session, whatever it was named (see `results.latest`).

    `oxen_magic.latest(prompt="a paper boat on a pond")`: the newest grid with that prompt.
    """
    from .results import latest as find

    return find(**fields)
