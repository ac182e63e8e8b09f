"""Which bronze runs silver holds: `silver.processed_runs`, recorded with their rows.

A batch's runs are recorded in the transaction that upserts their rows, so the processed state
and the data never disagree; the runs not recorded yet are what a transform reads. After a full
refresh, what no complete run is behind any more goes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import duckdb

from .bronze import Manifest, read_manifest, run_id_of, run_manifest_paths
from .catalog import set_commit_message
from .duck import json_list
from .lake import LakePaths
from .silver_io import SilverTable, table_exists

log = logging.getLogger(__name__)


def processed_runs(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Run id -> the silver format it was built with, for every run silver holds."""
    return {
        str(run_id): int(fmt)
        for run_id, fmt in con.execute(
            "select run_id, silver_format from silver.processed_runs"
        ).fetchall()
    }


def pending_runs(lake: LakePaths, done: set[str] | dict[str, int]) -> list[Manifest]:
    """Complete bronze runs not in `done`, oldest first.

    Only manifests of unprocessed runs are opened, so the cost stays flat as the lake grows.
    """
    found = []
    for key in run_manifest_paths(lake):
        if run_id_of(key) in done:
            continue
        manifest = read_manifest(lake, key)
        if manifest.status == "complete":
            found.append(manifest)
    found.sort(key=lambda m: (m.started_at, m.run_id))
    return found


def record_runs(
    con: duckdb.DuckDBPyConnection, runs: Sequence[Manifest], *, silver_format: int
) -> None:
    """Record `runs` as processed, in the transaction that upserted their rows."""
    con.execute(
        "delete from silver.processed_runs where run_id in (select unnest(?::json::varchar[]))",
        [json_list(m.run_id for m in runs)],
    )
    con.execute(
        "insert into silver.processed_runs select unnest(?::json::varchar[]), "
        "cast(unnest(?::json::varchar[]) as timestamptz), unnest(?::json::varchar[]), "
        "unnest(?::json::boolean[]), ?, now()",
        [
            json_list(m.run_id for m in runs),
            json_list(m.started_at for m in runs),
            json_list(m.vs_currency for m in runs),
            json_list(m.source == "sample" for m in runs),
            silver_format,
        ],
    )


def seen_snapshots(con: duckdb.DuckDBPyConnection, snapshots: Sequence[str]) -> bool:
    """Whether a processed run has one of these snapshot times (its rows are in silver)."""
    row = con.execute(
        "select count(*) from silver.processed_runs "
        "where snapshot_at in (select cast(unnest(?::json::varchar[]) as timestamptz))",
        [json_list(snapshots)],
    ).fetchone()
    return bool(row and row[0])


def drop_unbacked(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[Manifest],
    *,
    tables: Sequence[SilverTable],
    run_id: str | None,
) -> dict[str, int]:
    """After a full refresh: rows, quarantined rows and processed runs that no complete
    bronze run is behind any more (its manifest removed, or failed); rows removed per table."""
    kept = [m.run_id for m in runs]
    snapshots = [m.started_at for m in runs if m.kind == "snapshot"]
    removed: dict[str, int] = {}
    con.execute("begin")
    gone = [
        str(r[0])
        for r in con.execute(
            "select run_id from silver.processed_runs "
            "where run_id not in (select unnest(?::json::varchar[])) order by 1",
            [json_list(kept)],
        ).fetchall()
    ]
    if gone:
        removed["runs no longer in bronze"] = len(gone)
        log.warning(
            "full refresh: %d run(s) silver held are no longer complete in bronze (first %s); "
            "their rows are dropped",
            len(gone),
            gone[0],
        )
    for table in tables:
        if not table_exists(con, table):
            continue
        row = (
            con.execute(
                f"delete from {table.qualified} where snapshot_at not in "
                "(select cast(unnest(?::json::varchar[]) as timestamptz))",
                [json_list(snapshots)],
            ).fetchone()
            if table.by_snapshot
            else con.execute(
                f"delete from {table.qualified} where run_id not in "
                "(select unnest(?::json::varchar[]))",
                [json_list(kept)],
            ).fetchone()
        )
        removed[table.name] = int(row[0]) if row else 0
    con.execute(
        "delete from silver.quarantine where run_id not in (select unnest(?::json::varchar[]))",
        [json_list(kept)],
    )
    con.execute(
        "delete from silver.processed_runs where run_id not in (select unnest(?::json::varchar[]))",
        [json_list(kept)],
    )
    set_commit_message(
        con,
        "silver: full refresh, rows no bronze run is behind removed",
        stage="silver",
        run_id=run_id,
    )
    con.execute("commit")
    return removed
