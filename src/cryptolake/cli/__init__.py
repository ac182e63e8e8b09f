"""The command line: the only layer that imports typer and rich."""

# Importing the command modules registers their commands on the app.
from . import lake_cmds, pipeline_cmds, read_cmds  # noqa: F401
from .app import app, main

__all__ = ["app", "main"]
