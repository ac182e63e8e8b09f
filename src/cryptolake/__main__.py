"""`python -m cryptolake` runs the CLI."""

from .cli import main

main()
