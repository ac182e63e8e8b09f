"""Silver: bronze bodies -> typed, de-duplicated DuckLake tables, incrementally.

Each table is one SQL model (`sql/duckdb/silver/<table>.sql`) applied to a batch of runs, and
one DuckLake table (`silver.<table>`, partitioned by `snapshot_date`). A transform reads the
complete bronze runs not yet processed, a batch of at most BATCH_DAYS days at a time (a new
snapshot is one batch), and each batch is one DuckLake transaction: its rows upserted (one row
per key, newer wins) and its runs recorded in `silver.processed_runs`, committed together. A
crash at any point leaves the last commit; the next transform redoes the runs it lacks, as
the processed state and the data can never disagree.

Between the model and the upsert, every batch is cleaned the same way whatever its table:
non-finite numbers become null and NUL characters leave text (sanitize.py), and rows failing a
row-level check are moved to `silver.quarantine` (quarantine.py). Both are counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from .bronze import RUNS_PREFIX, Manifest, read_manifests
from .bronze_verify import QUARANTINED_RUNS, check_runs, quarantine_run
from .catalog import open_lake, rollback, set_commit_message
from .catalog_errors import commit_error
from .checkdefs import CheckDef, check_defs
from .datasets import DATASETS
from .duck import explain_damage, one_line
from .errors import CryptolakeError, LakeError, TransformError
from .failpoints import failpoint
from .fserrors import on_lake
from .lake import LakePaths
from .legacy import legacy_files, remove_legacy
from .progress import Progress, ProgressCallback, ignore_progress
from .quarantine import ensure_quarantine, key_check, quarantine_batches, write_quarantine
from .sanitize import Sanitized, null_non_finite, strip_nul
from .settings import Settings
from .silver_io import PARTITION, SilverTable, load_batch, upsert_batch
from .silver_runs import (
    drop_unbacked,
    pending_runs,
    processed_runs,
    record_runs,
    seen_snapshots,
)

__all__ = [
    "PARTITION",
    "SILVER_FORMAT",
    "TABLES",
    "SilverResult",
    "SilverTable",
    "TableResult",
    "build_silver",
    "pending_runs",
    "processed_runs",
]

log = logging.getLogger(__name__)

# Every transform (a full refresh, or the first one over a year of bronze) reads bronze a few
# weeks at a time, a transaction per batch: DuckLake holds a transaction's inserts in memory
# until it commits (a year in one transaction: about 10 GB), and the batch's temp tables stay
# bounded too. Correctness no longer depends on it: DuckLake commits every file an insert
# writes, however many partitions it spans.
BATCH_DAYS = 14
# What silver's files hold and how they were checked. A lake whose state records an older
# format is rebuilt from bronze by its next transform. 2: rows cleaned, row checks and the
# quarantine, total_market_cap_usd in global_snapshots. 3: is_sample in every table.
# 4: DuckLake tables.
SILVER_FORMAT = 4


# One table per declared dataset (datasets.py), in declaration order.
TABLES: tuple[SilverTable, ...] = tuple(SilverTable.of(d) for d in DATASETS)
# A batch also ends after this many bronze runs: a backfill lands one run per request, and a
# transaction holds its inserts in memory until it commits.
BATCH_RUNS = 2_000


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
    # Runs whose bodies failed verification: moved to quarantine, not read (run id, why).
    quarantined_runs: list[tuple[str, str]] = field(default_factory=list)

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


@on_lake("build silver")
def build_silver(
    settings: Settings,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    progress: ProgressCallback = ignore_progress,
) -> SilverResult:
    """Upsert complete bronze runs into the silver tables; returns what changed.

    Incremental by default: only runs not yet in silver are read. Each batch of runs (at most
    BATCH_DAYS days: one new snapshot is one batch) is one DuckLake transaction that upserts
    its rows and records its runs as processed. `full_refresh` rebuilds every table from
    bronze alone, batch by batch, each batch replacing its snapshots' rows whole, then drops
    what no complete run is behind any more: every commit is a complete silver, old rows for
    the runs not yet redone. `run_id` labels the commits. A lake in the layout of an older
    cryptolake is rebuilt from bronze and its old files removed once the new tables
    committed. Raises LakeError without bronze or for an unreadable body, TransformError
    when a model fails; silver then keeps its last commit.
    """
    lake = LakePaths.of(settings)
    if not (lake.store.list_keys(RUNS_PREFIX) if lake.remote else lake.bronze.exists()):
        raise LakeError(
            f"No bronze at {lake.store.uri('bronze')}; run `cryptolake ingest` (or --sample) first."
        )
    notes = []
    legacy = [] if lake.remote else legacy_files(lake)
    with open_lake(settings) as con:
        done = processed_runs(con)
        if legacy and not full_refresh:
            full_refresh = True
            notes.append(
                "the lake was in an older cryptolake's layout (cryptolake.duckdb and Parquet "
                "files of its own): silver and gold are rebuilt into DuckLake from bronze, and "
                "the old files removed once the new tables committed."
            )
        elif not full_refresh and any(fmt < SILVER_FORMAT for fmt in done.values()):
            # Built by an older cryptolake: its rows were never cleaned or checked as today's
            # are. Bronze is the source of truth: rebuild from it.
            full_refresh = True
            notes.append(
                "silver was built by an older cryptolake: rebuilt from bronze (a full refresh) "
                "so that every row is cleaned and checked as new rows are."
            )
        runs = read_manifests(lake) if full_refresh else pending_runs(lake, done)
        runs, quarantined = _verified(lake, runs, run_id=run_id)
        for run, why in quarantined:
            notes.append(
                f"bronze run {run} quarantined: {why}; it is not what the API sent, so silver "
                f"skips it (kept in {lake.store.uri(f'{QUARANTINED_RUNS}/{run}')})"
            )
        if not runs and not full_refresh:
            for table in TABLES:
                progress(Progress("silver", table.name, 0, 0, "up to date"))
            return SilverResult(
                runs=[], tables=[], full_refresh=False, notes=notes, quarantined_runs=quarantined
            )
        try:
            results = _build_tables(
                con,
                lake,
                runs,
                full_refresh=full_refresh,
                run_id=run_id,
                progress=progress,
                notes=notes,
            )
        except BaseException as exc:
            rollback(con)
            if isinstance(exc, duckdb.Error) and not isinstance(exc, CryptolakeError):
                if (translated := commit_error(settings, exc, doing="build silver")) is not None:
                    raise translated from exc
                advice = explain_damage(exc, "fix the cause and run `cryptolake transform` again.")
                raise TransformError(
                    f"Building silver failed: {one_line(exc)}. Silver keeps its last commit; "
                    f"{advice}"
                ) from exc
            raise
    if legacy:
        remove_legacy(lake, legacy)
    return SilverResult(
        runs=[m.run_id for m in runs],
        tables=results,
        full_refresh=full_refresh,
        notes=notes,
        quarantined_runs=quarantined,
    )


def _verified(
    lake: LakePaths, runs: list[Manifest], *, run_id: str | None
) -> tuple[list[Manifest], list[tuple[str, str]]]:
    """`runs` whose bodies match their manifests; the others quarantined (id, why).

    Every body silver reads is checked first (size, then sha256): a flipped digit or a
    truncated copy is not what the API sent. Only new runs are read by an incremental
    build, so a scheduled run checks only the bodies it brings.
    """
    faults = check_runs(lake, runs)
    if not faults:
        return runs, []
    by_id = {m.run_id: m for m in runs}
    for fault in faults:
        quarantine_run(
            lake,
            fault,
            [e.path for e in by_id[fault.run_id].files],
            found_by=f"transform (run {run_id})" if run_id else "transform",
        )
    bad = {f.run_id for f in faults}
    return [m for m in runs if m.run_id not in bad], [(f.run_id, f.describe()) for f in faults]


# Key columns that hold text (ids), which the built-in key check looks at.
_TEXT_KEYS = ("coin_id", "category_id", "vs_currency")


def _row_checks() -> list[CheckDef]:
    """The quarantine checks: each table's built-in key check, then the SQL ones."""
    built_in = [
        key_check(t.name, t.key, tuple(k for k in t.key if k in _TEXT_KEYS))
        for t in TABLES
        if any(k in _TEXT_KEYS for k in t.key)
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
    run_id: str | None,
    progress: ProgressCallback,
    notes: list[str],
) -> list[TableResult]:
    """Every table, a batch of runs at a time: load, clean, quarantine, upsert, commit.

    All tables' rows of a batch are loaded before any check runs, so a check may compare
    them (a snapshot's coins against its /global). Each batch is one transaction: DuckLake
    holds a transaction's inserts in memory until it commits, so a year of backlog in one
    transaction would need memory in proportion (about 10 GB for 21.9M rows).
    """
    batches = _batches(runs, BATCH_DAYS, BATCH_RUNS)
    checks = _row_checks()
    tally = {t.name: _Tally() for t in TABLES}
    for table in TABLES:
        progress(Progress("silver", table.name, 0, len(batches)))
    for done, batch in enumerate(batches, start=1):
        con.execute("begin")
        ensure_quarantine(con)
        for table in TABLES:
            t0 = time.perf_counter()
            repaired = load_batch(con, lake, table, batch, into=f"batch_{table.name}")
            non_finite = null_non_finite(con, f"batch_{table.name}")
            tally[table.name].sanitized += Sanitized(non_finite=non_finite, bad_unicode=repaired)
            tally[table.name].seconds += time.perf_counter() - t0
        set_aside = quarantine_batches(
            con, batches={t.name: (f"batch_{t.name}", t.key) for t in TABLES}, checks=checks
        )
        snapshots = [m.started_at for m in batch if m.kind == "snapshot"]
        # New runs append: no stored row can have their snapshot (one per run start), unless
        # a processed run started at the same instant.
        replace = full_refresh or seen_snapshots(con, snapshots)
        write_quarantine(con, run_ids=[m.run_id for m in batch])
        for table in TABLES:
            t0 = time.perf_counter()
            mine = tally[table.name]
            for (where, check_name), rows in set_aside.items():
                if where == table.name and rows:
                    mine.quarantined[check_name] = mine.quarantined.get(check_name, 0) + rows
            mine.sanitized += Sanitized(nul_chars=strip_nul(con, f"batch_{table.name}"))
            added, dates = upsert_batch(
                con, table, rows=f"batch_{table.name}", snapshots=snapshots, replace=replace
            )
            mine.rows_added += added
            mine.written.update(dates)
            mine.seconds += time.perf_counter() - t0
            progress(
                Progress(
                    "silver", table.name, done, len(batches), f"{len(mine.written)} partitions"
                )
            )
        record_runs(con, batch, silver_format=SILVER_FORMAT)
        scope = "full refresh, " if full_refresh else ""
        part = f"batch {done}/{len(batches)}, " if len(batches) > 1 else ""
        set_commit_message(
            con,
            f"silver: {scope}{part}{len(batch)} bronze run(s)",
            stage="silver",
            run_id=run_id,
            bronze_runs=len(batch),
        )
        failpoint("silver.before_commit")
        con.execute("commit")
    if full_refresh:
        for name, removed in drop_unbacked(con, runs, tables=TABLES, run_id=run_id).items():
            if name in tally:
                tally[name].rows_added -= removed
            elif removed:
                notes.append(
                    f"{removed:,} run(s) silver held are no longer complete in bronze (manifest "
                    "gone or quarantined): their rows were dropped. If their bodies are still "
                    "there, `cryptolake verify --repair` brings them back."
                )
    results = []
    for table in TABLES:
        mine = tally[table.name]
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


def _batches(runs: Sequence[Manifest], days: int, most: int) -> list[list[Manifest]]:
    """Consecutive runs grouped so a batch spans at most `days` ingest dates and `most` runs."""
    batches: list[list[Manifest]] = []
    dates: set[str] = set()
    for run in runs:
        if batches and len(batches[-1]) < most and (run.ingest_date in dates or len(dates) < days):
            batches[-1].append(run)
        else:
            batches.append([run])
            dates = set()
        dates.add(run.ingest_date)
    return batches
