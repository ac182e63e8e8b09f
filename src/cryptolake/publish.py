"""Publish: the lake's staging and mart tables into Postgres, through DuckDB's postgres extension.

One publish is one Postgres transaction (DuckDB runs its statements and `postgres_execute`
calls on one connection inside it): consumers see the previous complete state until COMMIT,
then the new one. Marts are emptied with DELETE, not dropped or truncated, so views that
consumers built on them keep working and readers are never blocked. Staging only ever gains
the snapshots it does not have yet. Rows travel by DuckDB's binary COPY into tables with
explicit Postgres types (`sql/postgres/`), matched by column name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import psycopg

from . import __version__
from .catalog import attach_lake, lake_id, latest_snapshot
from .duck import connect, one_line, quote_literal
from .errors import ConfigError, LakeError, PublishError
from .fserrors import on_lake
from .gold import GOLD_MODELS
from .lake import LakePaths
from .marts import count, refresh_start, replace_mart
from .pgconnect import (
    LOCK_TIMEOUT,
    check_privileges,
    check_sample_mixing,
    describe_target,
    duckdb_dsn,
    explain_pg,
    publish_lock,
    scrub,
)
from .pgext import load_postgres_extension, pg_execute, pg_rows
from .pgschema import check_encoding, ddl_statements, evolve_table
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .staging import (
    SILVER_SOURCE,
    STAGING,
    DayLoad,
    LoadedPartition,
    analyze_statement,
    attach_statement,
    attached_days,
    load_day,
    prepare_schema,
    read_template,
)
from .staging_loads import load_partitions

log = logging.getLogger(__name__)

__all__ = [
    "STAGING",
    "PublishResult",
    "PublishedTable",
    "describe_target",
    "load_postgres_extension",
    "publish",
]

MARTS = GOLD_MODELS
# DDL files in the order they must run: tables, then the view that reads them.
DDL = (STAGING, *MARTS, "publish_log", "crypto_market_summary")
STATEMENT_TIMEOUT = "15min"
IDLE_IN_TRANSACTION_TIMEOUT = "5min"
# Columns ANALYZE samples on the marts that grow with history; the small marts get all.
STATS_COLUMNS = {"coin_daily": ("coin_id", "day", "symbol", "market_cap_rank")}


@dataclass(frozen=True, slots=True)
class PublishedTable:
    table: str
    rows_written: int
    rows_now: int
    seconds: float


@dataclass(frozen=True, slots=True)
class PublishResult:
    publish_id: str | None
    target: str
    schema: str
    tables: list[PublishedTable]
    snapshots_added: int
    up_to_date: bool = False
    notes: list[str] = field(default_factory=list)  # schema changes users should know of


def _pg(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run raw SQL in Postgres inside DuckDB's current transaction."""
    pg_execute(con, sql)


def _exists(con: duckdb.DuckDBPyConnection, schema: str, relation: str) -> bool:
    """Whether `schema.relation` exists, as this transaction sees it."""
    rows = pg_rows(con, f"select to_regclass('{schema}.{relation}') is not null")
    return bool(rows and rows[0][0])


