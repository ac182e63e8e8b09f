"""Gold: analytics tables built in-process from silver, in the lake's DuckDB file.

Every table is one SQL model in `sql/duckdb/gold/`, rebuilt whole in one transaction, so a
reader of the database sees the previous gold or the new one, never a mix. Gold is small next
to silver (one row per coin per day at most), so a full rebuild stays cheap and simple.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import duckdb

from .errors import TransformError
from .lake import LakePaths
from .lakedb import open_lake_db, refresh_silver_views
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

    def rows(self, table: str) -> int:
        return next(t.rows for t in self.tables if t.table == table)


def build_gold(settings: Settings, *, progress: ProgressCallback = ignore_progress) -> GoldResult:
    """Rebuild the silver views and every gold table in `<lake>/cryptolake.duckdb`."""
    lake = LakePaths.at(settings.lake)
    results: list[GoldTable] = []
    with open_lake_db(settings) as con:
        con.execute("begin transaction")
        try:
            refresh_silver_views(con, lake)
            for done, name in enumerate(GOLD_MODELS):
                progress(Progress("gold", "tables", done, len(GOLD_MODELS), name))
                t0 = time.perf_counter()
                con.execute(
                    f"create or replace table gold.{name} as {load_sql(f'duckdb/gold/{name}.sql')}"
                )
                row = con.execute(f"select count(*) from gold.{name}").fetchone()
                results.append(GoldTable(name, int(row[0]) if row else 0, time.perf_counter() - t0))
                log.info("gold.%s: %d rows in %.2fs", name, results[-1].rows, results[-1].seconds)
            con.execute("commit")
        except duckdb.Error as exc:
            con.execute("rollback")
            raise TransformError(
                f"Building gold failed: {exc}. Gold keeps its previous tables."
            ) from exc
        except BaseException:
            con.execute("rollback")
            raise
    progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "done"))
    return GoldResult(results)
