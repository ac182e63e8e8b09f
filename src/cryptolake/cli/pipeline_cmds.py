"""`run` and `status`: the commands users live in."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer

from ..errors import ConfigError, CryptolakeError
from ..pipeline import STAGES, RunResult, parse_stages, run
from ..schedule import ScheduleEvent, parse_schedule, run_schedule, stop_on_signals
from ..status import LakeStatus, lake_status
from .app import (
    ApiPlanOpt,
    ApiUrlOpt,
    LakeOpt,
    PerPageOpt,
    PgSchemaOpt,
    PostgresOpt,
    RateOpt,
    SampleOpt,
    TopOpt,
    VsCurrencyOpt,
    _settings,
    app,
    settings_from,
    user_errors,
    warn_sample,
)
from .render import console, err_console, progress_bars, summary_table

ALL_STAGES = ",".join(STAGES)
StagesOpt = Annotated[
    str,
    typer.Option(
        "--stages",
        help=f"Comma-separated subset of {','.join(STAGES)} to run, in pipeline order.",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (and nothing else there)."),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars or tables; errors only.")
]

STATUS_STYLE = {
    "ok": "green",
    "success": "green",
    "skipped": "yellow",
    "stopped": "yellow",
    "failed": "bold red",
    "killed": "bold red",
    "running": "cyan",
    "not_run": "dim",
}


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def render_run(result: RunResult) -> None:
    rows = []
    for stage in result.stages:
        rows.append(
            [
                stage.stage,
                styled(stage.status),
                round(stage.seconds, 2),
                stage.summary,
                stage.detail,
            ]
        )
    console.print(
        summary_table(
            f"run {result.run_id}: {styled(result.status)} in {result.seconds:.1f}s",
            ["stage", "status", "seconds", "result", "detail"],
            rows,
        )
    )
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)


@app.command("run")
def run_cmd(
    lake: LakeOpt = None,
    api_url: ApiUrlOpt = None,
    api_plan: ApiPlanOpt = None,
    vs_currency: VsCurrencyOpt = None,
    top: TopOpt = None,
    per_page: PerPageOpt = None,
    rate: RateOpt = None,
    sample: SampleOpt = False,
    stages: StagesOpt = ALL_STAGES,
    postgres: PostgresOpt = None,
    pg_schema: PgSchemaOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the pipeline: ingest -> transform (silver, gold) -> checks -> publish."""
    with user_errors():
        settings = settings_from(locals())
        selected = parse_stages(stages)
        if sample and "ingest" not in selected:
            raise ConfigError("--sample only affects the ingest stage; add it to --stages.")
        if sample and not (as_json or quiet):
            warn_sample()
        with progress_bars(enabled=not (as_json or quiet)) as on_progress:
            result = run(settings, stages=selected, sample=sample, progress=on_progress)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    elif not quiet:
        render_run(result)
    if result.status != "success":
        if not as_json:
            err_console.print(
                f"[bold red]error:[/] {result.error or result.status}", highlight=False
            )
        raise typer.Exit(1)


