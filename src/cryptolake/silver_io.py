"""Silver's input and output: a batch of bronze runs into rows, rows into DuckLake tables.

`load_batch` runs a table's model over the bodies of a batch of runs into a temp table;
`upsert_batch` upserts that table into the silver table (one row per key, the batch's rows
winning) inside the caller's transaction. Both are called by `build_silver`, which holds the
policy and the transaction.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from .bronze import Manifest
from .datasets import Dataset
from .duck import json_list, quote_literal
from .errors import LakeError
from .lake import LakePaths
from .sqlfiles import load_sql

log = logging.getLogger(__name__)

PARTITION = "snapshot_date"
# A JSON string escape of a UTF-16 surrogate: how a lone one, which DuckDB refuses, looks.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclass(frozen=True, slots=True)
class SilverTable:
    """A silver table and the bronze dataset it is built from (see datasets.py)."""

    name: str
    dataset: str
    key: tuple[str, ...]
    sort: str
    time_column: str = PARTITION
    partition_by: tuple[str, ...] = (PARTITION,)
    required: bool = True

    @classmethod
    def of(cls, declared: Dataset) -> SilverTable:
        model = declared.silver
        return cls(
            model.table,
            declared.name,
            model.key,
            model.sort,
            model.time_column,
            model.partition_by,
            model.required,
        )

    @property
    def qualified(self) -> str:
        return f"silver.{self.name}"

    @property
    def by_snapshot(self) -> bool:
        """Rows belong to a run's snapshot: a run processed again replaces its rows whole."""
        return "snapshot_at" in self.key

    @property
    def partition_expr(self) -> str:
        """SQL naming a row's partition: its day, or the month of its day for history."""
        if self.partition_by == (self.time_column,):
            return self.time_column
        return f"date_trunc('month', {self.time_column})"


def _files_table(lake: LakePaths, runs: Sequence[Manifest], dataset: str) -> pa.Table:
    rows: dict[str, list[object]] = {
        "path": [],
        "run_id": [],
        "snapshot_at": [],
        "vs_currency": [],
        "page": [],
        "trimmed_ids": [],
        "is_sample": [],
        "coin_id": [],
        "fetched_at": [],
    }
    for run in runs:
        for entry in run.files:
            if entry.dataset != dataset:
                continue
            rows["coin_id"].append(entry.coin_id)
            rows["fetched_at"].append(entry.fetched_at)
            rows["path"].append(lake.store.uri(entry.path))
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
            "coin_id": pa.array(rows["coin_id"], pa.string()),
            "fetched_at": pa.array(rows["fetched_at"], pa.string()),
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


def _repair_unicode(lake: LakePaths, files: pa.Table) -> tuple[pa.Table, int]:
    """Copies of the bodies holding lone surrogates, made readable; (files, strings fixed).

    JSON allows `\\ud800` alone; DuckDB's reader does not, and bronze is verbatim, so a name
    cut in the middle of an emoji would otherwise stop silver for good. The copy is the body
    re-serialised with its values unchanged except those strings.
    """
    folder = lake.tmp / "silver-input" / "repaired"
    paths = files.column("path").to_pylist()
    fixed = [0]
    for i, path in enumerate(paths):
        raw = lake.store.read(lake.store.key_of(path))
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
    # (On object storage the bodies were all just read whole by bronze_verify.check_runs.)
    paths = [] if lake.remote else files.column("path").to_pylist()
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise LakeError(
            f"Bronze file {missing[0]} is listed in its run manifest but missing; "
            "bronze is immutable, so restore it or move that run's manifest aside."
        )
    model = load_sql(f"duckdb/silver/{table.name}.sql")
    repaired = 0
    # The model runs on a cursor of its own (its own transaction): a body DuckDB refuses
    # (a lone surrogate) must not abort the build's transaction, which then reads the rows.
    reader = con.cursor()
    try:
        reader.execute("set TimeZone = 'UTC'")
        for attempt in (1, 2):
            reader.register("bronze_files_arrow", files)
            reader.execute(
                "create or replace temp table bronze_files as select path, run_id, "
                "cast(snapshot_at as timestamptz) as snapshot_at, vs_currency, page, "
                "trimmed_ids, is_sample, coin_id, cast(fetched_at as timestamptz) as "
                "fetched_at from bronze_files_arrow"
            )
            reader.unregister("bronze_files_arrow")
            if files.num_rows == 0:
                # No body of this dataset in the batch: the model over an empty array gives
                # its columns and no rows (read_json needs a file).
                empty = lake.tmp / "silver-input" / "empty.json"
                empty.parent.mkdir(parents=True, exist_ok=True)
                empty.write_bytes(b"[]")
                reader.execute("set variable bronze_files = [?]", [str(empty)])
            else:
                reader.execute("set variable bronze_files = (select list(path) from bronze_files)")
            try:
                rows = reader.execute(model).to_arrow_table()
            except duckdb.InvalidInputException as exc:
                if attempt == 2 or "surrogate" not in str(exc):
                    raise
                files, repaired = _repair_unicode(lake, files)
                continue
            con.register("batch_arrow", rows)
            con.execute(f"create or replace temp table {into} as select * from batch_arrow")
            con.unregister("batch_arrow")
            return repaired
    finally:
        reader.close()
    raise AssertionError("unreachable")


