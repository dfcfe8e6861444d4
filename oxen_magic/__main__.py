"""`python -m oxen_magic ...`: the `oxen-image` command line (see cli.py)."""

from __future__ import annotations

from oxen_magic.frontends.cli import main

raise SystemExit(main())
