"""Gold: analytics tables built in-process from silver, audited before they commit.

Every table is one SQL model in `sql/duckdb/gold/`, and one DuckLake table `gold.<model>`.
A build runs in one DuckLake transaction: the models are (re)built, then the blocking and
warning checks run on them inside the transaction (write, audit), and only if none blocks does
it commit (publish). A reader, the report or `cryptolake publish` never sees gold that failed
a check: a failure rolls back, the lake keeps its previous gold, and the failing checks and
their first rows are recorded in `meta.audit_failures` for `cryptolake check`.

`coin_daily` is incremental by time range (SQLMesh's model): DuckLake's change feed says the
earliest day silver changed since the last build (its snapshots, daily history or 4-hour
candles), and the rows from the day before it on are recomputed, reading 33 days further back
for the 30-day windows. The other models are small next to silver and rebuilt whole. Gold is
built for one quote currency: the one asked for (`--vs-currency`), else the currency of the
lake's latest snapshot; a change of currency or of the models rebuilds everything.
`meta.build` records what the gold was built from.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb

from . import __version__
from .catalog import (
    commit_error,
    latest_snapshot,
    open_lake,
    rollback,
    set_commit_message,
    snapshot_id,
)
from .checkdefs import check_defs
from .checks import CheckResult, ChecksFailed, evaluate, record_audit_failure
from .duck import explain_damage, one_line
from .errors import CryptolakeError, LakeError, TransformError
from .failpoints import failpoint
from .fserrors import duckdb_io_error, on_lake
from .lake import LakePaths
from .lakedb import refresh_meta_views, require_silver
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .sqlfiles import load_sql, sql_names

log = logging.getLogger(__name__)

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


# How far before the first day it recomputes `coin_daily` reads silver (snapshots, history and
# candles; the literal in sql/duckdb/gold/coin_daily.sql): the 30-day volatility needs 30
# returns, the first of them the close of the day before, read from that day's snapshots and
# the next day's; 3 days of margin.
COIN_DAILY_LOOKBACK_DAYS = 33
# Models rebuilt from `coin_daily_from` on (a `day` column; each reads what it needs before).
INCREMENTAL_MODELS = ("coin_daily", "market_daily")
# Gold tables DuckLake partitions: coin_daily by month, so that an incremental build (the
# last weeks) deletes from and reads the last months' files only, not the whole history.
PARTITIONED_BY = {"coin_daily": "year(day), month(day)"}
EVERYTHING = date(1900, 1, 1)  # `coin_daily_from` for a whole rebuild


@dataclass(frozen=True, slots=True)
class GoldResult:
    tables: list[GoldTable]
    vs_currency: str = "usd"
    lake_version: str = ""  # the DuckLake snapshot id the build committed
    checks: list[CheckResult] = field(default_factory=list)
    coin_daily_from: str | None = None  # the first day recomputed, None for a whole rebuild
    up_to_date: bool = False  # nothing changed since the last gold: nothing was committed

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


def models_fingerprint(vs_currency: str) -> str:
    """What gold's content depends on besides silver: its SQL, the currency, this version."""
    digest = hashlib.sha256(f"{__version__}\n{vs_currency}\n".encode())
    for folder in ("duckdb/gold", "duckdb/macros"):
        for name in sql_names(folder):
            digest.update(load_sql(f"{folder}/{name}.sql").encode())
    return digest.hexdigest()[:12]


def resolve_currency(con: duckdb.DuckDBPyConnection, asked: str | None) -> str:
    """The currency to build gold for: `asked` if the lake holds it, else the latest one's.

    Raises LakeError naming the currencies the lake holds when it holds none or not `asked`.
    """
    if (quick := _latest_snapshot_currency(con, asked)) is not None:
        return quick
    held = con.execute(
        "select vs_currency, count(distinct snapshot_at), max(snapshot_at)::varchar "
        "from silver.market_snapshots group by vs_currency order by max(snapshot_at) desc"
    ).fetchall()
    if not held:
        raise LakeError(
            "silver.market_snapshots is empty; run `cryptolake ingest` then `cryptolake "
            "transform` (or `cryptolake run --sample`)."
        )
    if asked is None:
        return str(held[0][0])
    if asked not in {h[0] for h in held}:
        holds = "; ".join(f"{c}: {n} snapshot(s), latest {at[:16]}" for c, n, at in held)
        raise LakeError(
            f"The lake holds no {asked} snapshots (it holds {holds}); drop --vs-currency "
            f"(or CRYPTOLAKE_VS_CURRENCY) to build gold for {held[0][0]}, or ingest with "
            f"--vs-currency {asked} first."
        )
    return asked


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
            )
        latest_day = set_latest_snapshot(con)
        first_day = (
            None
            if full_rebuild
            else _coin_daily_from(con, fingerprint, silver_snapshot, near=latest_day)
        )
        snapshots_from = _snapshots_changed_from(con, silver_snapshot)
        con.execute("set variable coin_daily_from = ?", [first_day or EVERYTHING])
        # The checks on whole tables look at the days this build changed.
        audit_from = latest_day if first_day == date.max else first_day or EVERYTHING
        con.execute("set variable audit_from = ?", [audit_from])
        con.execute("begin")
        try:
            refresh_meta_views(con, lake)
            for done, name in enumerate(GOLD_MODELS):
                progress(Progress("gold", "tables", done, len(GOLD_MODELS), name))
                by_day = name in INCREMENTAL_MODELS
                if by_day and first_day == date.max:
                    results.append(_unchanged(con, name))  # silver has not changed
                    continue
                incremental = by_day and first_day is not None
                if name == "crypto_analytics_mart":
                    con.execute(
                        "set variable latest_complete_day = ?",
                        [max_day(con, "is_complete_day", near=latest_day)],
                    )
                results.append(_build_model(con, name, incremental=incremental))
                if name == "market_cap_segments":
                    for macro in sql_names("duckdb/macros"):
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
    )


