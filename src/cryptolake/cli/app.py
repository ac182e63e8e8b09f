"""`cryptolake` commands: parse flags, resolve Settings, call one library function, render."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pyarrow.csv as pa_csv
import typer

from .. import __version__
from ..checks import CheckResult, ChecksFailed, quarantine_summary, run_checks
from ..errors import CryptolakeError
from ..gold import GoldResult, build_gold
from ..ingest import IngestResult, ingest
from ..lake import LakePaths
from ..lakedb import query
from ..lock import LakeLock
from ..publish import PublishResult, publish
from ..settings import Settings
from ..shell import EXAMPLE_QUERIES, shell_argv
from ..silver import SilverResult, build_silver
from ..status import lake_status
from .render import console, err_console, progress_bars, setup_logging, summary_table

app = typer.Typer(
    name="cryptolake",
    help="Local-first crypto market lakehouse: CoinGecko -> bronze -> silver -> gold -> Postgres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by several commands. None means "not given": Settings.resolve then falls back
# to the CRYPTOLAKE_* environment, then to the default.
LakeOpt = Annotated[
    Path | None,
    typer.Option("--lake", help="Lake folder. Env: CRYPTOLAKE_LAKE. Default: ./lake"),
]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help="CoinGecko API base URL including /api/v3. Env: CRYPTOLAKE_API_URL. "
        "Default: the public host (the pro host with --api-plan pro).",
    ),
]
ApiPlanOpt = Annotated[
    str | None,
    typer.Option(
        "--api-plan",
        help="Plan of CRYPTOLAKE_API_KEY: demo or pro. Env: CRYPTOLAKE_API_PLAN. Default: demo",
    ),
]
VsCurrencyOpt = Annotated[
    str | None,
    typer.Option("--vs-currency", help="Quote currency. Env: CRYPTOLAKE_VS_CURRENCY. Default: usd"),
]
TopOpt = Annotated[
    int | None,
    typer.Option("--top", help="How many coins, by market cap. Env: CRYPTOLAKE_TOP. Default: 250"),
]
PerPageOpt = Annotated[
    int | None, typer.Option("--per-page", help="Page size, 1-250. Default: 250")
]
RateOpt = Annotated[
    float | None,
    typer.Option(
        "--rate",
        help="Request budget per minute. Env: CRYPTOLAKE_RATE. "
        "Default: 10 keyless, 30 with a demo key, 250 with a pro key.",
    ),
]
SampleOpt = Annotated[
    bool,
    typer.Option(
        "--sample",
        help="Ingest the bundled recorded CoinGecko responses over loopback (no network).",
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"cryptolake {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log retries, SQL steps and timings.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Local-first crypto market lakehouse: CoinGecko -> bronze -> silver -> gold -> Postgres."""
    setup_logging(verbose)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a CryptolakeError into one clear line and exit code 1; bugs keep their traceback."""
    try:
        yield
    except ChecksFailed as exc:
        render_checks(exc.failures, to=err_console)
        err_console.print(
            f"[bold red]error:[/] {len(exc.failures)} data-quality check(s) failed; the lake "
            "keeps its previous gold and nothing was published.",
            highlight=False,
        )
        raise typer.Exit(1) from None
    except CryptolakeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def lake_lock(settings: Settings, command: str) -> Iterator[None]:
    """Hold the lake's lock, as `cryptolake run` does, so stages never overlap a run.

    A lake folder that does not exist yet has nothing to protect: the stage itself then says
    what to do (ingest creates the folder).
    """
    lake = LakePaths.at(settings.lake)
    if command != "ingest" and not lake.root.exists():
        yield
        return
    with LakeLock(lake, run_id=f"`cryptolake {command}`"):
        yield


def _settings(**flags: Any) -> Settings:
    return Settings.resolve(**flags)


# CLI parameter -> Settings field, for the options shared by ingest, run and schedule.
SOURCE_FLAGS = {
    "lake": "lake",
    "api_url": "api_url",
    "api_plan": "api_plan",
    "vs_currency": "vs_currency",
    "top": "top",
    "per_page": "per_page",
    "rate": "rate",
    "postgres": "postgres_dsn",
    "pg_schema": "pg_schema",
}


def settings_from(params: dict[str, Any]) -> Settings:
    """Settings from a command's parameters (pass `locals()`): the shared options only."""
    return Settings.resolve(
        **{field: params[name] for name, field in SOURCE_FLAGS.items() if name in params}
    )


