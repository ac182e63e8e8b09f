"""`run`, `status` and `schedule`: the commands users live in."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import ConfigError, CryptolakeError
from ..pipeline import STAGES, RunInterrupted, RunResult, parse_stages, run
from ..schedule import ScheduleEvent, run_schedule, stop_on_signals
from ..schedule_spec import parse_schedule
from ..status import LakeStatus, lake_status
from .app import (
    JSON_ERROR_DOCUMENTS,
    command,
    interrupted_exit_code,
    interrupted_message,
    user_errors,
    verbose_after_command,
)
from .options import (
    ApiPlanOpt,
    ApiUrlOpt,
    CatalogOpt,
    JsonOpt,
    LakeOpt,
    PerPageOpt,
    PgSchemaOpt,
    PostgresOpt,
    RateOpt,
    SampleOpt,
    TopOpt,
    VerboseOpt,
    VsCurrencyOpt,
    settings_from,
)
from .render import console, errors_only, print_error, progress_bars
from .views import age, render_run, render_status, warn_sample

ALL_STAGES = ",".join(STAGES)
SAMPLE_STAGES = "--sample only affects the ingest and history stages; add one to --stages."
StagesOpt = Annotated[
    str,
    typer.Option(
        "--stages",
        help=f"Comma-separated subset of {','.join(STAGES)} to run, in pipeline order.",
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bars or tables; errors only.", metavar=""),
]


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _failed_before_running(error: str, *, sample: bool, status: str = "failed") -> dict[str, Any]:
    """`run --json`'s document when no run could start (bad settings, a busy lake)."""
    now = datetime.now(UTC).isoformat()
    return {
        "run_id": None,
        "status": status,
        "sample": sample,
        "started_at": now,
        "finished_at": now,
        "seconds": 0.0,
        "stages": [],
        "error": error,
        "notes": [],
    }


@command("run")
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
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline: ingest -> history -> transform (silver, gold) -> checks -> publish."""
    verbose_after_command(verbose)
    if as_json:
        _run_json(locals())
        return
    with user_errors(), errors_only(quiet and not verbose):
        settings = settings_from(locals())
        selected = parse_stages(stages)
        if sample and not {"ingest", "history"} & set(selected):
            raise ConfigError(
                "--sample only affects the ingest and history stages; add one to --stages."
            )
        if sample and not quiet:
            warn_sample()
        try:
            with progress_bars(enabled=not quiet) as on_progress:
                result = run(settings, stages=selected, sample=sample, progress=on_progress)
        except RunInterrupted as exc:
            if not quiet:
                render_run(exc.result)  # what was done, and which stage was cut short
            raise
    if not quiet:
        render_run(result)
    if result.status != "success":
        print_error(result.error or f"the run {result.status}")
        raise typer.Exit(1)


def _run_json(params: dict[str, Any]) -> None:
    """`run --json`: one JSON document on stdout whatever happens, nothing else there."""
    try:
        settings = settings_from(params)
        selected = parse_stages(params["stages"])
        if params["sample"] and not {"ingest", "history"} & set(selected):
            raise ConfigError(
                "--sample only affects the ingest and history stages; add one to --stages."
            )
        result = run(settings, stages=selected, sample=params["sample"])
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            document = exc.result.to_dict() | {"error": interrupted_message(exc)}
        else:  # before the run started
            document = _failed_before_running(
                interrupted_message(exc), sample=params["sample"], status="interrupted"
            )
        _print_json(document)
        raise typer.Exit(interrupted_exit_code()) from None
    except CryptolakeError as exc:
        _print_json(_failed_before_running(str(exc), sample=params["sample"]))
        raise typer.Exit(1) from None
    _print_json(result.to_dict())
    if result.status != "success":
        raise typer.Exit(1)


JSON_ERROR_DOCUMENTS["run"] = lambda error, argv: _failed_before_running(
    error, sample="--sample" in argv
)


def status_document(status: LakeStatus) -> dict[str, Any]:
    """`status --json`: everything `status` shows, timestamps in ISO 8601."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    publish = status.publish
    return {
        "lake": status.lake,
        "latest_snapshot_at": iso(status.latest_snapshot_at),
        "sample": status.sample,
        "recorded_at": iso(status.recorded_at),
        "silver_ahead_at": iso(status.silver_ahead_at),
        "age_hours": status.age_hours,
        "is_fresh": status.is_fresh,
        "bronze": {
            "complete_runs": status.complete_runs,
            "failed_runs": status.failed_runs,
            "pending_runs": status.pending_runs,
            "history_requests": status.history_requests,
            "history_not_found": status.history_not_found,
            "history_coins": status.history_coins,
            "datasets": {b.dataset: {"files": b.files, "bytes": b.bytes} for b in status.bronze},
        },
        "silver": {
            s.table: {"partitions": s.partitions, "rows": s.rows, "bytes": s.bytes}
            for s in status.silver
        },
        "gold": status.gold,
        "lake_version": status.lake_version,
        "files": status.files,
        "snapshots": [
            {
                "snapshot_id": snap.snapshot_id,
                "committed_at": snap.committed_at,
                "committed_by": {
                    "host": snap.extra.get("host"),
                    "run_id": snap.extra.get("run_id"),
                },
                "message": snap.message,
            }
            for snap in status.snapshots
        ],
        "quarantined_rows": status.quarantined_rows,
        "orphan_files": status.orphans,
        "quarantined_runs": status.quarantined_runs,
        "last_publish_unknown": status.publish_unknown,
        "last_publish": None
        if publish is None
        else {
            "publish_id": publish.publish_id,
            "finished_at": iso(publish.finished_at),
            "latest_snapshot_at": iso(publish.latest_snapshot_at),
            "lake_version": publish.lake_version,
            "target": publish.target,
            "schema": publish.schema,
        },
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
        "problems": status.problems,
        "generated_at": datetime.now(UTC).isoformat(),
    }


