"""The `cryptolake` command's entry point, kept light on purpose.

It handles Ctrl-C and SIGTERM from the first instruction (loading DuckDB, pyarrow and rich
takes a second or two, and a Ctrl-C then must still be one line), then loads the CLI.
"""

from __future__ import annotations

import sys

from . import interrupts


def main() -> None:
    """Run the `cryptolake` command line."""
    interrupts.install()
    try:
        from .cli import app
    except KeyboardInterrupt:
        how = interrupts.interrupted_by() or "Ctrl-C"
        sys.stderr.write(f"error: interrupted ({how}) while starting; nothing was done.\n")
        raise SystemExit(143 if how == "SIGTERM" else 130) from None
    app()
