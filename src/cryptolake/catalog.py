"""The lake's DuckLake: silver and gold as transactional tables, reached by catalog and name.

Silver and gold live in one DuckLake (DuckDB's lakehouse format): Parquet data files under
the lake folder (`<lake>/silver/<table>/snapshot_date=…/ducklake-<uuid>.parquet`,
`<lake>/gold/<table>/…`) and a catalog holding the tables, their files and every committed
snapshot. The catalog is `sqlite:<lake>/catalog.sqlite` by default (several local processes
may use it at once: it is kept in SQLite's WAL mode, so a reader never blocks a commit) or
`postgres:<libpq conninfo>` for a team (`--catalog`, `CRYPTOLAKE_CATALOG`).

Every connection attaches the lake as `lake` and `USE`s it, so SQL names tables as
`silver.market_snapshots` and `gold.coin_daily` whatever the catalog. A snapshot id is the
lake's version: `snapshot_id` gives the current one, `open_lake(as_of=…)` reads an older one.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from .catalog_errors import attach_error, is_conflict
from .catalog_errors import catalog_file as catalog_file
from .duck import connect, object_store_problem, quote_literal
from .errors import ConfigError, LakeError
from .extensions import load_extension
from .fserrors import lake_io
from .lake import LakePaths
from .objectstore import S3Config
from .settings import Settings

LAKE = "lake"  # the name the lake is attached as
SCHEMAS = ("silver", "gold", "meta")
AUTHOR = "cryptolake"
# Tables the catalog keeps beside the data, created with the lake.
_INTERNAL_TABLES = (
    # The bronze runs silver holds, recorded in the transaction that upserts their rows.
    "create table if not exists silver.processed_runs (run_id varchar not null, "
    "snapshot_at timestamptz, vs_currency varchar, is_sample boolean, "
    "silver_format integer not null, processed_at timestamptz not null)",
    # Which lake this is (a new catalog is a new lake, whatever its snapshot ids say).
    "create table if not exists meta.lake (lake_id varchar not null, "
    "created_at timestamptz not null)",
    # One row every silver and gold commit updates. DuckLake lets concurrent appends commit
    # side by side; two writers that both update this row conflict, so of two transforms
    # racing on one lake (a team's machines) one commits and the other is retried from the
    # top, and reads the first one's runs as processed: no bronze run is upserted twice.
    "create table if not exists meta.commit_head (commits bigint not null)",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One committed version of the lake (DuckLake's `snapshots()` row)."""

    snapshot_id: int
    committed_at: str  # ISO 8601 with microseconds, UTC
    message: str | None
    extra: dict[str, object]

    @property
    def committer(self) -> str:
        """Who committed it: `host, run <id>` from the commit's extras (what is known)."""
        host, run = self.extra.get("host"), self.extra.get("run_id")
        return ", ".join(str(p) for p in (host, f"run {run}" if run else None) if p) or "?"


def catalog_exists(settings: Settings) -> bool:
    """Whether the lake has a catalog yet (always assumed for Postgres: attach says)."""
    path = catalog_file(settings)
    return path is None or path.exists()


def _refuse_a_second_catalog(settings: Settings, lake: LakePaths, catalog: Path) -> None:
    """Refuse to start a new catalog beside data files another catalog committed.

    A forgotten --catalog would otherwise fork the lake: a second catalog over the same
    folder, whose maintenance deletes the first one's files as orphans.
    """
    found = next(
        (
            p
            for folder in ("silver", "gold")
            for p in (lake.root / folder).rglob("ducklake-*.parquet")
        ),
        None,
    )
    if found is not None:
        raise LakeError(
            f"No lake catalog at {catalog}, but {lake.root} holds DuckLake data files "
            f"({found.relative_to(lake.root)}): they belong to another catalog. Pass the one "
            "the lake was built with (--catalog or CRYPTOLAKE_CATALOG); to rebuild silver and "
            f"gold from bronze instead, move {lake.silver} and {lake.root / 'gold'} aside first."
        )


