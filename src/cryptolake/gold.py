"""Gold: analytics tables built in-process from silver, audited before they commit.

Every table is one SQL model in `sql/duckdb/gold/`, and one DuckLake table `gold.<model>`.
A build runs in one DuckLake transaction: the models are (re)built, then the blocking and
warning checks run on them inside the transaction (write, audit), and only if none blocks does
it commit (publish). A reader, the report or `cryptolake publish` never sees gold that failed
a check: a failure rolls back, the lake keeps its previous gold, and the failing checks and
their first rows are recorded in `meta.audit_failures` for `cryptolake check`.

`coin_daily` is incremental by time range (SQLMesh's model): DuckLake's change feed says the
earliest day silver changed since the last build (its snapshots, daily history or 4-hour
candles), and the rows from the day before it on are recomputed from the snapshots of one more
day; the first day's return and the 30-day windows read gold's own closes and returns of the
29 days before (rows the change did not reach). The other models are small next to silver and
rebuilt whole. Gold is
built for one quote currency: the one asked for (`--vs-currency`), else the currency of the
lake's latest snapshot; a change of currency or of the models rebuilds everything.
`meta.build` records what the gold was built from.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import duckdb

from . import __version__
from .catalog import (
    latest_snapshot,
    open_lake,
    rollback,
    schema_tables,
    set_commit_message,
    snapshot_id,
)
from .catalog_errors import commit_error
from .checkdefs import check_defs
from .checks import CheckResult, ChecksFailed, evaluate, record_audit_failure
from .duck import explain_damage, one_line
from .errors import CryptolakeError, TransformError
from .failpoints import failpoint
from .fserrors import duckdb_io_error, on_lake
from .gold_scope import (
    EVERYTHING,
    coin_daily_from,
    max_day,
    resolve_currency,
    set_latest_snapshot,
    snapshots_changed_from,
)
from .lake import LakePaths
from .lakedb import refresh_meta_views, require_silver
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .sqlfiles import load_sql, sql_names

log = logging.getLogger(__name__)

# The lake's macros (sql/duckdb/macros), created with gold: they read gold and silver.
MACROS = tuple(sql_names("duckdb/macros"))

# Build order: a model may read the gold tables listed before it. The segments come first:
# the macros read them.
GOLD_MODELS = (
    "market_cap_segments",
    "coin_daily",
    "market_daily",
    "crypto_analytics_mart",
    "market_segment_analysis",
    "category_leaderboard",
)


@dataclass(frozen=True, slots=True)
class GoldTable:
    table: str
    rows: int
    seconds: float


# What `coin_daily` reads before the first day it recomputes: the snapshots of the day before
# (its last snapshot opens the first day; the literal in sql/duckdb/gold/coin_daily.sql), and
# gold's own rows of the 29 days before (sql/duckdb/incremental/coin_daily_prior.sql): a
# 30-day volatility window ending on the first day starts 29 days before it, and the returns
# in it are those gold holds.
COIN_DAILY_SNAPSHOT_LOOKBACK_DAYS = 1
COIN_DAILY_PRIOR_DAYS = 29
# coin_daily_prior for a whole rebuild: no prior days (gold.coin_daily may not exist yet).
_NO_PRIOR_DAYS = (
    "select null::varchar as coin_id, null::date as day, null::boolean as is_complete_day, "
    "null::double as close_price, null::double as daily_return_ratio limit 0"
)
# Models rebuilt from `coin_daily_from` on (a `day` column; each reads what it needs before).
INCREMENTAL_MODELS = ("coin_daily", "market_daily")
# Gold tables DuckLake partitions: coin_daily by month, so that an incremental build (the
# last weeks) deletes from and reads the last months' files only, not the whole history.
PARTITIONED_BY = {"coin_daily": "year(day), month(day)"}


@dataclass(frozen=True, slots=True)
class GoldResult:
    tables: list[GoldTable]
    vs_currency: str = "usd"
    lake_version: str = ""  # the DuckLake snapshot id the build committed
    checks: list[CheckResult] = field(default_factory=list)
    coin_daily_from: str | None = None  # the first day recomputed, None for a whole rebuild
    up_to_date: bool = False  # nothing changed since the last gold: nothing was committed
    silver_snapshot_id: int | None = None  # the lake snapshot of the silver it was built from

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


def models_fingerprint(vs_currency: str) -> str:
    """What gold's content depends on besides silver: its SQL, the currency, this version."""
    digest = hashlib.sha256(f"{__version__}\n{vs_currency}\n".encode())
    for folder in ("duckdb/gold", "duckdb/incremental", "duckdb/macros"):
        for name in sql_names(folder):
            digest.update(load_sql(f"{folder}/{name}.sql").encode())
    return digest.hexdigest()[:12]


