"""Publish with hostile inputs: odd encodings, NUL bytes, older schemas, failed audits, currencies.

Real Postgres (CRYPTOLAKE_TEST_PG_DSN); a database in LATIN1 is created for the encoding tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cryptolake.checks import ChecksFailed
from cryptolake.errors import PublishError
from cryptolake.gold import build_gold
from cryptolake.publish import STAGING, publish
from cryptolake.silver import build_silver

from .conftest import MARKETS, LakeTemplates, fixture_bytes
from .lakes import T0, lake_db, land, one_snapshot, settings_for, two_days
from .published import fetch, rebuild, target
from .test_currencies import converted

pytestmark = pytest.mark.postgres

RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS))


def renamed_coin(name: str) -> bytes:
    return json.dumps([dict(RECORDS[0], name=name), *RECORDS[1:]]).encode()


@pytest.fixture
def latin1_dsn(pg_dsn: str) -> Iterator[str]:
    """A throwaway database whose server encoding is LATIN1."""
    name = f"t_latin1_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"create database {name} encoding 'LATIN1' lc_collate 'C' lc_ctype 'C' "
            "template template0"
        )
    yield make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def test_a_latin1_database_gets_latin_names_right(
    lake: Path, latin1_dsn: str, pg_schema: str
) -> None:
    land(lake, renamed_coin("Bitcoin Zürich"))
    rebuild(lake)
    publish(target(lake, latin1_dsn, pg_schema))
    with psycopg.connect(latin1_dsn) as conn:
        conn.execute("set client_encoding = 'UTF8'")
        (name, length) = conn.execute(
            f"select name, length(name) from {pg_schema}.{STAGING} where coin_id = 'bitcoin'"
        ).fetchone() or (None, None)
    assert (name, length) == ("Bitcoin Zürich", 14)  # not mojibake ("ZÃ¼rich", 15)


def test_a_database_that_cannot_hold_the_names_is_refused_before_any_write(
    lake: Path, latin1_dsn: str, pg_schema: str
) -> None:
    land(lake, renamed_coin("比特币"))
    rebuild(lake)
    with pytest.raises(PublishError) as raised:
        publish(target(lake, latin1_dsn, pg_schema))
    message = str(raised.value)
    database = str(conninfo_to_dict(latin1_dsn)["dbname"])
    assert message.startswith(f'Postgres database "{database}"')
    assert "stores text in LATIN1, which cannot hold '比特币'" in message
    assert "nothing was written" in message and "ENCODING 'UTF8'" in message
    assert fetch(latin1_dsn, f"select to_regnamespace('{pg_schema}')") == [(None,)]


def test_nul_bytes_never_reach_postgres(lake: Path, pg_dsn: str, pg_schema: str) -> None:
    land(lake, renamed_coin("Build\u0000Coin"))
    rebuild(lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    assert fetch(pg_dsn, f"select name from {pg_schema}.{STAGING} where coin_id = 'bitcoin'") == [
        ("BuildCoin",)
    ]
    land(lake, at=T0 + timedelta(hours=6))  # and later publishes still work
    rebuild(lake)
    assert not publish(settings).up_to_date


OLD_COIN_DAILY = """
create table {schema}.coin_daily (
    coin_id text not null, day date not null, symbol text, name text, vs_currency text,
    market_cap_rank integer, open_price double precision, high_price double precision,
    low_price double precision, close_price double precision, market_cap double precision,
    total_volume double precision, daily_return double precision not null,
    volatility_7d double precision, snapshot_count bigint, last_snapshot_at timestamptz
)
"""


@pytest.mark.parametrize("with_view", [False, True])
def test_an_older_schema_is_brought_up_to_date(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str, with_view: bool
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"create schema {pg_schema}")
        conn.execute(OLD_COIN_DAILY.format(schema=pg_schema))
        if with_view:
            conn.execute(
                f"create view {pg_schema}.my_report as "
                f"select coin_id, day, daily_return from {pg_schema}.coin_daily"
            )
    lake_templates.copy(one_snapshot, lake)
    result = publish(target(lake, pg_dsn, pg_schema))
    columns = dict(
        fetch(
            pg_dsn,
            "select column_name, is_nullable from information_schema.columns "
            f"where table_schema = '{pg_schema}' and table_name = 'coin_daily'",
        )
    )
    assert {"is_complete_day", "daily_return_ratio", "volatility_7d_ratio", "close_at"} <= set(
        columns
    )
    assert "volatility_7d" not in columns  # renamed, read by nobody: dropped
    if with_view:
        # A consumer's view reads the old column: it stays (empty) and the publish says so.
        assert columns["daily_return"] == "YES"
        assert (
            f"{pg_schema}.coin_daily.daily_return is no longer written (now "
            f"daily_return_ratio) and stays empty: {pg_schema}.my_report still read(s) it; "
            "update them, then drop the column."
        ) in result.notes
        assert fetch(pg_dsn, f"select count(*) from {pg_schema}.my_report") == [(100,)]
    else:
        assert "daily_return" not in columns
        assert (
            f"{pg_schema}.coin_daily.daily_return is no longer written (now daily_return_ratio): "
            "dropped."
        ) in result.notes
    assert fetch(
        pg_dsn, f"select count(*), count(is_complete_day) from {pg_schema}.coin_daily"
    ) == [(100, 100)]


def test_publish_ships_only_audited_gold(lake: Path, pg_dsn: str, pg_schema: str) -> None:
    land(lake, converted("eur"), at=T0, vs_currency="eur")
    rebuild(lake)
    # A eur snapshot without its /global fails its audit (no rate to USD for the segments).
    later = T0 + timedelta(hours=6)
    land(lake, converted("eur"), at=later, vs_currency="eur", datasets=("coins_markets",))
    build_silver(settings_for(lake))
    with pytest.raises(ChecksFailed):
        build_gold(settings_for(lake))
    publish(target(lake, pg_dsn, pg_schema))  # a standalone publish, as `cryptolake publish`
    assert fetch(pg_dsn, f"select snapshot_at, count(*) from {pg_schema}.{STAGING} group by 1") == [
        (T0, 100)
    ]
    assert fetch(pg_dsn, f"select distinct snapshot_at from {pg_schema}.crypto_analytics_mart") == [
        (T0,)
    ]


def test_quarantined_rows_are_never_published(lake: Path, pg_dsn: str, pg_schema: str) -> None:
    land(lake, json.dumps([dict(RECORDS[0], total_volume=-5.0), *RECORDS[1:]]).encode())
    rebuild(lake)
    publish(target(lake, pg_dsn, pg_schema))
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.{STAGING}") == [(99,)]
    assert fetch(
        pg_dsn, f"select count(*) from {pg_schema}.{STAGING} where coin_id = 'bitcoin'"
    ) == [(0,)]


def test_a_currency_switch_is_published_whole(lake: Path, pg_dsn: str, pg_schema: str) -> None:
    land(lake, MARKETS, at=T0, vs_currency="usd")
    land(lake, MARKETS, at=T0 + timedelta(days=1), vs_currency="usd")
    land(lake, converted("eur"), at=T0 + timedelta(days=1, hours=6), vs_currency="eur")
    build_silver(settings_for(lake))
    settings = target(lake, pg_dsn, pg_schema)
    build_gold(settings_for(lake).with_(vs_currency="usd"))
    publish(settings)
    assert fetch(pg_dsn, f"select distinct vs_currency from {pg_schema}.coin_daily") == [("usd",)]

    build_gold(settings_for(lake))  # the latest snapshot's currency: eur
    result = publish(settings)
    assert not result.up_to_date
    assert fetch(pg_dsn, f"select distinct vs_currency from {pg_schema}.coin_daily") == [("eur",)]
    assert fetch(
        pg_dsn, f"select distinct vs_currency from {pg_schema}.market_segment_analysis"
    ) == [("eur",)]
    assert publish(settings).up_to_date


def test_coin_daily_in_postgres_equals_gold_after_missed_runs(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(lake, pg_dsn, pg_schema)
    lake_templates.copy(two_days, lake)  # snapshots at T0 and a day later, built
    publish(settings)
    # Two days without a run: the last published day is complete now, which only the lake's
    # newest day could tell.
    land(lake, at=T0 + timedelta(days=4))
    rebuild(lake)
    publish(settings)
    sql = (
        "select coin_id, day, is_complete_day, close_price, daily_return_ratio from {t} "
        "order by coin_id, day"
    )
    gold_rows = duckdb_rows(lake, sql.format(t="gold.coin_daily"))
    assert fetch(pg_dsn, sql.format(t=f"{pg_schema}.coin_daily")) == gold_rows
    assert {(str(r[1]), r[2]) for r in gold_rows} == {
        ("2026-02-15", True),
        ("2026-02-16", True),
        ("2026-02-19", False),
    }


def duckdb_rows(lake: Path, sql: str) -> list[tuple[Any, ...]]:
    con = lake_db(lake)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
