"""Reaching Postgres: the target as messages name it, a DSN for DuckDB, the publish lock.

Every message about Postgres names the target (`database "db" on host:port as user`) and
never the DSN's password; `scrub` removes it from any driver message. DuckDB gets the DSN
with `client_encoding=UTF8`: its postgres extension sends UTF-8 bytes whatever the session's
encoding, so a database in LATIN1 would otherwise store names as mojibake without an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import PublishError

# Serialises publishes to one schema across processes (pg_advisory_lock key space).
ADVISORY_LOCK_NAMESPACE = 0x63727970  # "cryp"
LOCK_TIMEOUT = "60s"


def duckdb_dsn(dsn: str) -> str:
    """`dsn` as a key=value conninfo with client_encoding=UTF8, for DuckDB's postgres extension."""
    try:
        return make_conninfo(dsn, client_encoding="UTF8")
    except psycopg.ProgrammingError:
        return dsn  # unparseable: connecting fails first, with a message of its own


def describe_target(dsn: str) -> str:
    """`database "db" on host:port as user` for messages; never includes the password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the Postgres server in CRYPTOLAKE_POSTGRES_DSN (unparseable DSN)"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    port = info.get("port") or "5432"
    user = info.get("user") or "(default user)"
    db = info.get("dbname") or user
    return f'database "{db}" on {host}:{port} as {user}'


def scrub(message: str, dsn: str) -> str:
    """Remove the DSN (as given, or as DuckDB got it) and its password from a driver's message."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    message = message.replace(duckdb_dsn(dsn), "<dsn>").replace(dsn, "<dsn>")
    if password:
        message = message.replace(str(password), "***")
    message = re.sub(r"\s+", " ", message).strip()
    # Callers append a sentence of their own.
    return message if message.endswith((".", "?", "!")) else message + "."


@contextmanager
def publish_lock(dsn: str, schema: str, target: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection that holds the publish lock on `schema` for as long as it is open.

    Taken on a session of its own before the publish transaction starts, because that
    transaction's snapshot (REPEATABLE READ, as DuckDB opens it) must include what the
    previous publish committed. Closing the connection releases it, also if the process
    dies. Connecting first also fails fast, in one line naming host and database, before
    DuckDB gets the DSN.
    """
    try:
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise PublishError(
            f"Cannot connect to Postgres {target}: {scrub(str(exc), dsn)} "
            "Check --postgres / CRYPTOLAKE_POSTGRES_DSN; the lake was not changed."
        ) from None
    with conn:
        try:
            conn.execute(f"set lock_timeout = '{LOCK_TIMEOUT}'")
            # The connection idles for the whole publish; a server's idle_session_timeout
            # (Postgres 14+) must not end it and with it the lock.
            conn.execute(
                "select set_config('idle_session_timeout', '0', false) "
                "where current_setting('server_version_num')::int >= 140000"
            )
            conn.execute(
                "select pg_advisory_lock(%s, hashtext(%s))", [ADVISORY_LOCK_NAMESPACE, schema]
            )
        except psycopg.errors.LockNotAvailable:
            raise PublishError(
                f"Another publish to schema {schema} in {target} has held it for over "
                f"{LOCK_TIMEOUT}; try again once it has finished."
            ) from None
        except psycopg.Error as exc:
            raise PublishError(
                f"Cannot take the publish lock in Postgres {target}: {scrub(str(exc), dsn)}"
            ) from None
        yield conn


def check_privileges(conn: psycopg.Connection[Any], schema: str, tables: Iterable[str]) -> None:
    """Refuse, in one line naming role, object and privilege, a publish the role cannot do.

    A publish creates the schema if missing (CREATE on the database), creates tables and day
    partitions in it (USAGE and CREATE on the schema), and alters, indexes and analyzes its
    tables (which takes owning them). Checked before anything is written, so a missing grant
    is one clear line rather than a Postgres error after pages of DDL.
    """
    role, database = conn.execute("select current_user, current_database()").fetchone() or ("", "")
    row = conn.execute("select to_regnamespace(%s) is not null", [schema]).fetchone()
    if not (row and row[0]):
        (allowed,) = conn.execute(
            "select has_database_privilege(current_database(), 'CREATE')"
        ).fetchone() or (False,)
        if not allowed:
            raise PublishError(
                f"Postgres role {role} may not create schema {schema} in database {database} "
                f"(it needs CREATE on the database): as the database's owner or a superuser, "
                f"GRANT CREATE ON DATABASE {database} TO {role}, or create the schema for it: "
                f"CREATE SCHEMA {schema} AUTHORIZATION {role}."
            )
        return
    usage, create = conn.execute(
        "select has_schema_privilege(%s, 'USAGE'), has_schema_privilege(%s, 'CREATE')",
        [schema, schema],
    ).fetchone() or (False, False)
    if not (usage and create):
        raise PublishError(
            f"Postgres role {role} may not create tables in schema {schema} of database "
            f"{database} (it needs USAGE and CREATE on the schema): GRANT USAGE, CREATE ON "
            f"SCHEMA {schema} TO {role}."
        )
    for table, owner in conn.execute(
        "select c.relname::text, pg_get_userbyid(c.relowner)::text from pg_class as c "
        "where c.relnamespace = to_regnamespace(%s) and c.relname = any(%s) "
        "and not pg_has_role(current_user, c.relowner, 'USAGE')",
        [schema, list(tables)],
    ).fetchall():
        raise PublishError(
            f"Postgres role {role} does not own {schema}.{table} (owner {owner}), and a publish "
            f"alters, indexes and analyzes its tables: publish as {owner}, or ALTER TABLE "
            f"{schema}.{table} OWNER TO {role}."
        )
