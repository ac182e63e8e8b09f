"""The lake as SQL: the DuckLake catalog with silver, gold and run history (`meta`)."""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from .catalog import LAKE, open_lake, schema_tables
from .duck import damaged_data_file, explain_damage, object_store_problem, one_line, quote_literal
from .errors import ConfigError, LakeError, TransformError
from .history import RUNS_PREFIX, runs_folder
from .lake import LakePaths
from .settings import Settings
from .silver import TABLES
from .sqlfiles import load_sql


def require_silver(con: duckdb.DuckDBPyConnection) -> None:
    """Raise LakeError naming the fix when a silver table is missing or has no rows."""
    present = schema_tables(con, "silver")
    for table in TABLES:
        if not table.required:
            continue
        rows = (
            con.execute(f"select count(*) from {table.qualified}").fetchone()
            if table.name in present
            else None
        )
        if rows and rows[0]:
            continue
        quarantined = []
        if "quarantine" in present:
            quarantined = con.execute(
                "select distinct check_name, check_description from silver.quarantine "
                "where table_name = ? order by all",
                [table.name],
            ).fetchall()
        if quarantined:
            checks = ", ".join(f"{name} ({description})" for name, description in quarantined)
            raise LakeError(
                f"silver.{table.name} has no rows: every row bronze gave it failed a check "
                f"and is in silver.quarantine: {checks}."
            )
        raise LakeError(
            f"silver.{table.name} has no rows; run `cryptolake ingest` then `cryptolake "
            "transform` (or `cryptolake run --sample`); if bronze has runs already, rebuild "
            "silver from them: `cryptolake transform --full-refresh`."
        )


def refresh_meta_views(con: duckdb.DuckDBPyConnection, lake: LakePaths) -> None:
    """`meta.runs` over the run records, when there are any (a view stored in the lake).

    It reads the records by absolute path: a moved lake's view heals on its next `transform`.
    The view is replaced only when its definition differs (a moved lake, a new version):
    each replacement is a new catalog entry DuckLake keeps until its snapshot expires.
    """
    if not lake.store.list_keys(RUNS_PREFIX, suffix=".json"):
        return
    glob = quote_literal(f"{runs_folder(lake)}/*.json")
    statement = load_sql("duckdb/meta/runs.sql").replace("{{runs_glob}}", glob)
    # The same statement as a temporary view, so both definitions read as DuckDB prints them.
    candidate = statement.replace("create or replace view meta.runs", _CANDIDATE_VIEW, 1)
    con.execute(candidate)
    definitions = dict(
        con.execute(
            "select database_name, sql from duckdb_views() where view_name in (?, ?) "
            "and (database_name = 'temp' or schema_name = 'meta' and database_name = ?)",
            [_CANDIDATE, "runs", LAKE],
        ).fetchall()
    )
    con.execute(f"drop view temp.{_CANDIDATE}")
    wanted, stored = definitions.get("temp"), definitions.get(LAKE)
    if stored is None or wanted is None or _body(stored) != _body(wanted):
        con.execute(statement)


_CANDIDATE = "cryptolake_runs_candidate"
_CANDIDATE_VIEW = f"create or replace temporary view {_CANDIDATE}"


def _body(view_sql: str) -> str:
    """A view's query, without the `CREATE VIEW <name> AS` that names it."""
    return view_sql.split(" AS ", 1)[-1]


JSON_METADATA = b"cryptolake.json"  # on an Arrow field: its text is JSON
# Statements `query` runs: those that read. (show, describe, summarize and pragma show_* are
# SELECTs to DuckDB.)
READING_STATEMENTS = frozenset(
    {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.CALL}
)


def query(settings: Settings, sql: str, *, as_of: int | str | None = None) -> pa.Table:
    """Run one read-only statement on the lake and return its rows as Arrow.

    `as_of` (a snapshot id or an ISO time) reads the lake as it was then.

    Raises ConfigError for SQL that is empty, holds several statements, or would change
    something (set, copy ... to, create ...): the lake is opened read-only here.
    """
    with open_lake(settings, read_only=True, as_of=as_of) as con:
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
                "(the lake is attached read-only here). To export rows, use --format csv "
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
            if damaged_data_file(exc) or object_store_problem(exc):
                message += f"; {explain_damage(exc, '')}"
            raise TransformError(f"Query failed: {message}") from None
    # Arrow has no JSON type: say which text columns hold JSON (meta.runs.stages, say), so
    # that a JSON rendering can nest them rather than quote them.
    fields = [
        f.with_metadata({JSON_METADATA: b"1"}) if kind == "JSON" else f
        for f, kind in zip(table.schema, types, strict=True)
    ]
    return table.cast(pa.schema(fields))
