"""DuckDB's postgres extension: loading it offline and running raw SQL through it."""

from __future__ import annotations

from typing import Any

import duckdb

from .duck import quote_literal
from .errors import PublishError
from .extensions import load_extension


def load_postgres_extension(con: duckdb.DuckDBPyConnection) -> None:
    """INSTALL from the wheel (offline, signature checked), else from DuckDB's repository."""
    load_extension(con, "postgres", error=PublishError)


def pg_execute(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run raw SQL in the Postgres attached as `pg`, inside DuckDB's current transaction."""
    con.execute("call postgres_execute('pg', ?)", [sql])


def pg_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a raw Postgres query, on the connection of DuckDB's current transaction."""
    return con.execute(f"select * from postgres_query('pg', {quote_literal(sql)})").fetchall()
