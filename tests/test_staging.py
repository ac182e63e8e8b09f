"""Staging's day partitions in the real Postgres named by CRYPTOLAKE_TEST_PG_DSN."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from cryptolake import staging, staging_loads
from cryptolake.errors import PublishError
from cryptolake.gold import GOLD_MODELS
from cryptolake.progress import Progress
from cryptolake.publish import STAGING, PublishResult, publish
from cryptolake.staging import (
    LOADING_COMMENT,
    PartitionTemplate,
    partition_bounds,
    partition_name,
)

from .conftest import LakeTemplates
from .lakes import T0, land, one_snapshot, two_days
from .published import Boom, fetch, published_with_a_new_snapshot, rebuild, state, target

DAY0 = f"{STAGING}_p20260215"  # T0's day
DAY1 = f"{STAGING}_p20260216"


def landed(lake: Path, *after_t0: timedelta) -> None:
    """Land a snapshot at T0 plus each offset (T0 alone by default), then build the lake."""
    for offset in after_t0 or (timedelta(0),):
        land(lake, at=T0 + offset)
    rebuild(lake)


def every_day(count: int) -> list[timedelta]:
    return [timedelta(days=d) for d in range(count)]


def three_days(lake: Path) -> None:
    """A snapshot at T0 and on each of the next two days, then the lake built."""
    landed(lake, *every_day(3))


def partitions(dsn: str, schema: str) -> dict[str, tuple[str, int]]:
    """Attached partitions: name -> (bounds, rows)."""
    rows = fetch(
        dsn,
        f"""
        select c.relname, pg_get_expr(c.relpartbound, c.oid)
        from pg_inherits as i
        join pg_class as c on c.oid = i.inhrelid
        where i.inhparent = '{schema}.{STAGING}'::regclass
        """,
    )
    counts = dict(
        fetch(
            dsn,
            f"select tableoid::regclass::text, count(*) from {schema}.{STAGING} group by 1",
        )
    )
    return {name: (bounds, counts.get(f"{schema}.{name}", 0)) for name, bounds in rows}


def unattached(dsn: str, schema: str) -> list[str]:
    return [
        r[0]
        for r in fetch(
            dsn,
            "select c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace "
            f"where n.nspname = '{schema}' and c.relkind = 'r' and not c.relispartition "
            f"and c.relname like '{STAGING}_p%'",
        )
    ]


def test_partition_names_and_bounds_are_the_utc_day() -> None:
    assert partition_name(date(2026, 2, 28)) == f"{STAGING}_p20260228"
    assert partition_bounds(date(2026, 2, 28)) == (
        "2026-02-28 00:00:00+00",
        "2026-03-01 00:00:00+00",
    )
    template = PartitionTemplate("coin_id text not null", (("_key", True, "btree (coin_id)"),))
    name = f"{STAGING}_p20260228"
    assert template.create_indexes("s", date(2026, 2, 28)) == [
        f"create unique index {name}_key on s.{name} using btree (coin_id)"
    ]


@pytest.mark.postgres
def test_each_day_is_a_partition_with_the_parents_indexes(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(three_days, lake)
    result = publish(target(lake, pg_dsn, pg_schema))
    staging = result.tables[0]
    assert (staging.table, staging.rows_written, staging.rows_now) == (STAGING, 300, 300)
    assert partitions(pg_dsn, pg_schema) == {
        f"{STAGING}_p2026021{d}": (
            f"FOR VALUES FROM ('2026-02-1{d} 00:00:00+00') TO ('2026-02-1{d + 1} 00:00:00+00')",
            100,
        )
        for d in (5, 6, 7)
    }
    # Every partition's own indexes are attached to the parent's (none left dangling).
    attached = fetch(
        pg_dsn,
        f"""
        select parent.relname, count(*)
        from pg_inherits as i
        join pg_class as parent on parent.oid = i.inhparent
        join pg_namespace as n on n.oid = parent.relnamespace
        where n.nspname = '{pg_schema}' and parent.relkind = 'I'
        group by 1 order by 1
        """,
    )
    assert attached == [(f"{STAGING}_coin_snapshot_key", 3)]
    assert unattached(pg_dsn, pg_schema) == []


@pytest.mark.postgres
def test_new_days_are_loaded_and_known_days_appended_with_fresh_statistics(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(one_snapshot, lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    landed(lake, timedelta(hours=6), timedelta(days=1))  # the same day, a new day
    result = publish(settings)
    assert result.snapshots_added == 2
    assert (result.tables[0].rows_written, result.tables[0].rows_now) == (200, 300)
    assert {name: rows for name, (_, rows) in partitions(pg_dsn, pg_schema).items()} == {
        DAY0: 200,
        DAY1: 100,
    }
    # The day that gained a snapshot was analyzed again (reltuples is what ANALYZE counted).
    reltuples = dict(
        fetch(
            pg_dsn,
            "select relname, reltuples::int from pg_class "
            f"where relname in ('{DAY0}', '{DAY1}') "
            f"and relnamespace = '{pg_schema}'::regnamespace",
        )
    )
    assert reltuples == {DAY0: 200, DAY1: 100}
    analyzed = {
        r[0]
        for r in fetch(
            pg_dsn, f"select distinct tablename from pg_stats where schemaname = '{pg_schema}'"
        )
    }
    assert {DAY0, DAY1, *GOLD_MODELS} <= analyzed


@pytest.mark.postgres
def test_failed_publish_loading_a_new_day_leaves_the_previous_state(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    settings, before = published_with_a_new_snapshot(
        lake_templates, lake, pg_dsn, pg_schema, after=timedelta(days=1)
    )

    def fail_after_the_marts(event: Progress) -> None:
        if event.detail.startswith("category_leaderboard"):
            raise Boom("injected after the new day was loaded")

    with pytest.raises(Boom):
        publish(settings, progress=fail_after_the_marts)
    assert state(pg_dsn, pg_schema) == before
    assert sorted(partitions(pg_dsn, pg_schema)) == [DAY0]
    # The new day was loaded inside the publish transaction: nothing of it is left.
    assert unattached(pg_dsn, pg_schema) == []

    result = publish(settings)
    assert result.snapshots_added == 1
    assert {name: rows for name, (_, rows) in partitions(pg_dsn, pg_schema).items()} == {
        DAY0: 100,
        DAY1: 100,
    }


@pytest.mark.postgres
def test_a_repeatable_read_reader_sees_one_state_across_tables(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    """A reader whose snapshot was taken mid-publish keeps the old state in every table."""
    settings, before = published_with_a_new_snapshot(
        lake_templates, lake, pg_dsn, pg_schema, after=timedelta(days=1)
    )
    with psycopg.connect(pg_dsn) as reader:
        reader.execute("set transaction isolation level repeatable read")

        def take_snapshot(event: Progress) -> None:
            if event.detail.startswith("coin_daily"):
                reader.execute("select 1")  # the reader's snapshot: mid-publish

        publish(settings, progress=take_snapshot)
        counts = ", ".join(
            f"(select count(*) from {pg_schema}.{t})" for t in (STAGING, "publish_log")
        )
        seen = reader.execute(f"select {counts}").fetchone()
        reader.rollback()
    assert seen == (before[0], before[-2])
    assert state(pg_dsn, pg_schema)[0] == 200


def marked(dsn: str, schema: str) -> list[str]:
    """Tables marked as loaded by a first publish but not attached."""
    return sorted(
        r[0]
        for r in fetch(
            dsn,
            f"select tablename from pg_tables where schemaname = '{schema}' "
            f"and obj_description(format('%I.%I', schemaname, tablename)::regclass) "
            f"= '{LOADING_COMMENT}'",
        )
    )


THREE_DAYS = [f"{STAGING}_p2026021{d}" for d in (5, 6, 7)]


@pytest.mark.postgres
def test_failed_first_publish_leaves_only_marked_day_tables_and_the_next_drops_them(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(three_days, lake)
    settings = target(lake, pg_dsn, pg_schema)

    def fail_after_the_marts(event: Progress) -> None:
        if event.detail.startswith("category_leaderboard"):
            raise Boom("injected while days may still be loading")

    with pytest.raises(Boom):
        publish(settings, progress=fail_after_the_marts)
    # No loader outlives the publish; no consumer-facing table exists, only the marked days.
    assert not [t for t in threading.enumerate() if t.name.startswith("publish-load")]
    tables = fetch(pg_dsn, f"select tablename from pg_tables where schemaname = '{pg_schema}'")
    assert sorted(r[0] for r in tables) == THREE_DAYS
    assert marked(pg_dsn, pg_schema) == THREE_DAYS

    result = publish(settings)
    assert result.tables[0].rows_now == 300
    assert sorted(partitions(pg_dsn, pg_schema)) == THREE_DAYS
    assert unattached(pg_dsn, pg_schema) == []


@pytest.mark.postgres
def test_a_worker_failing_mid_load_fails_the_first_publish_with_its_own_error(
    lake: Path,
    lake_templates: LakeTemplates,
    pg_dsn: str,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake_templates.copy(three_days, lake)
    settings = target(lake, pg_dsn, pg_schema)
    real_load_day = staging.load_day

    def failing_load_day(con: duckdb.DuckDBPyConnection, **kwargs: Any) -> int:
        rows = real_load_day(con, **kwargs)  # the rows are in, not committed
        if kwargs["load"].day == date(2026, 2, 16):
            raise duckdb.IOException("injected: the disk went away")
        return rows

    monkeypatch.setattr(staging_loads, "load_day", failing_load_day)  # what workers call
    with pytest.raises(PublishError, match="injected: the disk went away"):
        publish(settings)
    assert not [t for t in threading.enumerate() if t.name.startswith("publish-load")]
    assert marked(pg_dsn, pg_schema) == THREE_DAYS
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.{DAY1}") == [(0,)]  # rolled back

    monkeypatch.setattr(staging_loads, "load_day", real_load_day)
    assert publish(settings).tables[0].rows_now == 300
    assert marked(pg_dsn, pg_schema) == []


@pytest.mark.postgres
def test_staging_dropped_by_hand_is_published_again_whole(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(three_days, lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"drop table {pg_schema}.{STAGING}")
    result = publish(settings)  # nothing new in the lake, but staging is gone
    assert not result.up_to_date
    assert (result.tables[0].rows_written, result.tables[0].rows_now) == (300, 300)
    assert sorted(partitions(pg_dsn, pg_schema)) == THREE_DAYS


@pytest.mark.postgres
def test_a_new_days_statistics_target_stays_with_that_day(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    """Days are sampled with a small target; the marts, analyzed after, with the default."""
    lake_templates.copy(one_snapshot, lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    landed(lake, timedelta(days=1))  # loaded inside the publish transaction
    publish(settings)
    bounds = dict(
        fetch(
            pg_dsn,
            "select tablename, array_length(histogram_bounds::text::text[], 1) from pg_stats "
            f"where schemaname = '{pg_schema}' and attname = 'coin_id' "
            f"and tablename in ('crypto_analytics_mart', '{DAY1}')",
        )
    )
    # 50 distinct coins: the default target keeps them all; the day's target 10 keeps 11.
    assert bounds == {"crypto_analytics_mart": 50, DAY1: 11}


@pytest.mark.postgres
def test_a_day_a_failed_publish_left_unattached_is_dropped_and_loaded_again(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(one_snapshot, lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    # What a first publish killed after a worker committed its day leaves behind: a marked
    # table of the partition's name, never attached (here with a row staging must not get),
    # next to a consumer's table that merely has a similar name.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for table in (DAY1, f"{STAGING}_per_coin"):
            conn.execute(
                f"create table {pg_schema}.{table} (like {pg_schema}.{STAGING} including defaults)"
            )
            conn.execute(
                f"insert into {pg_schema}.{table} (coin_id, vs_currency, snapshot_at, run_id, "
                "snapshot_date) values ('left-over', 'usd', '2026-02-16 10:00+00', 'x', "
                "'2026-02-16')"
            )
            conn.execute(f"comment on table {pg_schema}.{table} is '{LOADING_COMMENT}'")
    landed(lake, timedelta(days=1))
    result = publish(settings)
    assert result.tables[0].rows_written == 100
    assert partitions(pg_dsn, pg_schema)[DAY1][1] == 100
    assert fetch(
        pg_dsn, f"select count(*) from {pg_schema}.{STAGING} where coin_id = 'left-over'"
    ) == [(0,)]
    assert unattached(pg_dsn, pg_schema) == [f"{STAGING}_per_coin"]
    assert fetch(pg_dsn, f"select obj_description('{pg_schema}.{DAY1}'::regclass, 'pg_class')") == [
        (None,)
    ]


@pytest.mark.postgres
def test_concurrent_publishes_to_one_schema_take_turns(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    """The second waits for the first and then sees its commit: nothing is sent twice."""
    lake_templates.copy(two_days, lake)
    settings = target(lake, pg_dsn, pg_schema)
    results: list[PublishResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(publish(settings))
        except BaseException as exc:  # reported below, with the other thread's outcome
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(r.up_to_date for r in results) == [False, True]
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.{STAGING}") == [(200,)]
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.publish_log") == [(1,)]


@pytest.mark.postgres
def test_staging_from_before_day_partitions_is_a_clear_error(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(one_snapshot, lake)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"create schema if not exists {pg_schema}")
        conn.execute(f"create table {pg_schema}.{STAGING} (coin_id text)")
    with pytest.raises(PublishError, match=rf"drop schema {pg_schema} cascade"):
        publish(target(lake, pg_dsn, pg_schema))


@pytest.mark.postgres
def test_a_mart_a_publish_rewrote_a_tenth_of_is_analyzed_a_smaller_change_is_not(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    """coin_daily of 21 days (5 coins a day): a new day rewrites 2 of 22 days (9%), left to
    autovacuum's analyze; a forced publish rewrites it whole and analyzes it."""
    for day in range(21):
        land(lake, at=T0 + timedelta(days=day), top=5)
    rebuild(lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)

    def estimated() -> dict[str, int]:
        rows = fetch(
            pg_dsn,
            "select relname, reltuples::int from pg_class where relname in "
            "('coin_daily', 'crypto_analytics_mart') "
            f"and relnamespace = '{pg_schema}'::regnamespace",
        )
        return {str(name): int(n) for name, n in rows}

    assert estimated() == {"coin_daily": 105, "crypto_analytics_mart": 5}
    land(lake, at=T0 + timedelta(days=21), top=5)
    rebuild(lake)
    result = publish(settings)
    written = {t.table: (t.rows_written, t.rows_now) for t in result.tables}
    assert written["coin_daily"] == (10, 110)  # days 20 and 21: under a tenth
    assert estimated() == {"coin_daily": 105, "crypto_analytics_mart": 5}  # not analyzed
    publish(settings, force=True)
    assert estimated() == {"coin_daily": 110, "crypto_analytics_mart": 5}
