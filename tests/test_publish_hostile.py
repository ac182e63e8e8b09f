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

from .conftest import MARKETS, MARKETS_250, fixture_bytes
from .lakes import T0, land, settings_for
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


def test_an_older_schema_gains_the_new_columns(lake: Path, pg_dsn: str, pg_schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"create schema {pg_schema}")
        conn.execute(OLD_COIN_DAILY.format(schema=pg_schema))
        conn.execute(f"create view {pg_schema}.my_report as select * from {pg_schema}.coin_daily")
    land(lake)
    rebuild(lake)
    publish(target(lake, pg_dsn, pg_schema))
    columns = dict(
        fetch(
            pg_dsn,
            "select column_name, is_nullable from information_schema.columns "
            f"where table_schema = '{pg_schema}' and table_name = 'coin_daily'",
        )
    )
    # New columns added, the one no longer written kept (its data stays) but nullable.
    assert {"is_complete_day", "daily_return_ratio", "volatility_7d_ratio", "close_at"} <= set(
        columns
    )
    assert columns["daily_return"] == "YES"
    assert fetch(
        pg_dsn, f"select count(*), count(is_complete_day) from {pg_schema}.coin_daily"
    ) == [(100, 100)]
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.my_report") == [(100,)]


def test_publish_ships_only_audited_gold(lake: Path, pg_dsn: str, pg_schema: str) -> None:
    land(lake, at=T0)
    rebuild(lake)
    # A snapshot whose gold fails its audit: 2026's top 250 beside 2023's /global.
    land(lake, MARKETS_250, at=T0 + timedelta(hours=6))
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
