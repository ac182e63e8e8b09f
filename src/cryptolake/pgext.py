"""DuckDB's postgres extension: connections that write through it, loading it offline, raw SQL.

A DuckDB connection that is closed (or garbage-collected) inside an explicit transaction rolls
it back in its destructor, where an exception cannot be raised: it ends the process
(`std::terminate`, SIGABRT, exit 134, no error line). With Postgres gone, that rollback throws
(`Failed to execute query "ROLLBACK"`), so every connection that writes to Postgres must end
its transaction itself, in Python, before it is closed: `end_transaction`.

That is only possible if DuckDB still runs statements after the failure. The extension reports
a broken COPY stream (`Error during PQputCopyData/PQputCopyEnd`: the server died mid-COPY) as an
internal error, and by default an internal error invalidates the whole DuckDB instance: every
later statement, ROLLBACK included, is refused, and the destructor's rollback throws. The
connections made here are in-memory instances of one publish, with the lake attached read-only;
nothing in them can be left corrupt by a dead socket, so invalidation is off for them
(`disable_database_invalidation`, which DuckDB accepts only when the instance starts).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import duckdb

from .duck import _home_folder, quote_literal
from .errors import PublishError
from .extensions import load_extension
from .lake import LakePaths
from .settings import Settings

log = logging.getLogger(__name__)

# Attempts at ending a transaction: each can be cut short by one interrupt at most.
_ROLLBACK_ATTEMPTS = 8


def connect_for_postgres(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection configured as `duck.connect` makes it, which a failure
    on the Postgres wire cannot invalidate (see the module docstring). `duck.connect`'s
    settings are repeated here: DuckDB takes this one only when the instance starts, and
    `duck.connect` has no way to pass it; keep the two alike."""
    lake = LakePaths.of(settings)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": settings.memory_limit,
        "temp_directory": str(lake.tmp),
        "preserve_insertion_order": True,
        "disable_database_invalidation": True,
    }
    if settings.threads:
        config["threads"] = settings.threads
    if not os.environ.get("HOME"):
        config["home_directory"] = _home_folder(lake)
    con = duckdb.connect(":memory:", config=config)
    con.execute("set TimeZone = 'UTC'")
    return con


def end_transaction(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back DuckDB's explicit transaction on `con`, if one is open, whatever state its
    Postgres connection is in; afterwards none is open and `con` can be closed safely.

    DuckDB ends the transaction before it rolls back each database in it, so a ROLLBACK that
    fails in Postgres (the server is gone: Postgres rolls back on its own) still ends it. One
    that never ran (an interrupt from another thread landed on it) is asked again, until
    DuckDB says no transaction is active.
    """
    for _ in range(_ROLLBACK_ATTEMPTS):
        try:
            con.execute("rollback")
        except duckdb.TransactionException:
            return  # "cannot rollback - no transaction is active"
        except duckdb.Error as exc:
            log.debug("rollback failed (asking again): %s", exc)
            continue
        return
    log.warning(
        "the DuckDB transaction on Postgres was still open after %d rollbacks", _ROLLBACK_ATTEMPTS
    )


def load_postgres_extension(con: duckdb.DuckDBPyConnection) -> None:
    """INSTALL from the wheel (offline, signature checked), else from DuckDB's repository."""
    load_extension(con, "postgres", error=PublishError)


def pg_execute(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run raw SQL in the Postgres attached as `pg`, inside DuckDB's current transaction."""
    con.execute("call postgres_execute('pg', ?)", [sql])


def pg_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a raw Postgres query, on the connection of DuckDB's current transaction."""
    return con.execute(f"select * from postgres_query('pg', {quote_literal(sql)})").fetchall()
