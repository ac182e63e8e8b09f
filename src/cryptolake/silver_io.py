"""Silver's input and output: a batch of bronze runs into rows, rows into partition files.

`load_batch` runs a table's model over the bodies of a batch of runs into a temp table;
`merge_batch` merges that table into the partitions it touches and swaps each rewritten file
in with an atomic rename. Both are called by `build_silver`, which holds the policy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .bronze import Manifest
from .duck import quote_literal
from .errors import LakeError, TransformError
from .lake import LakePaths
from .sqlfiles import load_sql

log = logging.getLogger(__name__)

PARTITION = "snapshot_date"
PARTITION_FILE = "data_0.parquet"
# A JSON string escape of a UTF-16 surrogate: how a lone one, which DuckDB refuses, looks.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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


def _files_table(lake: LakePaths, runs: Sequence[Manifest], dataset: str) -> pa.Table:
    rows: dict[str, list[object]] = {
        "path": [],
        "run_id": [],
        "snapshot_at": [],
        "vs_currency": [],
        "page": [],
        "trimmed_ids": [],
        "is_sample": [],
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
            rows["is_sample"].append(run.source == "sample")
    return pa.table(
        {
            "path": pa.array(rows["path"], pa.string()),
            "run_id": pa.array(rows["run_id"], pa.string()),
            "snapshot_at": pa.array(rows["snapshot_at"], pa.string()),
            "vs_currency": pa.array(rows["vs_currency"], pa.string()),
            "page": pa.array(rows["page"], pa.int32()),
            "trimmed_ids": pa.array(rows["trimmed_ids"], pa.list_(pa.string())),
            "is_sample": pa.array(rows["is_sample"], pa.bool_()),
        }
    )


def _valid_text(value: Any, fixed: list[int]) -> Any:
    """`value` with lone surrogates in its strings replaced by U+FFFD; counts those strings."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            fixed[0] += 1
            # Pairs written as two escapes recombine; a lone half becomes U+FFFD.
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, list):
        return [_valid_text(v, fixed) for v in value]
    if isinstance(value, dict):
        return {_valid_text(k, fixed): _valid_text(v, fixed) for k, v in value.items()}
    return value


def _repair_unicode(files: pa.Table, folder: Path) -> tuple[pa.Table, int]:
    """Copies of the bodies holding lone surrogates, made readable; (files, strings fixed).

    JSON allows `\\ud800` alone; DuckDB's reader does not, and bronze is verbatim, so a name
    cut in the middle of an emoji would otherwise stop silver for good. The copy is the body
    re-serialised with its values unchanged except those strings.
    """
    paths = files.column("path").to_pylist()
    fixed = [0]
    for i, path in enumerate(paths):
        raw = Path(path).read_bytes()
        if not _SURROGATE_ESCAPE.search(raw):
            continue
        before = fixed[0]
        data = _valid_text(json.loads(raw), fixed)
        if fixed[0] == before:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"{uuid.uuid4().hex}.json"
        copy.write_bytes(json.dumps(data, ensure_ascii=False).encode())
        paths[i] = str(copy)
    return files.set_column(0, "path", pa.array(paths, pa.string())), fixed[0]


def load_batch(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    table: SilverTable,
    batch: Sequence[Manifest],
    *,
    into: str,
) -> int:
    """Run `table`'s model over the batch's bodies into temp table `into`.

    Returns how many strings with invalid Unicode were repaired on the way (see
    `_repair_unicode`). An empty batch of this dataset gives an empty table.
    """
    files = _files_table(lake, batch, table.dataset)
    missing = [p for p in files.column("path").to_pylist() if not os.path.exists(p)]
    if missing:
        raise LakeError(
            f"Bronze file {missing[0]} is listed in its run manifest but missing; "
            "bronze is immutable, so restore it or move that run's manifest aside."
        )
    model = load_sql(f"duckdb/silver/{table.name}.sql")
    repaired = 0
    for attempt in (1, 2):
        con.register("bronze_files_arrow", files)
        con.execute(
            "create or replace temp table bronze_files as select path, run_id, "
            "cast(snapshot_at as timestamptz) as snapshot_at, vs_currency, page, trimmed_ids, "
            "is_sample from bronze_files_arrow"
        )
        con.unregister("bronze_files_arrow")
        if files.num_rows == 0:
            # No body of this dataset in the batch: the model over an empty array gives its
            # columns and no rows (read_json needs a file).
            empty = lake.silver_staging / "empty.json"
            empty.parent.mkdir(parents=True, exist_ok=True)
            empty.write_bytes(b"[]")
            con.execute("set variable bronze_files = [?]", [str(empty)])
        else:
            con.execute("set variable bronze_files = (select list(path) from bronze_files)")
        try:
            con.execute(f"create or replace temp table {into} as {model}")
            return repaired
        except duckdb.InvalidInputException as exc:
            if attempt == 2 or "surrogate" not in str(exc):
                raise
            files, repaired = _repair_unicode(files, lake.silver_staging / "repaired")
    raise AssertionError("unreachable")


def count_rows(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> int:
    if not files:
        return 0
    listed = ", ".join(quote_literal(str(f)) for f in files)
    # Parquet footers hold the row counts: no data is read.
    row = con.execute(
        f"select coalesce(sum(num_rows), 0) from parquet_file_metadata([{listed}])"
    ).fetchone()
    return int(row[0]) if row else 0


def _merge_sql(table: SilverTable, rows: str, existing: Sequence[Path]) -> str:
    """The batch's rows plus the rows already in the partitions it touches, one row per key."""
    if not existing:
        return f"select * from {rows}"
    listed = ", ".join(quote_literal(str(f)) for f in existing)
    key = ", ".join(table.key)
    # New rows win over stored ones with the same key: stored rows whose key is in the batch
    # are left out. An anti join suffices, as both sides are already one row per key; the
    # window it replaces ran as a group-by over every column (~0.5 s a 75k-row partition).
    # A column added to the model since the stored file was written reads as null there
    # (union by name).
    return (
        f"select * from {rows} "
        "union all by name "
        f"select * from read_parquet([{listed}], hive_partitioning = true) as stored "
        f"anti join {rows} using ({key})"
    )


def merge_batch(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    table: SilverTable,
    *,
    rows: str,
    full_refresh: bool,
) -> tuple[int, list[str]]:
    """Merge temp table `rows` into `table`'s partitions; returns (rows added, dates written)."""
    folder = table.folder(lake)
    dates = [
        str(r[0])
        for r in con.execute(f"select distinct {PARTITION} from {rows} order by 1").fetchall()
    ]
    if not dates:
        return 0, []
    staged = lake.silver_staging / f"{table.name}-{uuid.uuid4().hex}"
    lake.silver_staging.mkdir(parents=True, exist_ok=True)
    existing = [
        folder / f"{PARTITION}={d}" / PARTITION_FILE
        for d in dates
        if not full_refresh and (folder / f"{PARTITION}={d}" / PARTITION_FILE).exists()
    ]
    before = count_rows(con, existing)
    merged = _merge_sql(table, rows, existing)
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
        after += count_rows(con, [new_file])
        target = folder / part / PARTITION_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new_file, target)  # atomic: readers see the old or the new file
    shutil.rmtree(staged, ignore_errors=True)
    log.info("silver.%s: %d partition(s), %+d rows", table.name, len(dates), after - before)
    return after - before, dates