@on_lake("build gold")
def build_gold(
    settings: Settings,
    *,
    run_id: str | None = None,
    full_rebuild: bool = False,
    progress: ProgressCallback = ignore_progress,
) -> GoldResult:
    """Build and audit gold in one DuckLake transaction; commit only if every check passes.

    Returns the tables, the checks and the snapshot id committed. Raises `ChecksFailed` (the
    lake keeps its previous gold; the failures are kept in `meta.audit_failures`) when a
    blocking check fails, `LakeError` when silver is empty or lacks the currency asked for,
    `TransformError` when a model fails.
    """
    lake = LakePaths.of(settings)
    results: list[GoldTable] = []
    with open_lake(settings) as con:
        require_silver(con)
        currency = resolve_currency(con, settings.vs_currency)
        con.execute("set variable vs_currency = ?", [currency])
        fingerprint = models_fingerprint(currency)
        silver_snapshot = snapshot_id(con)
        if not full_rebuild and (current := _current_gold(con, fingerprint)) is not None:
            # Nothing changed since the last gold (same models, same currency, no silver
            # commit since): no new snapshot, so publish stays "up to date".
            checks = evaluate(con, check_defs(on_fail=("block", "warn")), progress=progress)
            if failed := [c for c in checks if c.blocks]:
                raise ChecksFailed(failed)
            progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "up to date"))
            return GoldResult(
                [_unchanged(con, name) for name in GOLD_MODELS],
                vs_currency=currency,
                lake_version=str(current),
                checks=checks,
                up_to_date=True,
                silver_snapshot_id=silver_snapshot,
            )
        latest_day = set_latest_snapshot(con)
        first_day = (
            None
            if full_rebuild
            else coin_daily_from(con, fingerprint, silver_snapshot, near=latest_day)
        )
        snapshots_from = snapshots_changed_from(con, silver_snapshot)
        con.execute("set variable coin_daily_from = ?", [first_day or EVERYTHING])
        # The checks on whole tables look at the days this build changed.
        audit_from = latest_day if first_day == date.max else first_day or EVERYTHING
        con.execute("set variable audit_from = ?", [audit_from])
        present = schema_tables(con, "gold")
        define_coin_daily_prior(con, incremental=first_day is not None and "coin_daily" in present)
        con.execute("begin")
        try:
            refresh_meta_views(con, lake)
            for done, name in enumerate(GOLD_MODELS):
                progress(Progress("gold", "tables", done, len(GOLD_MODELS), name))
                by_day = name in INCREMENTAL_MODELS
                if by_day and first_day == date.max:
                    results.append(_unchanged(con, name))  # silver has not changed
                    continue
                if name == "crypto_analytics_mart":
                    con.execute(
                        "set variable latest_complete_day = ?",
                        [max_day(con, "is_complete_day", near=latest_day)],
                    )
                # Same models as the gold there (first_day set): its tables are kept and
                # their rows replaced, not the tables re-created (see _build_model).
                mode: BuildMode = (
                    "rebuild"
                    if first_day is None or name not in present
                    else "incremental"
                    if by_day
                    else "replace_rows"
                )
                results.append(_build_model(con, name, mode=mode))
                if name == "market_cap_segments" and (
                    first_day is None or not set(MACROS) <= lake_macros(con)
                ):
                    for macro in MACROS:
                        con.execute(load_sql(f"duckdb/macros/{macro}.sql"))
            _record_build(
                con,
                fingerprint=fingerprint,
                currency=currency,
                silver_snapshot=silver_snapshot,
                run_id=run_id,
                changed_from=None if full_rebuild else snapshots_from,
            )
            progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "audit"))
            checks = evaluate(con, check_defs(on_fail=("block", "warn")), progress=progress)
            failed = [c for c in checks if c.blocks]
            if failed:
                raise ChecksFailed(failed)
            set_commit_message(
                con,
                f"gold: built for {currency}, {_scope(first_day)}",
                stage="gold",
                run_id=run_id,
                vs_currency=currency,
            )
            failpoint("gold.before_commit")
            con.execute("commit")
        except BaseException as exc:
            rollback(con)
            if isinstance(exc, ChecksFailed):
                record_audit_failure(con, exc.failures, run_id=run_id)
            elif isinstance(exc, duckdb.Error):
                if (translated := commit_error(settings, exc, doing="build gold")) is not None:
                    raise translated from exc
                raise TransformError(
                    f"Committing gold failed: {one_line(exc)}. The lake keeps its previous "
                    f"gold; {explain_damage(exc, 'fix the cause and run it again.')}"
                ) from exc
            raise
        version = snapshot_id(con)
    progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "committed"))
    return GoldResult(
        results,
        vs_currency=currency,
        lake_version=str(version),
        checks=checks,
        coin_daily_from=str(first_day) if first_day and first_day != date.max else None,
        silver_snapshot_id=silver_snapshot,
    )


