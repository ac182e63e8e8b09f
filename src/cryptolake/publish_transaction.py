"""The publish transaction: DDL, staging days, history, marts, indexes and the log, one COMMIT.

Called by `publish.publish` once the lock is held, the state read and Postgres attached to
`con` as `pg`. A first publish loads its days on worker connections (staging_loads.py) while
this transaction writes the marts; a later publish loads its new days itself. On any failure
the transaction is ended here, in Python (pgext.end_transaction), never by a destructor.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
import psycopg

from .errors import PublishError
from .failpoints import failpoint
from .gold import GOLD_MODELS
from .lake import LakePaths
from .marts import count, replace_mart
from .pgconnect import LOCK_TIMEOUT, connection_lost, duckdb_dsn, scrub
from .pgext import end_transaction, pg_execute
from .pgschema import ddl_statements, evolve_table
from .progress import Progress, ProgressCallback
from .publish_state import GoldBuild, Published, coin_daily_changed_from, log_publish
from .settings import Settings
from .staging import (
    SILVER_SOURCE,
    STAGING,
    DayLoad,
    LoadedPartition,
    analyze_statement,
    append_snapshots,
    attach_statement,
    load_day,
    read_template,
    relation_exists,
)
from .staging_history import HISTORY, HistoryChanges, upsert_history
from .staging_loads import load_partitions

log = logging.getLogger(__name__)

MARTS = GOLD_MODELS
# DDL files in the order they must run: tables, then the view that reads them.
DDL = (STAGING, HISTORY, *MARTS, "publish_log", "crypto_market_summary")
STATEMENT_TIMEOUT = "15min"
IDLE_IN_TRANSACTION_TIMEOUT = "5min"
# Columns ANALYZE samples on the marts that grow with history; the small marts get all.
STATS_COLUMNS = {"coin_daily": ("coin_id", "day", "symbol", "market_cap_rank")}
# A mart is analyzed when a publish rewrote at least 1/ANALYZE_FRACTION of its rows (as
# autovacuum_analyze_scale_factor's default, 0.1).
ANALYZE_FRACTION = 10


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


def publish_in_transaction(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    settings: Settings,
    *,
    lock: psycopg.Connection[Any],
    dsn: str,
    published: Published,
    build: GoldBuild,
    new_snapshots: list[str],
    history: HistoryChanges,
    publish_id: str,
    started: datetime,
    force: bool,
    progress: ProgressCallback,
    target: str,
) -> PublishResult:
    schema = settings.pg_schema
    steps = len(MARTS) + 4
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
            pg_execute(con, session)
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
                        pg_execute(con, statement)
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
                    elif not relation_exists(con, schema, index[1]):
                        pg_execute(con, statement)
            con.execute("call pg_clear_cache()")
            template = read_template(con, schema)
            loads.start(template)

            # The days staging has, the days it has not (unless the workers load them),
            # then the marts, their indexes and statistics.
            written = append_snapshots(con, schema, appended)
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
            # Staging only grows: the rows the last publish left plus this one's. Counted by
            # Postgres itself (a DuckDB count would stream the table over COPY), before the
            # new days are attached, when no earlier publish says.
            before = published.rows_now.get(STAGING)
            rows_now = (
                before + written
                if before is not None
                else count(
                    con,
                    "select * from postgres_query('pg', "
                    f"'select count(*) from {schema}.{STAGING}')",
                )
            )
            t1 = time.perf_counter()
            upserted, history_now = upsert_history(
                con, schema, history, rows_before=published.rows_now.get(HISTORY)
            )
            tables.append(PublishedTable(HISTORY, upserted, history_now, time.perf_counter() - t1))
            advance(f"{HISTORY}: {upserted:,} rows")
            # coin_daily is rewritten from the first day gold changed it on (its change feed);
            # the other marts, and coin_daily when that day is unknown, whole.
            first = None if force else coin_daily_changed_from(con, published, build)
            since = first.isoformat() if first else None
            for mart in MARTS:
                t1 = time.perf_counter()
                rows, mart_rows = replace_mart(
                    con, schema, mart, since=since, rows_before=published.rows_now.get(mart)
                )
                tables.append(PublishedTable(mart, rows, mart_rows, time.perf_counter() - t1))
                advance(f"{mart}: {rows:,} rows")
                loads.raise_if_failed()
            if parallel:
                # The workers keep every core busy; Postgres's own parallel index build
                # would only add processes competing with them.
                pg_execute(con, "set local max_parallel_maintenance_workers = 0")
            for statement in indexes:
                pg_execute(con, statement)
            # Marts change on every publish: those it rewrote a tenth of or more get fresh
            # statistics (the large ones on the columns consumers filter and join on only).
            # A day or two of a year of coin_daily is left to autovacuum's analyze, which
            # comes at a tenth changed too: sampling 5M rows every 6 hours is not free.
            stale = [
                t.table
                for t in tables
                if t.table in MARTS and t.rows_written * ANALYZE_FRACTION >= t.rows_now
            ]
            if stale:
                pg_execute(
                    con,
                    "; ".join(
                        f"analyze {schema}.{mart}"
                        + (f" ({', '.join(STATS_COLUMNS[mart])})" if mart in STATS_COLUMNS else "")
                        for mart in stale
                    ),
                )
            advance("indexes and statistics")
            # The workers' rows are counted by their loads: this transaction's snapshot
            # predates their commits. It is idle meanwhile, which is not a hang.
            pg_execute(con, "set local idle_in_transaction_session_timeout = 0")
            loaded += loads.wait()
            pg_execute(
                con,
                f"set local idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'",
            )
            # New partitions were analyzed by their loads; a partition that gained rows is
            # analyzed again (one day: a few tens of milliseconds).
            attach = [attach_statement(schema, p.day) for p in loaded]
            analyze = [analyze_statement(schema, day) for day in appended]
            if attach or analyze:
                pg_execute(con, "; ".join(attach + analyze))
            written += sum(p.rows for p in loaded)
            rows_now += sum(p.rows for p in loaded)
            tables.insert(0, PublishedTable(STAGING, written, rows_now, time.perf_counter() - t0))
            advance(f"{STAGING}: +{written:,} rows")

            log_publish(
                con,
                schema,
                publish_id=publish_id,
                started=started,
                build=build,
                rows_written={t.table: t.rows_written for t in tables},
                rows_now={t.table: t.rows_now for t in tables},
                snapshots=new_snapshots,
            )
            # Still holding the publish lock? If its connection was lost, another publish
            # may have started: roll back rather than commit beside it.
            lock.execute("select 1")
            failpoint("publish.before_commit")
            try:
                con.execute("commit")
            except duckdb.Error as exc:
                if not connection_lost(str(exc)):
                    raise
                # The COMMIT may have reached Postgres before the connection broke: only
                # Postgres knows. The next publish reads its publish log and sends whatever
                # it lacks, so nothing is lost or doubled either way.
                raise PublishError(
                    f"Publishing to Postgres {target} lost the connection at COMMIT "
                    f"({scrub(str(exc), dsn).rstrip('.')}), so whether publish {publish_id} "
                    "was committed is unknown; run `cryptolake publish` again once Postgres "
                    "is back: it reads the publish log and sends whatever is missing."
                ) from None
        except BaseException:
            # Also on KeyboardInterrupt: roll back rather than leave Postgres waiting, and
            # never close the connection with its transaction open (pgext.py).
            end_transaction(con)
            raise
    advance("committed")
    return PublishResult(publish_id, target, schema, tables, len(new_snapshots), notes=notes)
