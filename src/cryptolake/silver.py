"""Silver: bronze bodies -> typed, de-duplicated, Hive-partitioned Parquet, incrementally.

Each table is one SQL model (`sql/duckdb/silver/<table>.sql`) applied to a batch of runs.
A transform takes the complete runs not yet processed, builds their rows, merges them into
the partitions they fall in (`snapshot_date=YYYY-MM-DD/data_0.parquet`, one file each) and
swaps each rewritten file in with an atomic rename. The set of processed runs is written
last, so a crash at any point leaves readable silver and the next transform redoes the batch;
the merge de-duplicates on the table's key, so redoing is harmless.

Between the model and the merge, every batch is cleaned the same way whatever its table:
non-finite numbers become null and NUL characters leave text (sanitize.py), and rows failing a
row-level check are moved to the quarantine (quarantine.py). Both are counted in the result.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .bronze import Manifest, read_manifest, read_manifests, run_manifest_paths
from .checkdefs import CheckDef, check_defs
from .duck import connect, quote_literal
from .errors import LakeError, TransformError
from .fserrors import duckdb_io_error, on_lake
from .lake import LakePaths, atomic_write
from .progress import Progress, ProgressCallback, ignore_progress
from .quarantine import drop_stale, key_check, quarantine_batches, write_quarantine
from .sanitize import Sanitized, null_non_finite, strip_nul
from .settings import Settings
from .silver_io import PARTITION, PARTITION_FILE, SilverTable, count_rows, load_batch, merge_batch

__all__ = [
    "PARTITION",
    "PARTITION_FILE",
    "SILVER_FORMAT",
    "TABLES",
    "SilverResult",
    "SilverTable",
    "TableResult",
    "build_silver",
    "pending_runs",
    "processed_runs",
    "silver_views_sql",
]

log = logging.getLogger(__name__)

# Every transform (a full refresh, or the first one over a year of bronze) reads bronze a few
# weeks at a time: memory stays bounded on any lake size, and each COPY writes few partitions.
# DuckDB splits a partition into data_0, data_1, ... once a COPY has more than
# `partitioned_write_max_open_files` (100) partitions open, so keep this well below that.
BATCH_DAYS = 14
# What silver's files hold and how they were checked. A lake whose state records an older
# format is rebuilt from bronze by its next transform. 2: rows cleaned, row checks and the
# quarantine, total_market_cap_usd in global_snapshots. 3: is_sample in every table.
SILVER_FORMAT = 3


TABLES: tuple[SilverTable, ...] = (
    SilverTable(
        "market_snapshots",
        "coins_markets",
        ("coin_id", "snapshot_at"),
        "snapshot_at, market_cap_rank nulls last, coin_id",
    ),
    SilverTable("global_snapshots", "global", ("snapshot_at",), "snapshot_at"),
    SilverTable(
        "category_snapshots",
        "coins_categories",
        ("category_id", "snapshot_at"),
        "snapshot_at, market_cap_usd desc nulls last, category_id",
    ),
)


@dataclass(frozen=True, slots=True)
class TableResult:
    table: str
    runs: int
    rows_added: int
    partitions_written: int
    seconds: float
    sanitized: Sanitized = field(default_factory=Sanitized)
    quarantined: dict[str, int] = field(default_factory=dict)  # check -> rows set aside


@dataclass(frozen=True, slots=True)
class SilverResult:
    runs: list[str]
    tables: list[TableResult]
    full_refresh: bool
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.runs)

    @property
    def sanitized(self) -> Sanitized:
        return sum((t.sanitized for t in self.tables), Sanitized())

    @property
    def quarantined(self) -> dict[str, int]:
        """Rows set aside per check, over every table (checks that set none aside left out)."""
        found: dict[str, int] = {}
        for t in self.tables:
            for check, rows in t.quarantined.items():
                if rows:
                    found[check] = found.get(check, 0) + rows
        return found

    def describe_cleaning(self) -> str:
        """`3 non-finite numbers nulled, 2 rows quarantined (check: 2)`, or empty."""
        parts = []
        if self.sanitized.non_finite:
            parts.append(f"{self.sanitized.non_finite:,} non-finite number(s) nulled")
        if self.sanitized.nul_chars:
            parts.append(f"NUL characters removed from {self.sanitized.nul_chars:,} text value(s)")
        if self.sanitized.bad_unicode:
            parts.append(
                f"{self.sanitized.bad_unicode:,} text value(s) with invalid Unicode repaired"
            )
        if self.quarantined:
            detail = ", ".join(f"{c}: {n:,}" for c, n in self.quarantined.items())
            parts.append(f"{sum(self.quarantined.values()):,} row(s) quarantined ({detail})")
        return "; ".join(parts)


def _state_path(lake: LakePaths) -> Path:
    return lake.silver_state / "processed_runs.json"


def _read_state(lake: LakePaths) -> tuple[set[str], int]:
    """(run ids already in silver, the silver format that built them); none before any."""
    path = _state_path(lake)
    if not path.exists():
        return set(), SILVER_FORMAT
    try:
        state = json.loads(path.read_bytes())
        return set(state["runs"]), int(state.get("format", 1))
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(
            f"Silver state {path} is unreadable ({exc}); run `cryptolake transform "
            "--full-refresh` to rebuild silver from bronze."
        ) from None


def processed_runs(lake: LakePaths) -> set[str]:
    """Run ids already in silver (recorded after their partitions were swapped in)."""
    return _read_state(lake)[0]


def _write_state(lake: LakePaths, runs: Iterable[str]) -> None:
    state = {"format": SILVER_FORMAT, "runs": sorted(runs)}
    atomic_write(_state_path(lake), json.dumps(state, indent=0).encode())


def pending_runs(lake: LakePaths) -> list[Manifest]:
    """Complete bronze runs not yet in silver, oldest first.

    Only manifests of unprocessed runs are opened, so the cost stays flat as the lake grows.
    """
    done = processed_runs(lake)
    found = []
    for path in run_manifest_paths(lake):
        if path.stem in done:
            continue
        manifest = read_manifest(path)
        if manifest.status == "complete":
            found.append(manifest)
    found.sort(key=lambda m: (m.started_at, m.run_id))
    return found


@on_lake("build silver")
def build_silver(
    settings: Settings,
    *,
    full_refresh: bool = False,
    progress: ProgressCallback = ignore_progress,
) -> SilverResult:
    """Transform complete bronze runs into silver Parquet; returns what changed.

    Incremental by default: only runs not yet in silver are read, and only the partitions
    they fall in are rewritten. `full_refresh` rebuilds every table from bronze alone.
    """
    lake = LakePaths.at(settings.lake)
    if not lake.bronze.exists():
        raise LakeError(
            f"No bronze folder at {lake.bronze}; run `cryptolake ingest` (or --sample) first."
        )
    shutil.rmtree(lake.silver_staging, ignore_errors=True)  # leftovers of a crashed build
    notes = []
    if not full_refresh and _read_state(lake)[1] < SILVER_FORMAT:
        # Built by an older cryptolake: its rows were never cleaned or checked as today's
        # are (a snapshot held back by a check then would be published now). Bronze is the
        # source of truth: rebuild from it.
        full_refresh = True
        notes.append(
            "silver was built by an older cryptolake: rebuilt from bronze (a full refresh) "
            "so that every row is cleaned and checked as new rows are."
        )
    if full_refresh:
        runs = read_manifests(lake)
    else:
        runs = pending_runs(lake)
    if not runs and not full_refresh:
        for table in TABLES:
            progress(Progress("silver", table.name, 0, 0, "up to date"))
        return SilverResult(runs=[], tables=[], full_refresh=False)

    con = connect(settings)
    try:
        results = _build_tables(con, lake, runs, full_refresh=full_refresh, progress=progress)
    except duckdb.Error as exc:
        if (translated := duckdb_io_error(exc, doing="build silver")) is not None:
            raise translated from exc
        raise TransformError(
            f"Building silver failed: {exc}. Silver keeps its previous content; fix the cause "
            "and run `cryptolake transform` again."
        ) from exc
    finally:
        con.close()
        shutil.rmtree(lake.silver_staging, ignore_errors=True)
    done = set() if full_refresh else processed_runs(lake)
    _write_state(lake, done | {m.run_id for m in runs})
    return SilverResult(
        runs=[m.run_id for m in runs], tables=results, full_refresh=full_refresh, notes=notes
    )


def _row_checks() -> list[CheckDef]:
    """The quarantine checks: each table's built-in key check, then the SQL ones."""
    built_in = [
        key_check(t.name, t.key, tuple(k for k in t.key if k != "snapshot_at"))
        for t in TABLES
        if any(k != "snapshot_at" for k in t.key)
    ]
    return built_in + check_defs(on_fail=("quarantine",))


