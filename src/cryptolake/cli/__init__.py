"""The command line: the only layer that imports typer and rich."""

from .app import app

__all__ = ["app"]
