"""rich rendering for the CLI: progress bars driven by stage callbacks, summary tables."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..progress import Progress as ProgressEvent
from ..progress import ProgressCallback


def _width(stream: object) -> int | None:
    """A pipe or a file has no width: render as wide as a log line may be, never cut at 80."""
    if "COLUMNS" in os.environ or getattr(stream, "isatty", lambda: False)():
        return None  # rich reads the terminal's width, or COLUMNS
    return 200


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def print_error(message: str) -> None:
    """One `error:` line on stderr, never hard-wrapped (a pipe keeps it whole)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def setup_logging(verbose: bool) -> None:
    """One handler for the library's loggers, on stderr so stdout stays clean for data."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=verbose, rich_tracebacks=False)],
        force=True,
    )
    # requests' connection pool chatter is noise even in verbose mode.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[ProgressCallback]:
    """A progress callback showing one rich bar per (stage, task), on stderr."""
    if not enabled:
        yield lambda _event: None
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    tasks: dict[tuple[str, str], Any] = {}

    def on_progress(event: ProgressEvent) -> None:
        # Started on the first event, so a command that fails early prints only its error.
        if not tasks:
            bars.start()
        key = (event.stage, event.task)
        if key not in tasks:
            tasks[key] = bars.add_task(
                f"{event.stage}: {event.task}", total=event.total, detail=event.detail
            )
        bars.update(tasks[key], completed=event.completed, total=event.total, detail=event.detail)

    try:
        yield on_progress
    finally:
        if tasks:
            bars.stop()


def summary_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    exact: bool = False,
) -> Table:
    """A table whose numeric columns are right-aligned and thousands-separated.

    Nothing is cut with an ellipsis: a cell too wide for its column folds onto more lines.
    `exact` shows every number with all its digits (for query results), not rounded.
    """
    table = Table(title=title, title_justify="left", header_style="bold")
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows) and bool(rows)
        for i in range(len(columns))
    ]
    for name, is_num in zip(columns, numeric, strict=True):
        table.add_column(name, justify="right" if is_num else "left", overflow="fold")
    show = fmt_exact if exact else fmt
    for row in rows:
        table.add_row(*(show(v) for v in row))
    return table


def fmt_exact(value: Any) -> str:
    """A value as it is stored: 0.999602 stays 0.999602, 326407877229.0 keeps every digit."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return f"{value:.1f}" if abs(value) < 1e16 else repr(value)
    return str(value)


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e15:
            return f"{value:,.2f}"
        return f"{value:.4g}"
    return str(value)
