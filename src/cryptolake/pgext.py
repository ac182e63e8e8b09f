"""DuckDB's postgres extension: loading it offline and running raw SQL through it."""

from __future__ import annotations

from importlib import util
from pathlib import Path
from typing import Any

import duckdb

from .duck import quote_literal
from .errors import PublishError


def postgres_extension_path() -> Path | None:
    """The signed extension shipped in the duckdb-extension-postgres wheel, if installed."""
    spec = util.find_spec("duckdb_extension_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / "postgres.duckdb_extension"
    return path if path.is_file() else None


def load_postgres_extension(con: duckdb.DuckDBPyConnection) -> None:
    """INSTALL from the wheel (offline, signature checked), else from DuckDB's repository."""
    path = postgres_extension_path()
    try:
        if path is not None:
            con.execute(f"install {quote_literal(str(path))}")
        else:
            con.execute("install postgres")
        con.execute("load postgres")
    except duckdb.Error as exc:
        raise PublishError(
            f"Cannot load DuckDB's postgres extension ({exc}); run `uv sync` to install the "
            "duckdb-extension-postgres package."
        ) from None


def pg_execute(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run raw SQL in the Postgres attached as `pg`, inside DuckDB's current transaction."""
    con.execute("call postgres_execute('pg', ?)", [sql])


def pg_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a raw Postgres query, on the connection of DuckDB's current transaction."""
    return con.execute(f"select * from postgres_query('pg', {quote_literal(sql)})").fetchall()
