"""DuckLake's data files, checked against its catalog, and tables rebuilt from bronze.

DuckLake records every Parquet file it commits, with its size and footer size
(`ducklake_list_files`). A file deleted, truncated or overwritten behind its back is data
silently lost or a query that fails; `damaged_files` finds them: present, of the recorded
size, and with a Parquet footer that reads.

Silver and gold hold nothing bronze cannot give again, so `detach_damaged` takes the damage
out of the current snapshot, in one transaction:
- a snapshot table (partitioned by `snapshot_date`) keeps its intact partitions (read with a
  filter that prunes the damaged ones) and forgets the damaged days: those runs' rows go from
  every snapshot table and the runs count as not processed, so the next silver build reads
  them again from bronze;
- a history table is emptied and every history request counts as not processed;
- `silver.processed_runs` or `silver.quarantine` damaged: silver is rebuilt whole.
Gold is then rebuilt whole by the caller. Older DuckLake snapshots keep pointing at the
damaged files: time travel to them fails, as it should.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow.parquet as pq

from .bronze import HISTORY_REQUEST
from .catalog import set_commit_message
from .duck import json_list, quote_literal
from .silver_io import PARTITION, SilverTable, table_exists

_HIVE_PART = re.compile(r"/(\w+)=([^/]+)(?=/)")


@dataclass(frozen=True, slots=True)
class DamagedFile:
    """A data file of `table` (schema.name) that is missing or unreadable."""

    table: str
    path: str
    problem: str
    partition: dict[str, str] = field(default_factory=dict)  # from the Hive path


@dataclass(frozen=True, slots=True)
class Detached:
    """What `detach_damaged` took out: days per snapshot table, tables emptied, runs reset."""

    days: dict[str, list[str]]
    emptied: list[str]
    runs_reset: int
    full_refresh: bool


def lake_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(schema, table) of every table in the lake in use."""
    return [
        (str(s), str(t))
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database() order by 1, 2"
        ).fetchall()
    ]


def _check_file(path: str, size: int | None, kind: str) -> str | None:
    try:
        actual = os.stat(path).st_size
    except FileNotFoundError:
        return f"{kind} missing"
    except OSError as exc:
        return f"{kind} unreadable ({exc.strerror or exc})"
    if size is not None and actual != size:
        return f"{kind} {'truncated' if actual < size else 'grown'}: {actual:,} of {size:,} bytes"
    try:
        pq.read_metadata(path)
    except (OSError, ValueError) as exc:
        return f"{kind} unreadable ({str(exc).splitlines()[0]})"
    return None


def damaged_files(con: duckdb.DuckDBPyConnection) -> tuple[int, list[DamagedFile]]:
    """(files checked, the damaged ones) over every table of the lake in use."""
    checked = 0
    damaged = []
    database = con.execute("select current_database()").fetchone()
    lake = str(database[0]) if database else "lake"
    for schema, table in lake_tables(con):
        for data, size, delete, delete_size in con.execute(
            "select data_file, data_file_size_bytes, delete_file, delete_file_size_bytes "
            "from ducklake_list_files(?, ?, schema => ?)",
            [lake, table, schema],
        ).fetchall():
            for path, expected, kind in (
                (data, size, "data file"),
                (delete, delete_size, "delete file"),
            ):
                if path is None:
                    continue
                checked += 1
                if (problem := _check_file(str(path), expected, kind)) is not None:
                    parts = dict(_HIVE_PART.findall(str(path)))
                    damaged.append(DamagedFile(f"{schema}.{table}", str(path), problem, parts))
    return checked, damaged


