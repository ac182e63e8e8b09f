"""The lake's assets computed by the library's stage functions (declared in specs.py).

The steps are the stages of `cryptolake run`, each under the lake's lock (steps.py): `ingest`
lands the snapshot datasets as one bronze run, `history` spends the history budget,
`transform` builds silver then gold in one step (as the CLI does: a commit conflict with
another writer reruns both), and `publish` writes Postgres. The SQL checks are the asset
checks of the table each reads: blocking ones fail the step before gold commits, so publish
never runs on gold that failed its audit.
"""

# No `from __future__ import annotations`: Dagster reads the asset functions' annotations.
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    multi_asset,
)

from ..backfill import fetch_history
from ..bronze import new_run_id
from ..checks import CheckResult, ChecksFailed
from ..gold import GoldResult, build_gold
from ..ingest import ingest
from ..publish import publish
from ..silver import SilverResult, build_silver
from ..transform import retry_conflicts
from .lineage import published_tables
from .resources import CryptolakeResource
from .specs import (
    CHECK_SPECS,
    CHECKS,
    GOLD_SPECS,
    HISTORY_SPEC,
    POSTGRES_SPECS,
    SILVER_SPECS,
    SNAPSHOT_SPECS,
    check_asset,
    layer_key,
)
from .steps import POOL, LogProgress, commit_run_id, step


@multi_asset(name="ingest", specs=SNAPSHOT_SPECS, pool=POOL)
def ingest_snapshots(
    context: AssetExecutionContext, cryptolake: CryptolakeResource
) -> Iterator[MaterializeResult[None]]:
    """Fetch /coins/markets (the top coins, or all), /global and /coins/categories into
    bronze as one run."""
    with step(context, cryptolake, "ingest", creates_lake=True) as settings:
        result = ingest(settings, progress=LogProgress(context.log))
    for note in result.notes:
        context.log.warning(note)
    for d in result.datasets:
        yield MaterializeResult(
            asset_key=layer_key("bronze", d.dataset),
            metadata={
                "bronze_run_id": result.run_id,
                "snapshot_at": result.snapshot_at.isoformat(),
                "records": d.records,
                "requests": d.pages,
                "bytes": d.bytes,
                "seconds": round(d.seconds, 3),
                "manifest": result.manifest_path,
            },
        )


