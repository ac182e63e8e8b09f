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
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..progress import Progress as ProgressEvent
from ..progress import ProgressCallback


def _width(stream: object) -> int | None:
    """A pipe or a file has no width: render as wide as a log line may be, never cut at 80."""
    if "COLUMNS" in os.environ or getattr(stream, "isatty", lambda: False)():
        return None  # rich reads the terminal's width, or COLUMNS
    return 200


# Messages are never hard-wrapped (soft_wrap): a pipe, a log or a narrow terminal gets each
# line whole, and the terminal folds it.
console = Console(width=_width(sys.stdout), soft_wrap=True)
err_console = Console(stderr=True, width=_width(sys.stderr), soft_wrap=True)


def print_error(message: str) -> None:
    """One `error:` line on stderr, never hard-wrapped (a pipe keeps it whole)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records as single lines on whatever `sys.stderr` is now: a pipe keeps each record
    on one line (no wrapping, no padding), and under progress bars rich's proxy prints them
    above the bars."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(verbose: bool) -> None:
    """One handler for the library's loggers, on stderr so stdout stays clean for data."""
    handler = _StderrHandler()
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", datefmt="%H:%M:%S")
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True
    )
    # requests' connection pool chatter is noise even in verbose mode.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


@contextmanager
def errors_only(enabled: bool) -> Iterator[None]:
    """`--quiet`: cryptolake's warnings (a retried commit, say) are not printed meanwhile."""
    logger = logging.getLogger("cryptolake")
    before = logger.level
    if enabled:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[ProgressCallback]:
    """A progress callback showing one rich bar per (stage, task), on stderr.

    Only on a terminal: in a pipe or a log, bars are noise (the summary says what was done).
    """
    if not enabled or not err_console.is_terminal:
        yield lambda _event: None
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        # The time left at the rate so far (the pages of a `--top all` ingest, say).
        TimeRemainingColumn(),
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

    Nothing is cut: values and identifiers (a number, a run id, a table name, a timestamp)
    are kept whole on one line; prose (a detail, an error) folds onto more lines. `exact`
    shows every number with all its digits (for query results), not rounded. Print it with
    `print_table`, which widens the output rather than cut a kept-whole column.
    """
    table = Table(title=title, title_justify="left", header_style="bold")
    # Query results are data: a "[b]" in a value is text, not rich markup.
    # Values are text, never markup (an error may hold "[...]"); a cell that is already a
    # rich Text (a styled status) keeps its style.
    cells = [
        [v if isinstance(v, Text) else Text(fmt_exact(v) if exact else fmt(v)) for v in row]
        for row in rows
    ]
    for i, name in enumerate(columns):
        is_num = bool(rows) and all(
            isinstance(r[i], int | float) and not isinstance(r[i], bool) or r[i] is None
            for r in rows
        )
        texts = [row[i] for row in cells]
        whole = all(t.cell_len <= _WHOLE_WIDTH and t.plain.count(" ") <= 1 for t in texts)
        table.add_column(
            Text(name, style="bold") if exact else name,
            justify="right" if is_num else "left",
            overflow="fold",
            no_wrap=whole,
            # A column is at least as wide as its longest value (kept whole) or its longest
            # word (prose folds between words: no hint is broken mid-name).
            min_width=max([len(name), *(t.cell_len for t in texts)])
            if whole
            else max((len(w) for t in texts for w in t.plain.split()), default=1),
        )
    for row in cells:
        table.add_row(*row)
    return table


# Cells up to this long with at most one space are values and identifiers, kept whole.
_WHOLE_WIDTH = 48


def print_table(table: Table, *, to: Console | None = None) -> None:
    """Print `table`; wider than the terminal rather than cut a value (a pipe keeps it all)."""
    out = to or console
    needed = Measurement.get(out, out.options.update_width(10_000), table).minimum
    if needed <= out.width:
        out.print(table)
        return
    width = out.width
    out.width = needed  # print's own width= is capped at the console's
    try:
        out.print(table, crop=False)
    finally:
        out.width = width


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
