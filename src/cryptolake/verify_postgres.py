"""verify's Postgres check: staging holds exactly the snapshots silver holds, row for row.

Silver, gold and Postgres must agree on which market snapshots exist. This compares the rows
per snapshot of `silver.market_snapshots`
with `<schema>.staging_market_snapshots`. A snapshot Postgres lacks, or holds with other
counts, is published again; one Postgres holds and silver does not is only removed when no
bronze run proves it (never what bronze still proves: `verify --repair` first recovers such
runs into silver).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from .bronze_recover import ProcessedRun, bodies_of, recover_manifest
from .catalog import open_lake
from .errors import PublishError
from .gold import GOLD_MODELS, build_gold
from .lake import LakePaths
from .pgconnect import describe_target, explain_pg, scrub
from .settings import Settings
from .silver import build_silver
from .staging import STAGING

if TYPE_CHECKING:
    from .verify import CheckSummary, Finding


def _silver_counts(settings: Settings) -> dict[str, int]:
    """Rows per snapshot (ISO text, UTC) in silver as it is now."""
    with open_lake(settings, read_only=True) as con:
        return {
            str(at): int(n)
            for at, n in con.execute(
                "select strftime(snapshot_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'), "
                "count(*) from silver.market_snapshots group by 1"
            ).fetchall()
        }


def _postgres_counts(dsn: str, schema: str) -> dict[str, tuple[int, str, str, bool]] | None:
    """Per snapshot in staging: (rows, a run id, currency, sample); None when nothing was
    ever published there."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("select to_regclass(%s)", [f"{schema}.{STAGING}"]).fetchone()
        if not exists or exists[0] is None:
            return None
        rows = conn.execute(
            sql.SQL(
                "select to_char(snapshot_at at time zone 'UTC', "
                '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'), count(*), min(run_id), '
                "min(vs_currency), coalesce(bool_or(is_sample), false) from {} group by 1"
            ).format(sql.Identifier(schema, STAGING))
        ).fetchall()
    return {str(at): (int(n), str(r), str(c), bool(x)) for at, n, r, c, x in rows}


def _mart_differences(settings: Settings, dsn: str) -> list[str]:
    """`gold.x: 50 rows, Postgres 40` for each mart whose row count differs from gold's."""
    with open_lake(settings, read_only=True) as con:
        gold = {
            name: int((con.execute(f"select count(*) from gold.{name}").fetchone() or (0,))[0])
            for name in GOLD_MODELS
        }
    found = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        for name, rows in gold.items():
            exists = conn.execute(
                "select to_regclass(%s)", [f"{settings.pg_schema}.{name}"]
            ).fetchone()
            if not exists or exists[0] is None:
                found.append(f"{name}: {rows:,} rows in gold, none in Postgres")
                continue
            counted = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(settings.pg_schema, name))
            ).fetchone()
            if counted and int(counted[0]) != rows:
                found.append(f"{name}: {rows:,} rows in gold, {int(counted[0]):,} in Postgres")
    return found


def _coins(dsn: str, schema: str, snapshot: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            sql.SQL("select coin_id from {} where snapshot_at = %s::timestamptz").format(
                sql.Identifier(schema, STAGING)
            ),
            [snapshot],
        ).fetchall()
    return {str(r[0]) for r in rows}