@on_lake("read the lake to publish it")
def publish(
    settings: Settings,
    *,
    force: bool = False,
    progress: ProgressCallback = ignore_progress,
) -> PublishResult:
    """Publish staging and marts to Postgres in one transaction; returns what was written.

    Nothing is written when the lake has not changed since the last publish (unless
    `force`). On any failure Postgres keeps its previous state and the lake is untouched.
    """
    if settings.postgres_dsn is None:
        raise ConfigError(
            "No Postgres to publish to: set CRYPTOLAKE_POSTGRES_DSN or pass --postgres "
            "(e.g. postgresql://user@host:5432/db)."
        )
    dsn = settings.postgres_dsn.reveal()
    lake = LakePaths.at(settings.lake)
    target = describe_target(dsn)
    started = datetime.now(UTC)
    publish_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    # An in-memory DuckDB with the lake attached read-only: attaching Postgres from a
    # read-only database would make Postgres read-only too. One thread: every write to
    # Postgres is one COPY stream, and DuckDB's other threads would only spin on a mutex
    # while the Postgres backend parses it (a CTAS of 1M rows: 7.0 CPU-seconds in DuckDB
    # with 2 threads, 2.1 with 1, and faster), taking a core from the Postgres backends.
    con = connect(settings.with_(threads=1))
    try:
        # Attached at the snapshot of the last committed gold: what is published is that
        # gold and the silver it was built from, even if a transform commits meanwhile.
        build = _gold_build(con, settings)
        with publish_lock(
            dsn, settings.pg_schema, target, source=settings.named("postgres_dsn")
        ) as lock:
            try:
                check_privileges(lock, settings.pg_schema, [*DDL, STAGING])
                check_sample_mixing(lock, settings.pg_schema, sample=build.sample, target=target)
                published = _read_published(lock, settings.pg_schema, lake=build.lake_id)
                row = lock.execute("show server_encoding").fetchone()
                server_encoding = str(row[0]) if row else "UTF8"
            except psycopg.Error as exc:
                raise PublishError(
                    f"Publishing to Postgres {target} failed: {explain_pg(scrub(str(exc), dsn))}"
                ) from None
            if published.lake_version == build.lake_version and not force:
                # The same DuckLake snapshot: nothing new (data, currency or models).
                progress(Progress("publish", "postgres", 1, 1, "up to date"))
                return PublishResult(None, target, settings.pg_schema, [], 0, up_to_date=True)
            new_snapshots = _new_snapshots(con, published, build)
            # Before anything is written: text the database cannot hold is refused.
            check_encoding(
                con,
                server_encoding=server_encoding,
                relations=[
                    "select * from lake.silver.market_snapshots "
                    "where snapshot_at in (select snapshot_at from publish_snapshots)",
                    *(f"select * from lake.gold.{mart}" for mart in MARTS),
                ],
                target=target,
            )
            try:
                # On the lock's connection before the publish transaction starts: that
                # transaction's snapshot then sees the schema, and workers can load into it.
                prepare_schema(lock, settings.pg_schema)
            except psycopg.Error as exc:
                raise PublishError(
                    f"Publishing to Postgres {target} failed: {explain_pg(scrub(str(exc), dsn))}"
                ) from None
            load_postgres_extension(con)
            try:
                con.execute(f"attach {quote_literal(duckdb_dsn(dsn))} as pg (type postgres)")
            except duckdb.Error as exc:
                raise PublishError(
                    f"DuckDB cannot attach Postgres {target}: {scrub(str(exc), dsn)}"
                ) from None
            try:
                return _publish_in_transaction(
                    con,
                    lake,
                    settings,
                    lock=lock,
                    dsn=dsn,
                    published=published,
                    build=build,
                    new_snapshots=new_snapshots,
                    publish_id=publish_id,
                    started=started,
                    force=force,
                    progress=progress,
                    target=target,
                )
            except (duckdb.Error, psycopg.Error) as exc:
                raise PublishError(
                    f"Publishing to Postgres {target} failed and was rolled back: "
                    f"{explain_pg(scrub(str(exc), dsn))}"
                ) from None
    finally:
        con.close()


@dataclass(frozen=True, slots=True)
class _GoldBuild:
    """The last committed gold: its DuckLake snapshot and what it was built from."""

    snapshot_id: int
    fingerprint: str  # the models and currency: equal means only new snapshots changed gold
    vs_currency: str
    sample: bool  # built from the bundled sample
    lake_id: str  # which lake: snapshot ids of another catalog say nothing about this one

    @property
    def lake_version(self) -> str:
        return str(self.snapshot_id)


def _gold_build(con: duckdb.DuckDBPyConnection, settings: Settings) -> _GoldBuild:
    """Attach the lake as `lake` at the snapshot of its last committed gold."""
    attach_lake(con, settings)
    gold = latest_snapshot(con, stage="gold")
    if gold is None:
        raise LakeError(
            "The lake has no gold yet (no transform has committed one); run `cryptolake "
            "transform` before publishing."
        )
    con.execute("detach lake")
    attach_lake(con, settings, as_of=gold.snapshot_id)
    try:
        row = con.execute("select models_fingerprint, vs_currency from lake.meta.build").fetchone()
        (sample,) = con.execute(
            "select coalesce(bool_or(is_sample), false) from lake.gold.crypto_analytics_mart"
        ).fetchone() or (False,)
    except duckdb.Error as exc:
        raise LakeError(
            f"Cannot read the lake's gold at snapshot {gold.snapshot_id}: {one_line(exc)}; "
            "run `cryptolake transform` again."
        ) from None
    if row is None:
        raise LakeError("The lake's gold has no build record; run `cryptolake transform`.")
    return _GoldBuild(
        gold.snapshot_id, str(row[0]), str(row[1]), bool(sample), lake_id(con) or "unknown"
    )