def _scope(first_day: date | None) -> str:
    if first_day is None:
        return "whole rebuild"
    if first_day == date.max:
        return "coin_daily unchanged"
    return f"coin_daily from {first_day}"


def _unchanged(con: duckdb.DuckDBPyConnection, name: str) -> GoldTable:
    row = con.execute(f"select count(*) from gold.{name}").fetchone()
    return GoldTable(name, int(row[0]) if row else 0, 0.0)


def set_latest_snapshot(con: duckdb.DuckDBPyConnection) -> date:
    """Set `latest_snapshot_at` and `latest_snapshot_date`: the currency's latest snapshot.

    Read from the lake's latest day first (its max comes from DuckLake's statistics, and one
    partition is read), the whole table only when the currency has no rows that day.
    """
    con.execute(
        "set variable latest_snapshot_at = (select max(snapshot_at) from silver.market_snapshots "
        "where vs_currency = getvariable('vs_currency') and snapshot_date = "
        "(select max(snapshot_date) from silver.market_snapshots))"
    )
    found = con.execute("select getvariable('latest_snapshot_at') is not null").fetchone()
    if not (found and found[0]):
        con.execute(
            "set variable latest_snapshot_at = (select max(snapshot_at) "
            "from silver.market_snapshots where vs_currency = getvariable('vs_currency'))"
        )
    con.execute(
        "set variable latest_snapshot_date = cast(getvariable('latest_snapshot_at') as date)"
    )
    # The latest categories snapshot (any run): its max from the statistics, then as literals,
    # so that gold.category_leaderboard reads that one partition, not a year of them.
    con.execute(
        "set variable latest_categories_at = "
        "(select max(snapshot_at) from silver.category_snapshots)"
    )
    con.execute(
        "set variable latest_categories_date = cast(getvariable('latest_categories_at') as date)"
    )
    row = con.execute("select getvariable('latest_snapshot_date')").fetchone()
    return row[0] if row and isinstance(row[0], date) else EVERYTHING


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


def _coin_daily_from(
    con: duckdb.DuckDBPyConnection, fingerprint: str, silver_snapshot: int, *, near: date
) -> date | None:
    """The first day `coin_daily` must recompute, or None to rebuild it whole.

    Incremental only on top of a build with the same models and currency, read from
    DuckLake's change feeds since the snapshot that build read: the earliest day changed in
    silver.market_snapshots, silver.coin_history_daily (both in the gold currency) or
    silver.coin_ohlc_4h. A backfill's year of history recomputes from a year back.
    """
    try:
        row = con.execute(
            "select models_fingerprint, silver_snapshot_id from meta.build"
        ).fetchone()
        built = con.execute("select count(*) from gold.coin_daily").fetchone()
    except duckdb.CatalogException:
        return None  # no gold yet, or one built before these columns existed
    if (
        row is None
        or row[0] != fingerprint
        or not built
        or latest_snapshot(con, stage="gold") is None
    ):
        return None
    since = int(row[1])
    if since >= silver_snapshot:
        return date.max  # silver unchanged: no day to recompute
    feeds = " union all ".join(
        f"select min({column}) as day from ducklake_table_changes("
        f"current_database(), 'silver', '{table}', $since, $until) "
        "where vs_currency = getvariable('vs_currency')"
        for table, column in _COIN_DAILY_INPUTS
    )
    try:
        changed = con.execute(
            f"select min(day) from ({feeds})", {"since": since + 1, "until": silver_snapshot}
        ).fetchone()
        # The lake's latest snapshot day when gold was built: gold's latest day with snapshots.
        latest = max_day(con, "source <> 'history'", near=near)
    except duckdb.Error:
        return None  # the build's snapshot was expired, or an input is missing: rebuild whole
    if changed is None or not isinstance(changed[0], date):
        return date.max
    # A change on day D moves the close (and completeness) of D - 1 too; and a new latest
    # day completes the previous latest one, however far back (runs may have been missed).
    first: date = changed[0] - timedelta(days=1)
    if latest is not None:
        first = min(first, latest)
    return first