@multi_asset(name="history", specs=[HISTORY_SPEC], pool=POOL)
def history(
    context: AssetExecutionContext, cryptolake: CryptolakeResource
) -> Iterator[MaterializeResult[None]]:
    """Spend the history budget on the top coins' daily-history gaps.

    Unlike the history stage of `cryptolake run` (which must not fail a snapshot already
    landed), this is a job of its own: the API being unavailable is retried as any
    transient error (see steps.SERVICE_RETRY), then fails the run, which the UI shows; a
    materialization always means requests were made. The next run asks for what this one
    could not.
    """
    t0 = time.perf_counter()
    with step(context, cryptolake, "history", creates_lake=True) as settings:
        if settings.history_budget == 0:
            context.log.info(f"{settings.named('history_budget')} is 0: no history requests")
            yield MaterializeResult(metadata={"requests": 0, "budget": 0})
            return
        # A bronze run id of the lake's own shape: the orphan sweep and verify match
        # bodies to their manifests by it.
        result = fetch_history(
            settings,
            budget=settings.history_budget,
            run_id=new_run_id(datetime.now(UTC)),
            progress=LogProgress(context.log),
        )
    for note in result.notes:
        context.log.warning(note)
    yield MaterializeResult(
        metadata={
            "bronze_run_id": result.run_id,
            "requests": result.requests,
            "points": result.points,
            "coins": result.coins,
            "not_found": len(result.not_found),
            "requests_left": result.left,
            "bytes": result.bytes,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )


def _check_result(check: CheckResult) -> AssetCheckResult:
    spec = next(s for s in CHECK_SPECS if s.name == check.name)
    metadata: dict[str, Any] = {"failing_rows": check.failing_rows, "on_fail": check.on_fail}
    if check.sample:
        metadata["sample"] = [
            dict(zip(check.columns, (str(v) for v in row), strict=True)) for row in check.sample
        ]
    return AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=check.name,
        passed=check.passed,
        severity=AssetCheckSeverity.ERROR if check.blocks else AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _silver_results(silver: SilverResult, snapshot_id: int | None) -> Iterator[Any]:
    tables = {t.table: t for t in silver.tables}
    for spec in SILVER_SPECS:
        table = tables.get(spec.key.path[-1])
        metadata: dict[str, Any] = {"bronze_runs_read": len(silver.runs)}
        if table is not None:
            metadata |= {
                "rows_added": table.rows_added,
                "partitions_written": table.partitions_written,
                "rows_quarantined": sum(table.quarantined.values()),
                "seconds": round(table.seconds, 3),
            }
        if snapshot_id is not None:
            metadata["lake_snapshot_id"] = snapshot_id
        yield MaterializeResult(asset_key=spec.key, metadata=metadata)
    # A quarantine check did its job when it set rows aside: a warning, with the count.
    for check in CHECKS:
        if check.on_fail == "quarantine":
            rows = silver.quarantined.get(check.name, 0)
            yield AssetCheckResult(
                asset_key=check_asset(check),
                check_name=check.name,
                passed=rows == 0,
                severity=AssetCheckSeverity.WARN,
                metadata={"rows_quarantined": rows},
            )


def _gold_results(gold: GoldResult, seconds: float) -> Iterator[Any]:
    for table in gold.tables:
        yield MaterializeResult(
            asset_key=layer_key("gold", table.table),
            metadata={
                "dagster/row_count": table.rows,
                "lake_snapshot_id": int(gold.lake_version),
                "vs_currency": gold.vs_currency,
                "recomputed_from": gold.coin_daily_from or "",
                "up_to_date": gold.up_to_date,
                "seconds": round(table.seconds if table.seconds else seconds, 3),
            },
        )
    for check in gold.checks:
        yield _check_result(check)


@multi_asset(
    name="transform", specs=[*SILVER_SPECS, *GOLD_SPECS], check_specs=CHECK_SPECS, pool=POOL
)
def transform(context: AssetExecutionContext, cryptolake: CryptolakeResource) -> Iterator[Any]:
    """Silver from the bronze runs it has not read, then gold, audited in its transaction.

    A blocking check that fails keeps the lake's previous gold: the step reports the failing
    checks and fails, so nothing downstream (publish) runs.
    """
    run_id = commit_run_id(context)
    progress = LogProgress(context.log)
    with step(context, cryptolake, "transform") as settings:

        def build() -> tuple[SilverResult, GoldResult | ChecksFailed, float]:
            silver = build_silver(settings, run_id=run_id, progress=progress)
            t0 = time.perf_counter()
            try:
                gold: GoldResult | ChecksFailed = build_gold(
                    settings, run_id=run_id, progress=progress
                )
            except ChecksFailed as exc:
                gold = exc
            return silver, gold, time.perf_counter() - t0

        silver, gold, seconds = retry_conflicts(
            build, what="transform", on_retry=context.log.warning
        )
    for note in silver.notes:
        context.log.warning(note)
    if isinstance(gold, ChecksFailed):
        yield from _silver_results(silver, None)
        for failure in gold.failures:
            yield _check_result(failure)
        raise Failure(description=str(gold), allow_retries=False)
    yield from _silver_results(silver, gold.silver_snapshot_id)
    yield from _gold_results(gold, seconds)


@multi_asset(name="publish", specs=POSTGRES_SPECS, pool=POOL)
def publish_tables(
    context: AssetExecutionContext, cryptolake: CryptolakeResource
) -> Iterator[MaterializeResult[None]]:
    """Staging and marts into Postgres in one transaction; nothing when no DSN is set, or
    when Postgres already has this lake."""
    with step(context, cryptolake, "publish", reads_only=True) as settings:
        if settings.postgres_dsn is None:
            context.log.info("No Postgres configured (CRYPTOLAKE_POSTGRES_DSN): nothing published.")
            return
        result = publish(settings, progress=LogProgress(context.log))
    for note in result.notes:
        context.log.warning(note)
    if result.up_to_date:
        context.log.info(f"{result.target} already has this lake: nothing published.")
        return
    for table in result.tables:
        if table.table not in published_tables():
            continue
        yield MaterializeResult(
            asset_key=layer_key("postgres", table.table),
            metadata={
                "publish_id": result.publish_id or "",
                "target": result.target,
                "rows_written": table.rows_written,
                "dagster/row_count": table.rows_now,
                "seconds": round(table.seconds, 3),
            },
        )