def compare_postgres(
    settings: Settings,
    *,
    summary: CheckSummary,
    found: Callable[..., Finding],
    repair: bool,
    repaired: Callable[[Finding], None],
) -> None:
    """Add a finding per difference between silver's snapshots and staging's; with
    `repair`, publish what staging lacks (see the module doc)."""
    assert settings.postgres_dsn is not None
    dsn = settings.postgres_dsn.reveal()
    target = describe_target(dsn)
    try:
        lake_counts = _silver_counts(settings)
        pg_counts = _postgres_counts(dsn, settings.pg_schema)
    except psycopg.Error as exc:
        found(
            "postgres",
            f"cannot compare with Postgres {target}: {scrub(str(exc), dsn)}",
            "none by verify: check that Postgres is up and the DSN (--postgres or "
            "CRYPTOLAKE_POSTGRES_DSN) is right; the lake's own checks above stand",
        )
        return
    if pg_counts is None:
        summary.checked = 0
        found(
            "postgres",
            f"nothing published to {target} (schema {settings.pg_schema}) yet",
            "run `cryptolake publish`",
            blocking=False,
        )
        return
    summary.checked = len(set(lake_counts) | set(pg_counts))
    lake = LakePaths.of(settings)
    extra = sorted(s for s in pg_counts if s not in lake_counts)
    # A snapshot only Postgres holds is proven by bronze if its run's bodies are still there
    # (its manifest deleted, say): recovered, never deleted from Postgres.
    recoverable = [
        s
        for s in extra
        if not any(lake.runs.glob(f"ingest_date=*/{pg_counts[s][1]}.json"))
        and bodies_of(lake, pg_counts[s][1])
    ]
    unproven = [s for s in extra if s not in recoverable]
    findings: list[Finding] = []
    if extra:
        findings.append(
            found(
                "postgres",
                f"{target} holds {len(extra):,} snapshot(s) silver does not (first {extra[0]}): "
                f"{len(recoverable):,} with bodies still in bronze, {len(unproven):,} proven by "
                "no bronze run",
                "recover the runs bronze still holds into silver; remove the others from Postgres",
            )
        )
    if repair and recoverable:
        for s in recoverable:
            rows, run_id, currency, sample = pg_counts[s]
            recover_manifest(
                lake,
                ProcessedRun(run_id, s, currency, sample),
                silver_ids=_coins(dsn, settings.pg_schema, s),
            )
        build_silver(settings)
        build_gold(settings)
        lake_counts = _silver_counts(settings)
    lacking = sorted(s for s in lake_counts if s not in pg_counts)
    differ = sorted(s for s in lake_counts if s in pg_counts and pg_counts[s][0] != lake_counts[s])
    if lacking:
        findings.append(
            found(
                "postgres",
                f"{target} lacks {len(lacking):,} snapshot(s) silver holds (first {lacking[0]})",
                "publish them",
            )
        )
    if differ:
        s = differ[0]
        findings.append(
            found(
                "postgres",
                f"{len(differ):,} snapshot(s) differ in row count between silver and {target} "
                f"(first {s}: {lake_counts[s]:,} in silver, {pg_counts[s][0]:,} in Postgres)",
                "publish them again",
            )
        )
    marts = _mart_differences(settings, dsn)
    if marts:
        findings.append(
            found(
                "postgres",
                f"{len(marts)} mart(s) in {target} differ from gold ({'; '.join(marts)})",
                "publish the marts again",
            )
        )
    if repair and findings:
        _reconcile(settings, restage=lacking + differ, remove=unproven)
        for finding in findings:
            repaired(finding)


def _reconcile(settings: Settings, *, restage: list[str], remove: list[str]) -> None:
    """Take `restage` and `remove` out of staging and of the publish log, in one
    transaction, then publish: what the log no longer lists is staged again from silver."""
    from .publish import publish

    assert settings.postgres_dsn is not None
    dsn = settings.postgres_dsn.reveal()
    schema = settings.pg_schema
    gone = restage + remove
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("delete from {} where snapshot_at = any(%s::timestamptz[])").format(
                    sql.Identifier(schema, STAGING)
                ),
                [gone],
            )
            conn.execute(
                sql.SQL(
                    "update {} set snapshots = array(select unnest(snapshots) except "
                    "select unnest(%s::timestamptz[]))"
                ).format(sql.Identifier(schema, "publish_log")),
                [gone],
            )
    except psycopg.Error as exc:
        raise PublishError(
            f"Repairing Postgres {describe_target(dsn)} failed and was rolled back: "
            f"{explain_pg(scrub(str(exc), dsn))}"
        ) from None
    publish(settings, force=True)