def _age(hours: float | None) -> str:
    if hours is None:
        return "no snapshot yet"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def render_status(status: LakeStatus) -> None:
    fresh = "[green]fresh[/]" if status.is_fresh else "[bold red]stale[/]"
    latest = (
        status.latest_snapshot_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if status.latest_snapshot_at
        else "—"
    )
    console.print(f"[bold]lake[/] {status.lake}")
    if status.latest_snapshot_at is None:
        console.print(f"no snapshot yet: {fresh} (run `cryptolake run --sample` to try it)")
    else:
        console.print(
            f"latest snapshot {latest} ({_age(status.age_hours)} old, limit "
            f"{status.freshness_hours:g} h): {fresh}"
        )
    if status.silver_ahead_at is not None:
        console.print(
            f"[yellow]silver holds a newer snapshot "
            f"({status.silver_ahead_at.astimezone(UTC):%Y-%m-%d %H:%M UTC}) than gold is built "
            "from[/]: the last transform failed its checks or has not run; `cryptolake "
            "transform` says which.",
            highlight=False,
        )
    console.print(
        summary_table(
            f"bronze: {status.complete_runs} complete runs, {status.failed_runs} failed, "
            f"{status.pending_runs} not yet in silver",
            ["dataset", "files", "bytes"],
            [[b.dataset, b.files, b.bytes] for b in status.bronze],
        )
    )
    console.print(
        summary_table(
            "silver (Parquet)"
            + (
                f": {status.quarantined_rows:,} row(s) in quarantine (see silver.quarantine)"
                if status.quarantined_rows
                else ""
            ),
            ["table", "partitions", "rows", "bytes"],
            [[f"silver.{s.table}", s.partitions, s.rows, s.bytes] for s in status.silver],
        )
    )
    if status.gold:
        console.print(
            summary_table(
                "gold", ["table", "rows"], [[f"gold.{t}", n] for t, n in status.gold.items()]
            )
        )
    last_publish = status.last_publish
    console.print(
        "last publish: "
        + (
            f"{last_publish.started_at:%Y-%m-%d %H:%M UTC} (run {last_publish.run_id})"
            if last_publish
            else "never (set CRYPTOLAKE_POSTGRES_DSN to publish)"
        )
    )
    if status.runs:
        console.print(
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


@app.command("status")
def status_cmd(
    lake: LakeOpt = None,
    as_json: JsonOpt = False,
    fail_if_stale: Annotated[
        bool,
        typer.Option(
            "--fail-if-stale",
            help="Exit 1 when the latest snapshot is older than CRYPTOLAKE_FRESHNESS_HOURS "
            "(for health checks and monitoring).",
        ),
    ] = False,
) -> None:
    """Show the lake's inventory, freshness, last publish and last runs."""
    with user_errors():
        status = lake_status(_settings(lake=lake))
    if fail_if_stale and not status.is_fresh:
        # Printed before the report so a health check's log shows the reason first.
        reason = (
            f"latest snapshot {_age(status.age_hours)} old, limit {status.freshness_hours:g} h"
            if status.latest_snapshot_at
            else "it has no snapshot yet; run `cryptolake run`"
        )
        err_console.print(f"[bold red]error:[/] the lake is stale: {reason}.", highlight=False)
    if as_json:
        document = {
            "lake": status.lake,
            "latest_snapshot_at": status.latest_snapshot_at.isoformat()
            if status.latest_snapshot_at
            else None,
            "silver_ahead_at": status.silver_ahead_at.isoformat()
            if status.silver_ahead_at
            else None,
            "age_hours": status.age_hours,
            "is_fresh": status.is_fresh,
            "bronze": {
                "complete_runs": status.complete_runs,
                "failed_runs": status.failed_runs,
                "pending_runs": status.pending_runs,
                "datasets": {
                    b.dataset: {"files": b.files, "bytes": b.bytes} for b in status.bronze
                },
            },
            "silver": {
                s.table: {"partitions": s.partitions, "rows": s.rows, "bytes": s.bytes}
                for s in status.silver
            },
            "gold": status.gold,
            "quarantined_rows": status.quarantined_rows,
            "runs": [
                {
                    "run_id": r.run_id,
                    "status": r.status,
                    "trigger": r.trigger,
                    "started_at": r.started_at.isoformat(),
                    "seconds": r.seconds,
                    "error": r.error,
                }
                for r in status.runs
            ],
            "generated_at": datetime.now(UTC).isoformat(),
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        render_status(status)
    if fail_if_stale and not status.is_fresh:
        raise typer.Exit(1)


class RunFailed(CryptolakeError):
    """A scheduled run ended as failed; the schedule counts it and goes on."""


@app.command("schedule")
def schedule_cmd(
    every: Annotated[
        str | None,
        typer.Option("--every", help="Run every interval, e.g. 6h, 30m, 1d (UTC-anchored)."),
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option("--cron", help="Run on a cron expression in UTC, e.g. '0 */6 * * *'."),
    ] = None,
    daily: Annotated[
        str | None, typer.Option("--daily", help="Run once a day at HH:MM UTC, e.g. 00:30.")
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Also run once right away, then follow the schedule.")
    ] = False,
    lake: LakeOpt = None,
    api_url: ApiUrlOpt = None,
    api_plan: ApiPlanOpt = None,
    vs_currency: VsCurrencyOpt = None,
    top: TopOpt = None,
    per_page: PerPageOpt = None,
    rate: RateOpt = None,
    sample: SampleOpt = False,
    stages: StagesOpt = ALL_STAGES,
    postgres: PostgresOpt = None,
    pg_schema: PgSchemaOpt = None,
) -> None:
    """Run the pipeline on a schedule in the foreground; SIGTERM/Ctrl-C stop it cleanly."""
    with user_errors():
        schedule = parse_schedule(every=every, cron=cron, daily=daily)
        settings = settings_from(locals())
        selected = parse_stages(stages)
    if sample:
        warn_sample()

    def job(stop: threading.Event) -> RunResult:
        # The current stage always finishes; a stop request skips the stages after it.
        result = run(
            settings,
            stages=selected,
            sample=sample,
            trigger="schedule",
            should_stop=stop.is_set,
        )
        render_run(result)
        if result.status == "failed":
            raise RunFailed(result.error or "the run failed")
        return result

    def on_event(event: ScheduleEvent) -> None:
        style = {"failed": "bold red", "skipped": "yellow", "next": "cyan"}.get(event.kind, "")
        stamp = f"{event.at:%Y-%m-%d %H:%M:%S} UTC"
        text = f"[{style}]{event.detail}[/]" if style else event.detail
        console.print(f"[dim]{stamp}[/] {text}", highlight=False)

    console.print(f"[bold]cryptolake schedule[/]: {schedule.describe()}, lake {settings.lake}")
    with stop_on_signals(threading.Event()) as stop:
        if now:
            try:
                job(stop)
            except RunFailed as exc:
                err_console.print(f"[bold red]run failed:[/] {exc}", highlight=False)
        if stop.is_set():
            return
        summary = run_schedule(schedule, job=lambda: job(stop), stop=stop, on_event=on_event)
    console.print(
        f"schedule stopped: {summary.runs} run(s), {summary.failures} failed, "
        f"{summary.skipped} slot(s) skipped"
    )
