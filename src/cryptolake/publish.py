"""Publish: the lake's staging and mart tables into Postgres, through DuckDB's postgres extension.

One publish is one Postgres transaction (DuckDB runs its statements and `postgres_execute`
calls on one connection inside it): consumers see the previous complete state until COMMIT,
then the new one. Marts are emptied with DELETE, not dropped or truncated, so views that
consumers built on them keep working and readers are never blocked. Staging only ever gains
the snapshots it does not have yet; history staging gets the rows silver changed, by key
(staging_history.py). Rows travel by DuckDB's binary COPY into tables with explicit Postgres
types (`sql/postgres/`), matched by column name.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import duckdb
import psycopg

from .duck import quote_literal
from .errors import ConfigError, PublishError
from .fserrors import on_lake
from .lake import LakePaths
from .pgconnect import (
    check_privileges,
    check_sample_mixing,
    describe_target,
    duckdb_dsn,
    explain_pg,
    publish_lock,
    scrub,
)
from .pgext import connect_for_postgres, load_postgres_extension
from .pgschema import check_encoding
from .progress import Progress, ProgressCallback, ignore_progress
from .publish_state import (
    history_changes,
    read_gold_build,
    read_published,
    snapshots_to_stage,
)
from .publish_transaction import DDL, MARTS, PublishedTable, PublishResult, publish_in_transaction
from .settings import Settings
from .staging import (
    STAGING,
    prepare_schema,
)
from .staging_history import HISTORY, ROWS

log = logging.getLogger(__name__)

__all__ = [
    "HISTORY",
    "STAGING",
    "PublishResult",
    "PublishedTable",
    "describe_target",
    "load_postgres_extension",
    "publish",
]


@on_lake("read the lake to publish it")
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
    lake = LakePaths.of(settings)
    target = describe_target(dsn)
    started = datetime.now(UTC)
    publish_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    # An in-memory DuckDB with the lake attached read-only: attaching Postgres from a
    # read-only database would make Postgres read-only too. One thread: every write to
    # Postgres is one COPY stream, and DuckDB's other threads would only spin on a mutex
    # while the Postgres backend parses it (a CTAS of 1M rows: 7.0 CPU-seconds in DuckDB
    # with 2 threads, 2.1 with 1, and faster), taking a core from the Postgres backends.
    con = connect_for_postgres(settings.with_(threads=1))
    try:
        # Attached at the snapshot of the last committed gold: what is published is that
        # gold and the silver it was built from, even if a transform commits meanwhile.
        build = read_gold_build(con, settings)
        with publish_lock(
            dsn, settings.pg_schema, target, source=settings.named("postgres_dsn")
        ) as lock:
            try:
                check_privileges(lock, settings.pg_schema, [*DDL, STAGING])
                check_sample_mixing(lock, settings.pg_schema, sample=build.sample, target=target)
                published = read_published(lock, settings.pg_schema, lake=build.lake_id)
                row = lock.execute("show server_encoding").fetchone()
                server_encoding = str(row[0]) if row else "UTF8"
            except psycopg.Error as exc:
                raise PublishError(
                    f"Publishing to Postgres {target} failed: {explain_pg(scrub(str(exc), dsn))}"
                ) from None
            newer = published.lake_version
            # The same DuckLake snapshot: nothing new (data, currency or models). An older
            # one (a copy of this lake, a publish that lost a race): its marts must not
            # replace the newer ones Postgres already shows.
            older = bool(newer and newer.isdigit() and int(newer) > build.snapshot_id)
            if (newer == build.lake_version or older) and not force:
                progress(Progress("publish", "postgres", 1, 1, "up to date"))
                notes = (
                    [
                        f"{target} already holds a newer version of this lake (snapshot "
                        f"{newer}, this one is {build.snapshot_id}): nothing published "
                        "(--force publishes this older one anyway)"
                    ]
                    if older
                    else []
                )
                return PublishResult(
                    None, target, settings.pg_schema, [], 0, up_to_date=True, notes=notes
                )
            new_snapshots = snapshots_to_stage(con, published, build)
            history = history_changes(con, published, build)
            # Before anything is written: text the database cannot hold is refused.
            check_encoding(
                con,
                server_encoding=server_encoding,
                relations=[
                    "select * from lake.silver.market_snapshots "
                    "where snapshot_at in (select snapshot_at from publish_snapshots)",
                    *([f"select * from {ROWS}"] if history.rows else []),
                    *(f"select * from lake.gold.{mart}" for mart in MARTS),
                ],
                target=target,
            )
            try:
                # On the lock's connection before the publish transaction starts: that
                # transaction's snapshot then sees the schema, and workers can load into it.
                prepare_schema(lock, settings.pg_schema)
            except psycopg.Error as exc:
                raise PublishError(
                    f"Publishing to Postgres {target} failed: {explain_pg(scrub(str(exc), dsn))}"
                ) from None
            load_postgres_extension(con)
            try:
                con.execute(f"attach {quote_literal(duckdb_dsn(dsn))} as pg (type postgres)")
            except duckdb.Error as exc:
                raise PublishError(
                    f"DuckDB cannot attach Postgres {target}: {explain_pg(scrub(str(exc), dsn))}"
                ) from None
            try:
                return publish_in_transaction(
                    con,
                    lake,
                    settings,
                    lock=lock,
                    dsn=dsn,
                    published=published,
                    build=build,
                    new_snapshots=new_snapshots,
                    history=history,
                    publish_id=publish_id,
                    started=started,
                    force=force,
                    progress=progress,
                    target=target,
                )
            except (duckdb.Error, psycopg.Error) as exc:
                raise PublishError(
                    f"Publishing to Postgres {target} failed and was rolled back: "
                    f"{explain_pg(scrub(str(exc), dsn))}"
                ) from None
    finally:
        con.close()
