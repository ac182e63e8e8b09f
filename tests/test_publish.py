"""Publish against the real Postgres named by CRYPTOLAKE_TEST_PG_DSN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from typer.testing import CliRunner

from cryptolake.cli import app
from cryptolake.errors import ConfigError, PublishError
from cryptolake.gold import GOLD_MODELS
from cryptolake.progress import Progress
from cryptolake.publish import HISTORY, STAGING, publish

from .conftest import LakeTemplates
from .lakes import T0, lake_db, lake_files, land, one_snapshot, settings_for
from .published import Boom, fetch, published_with_a_new_snapshot, rebuild, state, target

pytestmark = pytest.mark.postgres

ALLOWED_TYPES = {
    "text",
    "double precision",
    "integer",
    "bigint",
    "date",
    "timestamp with time zone",
    "timestamp with time zone[]",
    "jsonb",
    "boolean",
}


@pytest.fixture
def built_lake(lake: Path, lake_templates: LakeTemplates) -> Path:
    """One snapshot through silver and gold (a copy of the session's: each test changes its own)."""
    return lake_templates.copy(one_snapshot, lake)


def lake_count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def test_tables_types_and_indexes(built_lake: Path, pg_dsn: str, pg_schema: str) -> None:
    publish(target(built_lake, pg_dsn, pg_schema))
    columns = fetch(
        pg_dsn,
        f"""
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = '{pg_schema}' and c.relkind in ('r', 'p', 'v')
            and not c.relispartition and a.attnum > 0 and not a.attisdropped
        order by c.relname, a.attnum
        """,
    )
    by_table: dict[str, list[str]] = {}
    for table, column, kind in columns:
        by_table.setdefault(table, []).append(column)
        assert kind in ALLOWED_TYPES, (table, column, kind)  # binary COPY, no numeric
    assert set(by_table) == {
        STAGING,
        HISTORY,
        *GOLD_MODELS,
        "publish_log",
        "crypto_market_summary",
    }
    con = lake_db(built_lake)
    for mart in GOLD_MODELS:
        gold_columns = [r[0] for r in con.execute(f"describe gold.{mart}").fetchall()]
        assert by_table[mart] == gold_columns
    silver = [r[0] for r in con.execute("describe silver.market_snapshots").fetchall()]
    history = [r[0] for r in con.execute("describe silver.coin_history_daily").fetchall()]
    con.close()
    assert by_table[STAGING] == silver
    assert by_table[HISTORY] == history

    indexes = {
        (table, definition.split(" USING ")[1])
        for table, definition in fetch(
            pg_dsn, f"select tablename, indexdef from pg_indexes where schemaname = '{pg_schema}'"
        )
    }
    for expected in [
        (STAGING, "btree (coin_id text_pattern_ops, snapshot_at)"),
        ("crypto_analytics_mart", "btree (coin_id)"),
        ("crypto_analytics_mart", "btree (market_cap_rank)"),
        ("crypto_analytics_mart", "btree (market_cap_category)"),
        ("market_segment_analysis", "btree (market_cap_category)"),
        ("coin_daily", "btree (coin_id text_pattern_ops, day)"),
        (HISTORY, "btree (coin_id, day, vs_currency)"),
        ("coin_daily", "btree (day, market_cap_rank)"),
        ("market_daily", "btree (day)"),
        ("category_leaderboard", "btree (category_id)"),
        ("category_leaderboard", "btree (category_rank)"),
    ]:
        assert expected in indexes
    unique = fetch(
        pg_dsn,
        f"select indexdef from pg_indexes where schemaname = '{pg_schema}' "
        f"and tablename = '{STAGING}' and indexdef like 'CREATE UNIQUE%'",
    )
    assert unique


def test_counts_and_figures_equal_the_lake(built_lake: Path, pg_dsn: str, pg_schema: str) -> None:
    result = publish(target(built_lake, pg_dsn, pg_schema))
    written = {t.table: t.rows_written for t in result.tables}
    con = lake_db(built_lake)  # one connection for every lake-side figure
    assert written[STAGING] == lake_count(con, "select count(*) from silver.market_snapshots")
    for mart in GOLD_MODELS:
        assert written[mart] == lake_count(con, f"select count(*) from gold.{mart}")
        assert fetch(pg_dsn, f"select count(*) from {pg_schema}.{mart}")[0][0] == written[mart]
    pg_sum = fetch(pg_dsn, f"select sum(market_cap) from {pg_schema}.crypto_analytics_mart")[0][0]
    lake_sum = con.execute("select sum(market_cap) from gold.crypto_analytics_mart").fetchone()
    con.close()
    assert lake_sum is not None and pg_sum == lake_sum[0]
    (summary,) = fetch(
        pg_dsn,
        f"select coins_tracked, btc_dominance_pct, latest_snapshot_at, latest_publish_at "
        f"from {pg_schema}.crypto_market_summary",
    )
    assert summary[0] == 100
    assert summary[2] == T0 and summary[3] is not None


def test_second_publish_with_nothing_new_changes_nothing(
    built_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(built_lake, pg_dsn, pg_schema)
    publish(settings)
    xmins = fetch(pg_dsn, f"select xmin::text from {pg_schema}.crypto_analytics_mart")
    again = publish(settings)
    assert again.up_to_date and again.tables == []
    assert fetch(pg_dsn, f"select xmin::text from {pg_schema}.crypto_analytics_mart") == xmins
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.publish_log")[0][0] == 1


def test_new_snapshot_appends(built_lake: Path, pg_dsn: str, pg_schema: str) -> None:
    settings = target(built_lake, pg_dsn, pg_schema)
    publish(settings)
    land(built_lake, at=T0 + timedelta(hours=6))
    rebuild(built_lake)
    result = publish(settings)
    assert result.snapshots_added == 1
    staging = next(t for t in result.tables if t.table == STAGING)
    assert (staging.rows_written, staging.rows_now) == (100, 200)
    rows = fetch(
        pg_dsn,
        f"select snapshot_at, count(*) from {pg_schema}.{STAGING} group by 1 order by 1",
    )
    assert rows == [(T0, 100), (T0 + timedelta(hours=6), 100)]
    log = fetch(pg_dsn, f"select snapshots from {pg_schema}.publish_log order by finished_at")
    assert log == [([T0],), ([T0 + timedelta(hours=6)],)]


def test_failure_between_steps_leaves_previous_state(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    settings, before = published_with_a_new_snapshot(lake_templates, lake, pg_dsn, pg_schema)

    def fail_after_two_marts(event: Progress) -> None:
        if event.detail.startswith("market_daily"):
            raise Boom("injected between steps")

    with pytest.raises(Boom):
        publish(settings, progress=fail_after_two_marts)
    assert state(pg_dsn, pg_schema) == before
    assert publish(settings).snapshots_added == 1  # nothing left locked or half-done


def test_connection_dropped_half_way_leaves_previous_state(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    settings, before = published_with_a_new_snapshot(lake_templates, lake, pg_dsn, pg_schema)

    def drop_connection(event: Progress) -> None:
        if event.detail.startswith("coin_daily"):
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where pid <> pg_backend_pid() and datname = current_database() "
                    "and state like 'idle in transaction%' "
                    f"and query like '%{pg_schema}%'"
                )

    with pytest.raises(PublishError, match="rolled back"):
        publish(settings, progress=drop_connection)
    assert state(pg_dsn, pg_schema) == before


KILLABLE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cryptolake.publish import publish
    from cryptolake.secret import Secret
    from cryptolake.settings import Settings

    lake, dsn, schema, marker = sys.argv[1:]
    settings = Settings.resolve(
        env={}, lake=lake, postgres_dsn=dsn, pg_schema=schema, freshness_hours=1e6
    )

    def stall(event):
        if event.detail.startswith("crypto_analytics_mart"):
            Path(marker).write_text("mid-publish")
            time.sleep(120)

    publish(settings, progress=stall)
    """
)


def test_sigkill_mid_publish_leaves_previous_state(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    settings, before = published_with_a_new_snapshot(lake_templates, lake, pg_dsn, pg_schema)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(lake), pg_dsn, pg_schema, str(marker)]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "publisher exited early"
            assert time.monotonic() < deadline, "publisher never reached the marts"
            time.sleep(0.05)
        # Mid-transaction, consumers still see the old state.
        assert state(pg_dsn, pg_schema) == before
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert state(pg_dsn, pg_schema) == before
    assert publish(settings).snapshots_added == 1


def test_reader_polling_during_publish_never_sees_partial_state(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    settings, before = published_with_a_new_snapshot(lake_templates, lake, pg_dsn, pg_schema)
    seen: list[tuple[Any, ...]] = []
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not stop.is_set():
                counts = ", ".join(
                    f"(select count(*) from {pg_schema}.{t})"
                    for t in (STAGING, HISTORY, *GOLD_MODELS, "publish_log")
                )
                seen.append(
                    conn.execute(
                        f"select {counts}, (select max(snapshot_at)::text "
                        f"from {pg_schema}.crypto_analytics_mart)"
                    ).fetchone()
                    or ()
                )

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        publish(settings, progress=lambda _event: time.sleep(0.05))
        time.sleep(0.1)
    finally:
        stop.set()
        reader.join(timeout=30)
    after = state(pg_dsn, pg_schema)
    assert after != before
    assert len(seen) > 20
    assert set(seen) <= {before, after}
    assert before in seen and after in seen


def test_dependent_view_survives_publishes(built_lake: Path, pg_dsn: str, pg_schema: str) -> None:
    settings = target(built_lake, pg_dsn, pg_schema)
    publish(settings)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"create view {pg_schema}.consumer_top10 as select coin_id, snapshot_at "
            f"from {pg_schema}.crypto_analytics_mart where market_cap_rank <= 10"
        )
    land(built_lake, at=T0 + timedelta(hours=6))
    rebuild(built_lake)
    publish(settings)
    rows = fetch(pg_dsn, f"select distinct snapshot_at from {pg_schema}.consumer_top10")
    assert rows == [(T0 + timedelta(hours=6),)]
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.consumer_top10")[0][0] == 10


def lake_listing(lake: Path) -> dict[str, tuple[int, int]]:
    return lake_files(lake)


@pytest.mark.parametrize(
    ("dsn", "named", "transient"),
    [
        # No server there: may answer later (an orchestrator retries it).
        ("postgresql://postgres:s3cr3t-pw@127.0.0.1:1/test", "127.0.0.1:1", True),
        (
            "host=127.0.0.1 port=5432 dbname=no_such_db user=postgres password=s3cr3t-pw",
            'database "no_such_db"',
            False,
        ),
    ],
)
def test_bad_connection_is_one_clear_line(
    built_lake: Path, dsn: str, named: str, transient: bool, pg_dsn: str
) -> None:
    before = lake_listing(built_lake)
    with pytest.raises(PublishError) as error:
        publish(target(built_lake, dsn, "cryptolake"))
    message = str(error.value)
    assert named in message and "s3cr3t-pw" not in message
    assert error.value.transient is transient
    assert lake_listing(built_lake) == before

    result = CliRunner().invoke(
        app,
        ["publish", "--lake", str(built_lake)],
        env={"CRYPTOLAKE_POSTGRES_DSN": dsn, "COLUMNS": "300"},
    )
    assert result.exit_code == 1
    assert "s3cr3t-pw" not in result.output and "Traceback" not in result.output
    assert result.output.startswith("error:")


def test_publish_without_dsn_says_how(built_lake: Path) -> None:
    with pytest.raises(ConfigError, match="CRYPTOLAKE_POSTGRES_DSN"):
        publish(settings_for(built_lake))


def coin_daily_rows(dsn: str, schema: str, lake: Path) -> tuple[list[Any], list[Any]]:
    """(Postgres rows, gold rows) of coin_daily, comparable."""
    sql = (
        "select coin_id, day, close_price, daily_return_ratio, is_complete_day from {t} "
        "order by coin_id, day"
    )
    pg_rows = fetch(dsn, sql.format(t=f"{schema}.coin_daily"))
    con = lake_db(lake)
    gold_rows = con.execute(sql.format(t="gold.coin_daily")).fetchall()
    con.close()
    return pg_rows, gold_rows


def test_coin_daily_is_refreshed_from_the_new_snapshots_day_on(
    built_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(built_lake, pg_dsn, pg_schema)
    land(built_lake, at=T0 + timedelta(days=1))
    rebuild(built_lake)
    publish(settings)
    land(built_lake, at=T0 + timedelta(days=2))
    rebuild(built_lake)
    result = publish(settings)
    coin_daily = next(t for t in result.tables if t.table == "coin_daily")
    # The new day, and the day before it: its close is the new day's first price.
    assert (coin_daily.rows_written, coin_daily.rows_now) == (200, 300)
    pg_rows, gold_rows = coin_daily_rows(pg_dsn, pg_schema, built_lake)
    assert pg_rows == gold_rows
    assert any(r[3] is not None for r in pg_rows)  # the completed day's returns arrived
    assert sorted({(str(r[1]), r[4]) for r in pg_rows}) == [
        ("2026-02-15", True),
        ("2026-02-16", True),
        ("2026-02-17", False),
    ]


def test_coin_daily_that_drifted_from_gold_is_replaced_whole(
    built_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(built_lake, pg_dsn, pg_schema)
    publish(settings)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"delete from {pg_schema}.coin_daily where coin_id like 'b%'")
    land(built_lake, at=T0 + timedelta(days=1))
    rebuild(built_lake)
    result = publish(settings)
    coin_daily = next(t for t in result.tables if t.table == "coin_daily")
    assert (coin_daily.rows_written, coin_daily.rows_now) == (200, 200)
    pg_rows, gold_rows = coin_daily_rows(pg_dsn, pg_schema, built_lake)
    assert pg_rows == gold_rows


def test_coin_lookups_use_the_unique_index(built_lake: Path, pg_dsn: str, pg_schema: str) -> None:
    """The byte-wise (text_pattern_ops) key still serves equality and time-range lookups."""
    publish(target(built_lake, pg_dsn, pg_schema))
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("set enable_seqscan = off")
        plan = conn.execute(
            f"explain select * from {pg_schema}.{STAGING} where coin_id = 'bitcoin' "
            "and snapshot_at > now() - interval '7 days' order by snapshot_at"
        ).fetchall()
    assert "staging_market_snapshots_p20260215_coin_snapshot_key" in " ".join(r[0] for r in plan)
