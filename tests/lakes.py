"""Helpers that build real lakes for tests: ingest recorded bodies over loopback, read tables."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from cryptolake.catalog import attach_lake, open_lake
from cryptolake.datasets import snapshot_dataset_names
from cryptolake.duck import connect
from cryptolake.gold import build_gold
from cryptolake.ingest import IngestResult, ingest
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import CATEGORIES, GLOBAL, MARKETS, fixture_bytes

T0 = datetime(2026, 2, 15, 15, 47, tzinfo=UTC)


def as_float(value: Any) -> float | None:
    """What the API meant: numbers and numeric strings (2018 schema) as float, else None."""
    if value is None or isinstance(value, dict | bool):
        return None
    return float(value)


def land(
    lake: Path,
    markets: str | bytes = MARKETS,
    *,
    at: datetime = T0,
    vs_currency: str = "usd",
    top: int | None = None,
    per_page: int = 250,
    global_body: bytes | None = None,
    datasets: Sequence[str] = snapshot_dataset_names(),
) -> IngestResult:
    """Ingest one recorded markets body (plus /global, /coins/categories) as a run at `at`."""
    body = fixture_bytes(markets) if isinstance(markets, str) else markets
    records = json.loads(body)
    data = ReplayData(
        markets=body,
        bodies={
            "/global": global_body or fixture_bytes(GLOBAL),
            "/coins/categories": fixture_bytes(CATEGORIES),
        },
        vs_currency=vs_currency,
    )
    with ReplayServer(data) as server:
        settings = Settings.resolve(
            env={},
            lake=lake,
            api_url=server.api_url,
            rate=60_000.0,
            vs_currency=vs_currency,
            top=top or len(records),
            per_page=per_page,
        )
        return ingest(settings, datasets=datasets, now=lambda: at)


def one_snapshot(lake: Path) -> None:
    """The recorded 2023 top 100 landed at T0, then silver and gold built: the lake most
    tests start from (`lake_templates.copy(one_snapshot, lake)` builds it once a session)."""
    land(lake)
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


def two_days(lake: Path) -> None:
    """The recorded 2023 top 100 landed at T0 and a day later, then silver and gold built."""
    land(lake)
    land(lake, at=T0 + timedelta(days=1))
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


def silver_rows(lake: Path, table: str = "market_snapshots") -> list[dict[str, Any]]:
    """Rows of a silver table as dicts; timestamps as text (tz-aware fetches need pytz)."""
    with open_lake(Settings(lake=lake), read_only=True) as con:
        return rows_of(con, f"select * from silver.{table}")


def rows_of(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    """Rows of a query as dicts, timestamps with time zone cast to text."""
    types = con.execute(f"describe {sql}").fetchall()
    casts = [
        f"cast({name} as varchar) as {name}" if "TIME ZONE" in str(kind) else name
        for name, kind, *_ in types
    ]
    cur = con.execute(f"select {', '.join(casts)} from ({sql})")
    cols = [d[0] for d in cur.description or []]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def same_rows(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> bool:
    """The same rows, floats equal to 12 significant digits and everything else exactly.

    A window aggregate (the 30-day standard deviation) sums in an order that depends on the
    rows around it, so an incremental build and a whole rebuild may differ in the last bit.
    """

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0)
        return bool(x == y)

    return len(a) == len(b) and all(
        r.keys() == s.keys() and all(same(r[k], s[k]) for k in r) for r, s in zip(a, b, strict=True)
    )


def settings_for(lake: Path) -> Settings:
    # The recorded snapshots are months old: the freshness check is tested on its own.
    return Settings.resolve(env={}, lake=lake, freshness_hours=24 * 365 * 100)


def lake_db(lake: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake's DuckLake attached read-only and in use (close it)."""
    settings = Settings(lake=Path(lake))
    con = connect(settings)
    attach_lake(con, settings)
    con.execute("use lake")
    return con


def lake_files(lake: Path) -> dict[str, tuple[int, int]]:
    """Every file of the lake with its (size, mtime_ns): what a read must leave unchanged.

    SQLite's WAL and shared-memory files of the catalog are left out: any connection, a
    read-only one included, may create them (they hold no committed change of its own).
    """
    return {
        str(p.relative_to(lake)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in Path(lake).rglob("*")
        if p.is_file() and p.name not in ("catalog.sqlite-wal", "catalog.sqlite-shm")
    }
