"""The commands that look at the lake: `query`, `shell` and `report`."""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..catalog import open_lake, parse_as_of
from ..errors import ConfigError
from ..fserrors import cause_of
from ..lakedb import query
from ..settings import Settings
from ..shell import EXAMPLE_QUERIES, shell_argv, shell_env
from .app import command, user_errors, verbose_after_command
from .options import AsOfOpt, CatalogOpt, LakeOpt, VerboseOpt
from .render import console, err_console, print_table, summary_table
from .results import csv_text, json_text, table_rows


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _sql_text(sql: str | None, file: Path | None) -> str:
    """The SQL given as the argument, or read from --file (a file starting with a `--`
    comment cannot be an argument: it reads as a flag)."""
    if (sql is None) == (file is None):
        raise ConfigError(
            "Give the SQL either as the argument or with --file PATH ('-' for standard input), "
            "not both and not neither."
        )
    if file is None:
        return sql or ""
    if str(file) == "-":
        return sys.stdin.read()
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read --file {file}: {cause_of(exc, reading=True)}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Cannot read --file {file}: it is not UTF-8 text.") from None


@command("query")
def query_cmd(
    sql: Annotated[
        str | None,
        typer.Argument(help="One SQL statement to run on the lake (read-only).", metavar="SQL"),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Read the SQL from this file ('-': standard input) instead.",
            metavar="PATH",
        ),
    ] = None,
    lake: LakeOpt = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table (rich), csv or json (one array).")
    ] = OutputFormat.table,
    as_of: AsOfOpt = None,
    catalog: CatalogOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run one SQL query on the lake (read-only) and print the result."""
    verbose_after_command(verbose)
    with user_errors():
        settings = Settings.resolve(lake=lake, catalog=catalog)
        result = query(settings, _sql_text(sql, file), as_of=parse_as_of(as_of))
    if result.num_columns == 0:
        err_console.print("the statement ran; it returns no rows.")
    elif output is OutputFormat.csv:
        sys.stdout.write(csv_text(result))
    elif output is OutputFormat.json:
        sys.stdout.write(json_text(result))
    else:
        print_table(summary_table("", result.column_names, table_rows(result), exact=True))
        console.print(f"[dim]{result.num_rows} rows[/]")


@command("shell")
def shell_cmd(
    lake: LakeOpt = None,
    sql: Annotated[
        str | None, typer.Option("-c", "--command", help="Run this SQL and exit.")
    ] = None,
    as_of: AsOfOpt = None,
    catalog: CatalogOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Open the DuckDB CLI on the lake, attached read-only, with example queries."""
    verbose_after_command(verbose)
    with user_errors():
        settings = Settings.resolve(lake=lake, catalog=catalog)
        snapshot = parse_as_of(as_of)
        argv = shell_argv(settings, command=sql, as_of=snapshot)
        # Attached here first: a damaged catalog or a missing snapshot is one line of ours,
        # not the DuckDB CLI's error text.
        with open_lake(settings, read_only=True, as_of=snapshot):
            pass
    if sql is None:
        err_console.print("[bold]Example queries[/] (tables: silver.*, gold.*, meta.*):")
        for example in EXAMPLE_QUERIES:
            err_console.print(f"  {escape(example)}", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    completed = subprocess.run(argv, check=False, env=shell_env(settings))
    raise typer.Exit(completed.returncode)


@command("report")
def report_cmd(
    lake: LakeOpt = None,
    catalog: CatalogOpt = None,
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
        result = build_report(Settings.resolve(lake=lake, catalog=catalog), out=out)
    # To stderr when the report itself went to stdout (--out /dev/stdout).
    (console if result.path.is_file() else err_console).print(
        f"report written to {result.path} ({result.bytes:,} bytes)", highlight=False, soft_wrap=True
    )
