"""`python -m oxen_magic.localhub --port 8765 --latency 0.5 --key KEY` (see `cli.py`)."""

from oxen_magic.localhub.cli import main

main()
