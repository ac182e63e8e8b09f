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
    """A driver's message on one line, without the DSN (as given, or as DuckDB got it), its
    password, or the SQL it quotes (`LINE 1: create table ...`: pages of DDL)."""
    try:
        password = str(conninfo_to_dict(dsn).get("password") or "")
    except psycopg.ProgrammingError:
        password = ""
    if dsn.strip():
        message = message.replace(duckdb_dsn(dsn), "<dsn>").replace(dsn, "<dsn>")
    if len(password) >= 6:
        message = message.replace(password, "***")
    elif password:  # a short one only as a word: "e" must not turn "error" into "***rror"
        message = re.sub(rf"(?<![\w]){re.escape(password)}(?![\w])", "***", message)
    # The statement DuckDB quotes may itself hold `": ` (a JSON literal), so up to the last.
    message = re.sub(r'(?s)Failed to (?:execute query|prepare COPY) "(.*)": ', "", message)
    message = re.sub(r"(?s)\s*LINE \d+:.*$", "", message)
    # The postgres extension reports a broken COPY stream as DuckDB's internal error, with a
    # native stack trace and a note about assertion failures: the driver's words are enough.
    message = re.sub(
        r"(?s)\s*(?:Stack Trace:|This error signals an assertion failure).*$", "", message
    )
    message = re.sub(r"\bINTERNAL Error: ", "", message)
    # libpq puts its hint on a line of its own ("Connection refused\n\tIs the server
    # running ...?"): on one line, a sentence of its own.
    message = re.sub(r"(?<=[\w)\"'])[ \t]*\n\s*(?=[A-Z])", ". ", message)
    message = re.sub(r"\s+", " ", message).strip()
    # Callers append a sentence of their own.
    return message if message.endswith((".", "?", "!")) else message + "."


# A server that refuses connections for what it is doing (FATAL at connect): the connection
# failed, and trying again later is the fix.
_SERVER_STATES = (
    (
        "the database system is shutting down",
        "the Postgres server is not accepting connections (it is shutting down)",
        "nothing was committed; publish again once it is back.",
    ),
    (
        "the database system is starting up",
        "the Postgres server is not accepting connections yet (it is starting up)",
        "nothing was committed; publish again in a moment.",
    ),
    (
        "the database system is in recovery mode",
        "the Postgres server is not accepting connections (it is recovering from a crash)",
        "nothing was committed; publish again once it is back.",
    ),
)
# What a Postgres failure means, from words of its message: (cause, fix).
_PG_CAUSES = (
    (
        "lock timeout",
        "a table of the schema is locked by another session (the publish waited for lock_timeout)",
        "find the holder in pg_locks and pg_stat_activity, then publish again once it ends.",
    ),
    (
        "statement timeout",
        "a statement ran past statement_timeout",
        "raise it for this role (ALTER ROLE ... SET statement_timeout = '15min') or in the "
        "DSN's options, then publish again.",
    ),
    (
        "read-only transaction",
        "the server or session is read-only (a standby, or default_transaction_read_only)",
        "publish to the primary, with a role whose transactions may write.",
    ),
    (
        "terminating connection",
        "the Postgres server ended the connection (a restart or an administrator)",
        "nothing was committed; publish again once it is back.",
    ),
    (
        "server closed the connection",
        "the connection to Postgres was lost",
        "nothing was committed; publish again once it is back.",
    ),
    (
        "connection refused",
        "the Postgres server is not accepting connections (it stopped, or is restarting)",
        "nothing was committed; publish again once it is back.",
    ),
    *_SERVER_STATES,
    (
        "no connection to the server",
        "the connection to Postgres was lost",
        "nothing was committed; publish again once it is back.",
    ),
    (
        "current transaction is aborted",
        "the connection to Postgres failed mid-publish",
        "nothing was committed; publish again.",
    ),
)


# Words of a driver message saying the connection itself failed, not a statement in it.
_CONNECTION_LOST = (
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "connection to server",
    "ssl syscall error",
    *(words for words, _, _ in _SERVER_STATES),
)


def connection_lost(message: str) -> bool:
    """Whether a driver message says the connection to Postgres failed (its server died or
    restarted, or the network dropped it), rather than that Postgres refused a statement."""
    lowered = message.lower()
    return any(words in lowered for words in _CONNECTION_LOST)