def warn_sample() -> None:
    err_console.print(
        "[bold yellow]SAMPLE DATA[/]: replaying recorded CoinGecko responses bundled with "
        "cryptolake, not live prices."
    )


def render_notes(notes: list[str]) -> None:
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def render_ingest(result: IngestResult) -> None:
    console.print(
        summary_table(
            f"ingest run {result.run_id} ({result.requests} requests, {result.retries} retries)",
            ["dataset", "pages", "records", "bytes", "seconds"],
            [
                [d.dataset, d.pages, d.records, d.bytes, round(d.seconds, 2)]
                for d in result.datasets
            ],
        )
    )
    render_notes(result.notes)


@app.command("ingest")
def ingest_cmd(
    lake: LakeOpt = None,
    api_url: ApiUrlOpt = None,
    api_plan: ApiPlanOpt = None,
    vs_currency: VsCurrencyOpt = None,
    top: TopOpt = None,
    per_page: PerPageOpt = None,
    rate: RateOpt = None,
    sample: SampleOpt = False,
) -> None:
    """Fetch coin markets, global totals and categories from CoinGecko into bronze."""
    with user_errors():
        settings = settings_from(locals())
        if sample:
            warn_sample()
        with lake_lock(settings, "ingest"), progress_bars() as on_progress:
            result = ingest(settings, sample=sample, progress=on_progress)
        render_ingest(result)


def render_silver(result: SilverResult) -> None:
    render_notes(result.notes)
    if not result.changed:
        console.print("silver is up to date: no new complete bronze runs.")
        return
    kind = "full refresh" if result.full_refresh else "incremental"
    console.print(
        summary_table(
            f"silver ({kind}, {len(result.runs)} runs)",
            ["table", "rows added", "partitions written", "seconds"],
            [
                [t.table, t.rows_added, t.partitions_written, round(t.seconds, 2)]
                for t in result.tables
            ],
        )
    )
    if cleaning := result.describe_cleaning():
        render_notes([f"silver: {cleaning} (see silver.quarantine)"])


def render_gold(result: GoldResult) -> None:
    console.print(
        summary_table(
            f"gold ({result.vs_currency})",
            ["table", "rows", "seconds"],
            [[f"gold.{t.table}", t.rows, round(t.seconds, 2)] for t in result.tables],
        )
    )
    warned = result.warnings
    passed = len(result.checks) - len(warned)
    console.print(f"[green]{passed} data-quality checks passed[/]; gold promoted")
    render_notes([f"check {c.name} warns: {c.description}" for c in warned])


def render_checks(results: list[CheckResult], *, to: Any = None) -> None:
    out = to or console
    out.print(
        summary_table(
            "data-quality checks",
            ["check", "result", "offending rows", "description"],
            [
                [
                    r.name,
                    "[green]pass[/]"
                    if r.passed
                    else "[yellow]warn[/]"
                    if r.on_fail == "warn"
                    else "[bold red]FAIL[/]",
                    r.failing_rows,
                    r.description,
                ]
                for r in results
            ],
        )
    )
    for r in results:
        if r.sample:
            out.print(summary_table(f"{r.name}: first offending rows", r.columns, r.sample))


class Stage(StrEnum):
    silver = "silver"
    gold = "gold"
    all = "all"


@app.command("transform")
def transform_cmd(
    lake: LakeOpt = None,
    full_refresh: Annotated[
        bool,
        typer.Option("--full-refresh", help="Rebuild silver from bronze alone instead of adding."),
    ] = False,
    stage: Annotated[
        Stage, typer.Option("--stage", help="Build silver, gold, or both (then run checks).")
    ] = Stage.all,
    vs_currency: Annotated[
        str | None,
        typer.Option(
            "--vs-currency",
            help="Build gold for this quote currency. Env: CRYPTOLAKE_VS_CURRENCY. "
            "Default: the currency of the lake's latest snapshot.",
        ),
    ] = None,
) -> None:
    """Build silver from new bronze runs, then gold, audited by the checks before it is live."""
    with user_errors():
        settings = _settings(lake=lake, vs_currency=vs_currency)
        with lake_lock(settings, "transform"), progress_bars() as on_progress:
            silver = gold = None
            if stage in (Stage.silver, Stage.all):
                silver = build_silver(settings, full_refresh=full_refresh, progress=on_progress)
            if stage in (Stage.gold, Stage.all):
                gold = build_gold(settings, progress=on_progress)
        if silver is not None:
            render_silver(silver)
        if gold is not None:
            render_gold(gold)


