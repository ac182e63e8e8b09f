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
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from .bronze import Manifest, read_manifest, read_manifests, run_manifest_paths
from .checkdefs import check_defs
from .duck import connect, quote_literal
from .errors import LakeError, TransformError
from .lake import LakePaths, atomic_write
from .progress import Progress, ProgressCallback, ignore_progress
from .quarantine import drop_stale, quarantine_batch, write_quarantine
from .sanitize import Sanitized, sanitize
from .settings import Settings
from .sqlfiles import load_sql

log = logging.getLogger(__name__)

PARTITION = "snapshot_date"
PARTITION_FILE = "data_0.parquet"
# Every transform (a full refresh, or the first one over a year of bronze) reads bronze a few
# weeks at a time: memory stays bounded on any lake size, and each COPY writes few partitions.
# DuckDB splits a partition into data_0, data_1, ... once a COPY has more than
# `partitioned_write_max_open_files` (100) partitions open, so keep this well below that.
BATCH_DAYS = 14


@dataclass(frozen=True, slots=True)
class SilverTable:
    name: str
    dataset: str
    key: tuple[str, ...]
    sort: str

    def folder(self, lake: LakePaths) -> Path:
        return lake.silver / self.name

    def glob(self, lake: LakePaths) -> str:
        return str(self.folder(lake) / f"{PARTITION}=*" / "*.parquet")


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
        if self.quarantined:
            detail = ", ".join(f"{c}: {n:,}" for c, n in self.quarantined.items())
            parts.append(f"{sum(self.quarantined.values()):,} row(s) quarantined ({detail})")
        return "; ".join(parts)


def _state_path(lake: LakePaths) -> Path:
    return lake.silver_state / "processed_runs.json"


