"""`run`: ingest -> transform (silver, gold) -> checks -> publish, as one recorded run.

A run holds the lake's lock, records itself in `meta.runs`, stops at the first failing stage
and returns a `RunResult` (it does not raise for a stage that failed with a
`CryptolakeError`, so callers always get the per-stage figures; bugs still raise).

Every stage is idempotent and incremental, which makes runs resumable by construction: after
a failed or killed run, the next `transform` picks up complete bronze runs that silver has not
seen, and the next `publish` sends whatever Postgres does not have yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .backfill import HistoryResult
from .bronze import HISTORY_REQUEST, new_run_id
from .catalog import check_catalog
from .checks import CheckResult, ChecksFailed, run_checks
from .errors import ConfigError, CryptolakeError, RunStopped
from .failpoints import failpoint
from .fserrors import lake_io
from .gold import GoldResult, build_gold
from .history import record_finish, record_start
from .history_stage import history_stage
from .ingest import IngestResult, ingest
from .interrupts import interrupted_by
from .lake import LakePaths
from .lock import LakeLock
from .maintenance import maintain, maintenance_due
from .progress import ProgressCallback, ignore_progress
from .publish import PublishResult, publish
from .settings import Settings
from .silver import build_silver
from .transform import retry_conflicts

STAGES = ("ingest", "history", "transform", "check", "publish")
StageStatus = Literal["ok", "skipped", "failed", "stopped", "interrupted", "running", "not_run"]
RunStatus = Literal["success", "failed", "stopped", "interrupted"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a run; the run is recorded as `interrupted` under `run_id`.

    `result` is the run as recorded: the stage that was running is `interrupted`.
    """

    def __init__(self, result: RunResult, stage: str | None) -> None:
        super().__init__(result.run_id)
        self.result = result
        self.run_id = result.run_id
        self.stage = stage


@dataclass(slots=True)
class StageResult:
    stage: str
    status: StageStatus
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    summary: str = ""  # a few words for a summary table, e.g. "+250 silver rows"
    detail: str = ""


@dataclass(slots=True)
class RunResult:
    run_id: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    stages: list[StageResult]
    error: str | None = None
    sample: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `cryptolake run --json`."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "sample": self.sample,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "stages": [asdict(s) | {"seconds": round(s.seconds, 3)} for s in self.stages],
            "error": self.error,
            "notes": self.notes,
        }


def parse_stages(value: str | Sequence[str]) -> tuple[str, ...]:
    """`ingest,transform` -> the stages in pipeline order; unknown names are a ConfigError."""
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise ConfigError(
            f"--stages takes a comma-separated subset of {','.join(STAGES)}; "
            f"got {','.join(names) or 'nothing'}."
        )
    return tuple(s for s in STAGES if s in names)