def _create_sqlite_catalog(path: Path) -> None:
    """An empty SQLite file in WAL mode, which DuckLake then initialises.

    WAL is a property of the file, so every later connection (a shell, a BI tool) uses it:
    readers see the last commit and never block a writer's commit, which a rollback journal
    would (`database is locked`).
    """
    with lake_io(f"create the catalog {path}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path)) as db:
            db.execute("pragma journal_mode = wal")


def attach_options(settings: Settings, *, read_only: bool, as_of: int | str | None) -> str:
    data_path = LakePaths.of(settings).data_url
    options = [f"data_path {quote_literal(data_path)}"]
    if catalog_file(settings) is not None:
        # A SQLite catalog lives in its lake folder: a copied or moved lake reads its own
        # files, not those at the path its catalog was created with. A Postgres catalog is
        # shared: DuckLake refuses a lake location other than the one it was made for, so a
        # forgotten --lake can never write a team's catalog full of files elsewhere.
        options.append("override_data_path true")
    if read_only:
        options.append("read_only")
    if isinstance(as_of, int):
        options.append(f"snapshot_version {as_of}")
    elif as_of is not None:
        options.append(f"snapshot_time {quote_literal(as_of)}")
    return ", ".join(options)


@contextmanager
def open_lake(
    settings: Settings, *, read_only: bool = False, as_of: int | str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the lake attached as `lake` and in use.

    `read_only` attaches it read-only (a missing catalog is then a LakeError, not a new
    lake); `as_of` (a snapshot id, or an ISO time) reads the lake as it was then. A writable
    open creates the catalog, the schemas and the internal tables when they are missing.
    Raises LakeError naming the catalog for one that is missing, damaged, unreachable or of
    a newer DuckLake version.
    """
    lake = LakePaths.of(settings)
    sqlite_file = catalog_file(settings)
    if sqlite_file is not None and not sqlite_file.exists() and not read_only and as_of is None:
        if not lake.remote:
            _refuse_a_second_catalog(settings, lake, sqlite_file)
            with lake_io("create the lake folder"):
                lake.root.mkdir(parents=True, exist_ok=True)
        _create_sqlite_catalog(sqlite_file)
    con = connect(settings)
    try:
        attach_lake(con, settings, read_only=read_only, as_of=as_of)
        con.execute(f"use {LAKE}")
        if not (read_only or as_of is not None):
            _create_schemas(con)
        con.execute("set variable freshness_hours = ?", [float(settings.freshness_hours)])
        yield con
    except duckdb.Error as exc:
        # What a user can cause on object storage (a store down, a file gone) is one of ours.
        if (stored := object_store_problem(exc)) is None:
            raise
        raise LakeError(f"Cannot read the lake {settings.lake_location}: {stored}") from None
    finally:
        con.close()


def check_catalog(settings: Settings) -> None:
    """Open a Postgres catalog now (raising LakeError as `open_lake` does), so that a
    catalog that is unreachable, missing or another lake's fails a command before it has
    fetched anything. A SQLite catalog is the lake's own file: nothing to check."""
    if settings.catalog_uri.startswith("postgres:"):
        with open_lake(settings):
            pass


def attach_lake(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    read_only: bool = True,
    as_of: int | str | None = None,
) -> None:
    """Attach the lake to `con` as `lake` (the extensions loaded from their wheels).

    For connections of their own (publish's workers) that must read one snapshot: pass its
    id as `as_of`. Raises LakeError as `open_lake` does.
    """
    sqlite_file = catalog_file(settings)
    if sqlite_file is not None and not sqlite_file.exists():
        raise LakeError(
            f"No lake catalog at {sqlite_file}; run `cryptolake transform` (after "
            "`cryptolake ingest`), or `cryptolake run --sample`, first."
        )
    load_extension(
        con, "sqlite" if catalog_file(settings) is not None else "postgres", error=LakeError
    )
    load_extension(con, "ducklake", error=LakeError)
    if settings.s3 is not None:
        use_object_store(con, settings.s3)
    # Many partitions in one insert (a backlog of days) are written as one file each.
    con.execute("set partitioned_write_max_open_files = 1000")
    options = attach_options(settings, read_only=read_only or as_of is not None, as_of=as_of)
    for attempt in range(1, 6):
        try:
            con.execute(
                f"attach {quote_literal('ducklake:' + settings.catalog_uri)} as {LAKE} ({options})"
            )
            return
        except duckdb.Error as exc:
            text = str(exc).lower()
            if attempt < 5 and "failed to initialize ducklake" in text and "already exists" in text:
                # Another writer is creating this new catalog right now: attach to theirs.
                time.sleep(0.2 * attempt)
                continue
            raise attach_error(settings, exc, as_of=as_of) from None


def use_object_store(con: duckdb.DuckDBPyConnection, config: S3Config) -> None:
    """Load httpfs and give `con` the S3 secret (in memory, for this connection only)."""
    load_extension(con, "httpfs", error=LakeError)
    sql, values = config.duckdb_secret_sql()
    con.execute(sql, values)


def _create_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """The schemas and internal tables, in one commit, when any is missing."""
    present = {
        r[0]
        for r in con.execute(
            "select schema_name from duckdb_schemas() where database_name = ?", [LAKE]
        ).fetchall()
    }
    tables = {
        f"{s}.{t}"
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = ?", [LAKE]
        ).fetchall()
    }
    if set(SCHEMAS) <= present and set(_INTERNAL) <= tables:
        return
    con.execute("begin")
    for schema in SCHEMAS:
        con.execute(f"create schema if not exists {schema}")
    for ddl in _INTERNAL_TABLES:
        con.execute(ddl)
    con.execute(
        "insert into meta.lake select ?, now() where not exists (select 1 from meta.lake)",
        [uuid.uuid4().hex],
    )
    con.execute(
        "insert into meta.commit_head select 0 where not exists (select 1 from meta.commit_head)"
    )
    set_commit_message(con, "create the lake's schemas")
    try:
        con.execute("commit")
    except duckdb.Error as exc:
        if not is_conflict(exc):
            raise
        rollback(con)  # another writer created them first: theirs are as good


_INTERNAL = ("silver.processed_runs", "meta.lake", "meta.commit_head")


def schema_tables(con: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    """The names of the tables in `schema` of the connection's current database."""
    return {
        str(r[0])
        for r in con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() "
            "and schema_name = ?",
            [schema],
        ).fetchall()
    }


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if any (after a failed commit there is none)."""
    try:
        con.execute("rollback")
    except duckdb.Error:
        pass


def set_commit_message(
    con: duckdb.DuckDBPyConnection, message: str, **extra: str | int | None
) -> None:
    """Label the open transaction's commit (read back by `snapshots`): the message, the
    extras given (stage, run id) and the host that committed, for a lake several write."""
    info = {k: v for k, v in extra.items() if v is not None} | {"host": socket.gethostname()}
    if info.get("stage") in ("silver", "gold"):
        con.execute("update meta.commit_head set commits = commits + 1")
    con.execute(
        f"call {LAKE}.set_commit_message(?, ?, extra_info => ?)",
        [AUTHOR, message, json.dumps(info)],
    )


def lake_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The lake's identity (made with its catalog), or None for a catalog without one."""
    try:
        row = con.execute(f"select lake_id from {LAKE}.meta.lake limit 1").fetchone()
    except duckdb.CatalogException:
        return None
    return str(row[0]) if row else None


def snapshot_id(con: duckdb.DuckDBPyConnection) -> int:
    """The id of the lake's current snapshot (of the `as_of` one for a time-travel open)."""
    row = con.execute(f"select id from {LAKE}.current_snapshot()").fetchone()
    return int(row[0]) if row else 0


def snapshots(con: duckdb.DuckDBPyConnection, *, limit: int = 10) -> list[Snapshot]:
    """The latest `limit` snapshots, newest first."""
    rows = con.execute(
        "select snapshot_id, strftime(snapshot_time, '%Y-%m-%dT%H:%M:%S.%fZ'), commit_message, "
        f"commit_extra_info from {LAKE}.snapshots() order by snapshot_id desc limit ?",
        [limit],
    ).fetchall()
    return [Snapshot(int(i), str(at), message, _extra(extra)) for i, at, message, extra in rows]


def latest_snapshot(con: duckdb.DuckDBPyConnection, *, stage: str) -> Snapshot | None:
    """The newest snapshot committed by `stage` (silver, gold), if any is kept."""
    rows = con.execute(
        "select snapshot_id, strftime(snapshot_time, '%Y-%m-%dT%H:%M:%S.%fZ'), commit_message, "
        f"commit_extra_info from {LAKE}.snapshots() "
        "where try_cast(commit_extra_info as json) ->> 'stage' = ? "
        "order by snapshot_id desc limit 1",
        [stage],
    ).fetchall()
    return (
        Snapshot(int(rows[0][0]), str(rows[0][1]), rows[0][2], _extra(rows[0][3])) if rows else None
    )


def _extra(raw: str | None) -> dict[str, object]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def file_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Data files per table (`silver.market_snapshots` -> 42), delete files included."""
    rows = con.execute(
        "select s.schema_name || '.' || t.table_name, t.file_count + t.delete_file_count "
        f"from {LAKE}.table_info() as t "
        "join duckdb_tables() as s on s.database_name = ? and s.table_name = t.table_name "
        "order by 1",
        [LAKE],
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def parse_as_of(value: str | None) -> int | str | None:
    """`--as-of`: a snapshot id (digits) or an ISO 8601 time; None for the current snapshot."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--as-of must be a snapshot id (such as 42) or an ISO 8601 time (such as "
            f"2026-11-30T12:00:00Z), got {value!r}."
        ) from None
    return moment.isoformat(sep=" ")