def table_exists(con: duckdb.DuckDBPyConnection, table: SilverTable) -> bool:
    """Whether silver has `table` yet (in the lake in use)."""
    row = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'silver' and table_name = ?",
        [table.name],
    ).fetchone()
    return bool(row and row[0])


def ensure_table(con: duckdb.DuckDBPyConnection, table: SilverTable, rows: str) -> None:
    """Create the silver table from the batch's columns, or add columns the model gained.

    Partitioned as declared (snapshots by `snapshot_date`, history by month of `day`):
    DuckLake writes each partition's rows to its own files and prunes on it. A column a newer
    model adds reads as null in older rows (DuckLake's schema evolution); a column it drops
    stays, null from then on.
    """
    existing = {
        str(name): str(kind)
        for name, kind in con.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = current_database() and schema_name = 'silver' "
            "and table_name = ?",
            [table.name],
        ).fetchall()
    }
    if not existing:
        con.execute(f"create table {table.qualified} as select * from {rows} limit 0")
        con.execute(
            f"alter table {table.qualified} set partitioned by ({', '.join(table.partition_by)})"
        )
        return
    for name, kind in con.execute(
        f"select column_name, column_type from (describe {rows})"
    ).fetchall():
        if name not in existing:
            con.execute(f'alter table {table.qualified} add column "{name}" {kind}')


def upsert_batch(
    con: duckdb.DuckDBPyConnection,
    table: SilverTable,
    *,
    rows: str,
    snapshots: Sequence[str],
    replace: bool = True,
) -> tuple[int, list[str]]:
    """Upsert temp table `rows` into `table`: one row per key, the batch's rows winning.

    Snapshot tables: stored rows with a key in the batch, and every stored row of the batch's
    `snapshots` (its runs' `snapshot_at`, as text), are deleted, then the batch is inserted,
    in the caller's transaction: a run processed again replaces its snapshot whole (a row now
    quarantined goes). The delete names the days, so DuckLake reads only those partitions'
    files. `replace=False` (runs never processed, whose snapshots no stored row can have)
    skips the delete: appending a snapshot then reads nothing. History tables (event time
    from the data): stored rows with a key in the batch are replaced, the delete bounded by
    the batch's time range. Returns (net rows added, the partitions written: days, or months
    for history).
    """
    ensure_table(con, table, rows)
    if not table.by_snapshot:
        return _upsert_by_key(con, table, rows=rows)
    dates = sorted(
        {
            str(r[0])
            for r in con.execute(
                f"select distinct {PARTITION} from {rows} union select distinct "
                "cast(cast(unnest(?::json::varchar[]) as timestamptz) as date)",
                [json_list(snapshots)],
            ).fetchall()
        }
    )
    if not dates:
        return 0, []
    listed = ", ".join(f"date {quote_literal(d)}" for d in dates)
    key = ", ".join(table.key)
    deleted = (
        con.execute(
            f"delete from {table.qualified} where {PARTITION} in ({listed}) "
            f"and (({key}) in (select {key} from {rows}) "
            "or snapshot_at in (select cast(unnest(?::json::varchar[]) as timestamptz)))",
            [json_list(snapshots)],
        ).fetchone()
        if replace
        else None
    )
    inserted = con.execute(
        f"insert into {table.qualified} by name select * from {rows} "
        f"order by {PARTITION}, {table.sort}"
    ).fetchone()
    added = (int(inserted[0]) if inserted else 0) - (int(deleted[0]) if deleted else 0)
    log.info("silver.%s: %d partition(s), %+d rows", table.name, len(dates), added)
    return added, [d for d in dates if d]


def _upsert_by_key(
    con: duckdb.DuckDBPyConnection, table: SilverTable, *, rows: str
) -> tuple[int, list[str]]:
    """Replace stored rows whose key the batch has, within the batch's time range."""
    when = table.time_column
    found = con.execute(
        f"select min({when})::varchar, max({when})::varchar, "
        f"list(distinct strftime({when}, '%Y-%m') order by 1) from {rows}"
    ).fetchone()
    if not found or found[0] is None:
        return 0, []
    low, high, months = found
    key = ", ".join(table.key)
    deleted = con.execute(
        f"delete from {table.qualified} where {when} between {quote_literal(low)} and "
        f"{quote_literal(high)} and ({key}) in (select {key} from {rows})"
    ).fetchone()
    inserted = con.execute(
        f"insert into {table.qualified} by name select * from {rows} order by {table.sort}"
    ).fetchone()
    added = (int(inserted[0]) if inserted else 0) - (int(deleted[0]) if deleted else 0)
    log.info("silver.%s: %d month(s), %+d rows", table.name, len(months), added)
    return added, [str(m) for m in months]
