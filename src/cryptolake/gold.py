"""Gold: analytics tables built in-process from silver, in the lake's DuckDB file.

Every table is one SQL model in `sql/duckdb/gold/`. The database is rebuilt whole into a new
file and renamed into place, so a reader sees the previous gold or the new one, never a mix,
and never holds up a build. Gold is small next to silver (one row per coin per day at most),
so a full rebuild stays cheap and simple.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import TransformError
from .lake import LakePaths, fsync_dir
from .lakedb import open_lake_db, refresh_meta_views, refresh_silver_views
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .sqlfiles import load_sql

log = logging.getLogger(__name__)

# Build order: a model may read the gold tables listed before it.
GOLD_MODELS = (
    "coin_daily",
    "market_daily",
    "crypto_analytics_mart",
    "market_segment_analysis",
    "category_leaderboard",
)


@dataclass(frozen=True, slots=True)
class GoldTable:
    table: str
    rows: int
    seconds: float


@dataclass(frozen=True, slots=True)
class GoldResult:
    tables: list[GoldTable]


def build_gold(settings: Settings, *, progress: ProgressCallback = ignore_progress) -> GoldResult:
    """Build a new `<lake>/cryptolake.duckdb`: silver views, `meta.runs`, every gold table.

    Everything in the database is derived from the lake, so it is built whole into a new file
    and swapped in with one rename. Readers that have the old file open (a DuckDB shell, a
    report) keep reading it undisturbed and never block the build; a failed build leaves the
    previous database as it was.
    """
    lake = LakePaths.at(settings.lake)
    lake.root.mkdir(parents=True, exist_ok=True)
    for leftover in lake.root.glob(f".{lake.database.name}.building-*"):
        leftover.unlink()  # from a killed build; runs hold the lake lock, so none is live
    building = lake.root / f".{lake.database.name}.building-{uuid.uuid4().hex[:8]}"
    results: list[GoldTable] = []
    try:
        with open_lake_db(settings, path=building) as con:
            refresh_silver_views(con, lake)
            refresh_meta_views(con, lake)
            for done, name in enumerate(GOLD_MODELS):
                progress(Progress("gold", "tables", done, len(GOLD_MODELS), name))
                t0 = time.perf_counter()
                sql = load_sql(f"duckdb/gold/{name}.sql")
                try:
                    con.execute(f"create table gold.{name} as {sql}")
                except duckdb.Error as exc:
                    raise TransformError(
                        f"Building gold.{name} failed: {exc}. The lake database keeps its "
                        "previous gold."
                    ) from exc
                row = con.execute(f"select count(*) from gold.{name}").fetchone()
                results.append(GoldTable(name, int(row[0]) if row else 0, time.perf_counter() - t0))
                log.info("gold.%s: %d rows in %.2fs", name, results[-1].rows, results[-1].seconds)
            con.execute("checkpoint")
        # A WAL left next to the old file would be replayed onto the new one: it must go.
        Path(f"{lake.database}.wal").unlink(missing_ok=True)
        os.replace(building, lake.database)
        fsync_dir(lake.root)
    finally:
        building.unlink(missing_ok=True)
        Path(f"{building}.wal").unlink(missing_ok=True)
    progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "done"))
    return GoldResult(results)