@dataclass
class _Tally:
    """What a build did to one table, summed over its batches."""

    rows_added: int = 0
    written: set[str] = field(default_factory=set)
    sanitized: Sanitized = field(default_factory=Sanitized)
    quarantined: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _build_tables(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    runs: Sequence[Manifest],
    *,
    full_refresh: bool,
    progress: ProgressCallback,
) -> list[TableResult]:
    """Every table, a batch of runs at a time: load, clean, quarantine, merge.

    All tables' rows of a batch are loaded before any check runs, so a check may compare
    them (a snapshot's coins against its /global); the quarantine files are written before
    the partitions they concern are swapped in.
    """
    batches = _batches(runs, BATCH_DAYS)
    checks = _row_checks()
    tally = {t.name: _Tally() for t in TABLES}
    for table in TABLES:
        progress(Progress("silver", table.name, 0, len(batches)))
    for done, batch in enumerate(batches, start=1):
        for table in TABLES:
            t0 = time.perf_counter()
            repaired = load_batch(con, lake, table, batch, into=f"batch_{table.name}")
            non_finite = null_non_finite(con, f"batch_{table.name}")
            tally[table.name].sanitized += Sanitized(non_finite=non_finite, bad_unicode=repaired)
            tally[table.name].seconds += time.perf_counter() - t0
        set_aside = quarantine_batches(
            con, batches={t.name: (f"batch_{t.name}", t.key) for t in TABLES}, checks=checks
        )
        for table in TABLES:
            t0 = time.perf_counter()
            mine = tally[table.name]
            for (where, check_name), rows in set_aside.items():
                if where == table.name and rows:
                    mine.quarantined[check_name] = mine.quarantined.get(check_name, 0) + rows
            mine.sanitized += Sanitized(nul_chars=strip_nul(con, f"batch_{table.name}"))
            write_quarantine(con, lake, table=table.name, run_ids=[m.run_id for m in batch])
            added, dates = merge_batch(
                con, lake, table, rows=f"batch_{table.name}", full_refresh=full_refresh
            )
            mine.rows_added += added
            mine.written.update(dates)
            mine.seconds += time.perf_counter() - t0
            progress(
                Progress(
                    "silver", table.name, done, len(batches), f"{len(mine.written)} partitions"
                )
            )
    results = []
    for table in TABLES:
        mine = tally[table.name]
        if full_refresh:
            _drop_stale_partitions(lake, table, mine.written)
            mine.rows_added = count_rows(
                con, list(table.folder(lake).glob(f"{PARTITION}=*/{PARTITION_FILE}"))
            )
            drop_stale(lake, table=table.name, keep={m.run_id for m in runs})
        results.append(
            TableResult(
                table=table.name,
                runs=len(runs),
                rows_added=mine.rows_added,
                partitions_written=len(mine.written),
                seconds=mine.seconds,
                sanitized=mine.sanitized,
                quarantined=mine.quarantined,
            )
        )
    return results


def _drop_stale_partitions(lake: LakePaths, table: SilverTable, written: set[str]) -> None:
    """After a full refresh: partitions no complete run is behind any more (bronze removed)."""
    folder = table.folder(lake)
    if folder.exists():
        for stale in folder.glob(f"{PARTITION}=*"):
            if stale.name.split("=", 1)[1] not in written:
                shutil.rmtree(stale)


def _batches(runs: Sequence[Manifest], days: int) -> list[list[Manifest]]:
    """Consecutive runs grouped so a batch spans at most `days` snapshot dates."""
    batches: list[list[Manifest]] = []
    dates: set[str] = set()
    for run in runs:
        if batches and (run.ingest_date in dates or len(dates) < days):
            batches[-1].append(run)
        else:
            batches.append([run])
            dates = set()
        dates.add(run.ingest_date)
    return batches


def silver_views_sql(lake: LakePaths) -> dict[str, str]:
    """`read_parquet` expressions over each silver table, with absolute paths."""
    return {
        t.name: (
            f"select * from read_parquet({quote_literal(t.glob(lake))}, "
            "hive_partitioning = true, union_by_name = true)"
        )
        for t in TABLES
    }
