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
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb
import psycopg

from .duck import json_list, quote_literal
from .errors import PublishError
from .pgext import pg_execute, pg_rows
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


def relation_exists(con: duckdb.DuckDBPyConnection, schema: str, relation: str) -> bool:
    """Whether `schema.relation` exists in Postgres, as DuckDB's current transaction sees it."""
    rows = pg_rows(con, f"select to_regclass('{schema}.{relation}') is not null")
    return bool(rows and rows[0][0])


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


def append_snapshots(
    con: duckdb.DuckDBPyConnection, schema: str, snapshots: dict[date, list[str]]
) -> int:
    """Insert new snapshots of days staging already has a partition for; returns the rows.

    Runs in DuckDB's current transaction, with the lake attached as `lake` and Postgres as `pg`.
    """
    if not snapshots:
        return 0
    # Literal dates let DuckDB prune silver's snapshot_date partitions.
    dates = ", ".join(f"date '{day.isoformat()}'" for day in sorted(snapshots))
    con.execute(
        "create or replace temp table appended_snapshots as "
        "select cast(unnest(?::json::varchar[]) as timestamptz) as snapshot_at",
        [json_list(s for snaps in snapshots.values() for s in snaps)],
    )
    row = con.execute(
        f"insert into pg.{schema}.{STAGING} by name select * from {SILVER_SOURCE} "
        f"where snapshot_date in ({dates}) "
        "and snapshot_at in (select snapshot_at from appended_snapshots)"
    ).fetchone()
    return int(row[0]) if row else 0


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