def processed_runs(lake: LakePaths) -> set[str]:
    """Run ids already in silver (recorded after their partitions were swapped in)."""
    path = _state_path(lake)
    if not path.exists():
        return set()
    try:
        return set(json.loads(path.read_bytes())["runs"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(
            f"Silver state {path} is unreadable ({exc}); run `cryptolake transform "
            "--full-refresh` to rebuild silver from bronze."
        ) from None


def _write_state(lake: LakePaths, runs: Iterable[str]) -> None:
    atomic_write(_state_path(lake), json.dumps({"runs": sorted(runs)}, indent=0).encode())


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
    if full_refresh:
        runs = read_manifests(lake)
    else:
        runs = pending_runs(lake)
    if not runs and not full_refresh:
        for table in TABLES:
            progress(Progress("silver", table.name, 0, 0, "up to date"))
        return SilverResult(runs=[], tables=[], full_refresh=False)

    results: list[TableResult] = []
    con = connect(settings)
    try:
        for table in TABLES:
            results.append(
                _build_table(con, lake, table, runs, full_refresh=full_refresh, progress=progress)
            )
    except duckdb.Error as exc:
        raise TransformError(
            f"Building silver failed: {exc}. Silver keeps its previous content; fix the cause "
            "and run `cryptolake transform` again."
        ) from exc
    finally:
        con.close()
        shutil.rmtree(lake.silver_staging, ignore_errors=True)
    done = set() if full_refresh else processed_runs(lake)
    _write_state(lake, done | {m.run_id for m in runs})
    return SilverResult(runs=[m.run_id for m in runs], tables=results, full_refresh=full_refresh)


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


def _files_table(lake: LakePaths, runs: Sequence[Manifest], dataset: str) -> pa.Table:
    rows: dict[str, list[object]] = {
        "path": [],
        "run_id": [],
        "snapshot_at": [],
        "vs_currency": [],
        "page": [],
        "trimmed_ids": [],
    }
    for run in runs:
        for entry in run.files:
            if entry.dataset != dataset:
                continue
            rows["path"].append(str(lake.root / entry.path))
            rows["run_id"].append(run.run_id)
            rows["snapshot_at"].append(run.started_at)
            rows["vs_currency"].append(run.vs_currency)
            rows["page"].append(entry.page)
            rows["trimmed_ids"].append(entry.trimmed_ids)
    return pa.table(
        {
            "path": pa.array(rows["path"], pa.string()),
            "run_id": pa.array(rows["run_id"], pa.string()),
            "snapshot_at": pa.array(rows["snapshot_at"], pa.string()),
            "vs_currency": pa.array(rows["vs_currency"], pa.string()),
            "page": pa.array(rows["page"], pa.int32()),
            "trimmed_ids": pa.array(rows["trimmed_ids"], pa.list_(pa.string())),
        }
    )


def _build_table(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    table: SilverTable,
    runs: Sequence[Manifest],
    *,
    full_refresh: bool,
    progress: ProgressCallback,
) -> TableResult:
    t0 = time.perf_counter()
    model = load_sql(f"duckdb/silver/{table.name}.sql")
    folder = table.folder(lake)
    batches = _batches(runs, BATCH_DAYS)
    written: set[str] = set()
    rows_added = 0
    sanitized = Sanitized()
    quarantined: dict[str, int] = {}
    checks = check_defs(on_fail=("quarantine",))
    progress(Progress("silver", table.name, 0, len(batches)))
    for done, batch in enumerate(batches, start=1):
        files = _files_table(lake, batch, table.dataset)
        if files.num_rows == 0:
            continue
        missing = [p for p in files.column("path").to_pylist() if not os.path.exists(p)]
        if missing:
            raise LakeError(
                f"Bronze file {missing[0]} is listed in its run manifest but missing; "
                "bronze is immutable, so restore it or move that run's manifest aside."
            )
        con.register("bronze_files_arrow", files)
        con.execute(
            "create or replace temp table bronze_files as select path, run_id, "
            "cast(snapshot_at as timestamptz) as snapshot_at, vs_currency, page, trimmed_ids "
            "from bronze_files_arrow"
        )
        con.unregister("bronze_files_arrow")
        con.execute("set variable bronze_files = (select list(path) from bronze_files)")
        con.execute(f"create or replace temp table batch as {model}")
        sanitized += sanitize(con, "batch")
        for check, rows in quarantine_batch(
            con, table=table.name, key=table.key, checks=checks
        ).items():
            quarantined[check] = quarantined.get(check, 0) + rows
        write_quarantine(con, lake, table=table.name, run_ids=[m.run_id for m in batch])
        dates = [
            str(r[0])
            for r in con.execute(f"select distinct {PARTITION} from batch order by 1").fetchall()
        ]
        staged = lake.silver_staging / f"{table.name}-{uuid.uuid4().hex}"
        lake.silver_staging.mkdir(parents=True, exist_ok=True)
        existing = [
            folder / f"{PARTITION}={d}" / PARTITION_FILE
            for d in dates
            if not full_refresh and (folder / f"{PARTITION}={d}" / PARTITION_FILE).exists()
        ]
        before = _count_rows(con, existing)
        merged = _merge_sql(table, existing)
        con.execute(
            f"copy ({merged} order by {PARTITION}, {table.sort}) to {quote_literal(str(staged))} "
            f"(format parquet, compression zstd, partition_by ({PARTITION}), "
            "filename_pattern 'data_{i}', write_partition_columns false)"
        )
        for date in dates:
            part = f"{PARTITION}={date}"
            names = sorted(p.name for p in (staged / part).glob("*"))
            if names != [PARTITION_FILE]:
                # Only data_0 is swapped in: any other file would be rows silently lost.
                raise TransformError(
                    f"DuckDB wrote {names or 'no file'} for {table.name}/{part}, expected "
                    f"{PARTITION_FILE} alone; that batch was not swapped in."
                )
        after = 0
        for date in dates:
            part = f"{PARTITION}={date}"
            new_file = staged / part / PARTITION_FILE
            after += _count_rows(con, [new_file])
            target = folder / part / PARTITION_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new_file, target)  # atomic: readers see the old or the new file
            written.add(date)
        rows_added += after - before
        log.info(
            "silver.%s: batch of %d run(s) -> %d partition(s), %+d rows",
            table.name,
            len(batch),
            len(dates),
            after - before,
        )
        shutil.rmtree(staged, ignore_errors=True)
        progress(Progress("silver", table.name, done, len(batches), f"{len(written)} partitions"))
    if full_refresh and folder.exists():
        # Partitions with no complete run behind them any more (their bronze was removed).
        for stale in folder.glob(f"{PARTITION}=*"):
            if stale.name.split("=", 1)[1] not in written:
                shutil.rmtree(stale)
        rows_added = _count_rows(con, list(folder.glob(f"{PARTITION}=*/{PARTITION_FILE}")))
        drop_stale(lake, table=table.name, keep={m.run_id for m in runs})
    return TableResult(
        table=table.name,
        runs=len(runs),
        rows_added=rows_added,
        partitions_written=len(written),
        seconds=time.perf_counter() - t0,
        sanitized=sanitized,
        quarantined=quarantined,
    )


def _count_rows(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> int:
    if not files:
        return 0
    listed = ", ".join(quote_literal(str(f)) for f in files)
    # Parquet footers hold the row counts: no data is read.
    row = con.execute(
        f"select coalesce(sum(num_rows), 0) from parquet_file_metadata([{listed}])"
    ).fetchone()
    return int(row[0]) if row else 0


def _merge_sql(table: SilverTable, existing: Sequence[Path]) -> str:
    """The batch's rows plus the rows already in the partitions it touches, one row per key."""
    if not existing:
        return "select * from batch"
    listed = ", ".join(quote_literal(str(f)) for f in existing)
    key = ", ".join(table.key)
    # New rows win over stored ones with the same key: stored rows whose key is in the batch
    # are left out. An anti join suffices, as both sides are already one row per key; the
    # window it replaces ran as a group-by over every column (~0.5 s a 75k-row partition).
    # A column added to the model since the stored file was written reads as null there
    # (union by name).
    return (
        "select * from batch "
        "union all by name "
        f"select * from read_parquet([{listed}], hive_partitioning = true) as stored "
        f"anti join batch using ({key})"
    )


def silver_views_sql(lake: LakePaths) -> dict[str, str]:
    """`read_parquet` expressions over each silver table, with absolute paths."""
    return {
        t.name: (
            f"select * from read_parquet({quote_literal(t.glob(lake))}, "
            "hive_partitioning = true, union_by_name = true)"
        )
        for t in TABLES
    }
