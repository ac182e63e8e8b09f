"""The lake's assets and checks, declared: what Dagster draws and what each step yields.

An asset per bronze dataset, silver table, gold model and Postgres table, grouped by layer,
with the lineage `lineage.py` reads from the declarations and the SQL; an asset check per SQL
check in `sql/duckdb/checks/`, on the table it is about (blocking when the check blocks).
"""

import re

from dagster import AssetCheckSpec, AssetKey, AssetSpec

from ..checkdefs import CheckDef, check_defs
from ..datasets import COIN_MARKET_CHART, COIN_OHLC, COINS_MARKETS, DATASETS, SNAPSHOT_DATASETS
from ..gold import GOLD_MODELS
from .lineage import gold_reads, published_tables

_TABLE = re.compile(r"\b(silver|gold)\.(\w+)")


def layer_key(layer: str, table: str) -> AssetKey:
    """`bronze/coins_markets`, `silver/market_snapshots`, `gold/coin_daily`, `postgres/...`."""
    return AssetKey([layer, table])


def check_asset(check: CheckDef) -> AssetKey:
    """The table a check is about: a quarantine check's silver table, else the first table
    its description names; the freshness of the lake's latest snapshot is the mart's."""
    if check.table is not None:
        return layer_key("silver", check.table)
    if named := _TABLE.search(check.description):
        return layer_key(named[1], named[2])
    return layer_key("gold", "crypto_analytics_mart")


SNAPSHOT_SPECS = [
    AssetSpec(
        layer_key("bronze", d.name),
        description=f"CoinGecko {d.endpoint}: {d.description}. Raw JSON bodies, one bronze run "
        "with a manifest per ingest.",
        group_name="bronze",
        kinds={"json"},
        metadata={"endpoint": d.endpoint},
    )
    for d in SNAPSHOT_DATASETS
]
HISTORY_SPEC = AssetSpec(
    layer_key("bronze", COIN_MARKET_CHART.name),
    # The coins it asks for are those of the latest coins_markets run.
    deps=[layer_key("bronze", COINS_MARKETS.name)],
    description=f"CoinGecko {COIN_MARKET_CHART.endpoint}: {COIN_MARKET_CHART.description}; "
    "a budget of requests per materialization fills the top coins' gaps.",
    group_name="bronze",
    kinds={"json"},
    metadata={"endpoint": COIN_MARKET_CHART.endpoint},
)
# Landed by `cryptolake backfill --with-ohlc` only: an asset of the graph nothing here runs.
OHLC_SPEC = AssetSpec(
    layer_key("bronze", COIN_OHLC.name),
    description=f"CoinGecko {COIN_OHLC.endpoint}: {COIN_OHLC.description}; landed by "
    "`cryptolake backfill --with-ohlc`.",
    group_name="bronze",
    kinds={"json"},
    metadata={"endpoint": COIN_OHLC.endpoint},
)
SILVER_SPECS = [
    AssetSpec(
        layer_key("silver", d.silver.table),
        deps=[layer_key("bronze", d.name)],
        description=f"silver.{d.silver.table}: {d.description}, typed and de-duplicated "
        f"(one row per {', '.join(d.silver.key)}).",
        group_name="silver",
        kinds={"ducklake"},
        metadata={
            "key": ", ".join(d.silver.key),
            "partitioned_by": ", ".join(d.silver.partition_by),
        },
    )
    for d in DATASETS
]
GOLD_SPECS = [
    AssetSpec(
        layer_key("gold", model),
        deps=[layer_key(layer, table) for layer, table in gold_reads(model)],
        description=f"gold.{model}: sql/duckdb/gold/{model}.sql, audited before it commits.",
        group_name="gold",
        kinds={"ducklake"},
    )
    for model in GOLD_MODELS
]
POSTGRES_SPECS = [
    AssetSpec(
        layer_key("postgres", table),
        deps=[layer_key(*source)],
        description=f"Postgres <schema>.{table}, published from {'.'.join(source)} in one "
        "transaction (skipped without a Postgres DSN).",
        group_name="postgres",
        kinds={"postgres"},
        skippable=True,
    )
    for table, source in published_tables().items()
]
CHECKS = check_defs()
CHECK_SPECS = [
    AssetCheckSpec(
        c.name,
        asset=check_asset(c),
        description=f"{c.description} (on fail: {c.on_fail})",
        blocking=c.on_fail == "block",
    )
    for c in CHECKS
]
