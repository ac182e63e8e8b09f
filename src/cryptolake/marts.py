"""Gold's tables in Postgres (the marts): made equal to gold inside the publish transaction.

Marts are emptied with DELETE, never dropped or truncated, so views consumers built on them
keep working and readers are never blocked. A day-keyed mart (coin_daily) is refreshed from a
day on when only new snapshots changed it.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import duckdb

from .duck import quote_literal
from .pgext import pg_execute, pg_rows

log = logging.getLogger(__name__)

# Marts with one row per day (and coin) that a publish may refresh from a day on.
DAY_KEYED = {"coin_daily": "day"}


def count(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def refresh_start(con: duckdb.DuckDBPyConnection, schema: str, earliest_new_day: date) -> str:
    """The first day of a day-keyed mart that new snapshots from `earliest_new_day` on change.

    The day before it (its close is the new day's first price, its completeness may change),
    or the last day Postgres holds if that is earlier: after a gap in the runs, that day was
    the lake's newest, is complete now, and has a close and a return it lacked.
    """
    start = earliest_new_day - timedelta(days=1)
    rows = pg_rows(con, f"select max(day)::text from {schema}.coin_daily")
    if rows and rows[0][0]:
        start = min(start, date.fromisoformat(str(rows[0][0])))
    return start.isoformat()


def replace_mart(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    mart: str,
    *,
    since: str | None,
    rows_before: int | None = None,
) -> tuple[int, int]:
    """Make the Postgres mart equal to gold's; returns (rows written, rows now).

    A day-keyed mart only needs its rows from `since` on, when the caller knows that nothing
    before it changed (new snapshots, same models and currency). If the counts then disagree
    with gold (silver was rebuilt, a day went missing), the whole mart is replaced after all.
    Its rows now are `rows_before` (the last publish's figure) less those it had from `since`
    on plus those written, when given: a year of coin_daily is not counted on every publish.
    """
    gold_rows = count(con, f"select count(*) from lake.gold.{mart}")
    if since is not None and mart in DAY_KEYED:
        day = DAY_KEYED[mart]
        recent = f"{day} >= date {quote_literal(since)}"
        replaced = (
            count(
                con,
                "select * from postgres_query('pg', "
                f"{quote_literal(f'select count(*) from {schema}.{mart} where {recent}')})",
            )
            if rows_before is not None
            else 0
        )
        pg_execute(con, f"delete from {schema}.{mart} where {recent}")
        con.execute(
            f"insert into pg.{schema}.{mart} by name select * from lake.gold.{mart} where {recent}"
        )
        written = count(con, f"select count(*) from lake.gold.{mart} where {recent}")
        rows_now = (
            rows_before - replaced + written
            if rows_before is not None
            else count(
                con, f"select * from postgres_query('pg', 'select count(*) from {schema}.{mart}')"
            )
        )
        if rows_now == gold_rows:
            return written, rows_now
        log.info(
            "%s: %d rows in Postgres, %d in gold: replacing it whole", mart, rows_now, gold_rows
        )
    pg_execute(con, f"delete from {schema}.{mart}")
    con.execute(f"insert into pg.{schema}.{mart} by name select * from lake.gold.{mart}")
    return gold_rows, gold_rows
