"""Gold keeps its catalog entries from build to build: a scheduled run adds data, not tables.

Every `create or replace` is a new table (or view, or macro) in DuckLake's catalog, kept with
its columns until the snapshot that replaced it expires (30 days by default: 120 runs of a
6-hourly schedule). Re-creating gold's tables on every build made every catalog read of a
year-old lake 3x slower (benchmarks/bench_scheduled_run.py, REPORT.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb

from cryptolake import pipeline
from cryptolake.catalog import open_lake
from cryptolake.gold import GOLD_MODELS, MACROS, build_gold
from cryptolake.silver import build_silver

from .lakes import T0, land, settings_for

CATALOG_ENTRIES = {
    "tables": "ducklake_table",
    "columns": "ducklake_column",
    "views": "ducklake_view",
    "macros": "ducklake_macro",
}


def entries(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of the catalog's tables of tables, columns, views and macros, ended ones too."""
    out = {}
    for what, table in CATALOG_ENTRIES.items():
        row = con.execute(f"select count(*) from __ducklake_metadata_lake.{table}").fetchone()
        out[what] = int(row[0]) if row else 0
    return out


def transform(lake: Path, currency: str = "usd") -> dict[str, int]:
    settings = settings_for(lake).with_(vs_currency=currency)
    result = pipeline.run(settings, stages=("transform",))
    assert result.status == "success", result.error
    with open_lake(settings, read_only=True) as con:
        got = entries(con)
        tables = con.execute(
            "select table_name from duckdb_tables() where schema_name = 'gold'"
        ).fetchall()
        assert {t for (t,) in tables} >= set(GOLD_MODELS)
        views = con.execute("select count(*) from meta.runs").fetchone()
        assert views is not None and views[0] >= 1  # the run records, through the view
    return got


def test_scheduled_builds_replace_rows_not_tables_views_or_macros(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    land(lake, at=T0)
    # A first gold without a run id (`cryptolake transform`): meta.build's run_id must
    # still take the run ids of the builds after it.
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))
    land(lake, at=T0 + timedelta(hours=6))
    first = transform(lake)
    assert first["macros"] >= len(MACROS) and first["views"] >= 1

    for n in range(2, 5):  # three more scheduled runs, a snapshot each
        land(lake, at=T0 + timedelta(hours=6 * n))
        assert transform(lake) == first

    with open_lake(settings_for(lake), read_only=True) as con:
        mart = con.execute("select count(*) from gold.crypto_analytics_mart").fetchone()
        latest = con.execute("select max(snapshot_at) from gold.crypto_analytics_mart").fetchone()
        expected = con.execute("select max(snapshot_at) from silver.market_snapshots").fetchone()
    assert mart is not None and mart[0] == 50
    assert latest == expected  # the rows replaced are the newest snapshot's

    # Other models (another currency): the tables are built again, their columns may differ.
    land(lake, at=T0 + timedelta(hours=24), vs_currency="eur")
    again = transform(lake, "eur")
    assert again["tables"] > first["tables"]