def define_coin_daily_prior(con: duckdb.DuckDBPyConnection, *, incremental: bool) -> None:
    """Define the temp view `coin_daily_prior` that gold.coin_daily's model reads: gold's own
    rows of the days before `coin_daily_from` for an incremental build, none for a whole one.

    Set the variables `vs_currency` and `coin_daily_from` first.
    """
    sql = load_sql("duckdb/incremental/coin_daily_prior.sql") if incremental else _NO_PRIOR_DAYS
    con.execute(f"create or replace temp view coin_daily_prior as {sql}")


def _scope(first_day: date | None) -> str:
    if first_day is None:
        return "whole rebuild"
    if first_day == date.max:
        return "coin_daily unchanged"
    return f"coin_daily from {first_day}"


def _unchanged(con: duckdb.DuckDBPyConnection, name: str) -> GoldTable:
    row = con.execute(f"select count(*) from gold.{name}").fetchone()
    return GoldTable(name, int(row[0]) if row else 0, 0.0)


def _current_gold(con: duckdb.DuckDBPyConnection, fingerprint: str) -> int | None:
    """The last gold's snapshot id if it is built with these models from silver as it is now
    (no silver commit since), else None."""
    gold = latest_snapshot(con, stage="gold")
    silver = latest_snapshot(con, stage="silver")
    try:
        row = con.execute(
            "select models_fingerprint, silver_snapshot_id from meta.build"
        ).fetchone()
    except duckdb.CatalogException:
        return None
    if gold is None or row is None or row[0] != fingerprint:
        return None
    if silver is not None and silver.snapshot_id > int(row[1]):
        return None
    return gold.snapshot_id


# How a model is built: `incremental` replaces its rows from `coin_daily_from` on,
# `replace_rows` all its rows (the table stays: a build adds data files, not a table, to the
# catalog, which DuckLake keeps until the snapshot expires), `rebuild` re-creates the table
# (no gold yet, or built by other models or for another currency: its columns may differ).
BuildMode = Literal["incremental", "replace_rows", "rebuild"]


