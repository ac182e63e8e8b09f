"""`python -m cryptolake` runs the CLI."""

from .entry import main

main()