# How far back from gold.coin_daily's newest day `max_day` looks first.
RECENT_DAYS = 40


def max_day(con: duckdb.DuckDBPyConnection, where: str, *, near: date) -> date | None:
    """The last day of gold.coin_daily with a row where `where` holds (None: no such row).

    Reads the last weeks' partitions only, when that answers it: `where` is looked for from
    RECENT_DAYS before `near` (the lake's latest snapshot day) on, a literal bound, so
    DuckLake prunes the older files; the whole table only when nothing there matches. On
    object storage a full scan of a year of coin_daily is seconds of reads.
    """
    since = near - timedelta(days=RECENT_DAYS)
    for bound in (f" and day >= date '{since.isoformat()}'", ""):
        row = con.execute(f"select max(day) from gold.coin_daily where ({where}){bound}").fetchone()
        if row and isinstance(row[0], date):
            return row[0]
    return None


# The silver tables `coin_daily` reads, with the column naming the day a row counts for.
_COIN_DAILY_INPUTS = (
    ("market_snapshots", "snapshot_date"),
    ("coin_history_daily", "day"),
    ("coin_ohlc_4h", "day"),
)


def _build_model(
    con: duckdb.DuckDBPyConnection, name: str, *, incremental: bool = False
) -> GoldTable:
    t0 = time.perf_counter()
    sql = load_sql(f"duckdb/gold/{name}.sql")
    try:
        if incremental:
            con.execute(f"delete from gold.{name} where day >= getvariable('coin_daily_from')")
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


def _latest_snapshot_currency(con: duckdb.DuckDBPyConnection, asked: str | None) -> str | None:
    """`resolve_currency`'s answer read cheaply, or None to work it out from all of silver.

    The latest snapshot run (in `asked`, if given) comes from `silver.processed_runs`, one
    row a run; it counts if silver holds rows of it, looked for in its day's partition only.
    (A run whose rows were all set aside by a check leaves the answer to the full query.) On
    object storage this is two small reads instead of a scan of a year of snapshots.
    """
    row = con.execute(
        "select vs_currency, snapshot_at::varchar, cast(snapshot_at as date) "
        "from silver.processed_runs "
        f"where snapshot_at is not null and not regexp_matches(run_id, '{HISTORY_RUN}') "
        "and vs_currency = coalesce(?, vs_currency) order by snapshot_at desc limit 1",
        [asked],
    ).fetchone()
    if row is None or not isinstance(row[2], date):
        return None
    currency, at, day = row
    found = con.execute(
        "select count(*) from (select 1 from silver.market_snapshots "
        f"where snapshot_date = date '{day.isoformat()}' and snapshot_at = ?::timestamptz "
        "and vs_currency = ? limit 1)",
        [at, currency],
    ).fetchone()
    return str(currency) if found and found[0] else None


def _snapshots_changed_from(con: duckdb.DuckDBPyConnection, silver_snapshot: int) -> date | None:
    """The first day silver.market_snapshots changed on (any currency) since the snapshot
    the last gold build read; date.max for none; None when `meta.snapshots` must be redone
    whole (no earlier build, or its snapshot expired)."""
    try:
        row = con.execute("select silver_snapshot_id from meta.build").fetchone()
        con.execute("select count(*) from meta.snapshots").fetchone()
        if row is None:
            return None
        since = int(row[0])
        if since >= silver_snapshot:
            return date.max
        changed = con.execute(
            "select min(snapshot_date) from ducklake_table_changes(current_database(), "
            "'silver', 'market_snapshots', ?, ?)",
            [since + 1, silver_snapshot],
        ).fetchone()
    except duckdb.Error:
        return None
    if changed is None or not isinstance(changed[0], date):
        return date.max
    return changed[0]


# A history request's run id (`<run_id>-h00001`): not a market snapshot.
HISTORY_RUN = "-h[0-9]{5,}$"


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
    from `changed_from` on (see `_snapshots_changed_from`)."""
    con.execute(
        "create or replace table meta.build as select ? as models_fingerprint, "
        "? as vs_currency, ?::bigint as silver_snapshot_id, ? as run_id, now() as built_at, "
        "? as cryptolake_version",
        [fingerprint, currency, silver_snapshot, run_id, __version__],
    )
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
