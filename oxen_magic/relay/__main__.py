"""`python -m oxen_magic.relay --help`."""

from .cli import main

main()
