"""The command line: the only layer that imports typer and rich."""

from . import pipeline_cmds  # noqa: F401 - registers `run` and `status` on the app
from .app import app, main

__all__ = ["app", "main"]
