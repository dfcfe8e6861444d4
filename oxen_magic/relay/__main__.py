"""`python -m oxen_magic.relay --help`."""

from oxen_magic.relay.cli import main

main()
