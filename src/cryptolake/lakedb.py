"""The lake's DuckDB database file: silver views, gold tables, run history (`meta`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from .duck import connect, quote_literal
from .errors import LakeError, TransformError
from .history import runs_folder
from .lake import LakePaths
from .settings import Settings
from .silver import TABLES, silver_views_sql
from .sqlfiles import load_sql

SCHEMAS = ("silver", "gold", "meta")


@contextmanager
def open_lake_db(
    settings: Settings, *, read_only: bool = False, path: Path | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to `<lake>/cryptolake.duckdb` (or `path`) with its schemas and variables.

    (The macros are stored in the file by `build_gold`, so they work in any DuckDB shell.)
    """
    lake = LakePaths.at(settings.lake)
    database = path or lake.database
    if read_only and not database.exists():
        raise LakeError(
            f"No lake database at {database}; run `cryptolake run` (or `transform`) first."
        )
    lake.root.mkdir(parents=True, exist_ok=True)
    try:
        con = connect(settings, database, read_only=read_only)
    except duckdb.IOException as exc:
        raise LakeError(
            f"Cannot open {database}: {exc}. Close the other program that has it open for "
            "writing (cryptolake itself only ever opens it read-only or builds a new file)."
        ) from None
    try:
        if not read_only:
            for schema in SCHEMAS:
                con.execute(f"create schema if not exists {schema}")
        con.execute("set variable freshness_hours = ?", [float(settings.freshness_hours)])
        yield con
    finally:
        con.close()


def refresh_silver_views(con: duckdb.DuckDBPyConnection, lake: LakePaths) -> None:
    """(Re)create `silver.<table>` views over the Parquet, with absolute paths.

    Absolute paths make the views work from any working directory; they are rewritten on
    every build, so a moved lake heals on its next `transform`.
    """
    views = silver_views_sql(lake)
    for table in TABLES:
        if not any(table.folder(lake).glob("snapshot_date=*/*.parquet")):
            raise LakeError(
                f"silver.{table.name} has no data in {table.folder(lake)}; run `cryptolake "
                "ingest` then `cryptolake transform` (or `cryptolake run --sample`)."
            )
        con.execute(f"create or replace view silver.{table.name} as {views[table.name]}")


def refresh_meta_views(con: duckdb.DuckDBPyConnection, lake: LakePaths) -> None:
    """`meta.runs` over the run records, when there are any."""
    folder = runs_folder(lake)
    if any(folder.glob("*.json")):
        glob = quote_literal(str(folder / "*.json"))
        con.execute(load_sql("duckdb/meta/runs.sql").replace("{{runs_glob}}", glob))


def query(settings: Settings, sql: str) -> pa.Table:
    """Run one read-only query on the lake database and return the result as Arrow."""
    with open_lake_db(settings, read_only=True) as con:
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise TransformError(f"Query failed: {exc}") from None
