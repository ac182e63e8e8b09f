"""`cryptolake maintain`: DuckLake's own file maintenance, on demand and every N runs.

Every transform commits a few small files per table (a snapshot of 15k coins is one file per
table and day, a `/global` row is inlined in the catalog). Left alone, a year of 4 runs a day
is thousands of tiny files. Maintenance is DuckLake's, in this order:

1. flush rows inlined in the catalog into Parquet files;
2. rewrite files that have deleted rows (an upsert's, an incremental gold's) without them;
3. merge adjacent small files of each table (one commit, readers unaffected);
4. expire snapshots older than the retention (`CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS`, 30):
   time travel reaches back that far, no further;
5. delete the files only expired snapshots needed, and orphaned files (written by a
   transform that never committed) older than a day: a running transform's files are younger.

A transform runs it after every `CRYPTOLAKE_MAINTAIN_EVERY` gold commits (28: a week at 4 runs
a day; 0 never).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import duckdb

from .catalog import (
    LAKE,
    catalog_exists,
    file_counts,
    latest_snapshot,
    open_lake,
    set_commit_message,
)
from .errors import LakeError
from .fserrors import duckdb_io_error, on_lake
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings

log = logging.getLogger(__name__)

ORPHAN_AGE_HOURS = 24  # an uncommitted file younger than this may be a running transform's


@dataclass(frozen=True, slots=True)
class MaintainResult:
    files_before: dict[str, int]
    files_after: dict[str, int]
    snapshots_expired: int
    files_deleted: int  # of expired snapshots, and orphans
    seconds: float
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        before, after = sum(self.files_before.values()), sum(self.files_after.values())
        flushed = " (rows inlined in the catalog now in files)" if after > before else ""
        return (
            f"{before:,} data files -> {after:,}{flushed}; {self.snapshots_expired:,} "
            f"snapshot(s) expired; {self.files_deleted:,} file(s) deleted"
        )


@on_lake("maintain the lake")
def maintain(
    settings: Settings,
    *,
    run_id: str | None = None,
    progress: ProgressCallback = ignore_progress,
) -> MaintainResult:
    """Flush, merge, expire and clean up the lake's files; returns the counts before/after.

    Raises LakeError when the catalog cannot be opened or a step fails (the steps before it
    stay committed: each is its own DuckLake transaction, and each is safe alone).
    """
    if not catalog_exists(settings):
        raise LakeError(
            f"No lake catalog at {settings.catalog_redacted}: nothing to maintain. Check "
            "--lake (or CRYPTOLAKE_LAKE) and --catalog."
        )
    t0 = time.perf_counter()
    days = settings.snapshot_retention_days
    steps = [
        ("flush inlined rows", f"call ducklake_flush_inlined_data('{LAKE}')", True),
        (
            "rewrite files with deleted rows",
            f"call ducklake_rewrite_data_files('{LAKE}', delete_threshold => 0.0)",
            True,
        ),
        ("merge adjacent files", f"call ducklake_merge_adjacent_files('{LAKE}')", True),
        (
            f"expire snapshots older than {days:g} days",
            f"call ducklake_expire_snapshots('{LAKE}', older_than => "
            f"now() - to_microseconds({int(days * 86_400_000_000)}))",
            False,
        ),
        (
            "delete files of expired snapshots",
            f"call ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)",
            False,
        ),
        (
            "delete orphaned files",
            f"call ducklake_delete_orphaned_files('{LAKE}', older_than => "
            f"now() - interval {ORPHAN_AGE_HOURS} hour)",
            False,
        ),
    ]
    with open_lake(settings) as con:
        before = file_counts(con)
        expired = deleted = 0
        for done, (what, sql, labelled) in enumerate(steps):
            progress(Progress("maintain", "lake", done, len(steps), what))
            try:
                # Counted through Arrow: the rows hold timestamps with time zone, which a
                # Python fetch would need pytz for.
                if labelled:
                    # Compaction commits alone (DuckLake refuses it beside other changes).
                    con.execute("begin")
                    rows = con.execute(sql).to_arrow_table().num_rows
                    set_commit_message(con, f"maintain: {what}", stage="maintain", run_id=run_id)
                    con.execute("commit")
                else:
                    rows = con.execute(sql).to_arrow_table().num_rows
            except duckdb.Error as exc:
                if labelled:
                    con.execute("rollback")
                if (translated := duckdb_io_error(exc, doing=f"maintain ({what})")) is not None:
                    raise translated from exc
                raise LakeError(f"Maintenance failed to {what}: {exc}") from exc
            if what.startswith("expire"):
                expired = rows
            elif what.startswith("delete"):
                deleted += rows
            log.info("maintain: %s: %d row(s)", what, rows)
        after = file_counts(con)
        # A marker commit, so `maintenance_due` counts gold commits from here.
        con.execute("begin")
        con.execute("create table if not exists meta.maintenance (maintained_at timestamptz)")
        con.execute("insert into meta.maintenance values (now())")
        set_commit_message(con, "maintain: done", stage="maintain", run_id=run_id)
        con.execute("commit")
    progress(Progress("maintain", "lake", len(steps), len(steps), "done"))
    return MaintainResult(before, after, expired, deleted, time.perf_counter() - t0)


def maintenance_due(settings: Settings) -> bool:
    """Whether `CRYPTOLAKE_MAINTAIN_EVERY` gold commits happened since the last maintenance."""
    every = settings.maintain_every
    if every <= 0:
        return False
    with open_lake(settings, read_only=True) as con:
        last = latest_snapshot(con, stage="maintain")
        row = con.execute(
            f"select count(*) from {LAKE}.snapshots() "
            "where try_cast(commit_extra_info as json) ->> 'stage' = 'gold' and snapshot_id > ?",
            [last.snapshot_id if last else -1],
        ).fetchone()
    return bool(row and row[0] >= every)