def run(
    settings: Settings,
    *,
    stages: Sequence[str] = STAGES,
    sample: bool = False,
    trigger: str = "manual",
    progress: ProgressCallback = ignore_progress,
    should_stop: Callable[[], bool] = lambda: False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunResult:
    """Run the selected stages in order under the lake lock and record the run.

    `should_stop` is checked between stages (the scheduler sets it on SIGTERM/SIGINT): the
    current stage finishes, the rest are `not_run`, and the run ends as `stopped`; a stage
    waiting to retry the API (a backoff) stops waiting at once. Ctrl-C outside a schedule
    raises RunInterrupted, with the run recorded as `interrupted`.
    """
    selected = parse_stages(stages)
    lake = LakePaths.of(settings)
    started = now()
    run_id = new_run_id(started)
    results = [StageResult(s, "not_run") for s in STAGES if s in selected]
    notes: list[str] = []
    status: RunStatus = "success"
    error: str | None = None
    lake.store.check()
    if "transform" in selected:
        check_catalog(settings)  # before ingest spends the API budget
    with lake_io("create the lake folder"):  # on object storage: the local work folder
        lake.root.mkdir(parents=True, exist_ok=True)
    with LakeLock(lake, run_id=run_id) as lock:
        if lock.taken_over is not None:
            notes.append(f"took over the lock left by killed {lock.taken_over.describe()}")
        killed = record_start(
            settings, run_id=run_id, started_at=started, trigger=trigger, sample=sample
        )
        if killed:
            notes.append(f"marked {killed} interrupted earlier run(s) as killed")
        audited: list[CheckResult] | None = None  # the checks transform ran on its new gold

        def record(status: str, finished_at: datetime | None, error: str | None) -> None:
            # The record must never hide what the run did: if it cannot be written (a full
            # disk), the run's own outcome stands and a note says the record is behind.
            try:
                record_finish(
                    settings,
                    run_id=run_id,
                    status=status,
                    finished_at=finished_at,
                    stages=[asdict(r) for r in results],
                    error=error,
                )
            except CryptolakeError as exc:
                if not any(n.startswith("the run record") for n in notes):
                    notes.append(f"the run record could not be updated: {exc}")

        try:
            for result in results:
                if should_stop():
                    status = "stopped"
                    break
                t0 = time.perf_counter()
                # Recorded as running, so a killed run's record names the stage it died in.
                result.status = "running"
                record("running", None, None)
                failpoint(f"stage.{result.stage}.start")
                try:
                    outcome = _run_stage(
                        settings,
                        result,
                        run_id=run_id,
                        sample=sample,
                        progress=progress,
                        audited=audited,
                        notes=notes,
                        should_stop=should_stop,
                    )
                    if isinstance(outcome, GoldResult):
                        audited = outcome.checks
                    notes.extend(_notes(outcome))
                    failpoint(f"stage.{result.stage}.end")
                except RunStopped as exc:
                    result.status, result.detail = "stopped", str(exc)
                    status = "stopped"
                    break
                except CryptolakeError as exc:
                    if interrupted_by():  # a query cancelled by Ctrl-C, worded as ours
                        raise KeyboardInterrupt from None
                    result.status = "failed"
                    result.detail = str(exc).splitlines()[0]
                    status, error = "failed", str(exc)
                    break
                finally:
                    result.seconds = time.perf_counter() - t0
        except BaseException as exc:
            if not (isinstance(exc, KeyboardInterrupt) or interrupted_by()):
                # A bug: record what happened, then let it propagate unchanged.
                for r in results:
                    if r.status == "running":
                        r.status = "failed"
                record("failed", now(), f"{type(exc).__name__}: {exc}")
                raise
            # Ctrl-C or SIGTERM (however DuckDB or a stage reported it): the stage that was
            # running is `interrupted`; the run says so too.
            running = next((r for r in results if r.status == "running"), None)
            if running is not None:
                running.status = "interrupted"
            interrupted = RunResult(
                run_id,
                "interrupted",
                started,
                now(),
                results,
                f"interrupted ({interrupted_by() or 'Ctrl-C'})",
                sample,
                notes,
            )
            record("interrupted", interrupted.finished_at, interrupted.error)
            raise RunInterrupted(interrupted, running.stage if running else None) from None
        finished = now()
        record(status, finished, error)
    return RunResult(run_id, status, started, finished, results, error, sample, notes)


def _notes(outcome: object) -> list[str]:
    """What a stage's result has to say beyond its summary line."""
    if isinstance(outcome, IngestResult | PublishResult | HistoryResult):
        return list(outcome.notes)
    if isinstance(outcome, GoldResult):
        return [
            f"check {c.name} warns: {c.description} ({c.failing_rows} row(s))"
            for c in outcome.warnings
        ]
    return []


def _run_stage(
    settings: Settings,
    result: StageResult,
    *,
    run_id: str,
    sample: bool,
    progress: ProgressCallback,
    audited: list[CheckResult] | None,
    notes: list[str],
    should_stop: Callable[[], bool],
) -> object:
    """Run one stage into `result`; returns the stage's own result object; adds to `notes`."""
    outcome: object = None
    if result.stage == "ingest":
        ingested = outcome = ingest(
            settings, sample=sample, progress=progress, should_stop=should_stop
        )
        result.rows = {d.dataset: d.records for d in ingested.datasets}
        result.summary = f"{result.rows.get('coins_markets', 0):,} coins"
        result.detail = f"bronze run {ingested.run_id}" + (" (sample data)" if sample else "")
    elif result.stage == "history":
        return history_stage(
            settings,
            result,
            run_id=run_id,
            sample=sample,
            progress=progress,
            should_stop=should_stop,
        )
    elif result.stage == "transform":
        silver, gold = retry_conflicts(
            lambda: (
                build_silver(settings, run_id=run_id, progress=progress),
                build_gold(settings, run_id=run_id, progress=progress),
            ),
            what="transform",
            on_retry=notes.append,
        )
        outcome = gold
        notes.extend(silver.notes)
        if maintenance_due(settings):
            maintained = maintain(settings, run_id=run_id, progress=progress)
            notes.append(
                f"maintenance (every {settings.maintain_every} runs): {maintained.describe()}"
            )
        result.rows = {f"silver.{t.table}": t.rows_added for t in silver.tables}
        result.rows |= {f"gold.{t.table}": t.rows for t in gold.tables}
        result.rows |= {f"quarantined.{c}": n for c, n in silver.quarantined.items()}
        if silver.quarantined_runs:
            result.rows["bronze_runs_quarantined"] = len(silver.quarantined_runs)
        if silver.sanitized.non_finite:
            result.rows["non_finite_nulled"] = silver.sanitized.non_finite
        if silver.sanitized.nul_chars:
            result.rows["nul_chars_removed"] = silver.sanitized.nul_chars
        if silver.sanitized.bad_unicode:
            result.rows["invalid_unicode_repaired"] = silver.sanitized.bad_unicode
        added = sum(t.rows_added for t in silver.tables if t.table == "market_snapshots")
        result.summary = f"+{added:,} snapshot rows, {len(gold.tables)} gold tables"
        requests = sum(1 for r in silver.runs if HISTORY_REQUEST.search(r))
        result.detail = (
            f"{len(silver.runs) - requests} new bronze run(s)"
            + (f" and {requests} history request(s)" if requests else "")
            + " into silver"
            if silver.changed
            else "silver up to date"
        ) + (
            f"; gold ({gold.vs_currency}) up to date, lake snapshot {gold.lake_version}"
            if gold.up_to_date
            else f"; gold ({gold.vs_currency}) built, audited and committed as lake "
            f"snapshot {gold.lake_version}"
        )
        if cleaning := silver.describe_cleaning():
            result.detail += f"; {cleaning}"
        if quarantined := silver.quarantined_runs:
            result.detail += (
                f"; {len(quarantined)} bronze run(s) quarantined ({quarantined[0][0]}: "
                f"{quarantined[0][1]})"
            )
    elif result.stage == "check":
        checks = audited if audited is not None else run_checks(settings, progress=progress)
        failed = [c for c in checks if c.blocks]
        if failed:
            raise ChecksFailed(failed)
        warned = [c for c in checks if not c.passed]
        result.rows = {"checks_passed": len(checks) - len(warned), "checks_warned": len(warned)}
        result.summary = f"{len(checks) - len(warned)} passed" + (
            f", {len(warned)} warned" if warned else ""
        )
        result.detail = (
            f"all {len(checks)} checks passed"
            if not warned
            else "warnings: " + ", ".join(c.name for c in warned)
        )
    elif result.stage == "publish":
        if settings.postgres_dsn is None:
            result.status = "skipped"
            result.summary = "no Postgres configured"
            result.detail = "set CRYPTOLAKE_POSTGRES_DSN or pass --postgres to publish"
            return None
        published = outcome = publish(settings, progress=progress)
        if published.up_to_date:
            result.summary = "up to date"
            result.detail = f"{published.target} already has this lake"
        else:
            result.rows = {t.table: t.rows_written for t in published.tables}
            staged = result.rows.get("staging_market_snapshots", 0)
            history = result.rows.get("staging_coin_history_daily", 0)
            marts = [t for t in published.tables if not t.table.startswith("staging_")]
            result.summary = f"+{staged:,} staging rows, {len(marts)} marts" + (
                f", {history:,} history rows" if history else ""
            )
            result.detail = f"publish {published.publish_id} to {published.target}"
    result.status = "ok"
    return outcome