@dataclass(frozen=True, slots=True)
class _Published:
    """What earlier publishes left in the schema (read under the publish lock)."""

    lake_version: str | None  # of the last publish; None without publish_log or staging
    snapshots: list[str]  # every snapshot_at staging received, as text with its offset
    days: set[date]  # the days staging has a partition for
    first: bool  # neither staging nor publish_log exists: nothing for consumers yet
    fingerprint: str | None = None  # the models and currency of the last publish


def _read_published(conn: psycopg.Connection[Any], schema: str, *, lake: str) -> _Published:
    row = conn.execute(
        "select to_regclass(%s), to_regclass(%s)",
        [f"{schema}.publish_log", f"{schema}.{STAGING}"],
    ).fetchone()
    log_exists = row is not None and row[0] is not None
    staging_exists = row is not None and row[1] is not None
    if not log_exists or not staging_exists:
        # Without staging (dropped by hand), what publish_log lists was lost: all of it is
        # published again, and the marts are compared with gold as always.
        first = not log_exists and not staging_exists
        return _Published(None, [], attached_days(conn, schema), first)
    # The latest publish of this lake is the one of its newest snapshot, never the latest
    # clock reading (a clock set ahead must not make later publishes look older). Another
    # lake's publishes (a catalog rebuilt, another folder) say nothing of this one's ids.
    has_lake_id = conn.execute(
        "select count(*) from information_schema.columns where table_schema = %s "
        "and table_name = 'publish_log' and column_name = 'lake_id'",
        [schema],
    ).fetchone()
    last = (
        conn.execute(
            f"select lake_version, models_fingerprint from {schema}.publish_log "
            "where lake_id = %s and lake_version ~ '^[0-9]+$' "
            "order by lake_version::bigint desc, finished_at desc limit 1",
            [lake],
        ).fetchone()
        if has_lake_id and has_lake_id[0]
        else None  # written by a cryptolake before DuckLake: no publish of this lake yet
    )
    snapshots = conn.execute(
        f"select distinct unnest(snapshots)::text from {schema}.publish_log"
    ).fetchall()
    return _Published(
        str(last[0]) if last else None,
        [str(r[0]) for r in snapshots],
        attached_days(conn, schema),
        first=False,
        fingerprint=str(last[1]) if last and last[1] else None,
    )


def _new_snapshots(
    con: duckdb.DuckDBPyConnection, published: _Published, build: _GoldBuild
) -> list[str]:
    """The market snapshots staging lacks, as text; also as the temp table `publish_snapshots`.

    Read from DuckLake's change feed of silver.market_snapshots between the snapshot last
    published and the gold being published; without a usable last publish (a first one, a
    dropped staging, an expired snapshot), from every snapshot the gold was built from
    (`meta.snapshots`, recorded at its build: publish ships audited data only).
    """
    since = published.lake_version
    new: list[str] | None = None
    if since and since.isdigit() and published.snapshots and int(since) < build.snapshot_id:
        try:
            new = [
                str(r[0])
                for r in con.execute(
                    """
                    select distinct cast(snapshot_at as varchar)
                    from ducklake_table_changes('lake', 'silver', 'market_snapshots', ?, ?)
                    where change_type in ('insert', 'update_postimage')
                        and snapshot_at not in (
                            select cast(unnest(?::varchar[]) as timestamptz)
                        )
                    order by 1
                    """,
                    [int(since) + 1, build.snapshot_id, published.snapshots],
                ).fetchall()
            ]
        except duckdb.Error as exc:
            log.info("change feed unavailable (%s): comparing snapshots instead", one_line(exc))
    if new is None:
        new = [
            str(r[0])
            for r in con.execute(
                """
                select cast(snapshot_at as varchar)
                from lake.meta.snapshots
                where snapshot_at not in (select cast(unnest(?::varchar[]) as timestamptz))
                order by snapshot_at
                """,
                [published.snapshots],
            ).fetchall()
        ]
    con.execute(
        "create or replace temp table publish_snapshots as "
        "select cast(unnest(?::varchar[]) as timestamptz) as snapshot_at",
        [new],
    )
    return new


