"""What the HTML report shows, read from the lake: gold, and silver's latest snapshot.

The year section's figures (the top coins' last 365 days) are read by report_year.py.

Read through a read-only connection; `read_report_data` raises LakeError when gold is
missing or empty, and lets DuckDB errors through for the caller to word.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from .errors import LakeError
from .report_parts import Row
from .report_year import YearData, read_year

GOLD_TABLES = (
    "crypto_analytics_mart",
    "coin_daily",
    "market_segment_analysis",
    "market_cap_segments",
    "market_daily",
    "category_leaderboard",
)
# Colours only: the segments, their labels and bounds come from gold.market_cap_segments.
MOVERS = 5
CATEGORIES = 10


@dataclass(frozen=True, slots=True)
class Mover:
    coin_id: str
    name: str
    symbol: str
    price: float | None
    change_24h_pct: float


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows, as read from the lake."""

    mart: list[Row]
    segments: list[Row]
    daily: list[Row]
    gainers: list[Row]
    losers: list[Row]
    categories: list[Row]
    snapshots: int
    tracked_coins: int
    first_snapshot_at: datetime
    year: YearData

    @property
    def latest(self) -> Row:
        return self.mart[0]

    @property
    def vs_currency(self) -> str:
        return str(self.latest["vs_currency"])

    @property
    def snapshot_at(self) -> datetime:
        value: datetime = self.latest["snapshot_at"]
        return value

    @property
    def last_day(self) -> Row | None:
        return self.daily[-1] if self.daily else None

    @property
    def is_sample(self) -> bool:
        """The snapshot is cryptolake's bundled sample: recorded prices, not live ones."""
        return bool(self.latest.get("is_sample"))

    @property
    def recorded_at(self) -> datetime:
        """When CoinGecko last updated the snapshot's quotes (for the sample: its date)."""
        stamps = [r["last_updated_at"] for r in self.mart if r.get("last_updated_at")]
        return max(stamps) if stamps else self.snapshot_at


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[Row]:
    # Through Arrow: DuckDB's own fetch of tz-aware timestamps needs pytz.
    rows: list[Row] = con.sql(sql).to_arrow_table().to_pylist()
    return rows


# The latest snapshot of the mart's currency, over every tracked coin, not only the top 50.
_LATEST = """
    select * from silver.market_snapshots
    where vs_currency = (select any_value(vs_currency) from gold.crypto_analytics_mart)
        and snapshot_at = (select max(snapshot_at) from gold.crypto_analytics_mart)
        and price_change_percentage_24h is not null
"""


def _movers(con: duckdb.DuckDBPyConnection, direction: str) -> list[Row]:
    return _rows(
        con,
        f"""
        select coin_id, name, symbol, current_price, market_cap_rank,
            price_change_percentage_24h as change_24h_pct
        from ({_LATEST})
        order by price_change_percentage_24h {direction}, coin_id
        limit {MOVERS}
        """,
    )


def read_report_data(con: duckdb.DuckDBPyConnection) -> ReportData:
    """Read the report's rows from gold (and silver for movers and snapshot counts)."""
    present = {
        name
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'gold'"
        ).fetchall()
    }
    missing = [t for t in GOLD_TABLES if t not in present]
    if missing:
        raise LakeError(
            f"The lake has no gold tables yet (missing gold.{missing[0]}); run `cryptolake "
            "transform` (or `cryptolake run`) before `cryptolake report`."
        )
    mart = _rows(con, "select * from gold.crypto_analytics_mart order by market_cap_rank")
    if not mart:
        raise LakeError(
            "gold.crypto_analytics_mart is empty: the latest snapshot has no ranked coins. "
            "Ingest again, then run `cryptolake transform`."
        )
    (counts,) = _rows(
        con,
        """
        select
            count(distinct snapshot_at) as snapshots,
            min(snapshot_at) as first_snapshot_at,
            count(distinct coin_id) filter (
                where snapshot_at = (select max(snapshot_at) from gold.crypto_analytics_mart)
            ) as tracked_coins
        from silver.market_snapshots
        where vs_currency = (select any_value(vs_currency) from gold.crypto_analytics_mart)
        """,
    )
    return ReportData(
        mart=mart,
        segments=_rows(
            con,
            """
            select analysis.*, segments.label, segments.min_market_cap_usd,
                segments.max_market_cap_usd
            from gold.market_segment_analysis as analysis
            inner join gold.market_cap_segments as segments
                using (market_cap_category)
            order by segments.segment_order
            """,
        ),
        daily=_rows(con, "select * from gold.market_daily order by day"),
        gainers=_movers(con, "desc"),
        losers=_movers(con, "asc"),
        categories=_rows(
            con,
            f"select * from gold.category_leaderboard order by category_rank limit {CATEGORIES}",
        ),
        snapshots=counts["snapshots"],
        tracked_coins=counts["tracked_coins"],
        first_snapshot_at=counts["first_snapshot_at"] or mart[0]["snapshot_at"],
        year=read_year(con),
    )
