"""How each stage's result looks in a terminal: tables, notes and status lines."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from rich.markup import escape
from rich.text import Text

from ..checks import CheckResult
from ..gold import GoldResult
from ..ingest import IngestResult
from ..pipeline import RunResult
from ..publish import PublishResult
from ..silver import SilverResult
from ..status import LakeStatus
from .render import console, err_console, print_notes, print_table, summary_table

STATUS_STYLE = {
    "ok": "green",
    "success": "green",
    "skipped": "yellow",
    "stopped": "yellow",
    "interrupted": "yellow",
    "failed": "bold red",
    "killed": "bold red",
    "running": "cyan",
    "not_run": "dim",
}


def styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, "white"))


def warn_sample() -> None:
    err_console.print(
        "[bold yellow]SAMPLE DATA[/]: replaying recorded CoinGecko responses bundled with "
        "cryptolake, not live prices.",
        soft_wrap=True,
    )


def render_ingest(result: IngestResult) -> None:
    print_table(
        summary_table(
            f"ingest run {result.run_id} ({result.requests} requests, {result.retries} retries)",
            ["dataset", "pages", "records", "bytes", "seconds"],
            [
                [d.dataset, d.pages, d.records, d.bytes, round(d.seconds, 2)]
                for d in result.datasets
            ],
        )
    )
    print_notes(result.notes)


def render_silver(result: SilverResult) -> None:
    print_notes(result.notes)
    if not result.changed:
        quarantined = len(result.quarantined_runs)
        console.print(
            "silver is up to date: no new complete bronze runs"
            + (f" ({quarantined} new one(s) quarantined, see above)." if quarantined else ".")
        )
        return
    kind = "full refresh" if result.full_refresh else "incremental"
    print_table(
        summary_table(
            f"silver ({kind}, {_count(len(result.runs), 'run')})",
            ["table", "rows added", "partitions written", "seconds"],
            [
                [t.table, t.rows_added, t.partitions_written, round(t.seconds, 2)]
                for t in result.tables
            ],
        )
    )
    if cleaning := result.describe_cleaning():
        print_notes([f"silver: {cleaning} (see silver.quarantine)"])


def render_gold(result: GoldResult) -> None:
    print_table(
        summary_table(
            f"gold ({result.vs_currency}"
            + (f", coin_daily from {result.coin_daily_from}" if result.coin_daily_from else "")
            + ")",
            ["table", "rows", "seconds"],
            [[f"gold.{t.table}", t.rows, round(t.seconds, 2)] for t in result.tables],
        )
    )
    warned = result.warnings
    passed = len(result.checks) - len(warned)
    console.print(
        f"[green]{passed} data-quality checks passed[/]; "
        + (
            f"gold up to date (lake snapshot {result.lake_version}: nothing new to build)"
            if result.up_to_date
            else f"gold committed as lake snapshot {result.lake_version}"
        ),
        highlight=False,
    )
    print_notes([f"check {c.name} warns: {c.description}" for c in warned])


def render_checks(results: list[CheckResult], *, to: Any = None) -> None:
    out = to or console
    print_table(
        to=out,
        table=summary_table(
            "data-quality checks",
            ["check", "result", "offending rows", "description"],
            [
                [
                    r.name,
                    Text("pass", style="green")
                    if r.passed
                    else Text("warn", style="yellow")
                    if r.on_fail == "warn"
                    else Text("FAIL", style="bold red"),
                    r.failing_rows,
                    r.description,
                ]
                for r in results
            ],
        ),
    )
    for r in results:
        if r.sample:
            print_table(
                summary_table(f"{r.name}: first offending rows", r.columns, r.sample), to=out
            )


def render_publish(result: PublishResult) -> None:
    if result.up_to_date:
        console.print(
            f"Postgres {result.target} schema {result.schema} is up to date: nothing to publish.",
            soft_wrap=True,
        )
        print_notes(result.notes)
        return
    print_table(
        summary_table(
            f"published to {result.target}, schema {result.schema} (publish {result.publish_id})",
            ["table", "rows written", "rows now", "seconds"],
            [[t.table, t.rows_written, t.rows_now, round(t.seconds, 2)] for t in result.tables],
        )
    )
    print_notes(result.notes)


def render_run(result: RunResult) -> None:
    rows = [
        [stage.stage, styled(stage.status), round(stage.seconds, 2), stage.summary, stage.detail]
        for stage in result.stages
    ]
    print_table(
        summary_table(
            f"run {result.run_id}: {styled(result.status)} in {result.seconds:.1f}s",
            ["stage", "status", "seconds", "result", "detail"],
            rows,
        )
    )
    print_notes(result.notes)


def age(hours: float | None) -> str:
    if hours is None:
        return "no snapshot yet"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def render_status(status: LakeStatus) -> None:
    fresh = "[green]fresh[/]" if status.is_fresh else "[bold red]stale[/]"
    console.print(f"[bold]lake[/] {escape(status.lake)}", soft_wrap=True)
    if status.latest_snapshot_at is None and status.pending_runs:
        console.print(
            f"no snapshot in silver yet: {fresh}; {status.pending_runs} bronze run(s) wait for "
            "`cryptolake transform`",
            soft_wrap=True,
        )
    elif status.latest_snapshot_at is None:
        console.print(f"no snapshot yet: {fresh} (run `cryptolake run --sample` to try it)")
    else:
        latest = status.latest_snapshot_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if status.sample:
            recorded = status.recorded_at or status.latest_snapshot_at
            console.print(
                f"latest snapshot {latest}: [bold yellow]sample data from "
                f"{recorded:%Y-%m-%d}[/] (recorded prices bundled with cryptolake, never fresh)",
                soft_wrap=True,
            )
        else:
            console.print(
                f"latest snapshot {latest} ({age(status.age_hours)} old, limit "
                f"{status.freshness_hours:g} h): {fresh}",
                soft_wrap=True,
            )
    if status.silver_ahead_at is not None:
        console.print(
            f"[yellow]silver holds a newer snapshot "
            f"({status.silver_ahead_at.astimezone(UTC):%Y-%m-%d %H:%M UTC}) than gold is built "
            "from[/]: the last transform failed (see the last runs) or has not run since; "
            "`cryptolake transform` builds it.",
            highlight=False,
            soft_wrap=True,
        )
    print_table(
        summary_table(
            f"bronze: {status.complete_runs} complete runs, {status.failed_runs} failed, "
            + (
                _count(status.history_requests, "history request")
                + (
                    f" ({_count(status.history_not_found, 'coin')} not found)"
                    if status.history_not_found
                    else ""
                )
                + ", "
                if status.history_requests or status.history_not_found
                else ""
            )
            + f"{status.pending_runs} not yet in silver"
            + (
                f", {status.orphans:,} orphan file(s) (`verify --repair` moves them aside)"
                if status.orphans
                else ""
            )
            + (
                f", {status.quarantined_runs:,} run(s) in quarantine (see `cryptolake verify`)"
                if status.quarantined_runs
                else ""
            ),
            ["dataset", "files", "bytes"],
            [[b.dataset, b.files, b.bytes] for b in status.bronze],
        )
    )
    print_table(
        summary_table(
            "silver (DuckLake)"
            + (
                f": {status.quarantined_rows:,} row(s) in quarantine (see silver.quarantine)"
                if status.quarantined_rows
                else ""
            ),
            ["table", "partitions", "rows", "bytes", "files"],
            [
                [
                    f"silver.{s.table}",
                    s.partitions,
                    s.rows,
                    s.bytes,
                    status.files.get(f"silver.{s.table}", 0),
                ]
                for s in status.silver
            ],
        )
    )
    if status.gold:
        print_table(
            summary_table(
                "gold",
                ["table", "rows", "files"],
                [
                    [f"gold.{t}", n, status.files.get(f"gold.{t}", 0)]
                    for t, n in status.gold.items()
                ],
            )
        )
    if status.snapshots:
        published = status.publish.lake_version if status.publish else None
        print_table(
            summary_table(
                f"lake snapshots (version {status.lake_version or 'none'}: the last committed "
                "gold; `--as-of ID` reads an older one)",
                ["snapshot", "committed", "by", "message"],
                [
                    [
                        s.snapshot_id,
                        s.committed_at[:19].replace("T", " ") + " UTC",
                        s.committer,
                        (s.message or "")
                        + (" (published)" if published == str(s.snapshot_id) else ""),
                    ]
                    for s in status.snapshots
                ],
            )
        )
    publish = status.publish
    if publish is not None:
        console.print(
            f"last publish: {publish.publish_id} at {publish.finished_at:%Y-%m-%d %H:%M UTC} "
            f"to {publish.target}, schema {publish.schema}, lake snapshot "
            f"{publish.lake_version} (from Postgres' publish_log)",
            soft_wrap=True,
        )
    elif status.publish_unknown:
        console.print("last publish: unknown (Postgres could not be read; see below)")
    elif status.publishing:
        console.print("last publish: never (publish_log is empty or missing)")
    else:
        console.print("last publish: no Postgres configured (set CRYPTOLAKE_POSTGRES_DSN)")
    if status.runs:
        print_table(
            summary_table(
                "last runs",
                ["run", "trigger", "status", "started", "seconds", "error"],
                [
                    [
                        r.run_id,
                        r.trigger,
                        styled(r.status),
                        f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                        None if r.seconds is None else round(r.seconds, 1),
                        (r.error or "").splitlines()[0] if r.error else "",
                    ]
                    for r in status.runs
                ],
            )
        )
    for problem in status.problems:
        err_console.print(
            f"[bold red]cannot read[/] {escape(problem)}", highlight=False, soft_wrap=True
        )


def _count(n: int, noun: str) -> str:
    """`1 run`, `2 runs` (nouns whose plural adds an s)."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
