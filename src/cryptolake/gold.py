"""Gold: analytics tables built in-process from silver, audited, then promoted.

Every table is one SQL model in `sql/duckdb/gold/`. The lake database is built whole into a
new file, the blocking and warning checks run on it (write, audit), and only if none blocks is
it renamed into place (publish): a reader, the report or `cryptolake publish` never sees gold
that failed a check, and a failure leaves the previous database as it was. Gold is small next
to silver (one row per coin per day at most), so a full rebuild stays cheap and simple.

Gold is built for one quote currency: the one asked for (`--vs-currency`), else the currency
of the lake's latest snapshot. The database records what it was built from (`meta.build`, and
the snapshots silver held in `meta.snapshots`), which is what publish compares and ships.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from . import __version__
from .checkdefs import check_defs
from .checks import CheckResult, ChecksFailed, evaluate
from .errors import LakeError, TransformError
from .fserrors import duckdb_io_error, on_lake
from .lake import LakePaths, fsync_dir
from .lakedb import open_lake_db, refresh_meta_views, refresh_silver_views
from .progress import Progress, ProgressCallback, ignore_progress
from .quarantine import load_quarantine
from .settings import Settings
from .silver import processed_runs
from .sqlfiles import load_sql, sql_names

log = logging.getLogger(__name__)

# Build order: a model may read the gold tables listed before it. The segments come first:
# the macros read them.
GOLD_MODELS = (
    "market_cap_segments",
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
    vs_currency: str = "usd"
    lake_version: str = ""
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


def models_fingerprint(vs_currency: str) -> str:
    """What gold's content depends on besides silver: its SQL, the currency, this version."""
    digest = hashlib.sha256(f"{__version__}\n{vs_currency}\n".encode())
    for folder in ("duckdb/gold", "duckdb/macros"):
        for name in sql_names(folder):
            digest.update(load_sql(f"{folder}/{name}.sql").encode())
    return digest.hexdigest()[:12]


def lake_version(fingerprint: str, runs: set[str]) -> str:
    """`<models fingerprint>-<silver runs digest>`: equal versions mean equal gold and staging."""
    digest = hashlib.sha256("\n".join(sorted(runs)).encode()).hexdigest()[:12]
    return f"{fingerprint}-{digest}"


def resolve_currency(con: duckdb.DuckDBPyConnection, asked: str | None) -> str:
    """The currency to build gold for: `asked` if the lake holds it, else the latest one's.

    Raises LakeError naming the currencies the lake holds when it holds none or not `asked`.
    """
    held = con.execute(
        "select vs_currency, count(distinct snapshot_at), max(snapshot_at)::varchar "
        "from silver.market_snapshots group by vs_currency order by max(snapshot_at) desc"
    ).fetchall()
    if not held:
        raise LakeError(
            "silver.market_snapshots is empty; run `cryptolake ingest` then `cryptolake "
            "transform` (or `cryptolake run --sample`)."
        )
    if asked is None:
        return str(held[0][0])
    if asked not in {h[0] for h in held}:
        holds = "; ".join(f"{c}: {n} snapshot(s), latest {at[:16]}" for c, n, at in held)
        raise LakeError(
            f"The lake holds no {asked} snapshots (it holds {holds}); drop --vs-currency "
            f"(or CRYPTOLAKE_VS_CURRENCY) to build gold for {held[0][0]}, or ingest with "
            f"--vs-currency {asked} first."
        )
    return asked


@on_lake("build gold")
def build_gold(settings: Settings, *, progress: ProgressCallback = ignore_progress) -> GoldResult:
    """Build, audit and promote a new `<lake>/cryptolake.duckdb`; returns its tables and checks.

    Raises `ChecksFailed` (the previous database stays) when a blocking check fails,
    `LakeError` when silver is empty or lacks the currency asked for, `TransformError` when a
    model fails.
    """
    lake = LakePaths.at(settings.lake)
    lake.root.mkdir(parents=True, exist_ok=True)
    for leftover in lake.root.glob(f".{lake.database.name}.building-*"):
        leftover.unlink()  # from a killed build; runs hold the lake lock, so none is live
    building = lake.root / f".{lake.database.name}.building-{uuid.uuid4().hex[:8]}"
    results: list[GoldTable] = []
    runs = processed_runs(lake)
    try:
        with open_lake_db(settings, path=building) as con:
            refresh_silver_views(con, lake)
            refresh_meta_views(con, lake)
            load_quarantine(con, lake)
            currency = resolve_currency(con, settings.vs_currency)
            con.execute("set variable vs_currency = ?", [currency])
            fingerprint = models_fingerprint(currency)
            version = lake_version(fingerprint, runs)
            for done, name in enumerate(GOLD_MODELS):
                progress(Progress("gold", "tables", done, len(GOLD_MODELS), name))
                results.append(_build_model(con, name))
                if name == "market_cap_segments":
                    for macro in sql_names("duckdb/macros"):
                        con.execute(load_sql(f"duckdb/macros/{macro}.sql"))
            _record_build(con, version=version, currency=currency, runs=runs)
            progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "audit"))
            checks = evaluate(con, check_defs(on_fail=("block", "warn")), progress=progress)
            failed = [c for c in checks if c.blocks]
            if failed:
                raise ChecksFailed(failed)
            con.execute("checkpoint")
        # A WAL left next to the old file would be replayed onto the new one: it must go.
        Path(f"{lake.database}.wal").unlink(missing_ok=True)
        os.replace(building, lake.database)
        fsync_dir(lake.root)
    finally:
        building.unlink(missing_ok=True)
        Path(f"{building}.wal").unlink(missing_ok=True)
    progress(Progress("gold", "tables", len(GOLD_MODELS), len(GOLD_MODELS), "promoted"))
    return GoldResult(results, vs_currency=currency, lake_version=version, checks=checks)


def _build_model(con: duckdb.DuckDBPyConnection, name: str) -> GoldTable:
    t0 = time.perf_counter()
    sql = load_sql(f"duckdb/gold/{name}.sql")
    try:
        con.execute(f"create table gold.{name} as {sql}")
    except duckdb.Error as exc:
        if (translated := duckdb_io_error(exc, doing="build gold")) is not None:
            raise translated from exc
        raise TransformError(
            f"Building gold.{name} failed: {exc}. The lake database keeps its previous gold."
        ) from exc
    row = con.execute(f"select count(*) from gold.{name}").fetchone()
    table = GoldTable(name, int(row[0]) if row else 0, time.perf_counter() - t0)
    log.info("gold.%s: %d rows in %.2fs", name, table.rows, table.seconds)
    return table


def _record_build(
    con: duckdb.DuckDBPyConnection, *, version: str, currency: str, runs: set[str]
) -> None:
    """`meta.build` (one row: what this gold was built from) and `meta.snapshots`."""
    con.execute(
        "create table meta.build as select ? as lake_version, ? as vs_currency, "
        "?::varchar[] as silver_runs, now() as built_at, ? as cryptolake_version",
        [version, currency, sorted(runs), __version__],
    )
    # Every market snapshot silver held (all currencies): what publish may ship to staging.
    con.execute(
        "create table meta.snapshots as select snapshot_at, any_value(run_id) as run_id, "
        "any_value(vs_currency) as vs_currency, count(*) as coins "
        "from silver.market_snapshots group by snapshot_at order by snapshot_at"
    )
