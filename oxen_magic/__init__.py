"""oxen_magic: generate image grids from notebooks with the Oxen.ai inference API.

%load_ext oxen_magic

%%oxenimage --model flux-2-dev,black-forest-labs-flux-2-klein-4b --seed 1..4
a red cube on a white background
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .panel import Panel


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext oxen_magic`: register the magics and make them `%config`-urable."""
    from .magic import OxenMagic

    magic = OxenMagic(shell=ipython, parent=ipython)
    ipython.register_magics(magic)
    if magic not in ipython.configurables:
        ipython.configurables.append(magic)


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
    from .panel import Panel

    shell = get_ipython()
    magic = None
    if shell is not None:
        magic = next((m for m in shell.configurables if isinstance(m, OxenMagic)), None)
    return Panel(magic=magic or OxenMagic(shell=shell), **defaults)
