"""Every dataset cryptolake ingests, declared once (dlt's resources are the model).

A `Dataset` says what to ask CoinGecko (endpoint and parameters), how the requests fan out
(pages of `/coins/markets`, one request, or one request per coin), where the event time of its
rows comes from (the run's start for snapshots, the data's own timestamps for history), and
its silver model (table, key, sort, partitioning). Ingest, backfill, the replay server, silver
and status read these declarations; adding an endpoint is one entry here, one SQL model in
`sql/duckdb/silver/`, and one contract in `contracts.py`.

Two kinds of dataset:

- **snapshot** datasets are fetched together by every `ingest` run, landed as one bronze run
  with one manifest; their rows' event time is the run's start (`snapshot_at`), and silver
  partitions them by `snapshot_date`.
- **history** datasets are fetched per coin by `backfill` and a run's `history` stage, each
  body committed to bronze with a manifest of its own as it arrives (so a killed backfill
  loses at most the request in flight); their rows' event time is the data's own timestamps,
  and silver partitions them by month.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

FanOut = Literal["pages", "once", "per_coin"]
EventTime = Literal["run", "data"]
Kind = Literal["snapshot", "history"]


@dataclass(frozen=True, slots=True)
class SilverModel:
    """A silver table: `sql/duckdb/silver/<table>.sql` over the dataset's bodies.

    `key` is one row's identity (the upsert keeps one row per key, the newest body winning);
    `time_column` is the event time the table is partitioned and pruned on, and
    `partition_by` DuckLake's partition expressions over it.
    """

    table: str
    key: tuple[str, ...]
    sort: str
    time_column: str
    partition_by: tuple[str, ...]
    # Gold needs rows in it (a lake without them has nothing to build on).
    required: bool = True


@dataclass(frozen=True, slots=True)
class Dataset:
    """One CoinGecko endpoint and what the lake makes of it.

    `endpoint` may hold `{coin_id}` (one request per coin); `params` values may hold
    `{vs_currency}` and `{days}`, filled in per request.
    """

    name: str  # the bronze folder: bronze/<name>/ingest_date=YYYY-MM-DD/
    endpoint: str
    fan_out: FanOut
    event_time: EventTime
    kind: Kind
    silver: SilverModel
    params: Mapping[str, str] = field(default_factory=dict)
    # What it is, for `status` and `--help`.
    description: str = ""

    def path_for(self, coin_id: str | None = None) -> str:
        """The request path: `/coins/bitcoin/market_chart` for `coin_id='bitcoin'`."""
        return (
            self.endpoint.format(coin_id=coin_id) if "{coin_id}" in self.endpoint else self.endpoint
        )

    def params_for(self, *, vs_currency: str, days: int | None = None) -> dict[str, str]:
        values = {"vs_currency": vs_currency, "days": "" if days is None else str(days)}
        return {name: value.format(**values) for name, value in self.params.items()}


COINS_MARKETS = Dataset(
    name="coins_markets",
    endpoint="/coins/markets",
    fan_out="pages",
    event_time="run",
    kind="snapshot",
    description="the top coins by market cap, a page of up to 250 per request",
    silver=SilverModel(
        "market_snapshots",
        ("coin_id", "snapshot_at"),
        "snapshot_at, market_cap_rank nulls last, coin_id",
        "snapshot_date",
        ("snapshot_date",),
    ),
)
GLOBAL = Dataset(
    name="global",
    endpoint="/global",
    fan_out="once",
    event_time="run",
    kind="snapshot",
    description="market-wide totals",
    silver=SilverModel(
        "global_snapshots", ("snapshot_at",), "snapshot_at", "snapshot_date", ("snapshot_date",)
    ),
)
COINS_CATEGORIES = Dataset(
    name="coins_categories",
    endpoint="/coins/categories",
    fan_out="once",
    event_time="run",
    kind="snapshot",
    description="every category with its market cap",
    silver=SilverModel(
        "category_snapshots",
        ("category_id", "snapshot_at"),
        "snapshot_at, market_cap_usd desc nulls last, category_id",
        "snapshot_date",
        ("snapshot_date",),
    ),
)
COIN_MARKET_CHART = Dataset(
    name="coin_market_chart",
    endpoint="/coins/{coin_id}/market_chart",
    fan_out="per_coin",
    event_time="data",
    kind="history",
    params={"vs_currency": "{vs_currency}", "days": "{days}", "interval": "daily"},
    description="a coin's daily price, market cap and volume at 00:00 UTC, up to 365 days back",
    silver=SilverModel(
        "coin_history_daily",
        ("coin_id", "vs_currency", "day"),
        "coin_id, day",
        "day",
        ("year(day)", "month(day)"),
        required=False,
    ),
)
COIN_OHLC = Dataset(
    name="coin_ohlc",
    endpoint="/coins/{coin_id}/ohlc",
    fan_out="per_coin",
    event_time="data",
    kind="history",
    params={"vs_currency": "{vs_currency}", "days": "{days}"},
    description="a coin's 4-hour OHLC candles over the last 30 days (--with-ohlc)",
    silver=SilverModel(
        "coin_ohlc_4h",
        ("coin_id", "vs_currency", "candle_at"),
        "coin_id, candle_at",
        "day",
        ("year(day)", "month(day)"),
        required=False,
    ),
)

DATASETS: tuple[Dataset, ...] = (
    COINS_MARKETS,
    GLOBAL,
    COINS_CATEGORIES,
    COIN_MARKET_CHART,
    COIN_OHLC,
)
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}
SNAPSHOT_DATASETS: tuple[Dataset, ...] = tuple(d for d in DATASETS if d.kind == "snapshot")
HISTORY_DATASETS: tuple[Dataset, ...] = tuple(d for d in DATASETS if d.kind == "history")
# The days of 4-hour candles `/ohlc` serves (1-2 days give 30-minute ones, more 4-day ones).
OHLC_DAYS = 30
# The most daily history CoinGecko serves keyless and Demo keys (error 10012 beyond it).
KEYLESS_HISTORY_DAYS = 365


def snapshot_dataset_names() -> tuple[str, ...]:
    return tuple(d.name for d in SNAPSHOT_DATASETS)
