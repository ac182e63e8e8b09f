"""The progress protocol between library stages and whoever displays them.

Stages never print. They call an optional `ProgressCallback` with `Progress` events; the CLI
renders them with rich, a notebook can log them, tests can collect them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """Where one task of a stage stands: `completed` of `total` units (None: unknown)."""

    stage: str
    task: str
    completed: int
    total: int | None = None
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """The default callback: stages run silently."""
