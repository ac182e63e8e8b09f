"""Publish: the lake's staging and mart tables into Postgres, through DuckDB's postgres extension.

One publish is one Postgres transaction (DuckDB runs its statements and `postgres_execute`
calls on one connection inside it): consumers see the previous complete state until COMMIT,
then the new one. Marts are emptied with DELETE, not dropped or truncated, so views that
consumers built on them keep working and readers are never blocked. Staging only ever gains
the snapshots it does not have yet. Rows travel by DuckDB's binary COPY into tables with
explicit Postgres types (`sql/postgres/`), matched by column name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import util
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from psycopg.conninfo import conninfo_to_dict

from . import __version__
from .duck import connect, quote_literal
from .errors import ConfigError, LakeError, PublishError
from .gold import GOLD_MODELS
from .lake import LakePaths
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .sqlfiles import load_sql

log = logging.getLogger(__name__)

STAGING = "staging_market_snapshots"
MARTS = GOLD_MODELS
# DDL files in the order they must run: tables, then the view that reads them.
DDL = (STAGING, *MARTS, "publish_log", "crypto_market_summary")
# Serialises publishes to one schema across processes (pg_advisory_xact_lock key space).
ADVISORY_LOCK_NAMESPACE = 0x63727970  # "cryp"
STATEMENT_TIMEOUT = "15min"
LOCK_TIMEOUT = "60s"
IDLE_IN_TRANSACTION_TIMEOUT = "5min"
# When staging is analyzed again (autovacuum's defaults: autovacuum_analyze_threshold and
# autovacuum_analyze_scale_factor).
ANALYZE_THRESHOLD_ROWS = 50
ANALYZE_SCALE_FACTOR = 0.1
# Marts with one row per day (and coin) that a publish refreshes from the earliest new day on.
DAY_KEYED = {"coin_daily": "day"}
# Columns ANALYZE samples on the tables that grow with history; the small marts get all.
STATS_COLUMNS = {
    STAGING: ("coin_id", "symbol", "snapshot_at", "snapshot_date", "market_cap_rank"),
    "coin_daily": ("coin_id", "day", "symbol", "market_cap_rank"),
}


@dataclass(frozen=True, slots=True)
class PublishedTable:
    table: str
    rows_written: int
    rows_now: int
    seconds: float


@dataclass(frozen=True, slots=True)
class PublishResult:
    publish_id: str | None
    target: str
    schema: str
    tables: list[PublishedTable]
    snapshots_added: int
    up_to_date: bool = False


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


def _scrub(message: str, dsn: str) -> str:
    """Remove the DSN and its password from a driver's message."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    message = message.replace(dsn, "<dsn>")
    if password:
        message = message.replace(str(password), "***")
    message = re.sub(r"\s+", " ", message).strip()
    # Callers append a sentence of their own.
    return message if message.endswith((".", "?", "!")) else message + "."


def _check_connection(dsn: str) -> None:
    """Fail fast, in one line naming host and database, before DuckDB gets the DSN."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        raise PublishError(
            f"Cannot connect to Postgres {describe_target(dsn)}: {_scrub(str(exc), dsn)} "
            "Check --postgres / CRYPTOLAKE_POSTGRES_DSN; the lake was not changed."
        ) from None


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


def lake_version(lake: LakePaths) -> str:
    """A fingerprint of what silver holds (its processed runs) and of this code's version."""
    state = lake.silver_state / "processed_runs.json"
    content = state.read_bytes() if state.exists() else b""
    return hashlib.sha256(content + __version__.encode()).hexdigest()[:16]


