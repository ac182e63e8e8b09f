"""rich rendering for the CLI: progress bars driven by stage callbacks, summary tables."""

from __future__ import annotations

import logging
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

console = Console()
err_console = Console(stderr=True)


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


def summary_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table whose numeric columns are right-aligned and thousands-separated."""
    table = Table(title=title, title_justify="left", header_style="bold")
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows) and bool(rows)
        for i in range(len(columns))
    ]
    for name, is_num in zip(columns, numeric, strict=True):
        table.add_column(name, justify="right" if is_num else "left")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    return table


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
