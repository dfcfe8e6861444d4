"""`python -m oxen_magic ...`: the `oxen-image` command line (see cli.py)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