@command("status")
def status_cmd(
    lake: LakeOpt = None,
    catalog: CatalogOpt = None,
    postgres: PostgresOpt = None,
    pg_schema: PgSchemaOpt = None,
    as_json: JsonOpt = False,
    fail_if_stale: Annotated[
        bool,
        typer.Option(
            "--fail-if-stale",
            help="Exit 1 when the latest snapshot is older than CRYPTOLAKE_FRESHNESS_HOURS "
            "(for health checks and monitoring).",
            metavar="",
        ),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the lake's inventory, freshness, last publish (from Postgres) and last runs."""
    verbose_after_command(verbose)
    with user_errors():
        status = lake_status(settings_from(locals()))
    if fail_if_stale and not status.is_fresh:
        # Printed before the report so a health check's log shows the reason first.
        reason = (
            "it holds the bundled sample (recorded prices), never fresh; a live lake is "
            "`cryptolake run --lake <another folder>`"
            if status.sample
            else f"latest snapshot {age(status.age_hours)} old, limit {status.freshness_hours:g} h"
            if status.latest_snapshot_at
            else "it has no snapshot yet; run `cryptolake run`"
        )
        print_error(f"the lake is stale: {reason}.")
    if as_json:
        _print_json(status_document(status))
    else:
        render_status(status)
    if fail_if_stale and not status.is_fresh:
        raise typer.Exit(1)


class RunFailed(CryptolakeError):
    """A scheduled run ended as failed; the schedule counts it and goes on."""


@command("schedule")
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
        bool,
        typer.Option(
            "--now", help="Also run once right away, then follow the schedule.", metavar=""
        ),
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
    catalog: CatalogOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline on a schedule in the foreground; SIGTERM/Ctrl-C stop it cleanly."""
    verbose_after_command(verbose)
    with user_errors():
        schedule = parse_schedule(every=every, cron=cron, daily=daily)
        settings = settings_from(locals())
        selected = parse_stages(stages)
        if sample and not {"ingest", "history"} & set(selected):
            raise ConfigError(
                "--sample only affects the ingest and history stages; add one to --stages."
            )
    if sample:
        warn_sample()

    def job(stop: threading.Event) -> RunResult:
        # The current stage finishes (a wait to retry the API ends at once); a stop request
        # skips the stages after it.
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
        text = f"[{style}]{escape(event.detail)}[/]" if style else escape(event.detail)
        console.print(f"[dim]{stamp}[/] {text}", highlight=False, soft_wrap=True)

    console.print(
        f"[bold]cryptolake schedule[/]: {schedule.describe()}, lake {settings.lake_location}",
        soft_wrap=True,
    )

    def on_signal(name: str) -> None:
        console.print(
            f"[yellow]{name}: stopping after the current stage (Ctrl-C again to stop at once)[/]",
            highlight=False,
        )

    with user_errors(), stop_on_signals(threading.Event(), on_signal=on_signal) as stop:
        summary = run_schedule(
            schedule, job=lambda: job(stop), stop=stop, on_event=on_event, run_now=now
        )
    console.print(
        f"schedule stopped: {summary.runs} run(s), {summary.failures} failed, "
        f"{summary.skipped} slot(s) skipped"
    )