def detach_damaged(
    con: duckdb.DuckDBPyConnection,
    damaged: Sequence[DamagedFile],
    *,
    tables: Sequence[SilverTable],
    run_id: str | None,
) -> Detached:
    """Take the damaged files out of silver's current snapshot (module doc), one commit."""
    by_name = {t.qualified: t for t in tables}
    hit = {d.table for d in damaged}
    full_refresh = bool(hit & {"silver.processed_runs", "silver.quarantine"})
    days: dict[str, list[str]] = {}
    emptied: list[str] = []
    con.execute("begin")
    if full_refresh:
        for name in sorted(hit & {"silver.processed_runs", "silver.quarantine"}):
            con.execute(f"drop table {name}")
        emptied = sorted(hit & {"silver.processed_runs", "silver.quarantine"})
    for name in sorted(hit & set(by_name)):
        table = by_name[name]
        mine = [d for d in damaged if d.table == name]
        if table.by_snapshot and all(PARTITION in d.partition for d in mine):
            days[name] = sorted({d.partition[PARTITION] for d in mine})
            _keep_partitions(con, table, days[name])
        else:
            # History rows have no run to reload them by partition; a snapshot table's
            # file outside any day's partition has no day: such a table starts again.
            con.execute(f"drop table {name}")
            emptied.append(name)
            full_refresh = full_refresh or table.by_snapshot
    reset = 0
    if not full_refresh:
        all_days = sorted({d for found in days.values() for d in found})
        if all_days:
            reset += _forget_days(con, [t for t in tables if t.by_snapshot], all_days, days)
        if any(not by_name[n].by_snapshot for n in emptied if n in by_name):
            reset += _forget_history_requests(con)
    set_commit_message(
        con,
        "verify: damaged data files taken out, to be rebuilt from bronze",
        stage="silver",
        run_id=run_id,
    )
    con.execute("commit")
    return Detached(days, emptied, reset, full_refresh)


def _keep_partitions(con: duckdb.DuckDBPyConnection, table: SilverTable, days: list[str]) -> None:
    """Replace `table` by a copy of its partitions other than `days`.

    The filter is a conjunction of `<>` on the partition column, which DuckLake prunes
    files by, so the damaged files are never opened (`not in` would open them).
    """
    keep = " and ".join(f"{PARTITION} <> date {quote_literal(d)}" for d in days)
    copy = f"{table.name}__kept"
    con.execute(
        f"create table silver.{copy} as select * from {table.qualified} where {keep} "
        f"order by {PARTITION}, {table.sort}"
    )
    con.execute(f"drop table {table.qualified}")
    con.execute(f"alter table silver.{copy} rename to {table.name}")
    con.execute(
        f"alter table {table.qualified} set partitioned by ({', '.join(table.partition_by)})"
    )


def _forget_days(
    con: duckdb.DuckDBPyConnection,
    tables: Sequence[SilverTable],
    all_days: list[str],
    copied: dict[str, list[str]],
) -> int:
    """Rows of `all_days` out of every snapshot table; those days' runs not processed."""
    runs = [
        str(r[0])
        for r in con.execute(
            "select run_id from silver.processed_runs where "
            "cast(snapshot_at at time zone 'UTC' as date) in "
            "(select cast(unnest(?::json::varchar[]) as date))",
            [json_list(all_days)],
        ).fetchall()
        if not HISTORY_REQUEST.search(str(r[0]))
    ]
    for table in tables:
        left = [d for d in all_days if d not in copied.get(table.qualified, [])]
        if not left:
            continue
        listed = ", ".join(f"date {quote_literal(d)}" for d in left)
        if table_exists(con, table):
            con.execute(f"delete from {table.qualified} where {PARTITION} in ({listed})")
    _forget_runs(con, runs)
    return len(runs)


def _forget_history_requests(con: duckdb.DuckDBPyConnection) -> int:
    runs = [
        str(r[0])
        for r in con.execute("select run_id from silver.processed_runs").fetchall()
        if HISTORY_REQUEST.search(str(r[0]))
    ]
    _forget_runs(con, runs)
    return len(runs)


def _forget_runs(con: duckdb.DuckDBPyConnection, runs: list[str]) -> None:
    for table in ("silver.processed_runs", "silver.quarantine"):
        con.execute(
            f"delete from {table} where run_id in (select unnest(?::json::varchar[]))",
            [json_list(runs)],
        )