def lake_macros(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of the macros stored in the lake."""
    return {
        str(r[0])
        for r in con.execute(
            "select function_name from duckdb_functions() "
            "where database_name = current_database() and function_type = 'macro'"
        ).fetchall()
    }


def _build_model(
    con: duckdb.DuckDBPyConnection, name: str, *, mode: BuildMode = "rebuild"
) -> GoldTable:
    t0 = time.perf_counter()
    sql = load_sql(f"duckdb/gold/{name}.sql")
    try:
        if mode == "incremental":
            con.execute(f"delete from gold.{name} where day >= getvariable('coin_daily_from')")
            con.execute(f"insert into gold.{name} by name {sql}")
        elif mode == "replace_rows":
            con.execute(f"delete from gold.{name}")
            con.execute(f"insert into gold.{name} by name {sql}")
        elif name in PARTITIONED_BY:
            # Created empty, partitioned, then filled: a file per partition from the start.
            con.execute(f"create or replace table gold.{name} as select * from ({sql}) limit 0")
            con.execute(f"alter table gold.{name} set partitioned by ({PARTITIONED_BY[name]})")
            con.execute(f"insert into gold.{name} by name {sql}")
        else:
            con.execute(f"create or replace table gold.{name} as {sql}")
    except duckdb.Error as exc:
        if isinstance(exc, CryptolakeError):
            raise
        if (translated := duckdb_io_error(exc, doing="build gold")) is not None:
            raise translated from exc
        raise TransformError(
            f"Building gold.{name} failed: {exc}. The lake keeps its previous gold."
        ) from exc
    row = con.execute(f"select count(*) from gold.{name}").fetchone()
    table = GoldTable(name, int(row[0]) if row else 0, time.perf_counter() - t0)
    log.info("gold.%s: %d rows in %.2fs", name, table.rows, table.seconds)
    return table


# meta.build's columns and types (an older cryptolake typed run_id by its first value).
_BUILD_COLUMNS = [
    ("models_fingerprint", "VARCHAR"),
    ("vs_currency", "VARCHAR"),
    ("silver_snapshot_id", "BIGINT"),
    ("run_id", "VARCHAR"),
    ("built_at", "TIMESTAMP WITH TIME ZONE"),
    ("cryptolake_version", "VARCHAR"),
]


def _record_build(
    con: duckdb.DuckDBPyConnection,
    *,
    fingerprint: str,
    currency: str,
    silver_snapshot: int,
    run_id: str | None,
    changed_from: date | None,
) -> None:
    """`meta.build` (one row: what this gold was built from) and `meta.snapshots`, redone
    from `changed_from` on (see `gold_scope.snapshots_changed_from`)."""
    build = (
        "select ?::varchar as models_fingerprint, ?::varchar as vs_currency, "
        "?::bigint as silver_snapshot_id, ?::varchar as run_id, now() as built_at, "
        "?::varchar as cryptolake_version"
    )
    values = [fingerprint, currency, silver_snapshot, run_id, __version__]
    columns = con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'meta' "
        "and table_name = 'build' order by column_index"
    ).fetchall()
    if columns == _BUILD_COLUMNS:  # the row replaced, the table kept (see BuildMode)
        con.execute("delete from meta.build")
        con.execute(f"insert into meta.build {build}", values)
    else:
        con.execute(f"create or replace table meta.build as {build}", values)
    # Every market snapshot silver held (all currencies): what publish may ship to staging.
    # Redone from the first day silver changed on (its partitions only), or whole.
    select = (
        "select snapshot_at, any_value(run_id) as run_id, any_value(vs_currency) as "
        "vs_currency, count(*) as coins from silver.market_snapshots {where} "
        "group by snapshot_at order by snapshot_at"
    )
    if changed_from is None:
        con.execute("create or replace table meta.snapshots as " + select.format(where=""))
    elif changed_from != date.max:
        day = f"date '{changed_from.isoformat()}'"
        con.execute(f"delete from meta.snapshots where cast(snapshot_at as date) >= {day}")
        where = f"where snapshot_date >= {day}"
        con.execute("insert into meta.snapshots " + select.format(where=where))
