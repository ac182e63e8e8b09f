"""The commands that look at the lake: `query`, `shell` and `report`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import typer

from ..lakedb import JSON_METADATA, query
from ..settings import Settings
from ..shell import EXAMPLE_QUERIES, shell_argv
from .app import command, user_errors, verbose_after_command
from .options import LakeOpt, VerboseOpt
from .render import console, err_console, print_table, summary_table


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()  # ISO 8601, with a T
    return str(value)


def json_rows(result: pa.Table) -> list[dict[str, Any]]:
    """The rows as JSON objects: timestamps in ISO 8601, JSON columns nested, not quoted."""
    names = unique_names(result.column_names)
    columns = []
    for field, column in zip(result.schema, result.columns, strict=True):
        values = column.to_pylist()
        if (field.metadata or {}).get(JSON_METADATA):
            values = [None if v is None else json.loads(v) for v in values]
        columns.append(values)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique as DuckDB does in a subquery: a, a -> a, a_1."""
    seen: set[str] = set()
    out = []
    for name in names:
        while name in seen:
            name = f"{name}_1"
        seen.add(name)
        out.append(name)
    return out


def table_rows(result: pa.Table) -> list[list[Any]]:
    """The rows as lists, column by column (two columns may share a name)."""
    return [list(row) for row in zip(*(c.to_pylist() for c in result.columns), strict=True)]


@command("query")
def query_cmd(
    sql: Annotated[
        str, typer.Argument(help="One SQL statement to run on the lake (read-only).", metavar="SQL")
    ],
    lake: LakeOpt = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table (rich), csv or json (one array).")
    ] = OutputFormat.table,
    verbose: VerboseOpt = False,
) -> None:
    """Run one SQL query on the lake database and print the result."""
    verbose_after_command(verbose)
    with user_errors():
        result = query(Settings.resolve(lake=lake), sql)
    if result.num_columns == 0:
        err_console.print("the statement ran; it returns no rows.")
    elif output is OutputFormat.csv:
        buffer = io.BytesIO()
        pa_csv.write_csv(result, buffer)
        sys.stdout.write(buffer.getvalue().decode())
    elif output is OutputFormat.json:
        sys.stdout.write(json.dumps(json_rows(result), default=_json_value, indent=2) + "\n")
    else:
        print_table(summary_table("", result.column_names, table_rows(result), exact=True))
        console.print(f"[dim]{result.num_rows} rows[/]")


@command("shell")
def shell_cmd(
    lake: LakeOpt = None,
    sql: Annotated[
        str | None, typer.Option("-c", "--command", help="Run this SQL and exit.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Open the DuckDB CLI on the lake database, read-only, with example queries."""
    verbose_after_command(verbose)
    with user_errors():
        argv = shell_argv(Settings.resolve(lake=lake), command=sql)
    if sql is None:
        err_console.print("[bold]Example queries[/] (tables: silver.*, gold.*, meta.*):")
        for example in EXAMPLE_QUERIES:
            err_console.print(f"  {example}", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    completed = subprocess.run(argv, check=False)
    raise typer.Exit(completed.returncode)


@command("report")
def report_cmd(
    lake: LakeOpt = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="HTML file to write (the lake may be read-only)."),
    ] = Path("report.html"),
    verbose: VerboseOpt = False,
) -> None:
    """Write a self-contained HTML report of the gold tables, with charts (opens offline)."""
    from ..report import build_report

    verbose_after_command(verbose)
    with user_errors():
        result = build_report(Settings.resolve(lake=lake), out=out)
    console.print(
        f"report written to {result.path} ({result.bytes:,} bytes)", highlight=False, soft_wrap=True
    )