def _publish_in_transaction(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    settings: Settings,
    *,
    lock: psycopg.Connection[Any],
    dsn: str,
    published: _Published,
    build: _GoldBuild,
    new_snapshots: list[str],
    publish_id: str,
    started: datetime,
    force: bool,
    progress: ProgressCallback,
    target: str,
) -> PublishResult:
    schema = settings.pg_schema
    steps = len(MARTS) + 3
    step = 0

    def advance(detail: str) -> None:
        nonlocal step
        step += 1
        log.info("publish to %s: %s", target, detail)
        progress(Progress("publish", "postgres", step, steps, detail))

    t0 = time.perf_counter()
    by_day: dict[date, list[str]] = {}
    for snapshot in new_snapshots:
        by_day.setdefault(date.fromisoformat(snapshot[:10]), []).append(snapshot)
    appended = {day: snaps for day, snaps in by_day.items() if day in published.days}
    new_days = [DayLoad(day, tuple(s)) for day, s in by_day.items() if day not in published.days]
    session = (
        f"set local statement_timeout = '{STATEMENT_TIMEOUT}'; "
        f"set local lock_timeout = '{LOCK_TIMEOUT}'; "
        f"set local idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'; "
        "set local maintenance_work_mem = '512MB'"
    )
    tables: list[PublishedTable] = []
    notes: list[str] = []
    # A first publish loads its days on worker connections, which connect now, while this
    # one runs the DDL, and load while it writes the marts (see staging.py); every later
    # publish loads its new days itself, inside its one transaction.
    parallel = published.first
    with load_partitions(
        settings,
        dsn=duckdb_dsn(dsn),
        schema=schema,
        lake_snapshot=build.snapshot_id,
        session_sql=session,
        days=new_days if parallel else [],
        workers=settings.threads or os.cpu_count() or 1,
    ) as loads:
        con.execute("begin transaction")
        try:
            _pg(con, session)
            # Tables and views first; the marts' indexes once their rows are in. Staging's
            # are on the partitioned parent: definitions its partitions' indexes attach to,
            # created only with it (`if not exists` would still lock every partition).
            indexes: list[str] = []
            for name in DDL:
                for statement in ddl_statements(name, schema):
                    index = re.match(
                        r"create\s+(?:unique\s+)?index\s+if\s+not\s+exists\s+(\w+)",
                        statement,
                        re.IGNORECASE,
                    )
                    if index is None:
                        _pg(con, statement)
                        if statement.lower().startswith("create table"):
                            # An older cryptolake's table is brought up to this one's.
                            notes += evolve_table(
                                con,
                                schema=schema,
                                name=name,
                                create=statement,
                                derived=name in MARTS,
                            )
                    elif name != STAGING:
                        indexes.append(statement)
                    elif not _exists(con, schema, index[1]):
                        _pg(con, statement)
            con.execute("call pg_clear_cache()")
            template = read_template(con, schema)
            loads.start(template)

            # The days staging has, the days it has not (unless the workers load them),
            # then the marts, their indexes and statistics.
            written = _append_staging(con, schema, appended)
            loaded: list[LoadedPartition] = []
            for load in [] if parallel else new_days:
                t1 = time.perf_counter()
                rows = load_day(
                    con,
                    schema=schema,
                    template=template,
                    source=SILVER_SOURCE,
                    load=load,
                )
                loaded.append(LoadedPartition(load.day, rows, time.perf_counter() - t1))
            # Counted by Postgres itself (a DuckDB count would stream the table over COPY),
            # before the new days are attached.
            rows_now = count(
                con,
                f"select * from postgres_query('pg', 'select count(*) from {schema}.{STAGING}')",
            )
            # Only new snapshots changed gold (same models, same currency): coin_daily is
            # rewritten from the first day they change on; else every mart is whole.
            since = None
            if new_snapshots and not force and published.fingerprint == build.fingerprint:
                since = refresh_start(con, schema, date.fromisoformat(new_snapshots[0][:10]))
            for mart in MARTS:
                t1 = time.perf_counter()
                rows, mart_rows = replace_mart(con, schema, mart, since=since)
                tables.append(PublishedTable(mart, rows, mart_rows, time.perf_counter() - t1))
                advance(f"{mart}: {rows:,} rows")
                loads.raise_if_failed()
            if parallel:
                # The workers keep every core busy; Postgres's own parallel index build
                # would only add processes competing with them.
                _pg(con, "set local max_parallel_maintenance_workers = 0")
            for statement in indexes:
                _pg(con, statement)
            # Marts change on every publish; the large ones are sampled on the columns
            # consumers filter and join on only.
            _pg(
                con,
                "; ".join(
                    f"analyze {schema}.{mart}"
                    + (f" ({', '.join(STATS_COLUMNS[mart])})" if mart in STATS_COLUMNS else "")
                    for mart in MARTS
                ),
            )
            advance("indexes and statistics")
            # The workers' rows are counted by their loads: this transaction's snapshot
            # predates their commits. It is idle meanwhile, which is not a hang.
            _pg(con, "set local idle_in_transaction_session_timeout = 0")
            loaded += loads.wait()
            _pg(
                con,
                f"set local idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'",
            )
            # New partitions were analyzed by their loads; a partition that gained rows is
            # analyzed again (one day: a few tens of milliseconds).
            attach = [attach_statement(schema, p.day) for p in loaded]
            analyze = [analyze_statement(schema, day) for day in appended]
            if attach or analyze:
                _pg(con, "; ".join(attach + analyze))
            written += sum(p.rows for p in loaded)
            rows_now += sum(p.rows for p in loaded)
            tables.insert(0, PublishedTable(STAGING, written, rows_now, time.perf_counter() - t0))
            advance(f"{STAGING}: +{written:,} rows")

            latest = con.execute(
                "select max(snapshot_at)::varchar from lake.meta.snapshots"
            ).fetchone()
            finished = datetime.now(UTC)
            rows_json = json.dumps({t.table: t.rows_written for t in tables})
            snapshots_literal = "{" + ",".join(f'"{s}"' for s in new_snapshots) + "}"
            _pg(
                con,
                f"insert into {schema}.publish_log (publish_id, started_at, finished_at, "
                "latest_snapshot_at, lake_version, lake_id, models_fingerprint, "
                "cryptolake_version, rows_written, snapshots) "
                f"values ({_pg_literal(publish_id)}, {_pg_literal(started.isoformat())}, "
                f"{_pg_literal(finished.isoformat())}, "
                f"{_pg_literal(latest[0]) if latest and latest[0] else 'null'}, "
                f"{_pg_literal(build.lake_version)}, {_pg_literal(build.lake_id)}, "
                f"{_pg_literal(build.fingerprint)}, "
                f"{_pg_literal(__version__)}, "
                f"{_pg_literal(rows_json)}::jsonb, "
                f"{_pg_literal(snapshots_literal)}::timestamptz[])",
            )
            # Still holding the publish lock? If its connection was lost, another publish
            # may have started: roll back rather than commit beside it.
            lock.execute("select 1")
            con.execute("commit")
        except BaseException:
            # Also on KeyboardInterrupt: roll back rather than leave Postgres waiting.
            try:
                con.execute("rollback")
            except duckdb.Error:
                pass  # the connection is gone; Postgres rolls back on its own
            raise
    advance("committed")
    return PublishResult(publish_id, target, schema, tables, len(new_snapshots), notes=notes)


def _append_staging(
    con: duckdb.DuckDBPyConnection, schema: str, snapshots: dict[date, list[str]]
) -> int:
    """Insert new snapshots of days staging already has a partition for; returns the rows."""
    if not snapshots:
        return 0
    # Literal dates let DuckDB prune silver's snapshot_date partitions.
    dates = ", ".join(f"date '{day.isoformat()}'" for day in sorted(snapshots))
    con.execute(
        "create or replace temp table appended_snapshots as "
        "select cast(unnest(?::varchar[]) as timestamptz) as snapshot_at",
        [[s for snaps in snapshots.values() for s in snaps]],
    )
    row = con.execute(
        f"insert into pg.{schema}.{STAGING} by name select * "
        "from lake.silver.market_snapshots "
        f"where snapshot_date in ({dates}) "
        "and snapshot_at in (select snapshot_at from appended_snapshots)"
    ).fetchone()
    return int(row[0]) if row else 0


def _pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
