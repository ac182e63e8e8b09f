"""The report's year: the last 365 days of the top 10 coins, read from gold.coin_daily.

The year is the 365 UTC days up to the lake's last complete day (a day whose close, the
price at 00:00 UTC of the next day, is known): a provisional day's "close" is only the
latest price so far, so it is never called a close here. The top 10 are the coins with the
largest market cap on the lake's latest day. For each: its closes in the year (for the
indexed price line and the drawdown), its market caps, and its 30-day volatility on its last
day in the year.

The volatility is gold's `volatility_30d_ratio` when gold has that column; a gold built by an
older cryptolake lacks it, and then it is computed here the way gold computes its 7-day one:
the sample standard deviation of the last 30 daily returns, none until all 30 exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb

from .duck import json_list
from .report_parts import Row

TOP_COINS = 10
YEAR_DAYS = 365
VOLATILITY_DAYS = 30
GOLD_VOLATILITY = "volatility_30d_ratio"

# Gold's own 7-day rule (sql/duckdb/gold/coin_daily.sql), over 30 days.
_COMPUTED_VOLATILITY = f"""
    case
        when count(daily_return_ratio) over last_30_days = {VOLATILITY_DAYS}
            then stddev_samp(daily_return_ratio) over last_30_days
    end
"""
_LAST_30_DAYS = f"""
    window last_30_days as (
        partition by coin_id order by day
        range between interval {VOLATILITY_DAYS - 1} days preceding and current row
    )
"""


@dataclass(frozen=True, slots=True)
class CoinYear:
    """One of the top coins over the year."""

    coin_id: str
    name: str
    symbol: str
    position: int  # by market cap on the lake's latest day: 1 = largest
    market_cap: float | None  # on the lake's latest day
    closes: list[tuple[date, float]]  # complete days of the year with a close, oldest first
    market_caps: list[tuple[date, float | None]]  # on those days
    latest_close: float | None
    high_close: float | None
    high_day: date | None  # the latest day the year's highest close was reached
    volatility_30d_ratio: float | None  # on the coin's last day in the year

    @property
    def days(self) -> int:
        return len(self.closes)

    @property
    def first_day(self) -> date | None:
        return self.closes[0][0] if self.closes else None

    @property
    def last_day(self) -> date | None:
        return self.closes[-1][0] if self.closes else None

    @property
    def drawdown_pct(self) -> float | None:
        """The latest close below the year's highest, in percent (-12.5 = 12.5% below).

        None with fewer than two closes: one close is its own high, which says nothing.
        """
        if self.days < 2 or not self.high_close or self.latest_close is None:
            return None
        return 100 * (self.latest_close / self.high_close - 1)

    @property
    def indexed(self) -> list[tuple[date, float | None]]:
        """Closes as 100 × close / the first close of the year: lines that compare."""
        if not self.closes or self.closes[0][1] <= 0:
            return []
        base = self.closes[0][1]
        return [(day, 100 * close / base) for day, close in self.closes]


@dataclass(frozen=True, slots=True)
class YearData:
    """The year section's figures; `end` is None when the lake has no complete day yet."""

    coins: list[CoinYear]
    latest_day: date | None  # the lake's latest day in gold.coin_daily (maybe provisional)
    end: date | None  # the last complete day: the year's last
    volatility_from_gold: bool  # gold has volatility_30d_ratio (else computed here)

    @property
    def start(self) -> date | None:
        return self.end - timedelta(days=YEAR_DAYS - 1) if self.end else None

    @property
    def charted(self) -> list[CoinYear]:
        """The top coins with at least one close in the year."""
        return [c for c in self.coins if c.closes]


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> list[Row]:
    # Through Arrow: DuckDB's own fetch of tz-aware timestamps needs pytz.
    rows: list[Row] = con.execute(sql, params or []).to_arrow_table().to_pylist()
    return rows


def has_gold_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """Whether gold.`table` has `column` (in the lake in use)."""
    row = con.execute(
        "select count(*) from duckdb_columns() where database_name = current_database() "
        "and schema_name = 'gold' and table_name = ? and column_name = ?",
        [table, column],
    ).fetchone()
    return bool(row and row[0])


def read_year(con: duckdb.DuckDBPyConnection) -> YearData:
    """The top coins' year from gold.coin_daily (see the module doc)."""
    from_gold = has_gold_column(con, "coin_daily", GOLD_VOLATILITY)
    (bounds,) = _rows(
        con,
        """
        select
            max(day) as latest_day,
            max(day) filter (where is_complete_day and close_price is not null) as end_day
        from gold.coin_daily
        """,
    )
    latest_day: date | None = bounds["latest_day"]
    end: date | None = bounds["end_day"]
    if latest_day is None:
        return YearData([], None, None, from_gold)
    top = _rows(
        con,
        f"""
        select coin_id, symbol, name, market_cap
        from gold.coin_daily
        where day = ? and market_cap is not null
        order by market_cap desc, coin_id
        limit {TOP_COINS}
        """,
        [latest_day],
    )
    ids = [str(r["coin_id"]) for r in top]
    series: dict[str, list[Row]] = {coin: [] for coin in ids}
    highs: dict[str, Row] = {}
    if end is not None and ids:
        start = end - timedelta(days=YEAR_DAYS - 1)
        # The volatility window reaches before the year: computed over the coins' every day,
        # then the year is cut out of it.
        year = f"""
            with coin_days as (
                select
                    coin_id,
                    day,
                    is_complete_day,
                    close_price,
                    market_cap,
                    {GOLD_VOLATILITY if from_gold else _COMPUTED_VOLATILITY}
                        as volatility_30d_ratio
                from gold.coin_daily
                where coin_id in (select unnest(?::json::varchar[]))
                {"" if from_gold else _LAST_30_DAYS}
            )

            select coin_id, day, close_price, market_cap, volatility_30d_ratio
            from coin_days
            where is_complete_day and close_price is not null and day between ? and ?
        """
        for row in _rows(con, f"{year} order by coin_id, day", [json_list(ids), start, end]):
            series[str(row["coin_id"])].append(row)
        highs = {
            str(r["coin_id"]): r
            for r in _rows(
                con,
                f"""
                with year as ({year}),

                highs as (
                    select coin_id, max(close_price) as high_close
                    from year
                    group by coin_id
                )

                select highs.coin_id, highs.high_close, max(year.day) as high_day
                from highs
                inner join year
                    on year.coin_id = highs.coin_id and year.close_price = highs.high_close
                group by highs.coin_id, highs.high_close
                """,
                [json_list(ids), start, end],
            )
        }
    coins = []
    for position, r in enumerate(top, start=1):
        coin = str(r["coin_id"])
        rows = series[coin]
        high = highs.get(coin, {})
        coins.append(
            CoinYear(
                coin_id=coin,
                name=str(r["name"] or coin),
                symbol=str(r["symbol"] or ""),
                position=position,
                market_cap=r["market_cap"],
                closes=[(row["day"], row["close_price"]) for row in rows],
                market_caps=[(row["day"], row["market_cap"]) for row in rows],
                latest_close=rows[-1]["close_price"] if rows else None,
                high_close=high.get("high_close"),
                high_day=high.get("high_day"),
                volatility_30d_ratio=rows[-1]["volatility_30d_ratio"] if rows else None,
            )
        )
    return YearData(coins, latest_day, end, from_gold)
