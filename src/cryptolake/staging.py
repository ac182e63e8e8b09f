"""Staging in Postgres: one partition per UTC day, each loaded whole then attached.

`staging_market_snapshots` is range-partitioned on `snapshot_at`, one partition per UTC day
(`staging_market_snapshots_pYYYYMMDD`). Snapshots of a day staging has are appended to it.
A day it does not have is loaded into a standalone table built exactly like a partition
(rows by binary COPY, then its index and statistics: one sorted build, not row-by-row
maintenance) and ATTACHed, which needs no scan: its CHECK constraint implies the bounds.

Every publish does this inside its one transaction, except the first into a schema: there
nothing exists yet, so no consumer has a previous state to keep, and the days are loaded in
parallel on worker connections. Their tables are created up front (marked with a comment)
in one committed transaction, each worker fills a day per transaction, and the publish
transaction attaches them. A COPY is bound by one Postgres backend's CPU, so this is what
lets a first, bulk publish use every core. If that publish fails, its tables stay behind
unattached and marked, and the next publish drops them.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb
import psycopg

from .catalog import attach_lake
from .duck import connect, quote_literal
from .errors import PublishError
from .pgext import load_postgres_extension, pg_execute, pg_rows
from .settings import Settings
from .silver import PARTITION

log = logging.getLogger(__name__)

STAGING = "staging_market_snapshots"
PARTITION_PREFIX = f"{STAGING}_p"
_PARTITION_NAME = re.compile(rf"{PARTITION_PREFIX}(\d{{8}})")
# On tables a worker committed that the publish transaction has not attached yet.
LOADING_COMMENT = "cryptolake: loaded by a publish, not attached yet"
# Parallel loads on a first publish: each is one Postgres backend, bound by its CPU.
MAX_WORKERS = 4
# Columns ANALYZE samples on staging: those consumers filter and join on (sampling all 34
# columns costs about a second per million rows).
# (snapshot_date is one value per partition.)
STATS_COLUMNS = ("coin_id", "symbol", "snapshot_at", "market_cap_rank")
# ANALYZE samples 300 rows per point of statistics target. A day is small (60,000 rows at
# 15,000 coins every 6 hours) and its queries are served by partition pruning and the unique
# index, so its statistics need to size it and spot skew, not resolve rare values: 10 points
# sample 3,000 rows in 25 ms; the default (100) would read most of every day, 120 ms each,
# which made a first publish's statistics cost as much as its index builds.
STATS_TARGET = 10


SILVER_SOURCE = "lake.silver.market_snapshots"  # where a day's staging rows come from


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[str, str]:
    """The UTC day as Postgres timestamptz literals: [start, end)."""
    return f"{day.isoformat()} 00:00:00+00", f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"


def analyze_statement(schema: str, day: date) -> str:
    # Back to the default after: in a publish transaction, the marts are analyzed too.
    return (
        f"set local default_statistics_target = {STATS_TARGET}; "
        f"analyze {schema}.{partition_name(day)} ({', '.join(STATS_COLUMNS)}); "
        "set local default_statistics_target to default"
    )


def attach_statement(schema: str, day: date) -> str:
    # The table's CHECK constraint implies the bounds, so Postgres attaches without a scan,
    # and its indexes match the parent's, so they are attached rather than built. A table
    # a worker loaded loses its mark.
    start, end = partition_bounds(day)
    name = partition_name(day)
    return (
        f"alter table {schema}.{STAGING} attach partition {schema}.{name} "
        f"for values from ('{start}') to ('{end}'); comment on table {schema}.{name} is null"
    )


@dataclass(frozen=True, slots=True)
class PartitionTemplate:
    """What a partition must look like, read from the staging table itself in Postgres."""

    columns: str  # column definitions, in the parent's order
    indexes: tuple[tuple[str, bool, str], ...]  # (name suffix, unique, "btree (...)")

    def create_table(self, schema: str, day: date) -> str:
        name = partition_name(day)
        start, end = partition_bounds(day)
        return (
            f"create table {schema}.{name} ({self.columns}, constraint {name}_bounds "
            f"check (snapshot_at >= '{start}' and snapshot_at < '{end}'))"
        )

    def create_indexes(self, schema: str, day: date) -> list[str]:
        name = partition_name(day)
        return [
            f"create {'unique ' if unique else ''}index {name}{suffix} on {schema}.{name} "
            f"using {method}"
            for suffix, unique, method in self.indexes
        ]


def read_template(con: duckdb.DuckDBPyConnection, schema: str) -> PartitionTemplate:
    """Staging's columns and indexes, as this transaction sees them (its DDL included)."""
    relation = f"{schema}.{STAGING}"
    (columns,) = pg_rows(
        con,
        "select string_agg(format('%I %s%s', attname, format_type(atttypid, atttypmod), "
        "case when attnotnull then ' not null' else '' end), ', ' order by attnum) "
        f"from pg_attribute where attrelid = '{relation}'::regclass "
        "and attnum > 0 and not attisdropped",
    )
    indexes = pg_rows(
        con,
        "select c.relname::text, i.indisunique, pg_get_indexdef(i.indexrelid) "
        "from pg_index as i join pg_class as c on c.oid = i.indexrelid "
        f"where i.indrelid = '{relation}'::regclass order by 1",
    )
    return PartitionTemplate(
        columns=str(columns[0]),
        indexes=tuple(
            (
                name.removeprefix(STAGING) if name.startswith(STAGING) else f"_{name}",
                bool(unique),
                definition.split(" USING ", 1)[1],
            )
            for name, unique, definition in indexes
        ),
    )


