"""Daily history in Postgres: `staging_coin_history_daily`, upserted by key, one partition a month.

silver.coin_history_daily is keyed (coin_id, vs_currency, day) and a backfill rewrites rows
(a newer fetch of a day wins), so unlike market snapshots, which are only ever appended,
history is upserted: a publish sends the rows of every key silver changed since the last
publish (publish_state.history_changes reads them from DuckLake's change feed) and, in the
publish transaction, deletes those keys and inserts the rows; a key silver no longer has
stays deleted. The rows travel by binary COPY into a scratch table created and dropped in
that transaction, so no consumer ever sees it.

Partitions are calendar months of `day`, range-partitioned. A month staging lacks is created
as a standalone table whose CHECK constraint implies its bounds, then ATTACHed: attaching
takes a lock readers do not wait for (creating a partition with PARTITION OF would lock the
whole table against them until the publish commits), and needs no scan.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date

import duckdb

from .marts import count
from .pgext import pg_execute, pg_rows

log = logging.getLogger(__name__)

HISTORY = "staging_coin_history_daily"
HISTORY_SOURCE = "lake.silver.coin_history_daily"
KEY = ("coin_id", "vs_currency", "day")
_MONTH_NAME = re.compile(rf"{HISTORY}_p(\d{{4}})(\d{{2}})")
# DuckDB temp tables the publish fills before its transaction: the rows to upsert, and the
# keys silver deleted (changed keys it has no row for any more).
ROWS = "publish_history_rows"
GONE = "publish_history_gone"


def month_name(month: date) -> str:
    return f"{HISTORY}_p{month:%Y%m}"


def month_bounds(month: date) -> tuple[str, str]:
    """The month as Postgres date literals: [first day, first day of the next month)."""
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return f"{month:%Y-%m-01}", following.isoformat()


@dataclass(frozen=True, slots=True)
class HistoryChanges:
    """What silver's history changed since the last publish (temp tables ROWS and GONE)."""

    rows: int  # rows to upsert
    gone: int  # keys to delete
    months: tuple[date, ...]  # months of the rows and keys, first days
    earliest_day: date | None  # the earliest day changed, None if none
    whole: bool  # every row of silver, not a change feed (a first publish, say)


def attached_months(con: duckdb.DuckDBPyConnection, schema: str) -> set[date]:
    """The months staging has a partition for, as this transaction sees them."""
    rows = pg_rows(
        con,
        "select c.relname::text from pg_inherits as i join pg_class as c on c.oid = i.inhrelid "
        f"where i.inhparent = to_regclass('{schema}.{HISTORY}')",
    )
    return {
        date(int(match[1]), int(match[2]), 1)
        for (name,) in rows
        if (match := _MONTH_NAME.fullmatch(str(name)))
    }


def add_month_statements(schema: str, month: date) -> list[str]:
    """Create the month's table, built like staging and bounded by CHECK, and attach it."""
    name = month_name(month)
    start, end = month_bounds(month)
    return [
        f"create table {schema}.{name} (like {schema}.{HISTORY} including defaults, "
        f"constraint {name}_bounds check (day >= date '{start}' and day < date '{end}'))",
        # The primary key's index is built on attach (the table is empty: nothing to sort).
        f"alter table {schema}.{HISTORY} attach partition {schema}.{name} "
        f"for values from ('{start}') to ('{end}')",
    ]


def upsert_history(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    changes: HistoryChanges,
    *,
    rows_before: int | None = None,
) -> tuple[int, int]:
    """Upsert the changed rows into staging; returns (rows written, rows now).

    Runs in DuckDB's current transaction, with Postgres attached as `pg` and the temp tables
    ROWS and GONE filled (see HistoryChanges). With no change, rows now is `rows_before` (the
    last publish's figure) when given; else Postgres counts them.
    """
    if not (changes.rows or changes.gone) and rows_before is not None:
        return 0, rows_before
    if changes.rows or changes.gone:
        have = attached_months(con, schema)
        added = [m for m in changes.months if m not in have]
        if added:
            pg_execute(con, "; ".join(s for m in added for s in add_month_statements(schema, m)))
        scratch = f"{schema}.{HISTORY}_publishing"
        # Built like staging (its columns, in its order): `select *` below matches them.
        pg_execute(con, f"create table {scratch} (like {schema}.{HISTORY})")
        con.execute("call pg_clear_cache()")
        con.execute(
            f"insert into pg.{scratch} by name select * from {ROWS} order by {', '.join(KEY)}"
        )
        matches = " and ".join(f"t.{k} = s.{k}" for k in KEY)
        gone = ""
        if changes.gone:
            keys = ", ".join(KEY)
            pg_execute(
                con, f"create table {scratch}_gone as select {keys} from {schema}.{HISTORY} limit 0"
            )
            con.execute("call pg_clear_cache()")
            con.execute(f"insert into pg.{scratch}_gone by name select * from {GONE}")
            gone = (
                f"delete from {schema}.{HISTORY} as t using {scratch}_gone as s where {matches}; "
                f"drop table {scratch}_gone; "
            )
        pg_execute(
            con,
            f"delete from {schema}.{HISTORY} as t using {scratch} as s where {matches}; "
            + gone
            + f"insert into {schema}.{HISTORY} select * from {scratch}; drop table {scratch}; "
            + "; ".join(f"analyze {schema}.{month_name(m)}" for m in changes.months),
        )
        log.info(
            "%s: %d rows upserted, %d keys deleted, %d month(s)",
            HISTORY,
            changes.rows,
            changes.gone,
            len(changes.months),
        )
    rows_now = count(
        con, f"select * from postgres_query('pg', 'select count(*) from {schema}.{HISTORY}')"
    )
    return changes.rows, rows_now