def explain_pg(message: str) -> str:
    """A scrubbed Postgres failure as `cause (Postgres: message) fix`, for the causes a user
    meets; other messages as they are."""
    lowered = message.lower()
    for words, cause, fix in _PG_CAUSES:
        if words in lowered:
            return f"{cause} (Postgres: {message.rstrip('.')}); {fix}"
    return message


# What libpq says when no server answered (as opposed to one that refused us).
_UNREACHABLE = (
    "connection refused",
    "timeout expired",
    "could not connect",
    "no route to host",
    *(words for words, _, _ in _SERVER_STATES),
)


def unreachable(exc: psycopg.Error) -> bool:
    """Whether a failed connection found no server (down, restarting, unreachable)."""
    message = str(exc).lower()
    return isinstance(exc, psycopg.OperationalError) and any(w in message for w in _UNREACHABLE)


@contextmanager
def publish_lock(
    dsn: str, schema: str, target: str, *, source: str = "--postgres / CRYPTOLAKE_POSTGRES_DSN"
) -> Iterator[psycopg.Connection[Any]]:
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
            f"Check {source}; nothing was published.",
            transient=unreachable(exc),
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
    role, database, quoted, read_only = conn.execute(
        "select current_user, current_database(), quote_ident(%s), "
        "current_setting('transaction_read_only')",
        [schema],
    ).fetchone() or ("", "", schema, "off")
    if quoted != schema:
        raise PublishError(
            f"Schema name {schema} is a reserved word in Postgres; choose another "
            "--pg-schema (or CRYPTOLAKE_PG_SCHEMA)."
        )
    if read_only == "on":
        raise PublishError(
            f"Postgres {database} is read-only for role {role} (a standby, or "
            "default_transaction_read_only): publish to the primary, with a role whose "
            "transactions may write."
        )
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
    names = list(tables)
    foreign = conn.execute(
        "select c.relname::text, pg_get_userbyid(c.relowner)::text from pg_class as c "
        "where c.relnamespace = to_regnamespace(%s) and c.relkind in ('r', 'p', 'v') "
        "and (c.relname = any(%s) or c.relname like %s) "
        "and not pg_has_role(current_user, c.relowner, 'USAGE') order by 1",
        [schema, names, f"{names[0]}_p%" if names else ""],
    ).fetchall()
    if foreign:
        owners = sorted({owner for _, owner in foreign})
        listed = ", ".join(f"{schema}.{table}" for table, _ in foreign[:4])
        more = f" and {len(foreign) - 4} more" if len(foreign) > 4 else ""
        fix = (
            f"REASSIGN OWNED BY {owners[0]} TO {role} (run as {owners[0]} or a superuser)"
            if len(owners) == 1
            else f"ALTER TABLE ... OWNER TO {role} for each"
        )
        raise PublishError(
            f"Postgres role {role} does not own {listed}{more} (owner "
            f"{', '.join(owners)}), and a publish alters, indexes and analyzes its tables: "
            f"publish as {owners[0]}, or {fix}."
        )


def check_sample_mixing(
    conn: psycopg.Connection[Any], schema: str, *, sample: bool, target: str
) -> None:
    """Sample data never mixes with live data in one Postgres schema, either way round (the
    marts tell what the last publish was: they are small, and carry `is_sample`)."""
    mart = f"{schema}.crypto_analytics_mart"
    has_flag = conn.execute(
        "select 1 from pg_attribute where attrelid = to_regclass(%s) and attname = 'is_sample'",
        [mart],
    ).fetchone()
    if has_flag is None:
        return
    row = conn.execute(f"select bool_or(is_sample) from {mart}").fetchone()
    if row is None or row[0] is None or bool(row[0]) == sample:
        return
    held, this = ("the bundled sample", "live data") if row[0] else ("live data", "sample data")
    raise PublishError(
        f"Postgres {target}, schema {schema} holds {held}; this lake holds {this}, which "
        f"would mix with it. Publish it to a schema of its own (--pg-schema "
        f"{schema}_{'sample' if sample else 'live'})."
    )