@app.command("check")
def check_cmd(lake: LakeOpt = None) -> None:
    """Run the data-quality checks on the lake as it is; exit 1 if a blocking one fails."""
    with user_errors():
        settings = _settings(lake=lake)
        results = run_checks(settings, raise_on_failure=False)
        render_checks(results)
        quarantined = quarantine_summary(settings)
        if quarantined:
            console.print(
                summary_table(
                    "quarantined rows (kept out of silver; see silver.quarantine)",
                    ["table", "check", "rows"],
                    [list(q) for q in quarantined],
                )
            )
        ahead = lake_status(settings, runs=0).silver_ahead_at
        if ahead is not None:
            render_notes(
                [
                    f"these checks ran on the lake's gold, which is not built from silver's "
                    f"newest snapshot ({ahead:%Y-%m-%d %H:%M %Z}): the last transform failed "
                    "its checks or has not run since; run `cryptolake transform`."
                ]
            )
        failed = [r for r in results if r.blocks]
        if failed:
            raise ChecksFailed(failed)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("query")
def query_cmd(
    sql: Annotated[str, typer.Argument(help="SQL to run on the lake database (read-only).")],
    lake: LakeOpt = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table (rich), csv or json (one array).")
    ] = OutputFormat.table,
) -> None:
    """Run one SQL query on the lake database and print the result."""
    with user_errors():
        result = query(_settings(lake=lake), sql)
    if output is OutputFormat.csv:
        buffer = io.BytesIO()
        pa_csv.write_csv(result, buffer)
        sys.stdout.write(buffer.getvalue().decode())
    elif output is OutputFormat.json:
        sys.stdout.write(json.dumps(result.to_pylist(), default=str, indent=2) + "\n")
    else:
        console.print(
            summary_table("", result.column_names, [list(r.values()) for r in result.to_pylist()])
        )
        console.print(f"[dim]{result.num_rows} rows[/]")


@app.command("shell")
def shell_cmd(
    lake: LakeOpt = None,
    command: Annotated[
        str | None, typer.Option("-c", "--command", help="Run this SQL and exit.")
    ] = None,
) -> None:
    """Open the DuckDB CLI on the lake database, read-only, with example queries."""
    with user_errors():
        argv = shell_argv(_settings(lake=lake), command=command)
    if command is None:
        err_console.print("[bold]Example queries[/] (tables: silver.*, gold.*, meta.*):")
        for example in EXAMPLE_QUERIES:
            err_console.print(f"  {example}", highlight=False)
    sys.stdout.flush()
    completed = subprocess.run(argv, check=False)
    raise typer.Exit(completed.returncode)


PostgresOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres",
        help="Postgres DSN (libpq URI or key=value) to publish to. Env: CRYPTOLAKE_POSTGRES_DSN. "
        "Prefer the env var when the DSN holds a password.",
        show_default=False,
    ),
]
PgSchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--pg-schema",
        help="Postgres schema to publish into. Env: CRYPTOLAKE_PG_SCHEMA. Default: cryptolake",
    ),
]


def render_publish(result: PublishResult) -> None:
    if result.up_to_date:
        console.print(
            f"Postgres {result.target} schema {result.schema} is up to date: nothing to publish."
        )
        return
    console.print(
        summary_table(
            f"published to {result.target}, schema {result.schema} (publish {result.publish_id})",
            ["table", "rows written", "rows now", "seconds"],
            [[t.table, t.rows_written, t.rows_now, round(t.seconds, 2)] for t in result.tables],
        )
    )
    render_notes(result.notes)


@app.command("publish")
def publish_cmd(
    lake: LakeOpt = None,
    postgres: PostgresOpt = None,
    pg_schema: PgSchemaOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Publish even if the lake did not change.")
    ] = False,
) -> None:
    """Write staging and mart tables to Postgres in one transaction."""
    with user_errors():
        settings = _settings(lake=lake, postgres_dsn=postgres, pg_schema=pg_schema)
        with lake_lock(settings, "publish"), progress_bars() as on_progress:
            result = publish(settings, force=force, progress=on_progress)
        render_publish(result)


@app.command("report")
def report_cmd(
    lake: LakeOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write. Default: <lake>/report.html"),
    ] = None,
) -> None:
    """Write a self-contained HTML report of the gold tables, with charts (opens offline)."""
    from ..report import build_report

    with user_errors():
        result = build_report(_settings(lake=lake), out=out)
    console.print(
        f"report written to {result.path} ({result.bytes:,} bytes)", highlight=False, soft_wrap=True
    )


def main() -> None:
    app()