def attached_days(conn: psycopg.Connection[Any], schema: str) -> set[date]:
    """The days staging has a partition for (none if there is no staging yet)."""
    rows = conn.execute(
        "select c.relname from pg_inherits as i join pg_class as c on c.oid = i.inhrelid "
        "where i.inhparent = to_regclass(%s)",
        [f"{schema}.{STAGING}"],
    ).fetchall()
    days = set()
    for (name,) in rows:
        if match := _PARTITION_NAME.fullmatch(str(name)):
            days.add(date(int(match[1][:4]), int(match[1][4:6]), int(match[1][6:])))
    return days


def prepare_schema(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Create the schema, check staging's kind, drop tables a failed publish left unattached.

    Runs on an autocommit connection holding the publish lock (so no other publish is
    loading), before the publish transaction starts: that transaction and the worker
    connections must see the schema, and workers must be free to create tables of those
    names. Only tables a worker marked are dropped, never a table someone detached or
    named alike. Returns the dropped tables.
    """
    # Only when missing: `create schema if not exists` needs CREATE on the database even
    # when the schema exists, which a role that owns its schema may not have.
    if conn.execute("select to_regnamespace(%s)", [schema]).fetchone() == (None,):
        conn.execute(f"create schema {schema}")
    row = conn.execute(
        "select relkind::text from pg_class where oid = to_regclass(%s)", [f"{schema}.{STAGING}"]
    ).fetchone()
    if row is not None and row[0] != "p":
        raise PublishError(
            f"{schema}.{STAGING} in Postgres is not partitioned by day (an earlier cryptolake "
            f"created it): drop the schema (`drop schema {schema} cascade`) and publish again "
            "to rebuild it from the lake."
        )
    names = [
        str(row[0])
        for row in conn.execute(
            "select c.relname from pg_class as c "
            "join pg_namespace as n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relkind = 'r' and not c.relispartition "
            "and obj_description(c.oid, 'pg_class') = %s",
            [schema, LOADING_COMMENT],
        ).fetchall()
        if _PARTITION_NAME.fullmatch(str(row[0]))
    ]
    for name in names:
        conn.execute(f"drop table {schema}.{name}")
    if names:
        log.info("dropped %d partition tables a failed publish left: %s", len(names), names)
    return names


@dataclass(frozen=True, slots=True)
class DayLoad:
    day: date
    snapshots: tuple[str, ...]  # snapshot_at values, as DuckDB prints them in UTC


@dataclass(frozen=True, slots=True)
class LoadedPartition:
    day: date
    rows: int
    seconds: float


class _Cancelled(Exception):
    pass


def load_day(
    con: duckdb.DuckDBPyConnection,
    *,
    schema: str,
    template: PartitionTemplate,
    source: str,
    load: DayLoad,
    create: bool = True,
    check: Callable[[], None] = lambda: None,
) -> int:
    """Fill the day's table from silver, index and analyze it; returns its rows.

    Creates the table first unless `create` is false (it exists and DuckDB's catalog cache
    knows it). Runs in DuckDB's current transaction; the caller attaches the table (or
    commits it for the publish transaction to attach). `check` is called between statements
    and may raise to stop.
    """
    name = partition_name(load.day)
    if create:
        pg_execute(con, template.create_table(schema, load.day))
        # DuckDB caches Postgres's catalog; this connection's cache must see the new table.
        con.execute("call pg_clear_cache()")
    check()
    # The day's silver partition alone (a literal date: DuckLake reads only its files), in
    # silver's order (snapshot, then rank).
    snapshots = ", ".join(f"timestamptz {quote_literal(s)}" for s in load.snapshots)
    row = con.execute(
        f"insert into pg.{schema}.{name} by name select * from {source} "
        f"where {PARTITION} = date {quote_literal(load.day.isoformat())} "
        f"and snapshot_at in ({snapshots}) "
        "order by snapshot_at, market_cap_rank nulls last, coin_id"
    ).fetchone()
    check()
    # Indexes once the rows are in: one sorted build each, as a bulk load should.
    pg_execute(
        con,
        "; ".join(
            [*template.create_indexes(schema, load.day), analyze_statement(schema, load.day)]
        ),
    )
    return int(row[0]) if row else 0


class PartitionLoads:
    """Loads days into standalone partition tables on worker connections, in parallel.

    Workers connect as soon as it is created; they load once `start()` has created the
    days' tables (marked by LOADING_COMMENT) from the partition template, which the publish
    transaction reads after its DDL. Each day is one transaction of its worker. Use through
    `load_partitions`: leaving it cancels the loads still running and waits for every
    worker, so no worker outlives the publish.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str,
        schema: str,
        lake_snapshot: int,
        session_sql: str,
        days: Sequence[DayLoad],
        workers: int,
    ) -> None:
        # One DuckDB thread per worker: its COPY is a single stream anyway.
        self._settings = settings.with_(threads=1)
        self._dsn = dsn
        self._schema = schema
        self._lake_snapshot = lake_snapshot
        self._session_sql = session_sql
        self._template: PartitionTemplate | None = None
        self._days = list(days)
        self._queue: queue.SimpleQueue[DayLoad] = queue.SimpleQueue()
        for day in days:
            self._queue.put(day)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: list[duckdb.DuckDBPyConnection] = []
        count = min(workers, MAX_WORKERS, len(days))
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, count), thread_name_prefix="publish-load"
        )
        self._futures: list[Future[list[LoadedPartition]]] = [
            self._pool.submit(self._work) for _ in range(count)
        ]

    def start(self, template: PartitionTemplate) -> None:
        """Create every day's table, marked, in one committed transaction; then load.

        Created up front so that each worker's DuckDB reads Postgres's catalog once, not
        once per day (75 ms each).
        """
        if self._futures and not self._stop.is_set():
            with (
                psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn,
                conn.transaction(),
            ):
                conn.execute(self._session_sql)
                for day in self._days:
                    name = partition_name(day.day)
                    conn.execute(template.create_table(self._schema, day.day))
                    conn.execute(
                        f"comment on table {self._schema}.{name} "
                        f"is {quote_literal(LOADING_COMMENT)}"
                    )
        self._template = template
        self._ready.set()

    def raise_if_failed(self) -> None:
        """Raise a worker's error now rather than at `wait()`, if one has failed already."""
        for future in self._futures:
            if future.done() and future.exception() is not None:
                self.wait()

    def wait(self) -> list[LoadedPartition]:
        """Every loaded partition, by day; raises the error that stopped the loads."""
        loaded: list[LoadedPartition] = []
        error: BaseException | None = None
        for future in self._futures:
            try:
                loaded.extend(future.result())
            except BaseException as exc:
                # The first real error, not the interrupts it sent the other workers.
                if error is None or isinstance(error, duckdb.InterruptException):
                    error = exc
        self._pool.shutdown()
        if error is not None:
            raise error
        return sorted(loaded, key=lambda p: p.day)

    def cancel(self) -> None:
        """Stop every load (each rolls back its day) and wait for the workers."""
        self._halt()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _halt(self) -> None:
        self._stop.set()
        self._ready.set()
        with self._lock:
            for con in self._running:
                con.interrupt()

    def _check(self) -> None:
        if self._stop.is_set():
            raise _Cancelled

    def _work(self) -> list[LoadedPartition]:
        loaded: list[LoadedPartition] = []
        if self._stop.is_set():
            return loaded
        con = connect(self._settings)
        with self._lock:
            self._running.append(con)
        try:
            load_postgres_extension(con)
            # The snapshot the publish reads: never a newer one committed meanwhile.
            attach_lake(con, self._settings, as_of=self._lake_snapshot)
            con.execute(f"attach {quote_literal(self._dsn)} as pg (type postgres)")
            self._ready.wait()
            self._check()
            con.execute("call pg_clear_cache()")  # the tables start() created
            while not self._stop.is_set():
                try:
                    day = self._queue.get_nowait()
                except queue.Empty:
                    break
                loaded.append(self._load(con, day))
        except _Cancelled:
            pass
        except duckdb.InterruptException:
            if not self._stop.is_set():
                raise
        except BaseException:
            self._halt()  # the publish fails: the other workers need not finish
            raise
        finally:
            with self._lock:
                self._running.remove(con)
            con.close()
        return loaded

    def _load(self, con: duckdb.DuckDBPyConnection, load: DayLoad) -> LoadedPartition:
        assert self._template is not None  # set before _ready
        t0 = time.perf_counter()
        name = partition_name(load.day)
        self._check()
        con.execute("begin transaction")
        try:
            # Days load in parallel already: no parallel workers inside a day's index
            # builds, and a day's sorts need little memory. No waiting for the WAL flush
            # at each day's commit: the publish transaction's own commit flushes the WAL
            # up to it, this day's included, and if the server crashed first, the publish
            # never happened and the day is a leftover either way.
            pg_execute(
                con,
                f"{self._session_sql}; set local max_parallel_maintenance_workers = 0; "
                "set local maintenance_work_mem = '64MB'; set local synchronous_commit = off",
            )
            rows = load_day(
                con,
                schema=self._schema,
                template=self._template,
                source=SILVER_SOURCE,
                load=load,
                create=False,
                check=self._check,
            )
            self._check()
            con.execute("commit")
        except BaseException:
            try:
                con.execute("rollback")
            except duckdb.Error:
                pass  # the connection is gone; Postgres rolls back on its own
            raise
        log.debug("loaded %s: %d rows in %.2fs", name, rows, time.perf_counter() - t0)
        return LoadedPartition(load.day, rows, time.perf_counter() - t0)


@contextmanager
def load_partitions(
    settings: Settings,
    *,
    dsn: str,
    schema: str,
    lake_snapshot: int,
    session_sql: str,
    days: Sequence[DayLoad],
    workers: int,
) -> Iterator[PartitionLoads]:
    """Start loading `days` from silver at lake snapshot `lake_snapshot` on worker connections.

    Workers connect at once; the body of the `with` calls `start(template)`, does its own
    work meanwhile, then calls `wait()`.
    """
    loads = PartitionLoads(
        settings,
        dsn=dsn,
        schema=schema,
        lake_snapshot=lake_snapshot,
        session_sql=session_sql,
        days=days,
        workers=workers,
    )
    try:
        yield loads
    finally:
        loads.cancel()  # stops what still runs after an error; a no-op once wait() returned
