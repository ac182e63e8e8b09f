"""The lake's DuckDB database file: silver views, gold tables, run history (`meta`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from .duck import connect, one_line, quote_literal
from .errors import ConfigError, LakeError, TransformError
from .fserrors import duckdb_io_error, lake_io
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
    if not read_only:
        with lake_io("create the lake folder"):
            lake.root.mkdir(parents=True, exist_ok=True)
    try:
        con = connect(settings, database, read_only=read_only)
    except duckdb.Error as exc:
        if (translated := duckdb_io_error(exc, doing=f"open {database}")) is not None:
            raise translated from None
        text = str(exc).lower()
        if "could not set lock" in text or "conflicting lock" in text:
            raise LakeError(
                f"Cannot open {database}: another program has it open for writing. Close it "
                "(cryptolake itself only ever opens it read-only or builds a new file)."
            ) from None
        raise LakeError(
            f"Cannot open {database}: it is damaged or not a DuckDB database ({one_line(exc)}). "
            "Everything in it is derived from the lake: `cryptolake transform` builds it anew."
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
            quarantined = lake.silver_quarantine / table.name
            if any(quarantined.glob("*.parquet")):
                glob = quote_literal(str(quarantined / "*.parquet"))
                checks = ", ".join(
                    f"{name} ({description})"
                    for name, description in con.execute(
                        "select distinct check_name, check_description "
                        f"from read_parquet({glob}) order by all"
                    ).fetchall()
                )
                raise LakeError(
                    f"silver.{table.name} has no rows: every row bronze gave it failed a check "
                    f"and is in quarantine ({quarantined}): {checks}."
                )
            raise LakeError(
                f"silver.{table.name} has no data in {table.folder(lake)}; run `cryptolake "
                "ingest` then `cryptolake transform` (or `cryptolake run --sample`); if bronze "
                "has runs already, rebuild silver from them: `cryptolake transform "
                "--full-refresh`."
            )
        try:
            con.execute(f"create or replace view silver.{table.name} as {views[table.name]}")
        except duckdb.Error as exc:
            if (translated := duckdb_io_error(exc, doing=f"read silver.{table.name}")) is not None:
                raise translated from None
            raise LakeError(
                f"silver.{table.name} has a file DuckDB cannot read ({one_line(exc)}). Rebuild "
                "silver from bronze: `cryptolake transform --full-refresh`."
            ) from None


def refresh_meta_views(con: duckdb.DuckDBPyConnection, lake: LakePaths) -> None:
    """`meta.runs` over the run records, when there are any."""
    folder = runs_folder(lake)
    if any(folder.glob("*.json")):
        glob = quote_literal(str(folder / "*.json"))
        con.execute(load_sql("duckdb/meta/runs.sql").replace("{{runs_glob}}", glob))


JSON_METADATA = b"cryptolake.json"  # on an Arrow field: its text is JSON
# Statements `query` runs: those that read. (show, describe, summarize and pragma show_* are
# SELECTs to DuckDB.)
READING_STATEMENTS = frozenset(
    {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.CALL}
)


def query(settings: Settings, sql: str) -> pa.Table:
    """Run one read-only statement on the lake database and return its rows as Arrow.

    Raises ConfigError for SQL that is empty, holds several statements, or would change
    something (set, copy ... to, create ...): the lake is opened read-only here.
    """
    with open_lake_db(settings, read_only=True) as con:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise TransformError(f"Query failed: {one_line(exc, keep_sql=True)}") from None
        if not statements:
            raise ConfigError("Nothing to run: the SQL is empty (or only comments).")
        if len(statements) > 1:
            raise ConfigError(
                f"`cryptolake query` runs one statement, this SQL holds {len(statements)}; "
                'run them one at a time, or use `cryptolake shell -c "..."`.'
            )
        kind = statements[0].type
        if kind not in READING_STATEMENTS:
            # DuckDB files INSTALL under LOAD.
            what = "an INSTALL or LOAD" if kind.name == "LOAD" else kind.name
            article = "" if what.startswith("an ") else "an " if what[0] in "AEIOU" else "a "
            raise ConfigError(
                f"`cryptolake query` only reads the lake, and this is {article}{what} "
                "statement "
                "(the lake database is open read-only here). To export rows, use --format csv "
                "or json and redirect the output; for a session, use `cryptolake shell`."
            )
        try:
            relation = con.sql(sql)
            if relation is None:  # a CALL that returns nothing
                return pa.table({})
            table = relation.to_arrow_table()
            types = [str(t) for t in relation.types]
        except duckdb.Error as exc:
            message = one_line(exc, keep_sql=True)
            if isinstance(exc, duckdb.CatalogException):
                # DuckDB's nearest name is often a system table (pg_enum): no help here.
                message = re.sub(r' Did you mean "pg_\w+"\?', "", message)
                message += ' (the lake\'s tables: `cryptolake query "show all tables"`)'
            raise TransformError(f"Query failed: {message}") from None
    # Arrow has no JSON type: say which text columns hold JSON (meta.runs.stages, say), so
    # that a JSON rendering can nest them rather than quote them.
    fields = [
        f.with_metadata({JSON_METADATA: b"1"}) if kind == "JSON" else f
        for f, kind in zip(table.schema, types, strict=True)
    ]
    return table.cast(pa.schema(fields))
