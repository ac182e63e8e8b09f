"""What a publish compares: the lake's last committed gold against what Postgres last got.

The lake side is the DuckLake snapshot of the last gold commit (its version) and what that
gold was built from; the Postgres side is `publish_log` (the latest publish of this lake, by
snapshot id) and the snapshots staging holds. The snapshots staging lacks, and the history
rows silver changed, come from DuckLake's change feed since the published snapshot.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import psycopg

from . import __version__
from .catalog import attach_lake, lake_id, latest_snapshot
from .duck import json_list, one_line, quote_literal
from .errors import LakeError
from .pgext import pg_execute
from .settings import Settings
from .staging import (
    STAGING,
    attached_days,
)
from .staging_history import GONE, HISTORY, HISTORY_SOURCE, KEY, ROWS, HistoryChanges

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GoldBuild:
    """The last committed gold: its DuckLake snapshot and what it was built from."""

    snapshot_id: int
    fingerprint: str  # the models and currency: equal means only new snapshots changed gold
    vs_currency: str
    sample: bool  # built from the bundled sample
    lake_id: str  # which lake: snapshot ids of another catalog say nothing about this one

    @property
    def lake_version(self) -> str:
        return str(self.snapshot_id)


def read_gold_build(con: duckdb.DuckDBPyConnection, settings: Settings) -> GoldBuild:
    """Attach the lake as `lake` at the snapshot of its last committed gold."""
    attach_lake(con, settings)
    gold = latest_snapshot(con, stage="gold")
    if gold is None:
        raise LakeError(
            "The lake has no gold yet (no transform has committed one); run `cryptolake "
            "transform` before publishing."
        )
    con.execute("detach lake")
    attach_lake(con, settings, as_of=gold.snapshot_id)
    try:
        row = con.execute("select models_fingerprint, vs_currency from lake.meta.build").fetchone()
        (sample,) = con.execute(
            "select coalesce(bool_or(is_sample), false) from lake.gold.crypto_analytics_mart"
        ).fetchone() or (False,)
    except duckdb.Error as exc:
        raise LakeError(
            f"Cannot read the lake's gold at snapshot {gold.snapshot_id}: {one_line(exc)}; "
            "run `cryptolake transform` again."
        ) from None
    if row is None:
        raise LakeError("The lake's gold has no build record; run `cryptolake transform`.")
    return GoldBuild(
        gold.snapshot_id, str(row[0]), str(row[1]), bool(sample), lake_id(con) or "unknown"
    )


@dataclass(frozen=True, slots=True)
class Published:
    """What earlier publishes left in the schema (read under the publish lock)."""

    lake_version: str | None  # of the last publish; None without publish_log or staging
    snapshots: list[str]  # every snapshot_at staging received, as text with its offset
    days: set[date]  # the days staging has a partition for
    first: bool  # neither staging nor publish_log exists: nothing for consumers yet
    fingerprint: str | None = None  # the models and currency of the last publish
    history: bool = False  # staging_coin_history_daily exists (it has what earlier got)
    # Rows per table after the latest publish (publish_log.rows_now; empty when it has none).
    rows_now: dict[str, int] = field(default_factory=dict)


def read_published(conn: psycopg.Connection[Any], schema: str, *, lake: str) -> Published:
    row = conn.execute(
        "select to_regclass(%s), to_regclass(%s), to_regclass(%s)",
        [f"{schema}.publish_log", f"{schema}.{STAGING}", f"{schema}.{HISTORY}"],
    ).fetchone()
    log_exists = row is not None and row[0] is not None
    staging_exists = row is not None and row[1] is not None
    history = row is not None and row[2] is not None
    if not log_exists or not staging_exists:
        # Without staging (dropped by hand), what publish_log lists was lost: all of it is
        # published again, and the marts are compared with gold as always.
        first = not log_exists and not staging_exists
        return Published(None, [], attached_days(conn, schema), first, history=history)
    # The latest publish of this lake is the one of its newest snapshot, never the latest
    # clock reading (a clock set ahead must not make later publishes look older). Another
    # lake's publishes (a catalog rebuilt, another folder) say nothing of this one's ids.
    columns = {
        str(r[0])
        for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = %s "
            "and table_name = 'publish_log'",
            [schema],
        ).fetchall()
    }
    last = (
        conn.execute(
            f"select lake_version, models_fingerprint from {schema}.publish_log "
            "where lake_id = %s and lake_version ~ '^[0-9]+$' "
            "order by lake_version::bigint desc, finished_at desc limit 1",
            [lake],
        ).fetchone()
        if "lake_id" in columns
        else None  # written by a cryptolake before DuckLake: no publish of this lake yet
    )
    snapshots = conn.execute(
        f"select distinct unnest(snapshots)::text from {schema}.publish_log"
    ).fetchall()
    return Published(
        str(last[0]) if last else None,
        [str(r[0]) for r in snapshots],
        attached_days(conn, schema),
        first=False,
        fingerprint=str(last[1]) if last and last[1] else None,
        history=history,
        rows_now=_rows_now(conn, schema) if "rows_now" in columns else {},
    )


def _rows_now(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """The tables' rows after the latest publish into `schema` (of any lake: they share the
    tables), or {} when the latest has none."""
    row = conn.execute(
        f"select rows_now from {schema}.publish_log order by finished_at desc limit 1"
    ).fetchone()
    if row is None or not isinstance(row[0], dict):
        return {}
    return {str(k): int(v) for k, v in row[0].items() if isinstance(v, int)}


def snapshots_to_stage(
    con: duckdb.DuckDBPyConnection, published: Published, build: GoldBuild
) -> list[str]:
    """The market snapshots staging lacks, as text; also as the temp table `publish_snapshots`.

    Read from DuckLake's change feed of silver.market_snapshots between the snapshot last
    published and the gold being published; without a usable last publish (a first one, a
    dropped staging, an expired snapshot), from every snapshot the gold was built from
    (`meta.snapshots`, recorded at its build: publish ships audited data only).
    """
    since = published.lake_version
    new: list[str] | None = None
    if since and since.isdigit() and published.snapshots and int(since) < build.snapshot_id:
        try:
            new = [
                str(r[0])
                for r in con.execute(
                    """
                    select distinct cast(snapshot_at as varchar)
                    from ducklake_table_changes('lake', 'silver', 'market_snapshots', ?, ?)
                    where change_type in ('insert', 'update_postimage')
                        and snapshot_at not in (
                            select cast(unnest(?::json::varchar[]) as timestamptz)
                        )
                    order by 1
                    """,
                    [int(since) + 1, build.snapshot_id, json_list(published.snapshots)],
                ).fetchall()
            ]
        except duckdb.Error as exc:
            log.info("change feed unavailable (%s): comparing snapshots instead", one_line(exc))
    if new is None:
        new = [
            str(r[0])
            for r in con.execute(
                """
                select cast(snapshot_at as varchar)
                from lake.meta.snapshots
                where snapshot_at not in (select cast(unnest(?::json::varchar[]) as timestamptz))
                order by snapshot_at
                """,
                [json_list(published.snapshots)],
            ).fetchall()
        ]
    con.execute(
        "create or replace temp table publish_snapshots as "
        "select cast(unnest(?::json::varchar[]) as timestamptz) as snapshot_at",
        [json_list(new)],
    )
    return new


def history_changes(
    con: duckdb.DuckDBPyConnection, published: Published, build: GoldBuild
) -> HistoryChanges:
    """The history rows staging needs, as temp tables ROWS (to upsert) and GONE (to delete).

    The keys silver.coin_history_daily changed (any change: inserted, replaced, deleted)
    between the snapshot last published and the gold being published, from DuckLake's change
    feed; their rows as of that gold. Without a usable last publish (a first one, a staging
    table that did not exist, an expired snapshot, a silver table created since), every row
    silver has, and none deleted. A lake without history has none to send.
    """
    keys = ", ".join(KEY)
    (exists,) = con.execute(
        "select count(*) from duckdb_tables() where database_name = 'lake' "
        "and schema_name = 'silver' and table_name = 'coin_history_daily'"
    ).fetchone() or (0,)
    if not exists:
        return HistoryChanges(0, 0, (), None, whole=True)
    since = published.lake_version
    whole = True
    if published.history and since and since.isdigit() and int(since) >= build.snapshot_id:
        # The published snapshot itself (a forced publish): nothing changed since.
        con.execute(
            f"create or replace temp table publish_history_keys as "
            f"select {keys} from {HISTORY_SOURCE} limit 0"
        )
        whole = False
    elif published.history and since and since.isdigit():
        try:
            con.execute(
                f"""
                create or replace temp table publish_history_keys as
                select distinct {keys}
                from ducklake_table_changes('lake', 'silver', 'coin_history_daily', ?, ?)
                """,
                [int(since) + 1, build.snapshot_id],
            )
            whole = False
        except duckdb.Error as exc:
            log.info("history change feed unavailable (%s): sending all of it", one_line(exc))
    if whole:
        con.execute(
            f"create or replace temp table publish_history_keys as "
            f"select {keys} from {HISTORY_SOURCE}"
        )
    first, last, months = con.execute(
        "select min(day), max(day), "
        "list(distinct cast(date_trunc('month', day) as date) order by 1) "
        "from publish_history_keys"
    ).fetchone() or (None, None, [])
    # The days' range lets DuckLake read only the months' files.
    con.execute(
        f"""
        create or replace temp table {ROWS} as
        select history.*
        from {HISTORY_SOURCE} as history
        semi join publish_history_keys using ({keys})
        where history.day between ? and ?
        """,
        [first, last],
    )
    con.execute(
        f"create or replace temp table {GONE} as "
        f"select {keys} from publish_history_keys except select {keys} from {ROWS}"
    )
    rows, gone = con.execute(
        f"select (select count(*) from {ROWS}), (select count(*) from {GONE})"
    ).fetchone() or (0, 0)
    return HistoryChanges(
        int(rows),
        int(gone),
        tuple(months or ()),
        first,
        whole=whole,
    )


def coin_daily_changed_from(
    con: duckdb.DuckDBPyConnection, published: Published, build: GoldBuild
) -> date | None:
    """The first day gold.coin_daily changed on since the last publish, from its change feed.

    A publish rewrites coin_daily in Postgres from that day on: new snapshots, history a
    backfill changed and candles all reach gold as rewritten days, and gold rewrites from the
    earliest one. `date.max` when coin_daily did not change; None when that is unknown (no
    usable last publish, other models or currency, a feed that cannot be read): rewrite it
    whole.
    """
    since = published.lake_version
    if not since or not since.isdigit() or published.fingerprint != build.fingerprint:
        return None
    if int(since) >= build.snapshot_id:
        return date.max
    try:
        row = con.execute(
            "select min(day) from ducklake_table_changes('lake', 'gold', 'coin_daily', ?, ?)",
            [int(since) + 1, build.snapshot_id],
        ).fetchone()
    except duckdb.Error as exc:
        log.info("coin_daily change feed unavailable (%s): publishing it whole", one_line(exc))
        return None
    first: date | None = row[0] if row else None
    return first or date.max


def log_publish(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    *,
    publish_id: str,
    started: datetime,
    build: GoldBuild,
    rows_written: dict[str, int],
    rows_now: dict[str, int],
    snapshots: list[str],
) -> None:
    """Add the publish to `publish_log`, in the publish transaction (Postgres attached as `pg`)."""
    latest = con.execute("select max(snapshot_at)::varchar from lake.meta.snapshots").fetchone()
    finished = datetime.now(UTC)
    snapshots_literal = "{" + ",".join(f'"{s}"' for s in snapshots) + "}"
    pg_execute(
        con,
        f"insert into {schema}.publish_log (publish_id, started_at, finished_at, "
        "latest_snapshot_at, lake_version, lake_id, models_fingerprint, "
        "cryptolake_version, rows_written, snapshots, rows_now) "
        f"values ({quote_literal(publish_id)}, {quote_literal(started.isoformat())}, "
        f"{quote_literal(finished.isoformat())}, "
        f"{quote_literal(latest[0]) if latest and latest[0] else 'null'}, "
        f"{quote_literal(build.lake_version)}, {quote_literal(build.lake_id)}, "
        f"{quote_literal(build.fingerprint)}, "
        f"{quote_literal(__version__)}, "
        f"{quote_literal(json.dumps(rows_written))}::jsonb, "
        f"{quote_literal(snapshots_literal)}::timestamptz[], "
        f"{quote_literal(json.dumps(rows_now))}::jsonb)",
    )