def ddl_statements(name: str, schema: str) -> list[str]:
    """The statements of `sql/postgres/<name>.sql` for `schema`, split on `;`."""
    sql = load_sql(f"postgres/{name}.sql").replace("{{schema}}", schema)
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _pg(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run raw SQL in Postgres inside DuckDB's current transaction."""
    con.execute("call postgres_execute('pg', ?)", [sql])


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def needs_analyze(rows_now: int, rows_at_last_analyze: float, *, has_statistics: bool) -> bool:
    """Autovacuum's default rule: ANALYZE once 50 rows + 10% of the table have changed.

    `rows_at_last_analyze` is Postgres's `reltuples`, negative for a table never analyzed.
    """
    if not has_statistics or rows_at_last_analyze < 0:
        return True
    changed = abs(rows_now - rows_at_last_analyze)
    return changed > ANALYZE_THRESHOLD_ROWS + ANALYZE_SCALE_FACTOR * rows_at_last_analyze


def _staging_needs_analyze(con: duckdb.DuckDBPyConnection, schema: str, rows_now: int) -> bool:
    """Whether staging has no statistics yet or has grown enough to be sampled again.

    Sampling costs about a second per million rows however few were appended, so analyzing
    after every snapshot would dominate incremental publishes. Staging is append-only, so
    the rows appended since its last ANALYZE are its count less `reltuples`, which that
    ANALYZE set (this transaction's rows included). Decided here rather than left to
    autovacuum, which may be off; `pg_stat_user_tables.n_mod_since_analyze` would count
    rows twice that an ANALYZE saw inside the transaction that inserted them. CREATE INDEX
    sets `reltuples` too, so a new table is recognised by its missing `pg_stats` rows.
    """
    row = con.execute(
        "select * from postgres_query('pg', 'select c.reltuples::float8, exists ("
        f"select from pg_stats where schemaname = ''{schema}'' and tablename = ''{STAGING}'') "
        f"from pg_class as c where c.oid = ''{schema}.{STAGING}''::regclass')"
    ).fetchone()
    if row is None:
        return True
    return needs_analyze(rows_now, float(row[0]), has_statistics=bool(row[1]))


def publish(
    settings: Settings,
    *,
    force: bool = False,
    progress: ProgressCallback = ignore_progress,
) -> PublishResult:
    """Publish staging and marts to Postgres in one transaction; returns what was written.

    Nothing is written when the lake has not changed since the last publish (unless
    `force`). On any failure Postgres keeps its previous state and the lake is untouched.
    """
    if settings.postgres_dsn is None:
        raise ConfigError(
            "No Postgres to publish to: set CRYPTOLAKE_POSTGRES_DSN or pass --postgres "
            "(e.g. postgresql://user@host:5432/db)."
        )
    dsn = settings.postgres_dsn.reveal()
    lake = LakePaths.at(settings.lake)
    if not lake.database.exists():
        raise LakeError(
            f"No lake database at {lake.database}; run `cryptolake transform` before publishing."
        )
    target = describe_target(dsn)
    _check_connection(dsn)
    version = lake_version(lake)
    started = datetime.now(UTC)
    publish_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"

    # An in-memory DuckDB with the lake attached read-only: attaching Postgres from a
    # read-only database would make Postgres read-only too.
    con = connect(settings)
    try:
        load_postgres_extension(con)
        con.execute(f"attach {quote_literal(str(lake.database))} as lake (read_only)")
        try:
            con.execute(f"attach {quote_literal(dsn)} as pg (type postgres)")
        except duckdb.Error as exc:
            raise PublishError(
                f"DuckDB cannot attach Postgres {target}: {_scrub(str(exc), dsn)}"
            ) from None
        try:
            return _publish_in_transaction(
                con, lake, settings, version, publish_id, started, force, progress, target
            )
        except duckdb.Error as exc:
            raise PublishError(
                f"Publishing to Postgres {target} failed and was rolled back: "
                f"{_scrub(str(exc), dsn)}"
            ) from None
    finally:
        con.close()


def _publish_in_transaction(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    settings: Settings,
    version: str,
    publish_id: str,
    started: datetime,
    force: bool,
    progress: ProgressCallback,
    target: str,
) -> PublishResult:
    schema = settings.pg_schema
    steps = len(MARTS) + 3
    step = 0

    def advance(detail: str) -> None:
        nonlocal step
        step += 1
        log.info("publish to %s: %s", target, detail)
        progress(Progress("publish", "postgres", step, steps, detail))

    con.execute("begin transaction")
    try:
        _pg(
            con,
            f"set local statement_timeout = '{STATEMENT_TIMEOUT}'; "
            f"set local lock_timeout = '{LOCK_TIMEOUT}'; "
            f"set local idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'; "
            "set local maintenance_work_mem = '512MB'; "
            f"select pg_advisory_xact_lock({ADVISORY_LOCK_NAMESPACE}, hashtext('{schema}')); "
            f"create schema if not exists {schema}",
        )
        # Tables and views first; their indexes once the rows are in.
        indexes: list[str] = []
        for name in DDL:
            for statement in ddl_statements(name, schema):
                if re.match(r"create\s+(unique\s+)?index", statement, re.IGNORECASE):
                    indexes.append(statement)
                else:
                    _pg(con, statement)
        con.execute("call pg_clear_cache()")

        last = con.execute(
            f"select lake_version from pg.{schema}.publish_log order by finished_at desc limit 1"
        ).fetchone()
        if last is not None and last[0] == version and not force:
            con.execute("rollback")
            progress(Progress("publish", "postgres", steps, steps, "up to date"))
            return PublishResult(None, target, schema, [], 0, up_to_date=True)

        tables: list[PublishedTable] = []
        t0 = time.perf_counter()
        new_snapshots = [
            r[0]
            for r in con.execute(
                f"""
                select distinct cast(snapshot_at as varchar) from lake.silver.market_snapshots
                where snapshot_at not in (
                    select unnest(snapshots) from pg.{schema}.publish_log
                )
                order by 1
                """
            ).fetchall()
        ]
        written = 0
        if new_snapshots:
            # Literal dates let DuckDB prune silver's snapshot_date partitions.
            dates = sorted({snapshot[:10] for snapshot in new_snapshots})
            date_list = ", ".join(f"date {quote_literal(d)}" for d in dates)
            con.execute(
                "create or replace temp table publish_snapshots as "
                "select cast(unnest(?::varchar[]) as timestamptz) as snapshot_at",
                [new_snapshots],
            )
            new_rows = (
                "from lake.silver.market_snapshots "
                f"where snapshot_date in ({date_list}) "
                "and snapshot_at in (select snapshot_at from publish_snapshots)"
            )
            con.execute(f"insert into pg.{schema}.{STAGING} by name select * {new_rows}")
            written = _count(con, f"select count(*) {new_rows}")
        # Counted by Postgres itself: a DuckDB count would stream the whole table over COPY.
        rows_now = _count(
            con, f"select * from postgres_query('pg', 'select count(*) from {schema}.{STAGING}')"
        )
        tables.append(PublishedTable(STAGING, written, rows_now, time.perf_counter() - t0))
        advance(f"{STAGING}: +{written:,} rows")

        for mart in MARTS:
            t0 = time.perf_counter()
            since = new_snapshots[0][:10] if mart in DAY_KEYED and new_snapshots else None
            written, rows = _replace_mart(con, schema, mart, since=None if force else since)
            tables.append(PublishedTable(mart, written, rows, time.perf_counter() - t0))
            advance(f"{mart}: {written:,} rows")

        t0 = time.perf_counter()
        for statement in indexes:
            _pg(con, statement)
        # Marts change on every publish, so always; staging only once enough of it is new.
        # The large tables are sampled on the columns consumers filter and join on only
        # (sampling all 34 columns of a million-row staging table costs about a second).
        statements = [
            f"analyze {schema}.{mart}"
            + (f" ({', '.join(STATS_COLUMNS[mart])})" if mart in STATS_COLUMNS else "")
            for mart in MARTS
        ]
        if _staging_needs_analyze(con, schema, rows_now):
            statements.append(f"analyze {schema}.{STAGING} ({', '.join(STATS_COLUMNS[STAGING])})")
        _pg(con, "; ".join(statements))
        advance("indexes and statistics")

        latest = con.execute("select max(snapshot_at)::varchar from lake.silver.market_snapshots")
        latest_row = latest.fetchone()
        finished = datetime.now(UTC)
        rows_json = json.dumps({t.table: t.rows_written for t in tables})
        snapshots_literal = "{" + ",".join(f'"{s}"' for s in new_snapshots) + "}"
        _pg(
            con,
            f"insert into {schema}.publish_log (publish_id, started_at, finished_at, "
            "latest_snapshot_at, lake_version, cryptolake_version, rows_written, snapshots) "
            f"values ({_pg_literal(publish_id)}, {_pg_literal(started.isoformat())}, "
            f"{_pg_literal(finished.isoformat())}, "
            f"{_pg_literal(latest_row[0]) if latest_row and latest_row[0] else 'null'}, "
            f"{_pg_literal(version)}, {_pg_literal(__version__)}, "
            f"{_pg_literal(rows_json)}::jsonb, {_pg_literal(snapshots_literal)}::timestamptz[])",
        )
        con.execute("commit")
        advance("committed")
    except BaseException:
        # Also on KeyboardInterrupt: roll back rather than leave Postgres waiting.
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass  # the connection is gone; Postgres rolls back on its own
        raise
    return PublishResult(publish_id, target, schema, tables, len(new_snapshots))


def _replace_mart(
    con: duckdb.DuckDBPyConnection, schema: str, mart: str, *, since: str | None
) -> tuple[int, int]:
    """Make the Postgres mart equal to gold's; returns (rows written, rows now).

    A day-keyed mart only needs its rows from `since` (the day of the earliest new snapshot)
    on: a new snapshot changes that day's figures and, through returns and 7-day windows,
    the days after it, never the days before. If the counts then disagree with gold (the
    quote currency changed, silver was rebuilt), the whole mart is replaced after all.
    """
    gold_rows = _count(con, f"select count(*) from lake.gold.{mart}")
    if since is not None:
        day = DAY_KEYED[mart]
        _pg(con, f"delete from {schema}.{mart} where {day} >= date {_pg_literal(since)}")
        con.execute(
            f"insert into pg.{schema}.{mart} by name select * from lake.gold.{mart} "
            f"where {day} >= date {quote_literal(since)}"
        )
        written = _count(
            con, f"select count(*) from lake.gold.{mart} where {day} >= date {quote_literal(since)}"
        )
        rows_now = _count(
            con, f"select * from postgres_query('pg', 'select count(*) from {schema}.{mart}')"
        )
        if rows_now == gold_rows:
            return written, rows_now
        log.info(
            "%s: %d rows in Postgres, %d in gold: replacing it whole", mart, rows_now, gold_rows
        )
    _pg(con, f"delete from {schema}.{mart}")
    con.execute(f"insert into pg.{schema}.{mart} by name select * from lake.gold.{mart}")
    return gold_rows, gold_rows


def _pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
