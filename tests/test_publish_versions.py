"""Which lake version Postgres has: publish_log.lake_version against DuckLake's snapshots.

The version published is the DuckLake snapshot id of the lake's last gold commit; the same id
is "up to date", any other is published. The latest publish is the one of the newest snapshot,
never of the latest clock reading, and the snapshots staging lacks come from DuckLake's change
feed since the published snapshot. Real Postgres (CRYPTOLAKE_TEST_PG_DSN), real lakes.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolake.catalog import latest_snapshot, open_lake
from cryptolake.gold import GOLD_MODELS, build_gold
from cryptolake.maintenance import maintain
from cryptolake.publish import STAGING, PublishResult, publish
from cryptolake.silver import build_silver

from .clis import invoke
from .conftest import GLOBAL, MARKETS, LakeTemplates, fixture_bytes
from .lakes import T0, land, one_snapshot, settings_for
from .published import fetch, rebuild, target
from .test_currencies import converted

pytestmark = pytest.mark.postgres

RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS))
TOTALS: dict[str, float] = json.loads(fixture_bytes(GLOBAL))["data"]["total_market_cap"]
FAR_AHEAD = datetime(2099, 1, 1, tzinfo=UTC)  # what a clock set ahead wrote
CURRENCY_MARTS = ("coin_daily", "crypto_analytics_mart", "market_segment_analysis")


def gold_snapshot(lake: Path) -> int:
    """The DuckLake snapshot id of the lake's last gold commit."""
    with open_lake(settings_for(lake), read_only=True) as con:
        gold = latest_snapshot(con, stage="gold")
    assert gold is not None
    return gold.snapshot_id


def written(result: PublishResult) -> dict[str, tuple[int, int]]:
    return {t.table: (t.rows_written, t.rows_now) for t in result.tables}


def published_versions(dsn: str, schema: str) -> list[str]:
    rows = fetch(dsn, f"select lake_version from {schema}.publish_log order by started_at")
    return [str(r[0]) for r in rows]


def staging_snapshots(dsn: str, schema: str) -> list[tuple[datetime, int]]:
    return [
        (r[0], int(r[1]))
        for r in fetch(
            dsn, f"select snapshot_at, count(*) from {schema}.{STAGING} group by 1 order by 1"
        )
    ]


def lake_rows(lake: Path, snapshot_at: datetime) -> list[tuple[Any, ...]]:
    """One snapshot's silver rows: the figures staging must hold for it."""
    with open_lake(settings_for(lake), read_only=True) as con:
        return con.execute(
            "select coin_id, vs_currency, current_price, market_cap, total_volume, "
            "market_cap_rank from silver.market_snapshots where snapshot_at = ? order by coin_id",
            [snapshot_at],
        ).fetchall()


def staged_rows(dsn: str, schema: str, snapshot_at: datetime) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select coin_id, vs_currency, current_price, market_cap, total_volume, "
            f"market_cap_rank from {schema}.{STAGING} where snapshot_at = %s order by coin_id",
            [snapshot_at],
        ).fetchall()


def test_transform_in_another_currency_is_published_not_up_to_date(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    # eur first, then usd: the latest snapshot is usd, so gold is usd until asked for eur.
    land(lake, converted("eur"), at=T0, vs_currency="eur")
    land(lake, MARKETS, at=T0 + timedelta(hours=6), vs_currency="usd")
    rebuild(lake)
    settings = target(lake, pg_dsn, pg_schema)
    first = publish(settings)
    assert not first.up_to_date and first.snapshots_added == 2
    for mart in CURRENCY_MARTS:
        assert fetch(pg_dsn, f"select distinct vs_currency from {pg_schema}.{mart}") == [("usd",)]
    usd_version = gold_snapshot(lake)

    transformed = invoke("transform", "--lake", str(lake), "--vs-currency", "eur")
    assert transformed.exit_code == 0, transformed.output
    eur_version = gold_snapshot(lake)
    assert eur_version > usd_version

    switched = publish(settings)

    assert not switched.up_to_date
    assert switched.snapshots_added == 0  # staging had both snapshots already
    assert written(switched)[STAGING] == (0, 200)
    # A switch of currency rewrites every mart whole (coin_daily too: not from a day on).
    assert written(switched)["coin_daily"] == (100, 100)
    assert written(switched)["crypto_analytics_mart"] == (50, 50)
    for mart in CURRENCY_MARTS:
        assert fetch(pg_dsn, f"select distinct vs_currency from {pg_schema}.{mart}") == [("eur",)]
    bitcoin = fetch(
        pg_dsn,
        f"select snapshot_at, market_cap, market_cap_usd from {pg_schema}.crypto_analytics_mart "
        "where coin_id = 'bitcoin'",
    )
    rate = TOTALS["eur"] / TOTALS["usd"]
    assert bitcoin[0][0] == T0
    assert bitcoin[0][1] == pytest.approx(RECORDS[0]["market_cap"] * rate)
    assert bitcoin[0][2] == pytest.approx(RECORDS[0]["market_cap"])
    assert published_versions(pg_dsn, pg_schema) == [str(usd_version), str(eur_version)]
    assert publish(settings).up_to_date


def test_lake_version_is_the_gold_snapshot_id(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(one_snapshot, lake)  # the 2023 top 100 at T0, silver and gold built
    settings = target(lake, pg_dsn, pg_schema)
    # Snapshots 0 (the empty lake), 1 (its schemas), 2 (silver), 3 (gold).
    assert gold_snapshot(lake) == 3
    first = publish(settings)
    assert first.publish_id is not None and not first.up_to_date
    assert published_versions(pg_dsn, pg_schema) == ["3"]

    again = publish(settings)
    assert again.up_to_date and again.publish_id is None and again.tables == []
    assert published_versions(pg_dsn, pg_schema) == ["3"]

    # Silver committed (4) without gold: what is published is still gold 3.
    land(lake, at=T0 + timedelta(hours=6))
    build_silver(settings_for(lake))
    assert publish(settings).up_to_date
    # Maintenance commits are not gold either.
    maintain(settings_for(lake))
    assert publish(settings).up_to_date
    assert published_versions(pg_dsn, pg_schema) == ["3"]

    build_gold(settings_for(lake))
    version = gold_snapshot(lake)
    assert version == 9  # after the maintenance's four commits (5-8)
    newer = publish(settings)
    assert not newer.up_to_date and newer.snapshots_added == 1
    assert published_versions(pg_dsn, pg_schema) == ["3", "9"]
    assert publish(settings).up_to_date


def test_a_clock_set_ahead_does_not_decide_the_latest_publish(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    for days in (2, 1, 0):
        land(lake, at=T0 - timedelta(days=days))
    rebuild(lake)
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    first_version = gold_snapshot(lake)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # That publish ran on a clock set 73 years ahead; a cryptolake before DuckLake (its
        # versions are not snapshot ids) published on one too.
        conn.execute(
            f"update {pg_schema}.publish_log set started_at = %s, finished_at = %s",
            [FAR_AHEAD, FAR_AHEAD],
        )
        conn.execute(
            f"insert into {pg_schema}.publish_log (publish_id, started_at, finished_at, "
            "lake_version, cryptolake_version, rows_written, snapshots) "
            "values ('legacy', %s, %s, '20260215T154700Z-0a1b2c', '0.0.9', '{}', '{}')",
            [FAR_AHEAD + timedelta(days=1), FAR_AHEAD + timedelta(days=1)],
        )
    assert publish(settings).up_to_date  # the publish of snapshot `first_version` is latest

    land(lake, at=T0 + timedelta(hours=6))
    rebuild(lake)
    second = publish(settings)

    assert not second.up_to_date and second.snapshots_added == 1
    # Only the new snapshot is appended, and coin_daily rewritten from the day before its day.
    assert written(second)[STAGING] == (100, 400)
    assert written(second)["coin_daily"] == (200, 300)
    versions = fetch(
        pg_dsn,
        f"select lake_version from {pg_schema}.publish_log where publish_id <> 'legacy' "
        "order by finished_at",
    )
    assert versions == [(str(gold_snapshot(lake)),), (str(first_version),)]
    # The publish of the newest snapshot is the latest, though its finish looks older.
    again = publish(settings)
    assert again.up_to_date
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.publish_log") == [(3,)]


@pytest.mark.parametrize("maintained", [False, True], ids=["as committed", "after maintain"])
def test_a_new_snapshot_is_appended_from_the_change_feed(
    lake: Path,
    lake_templates: LakeTemplates,
    pg_dsn: str,
    pg_schema: str,
    maintained: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lake_templates.copy(one_snapshot, lake)  # the 2023 top 100 at T0, silver and gold built
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    published_at = staged_rows(pg_dsn, pg_schema, T0)

    new = T0 + timedelta(days=1)
    land(lake, at=new)
    rebuild(lake)
    if maintained:
        maintain(settings_for(lake))  # merges silver's files: the feed must still say which
    caplog.set_level(logging.INFO, logger="cryptolake")
    result = publish(settings)

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cryptolake")]
    assert any(m.startswith("publish to ") for m in messages)  # the log is captured
    assert not [m for m in messages if "change feed unavailable" in m]
    assert result.snapshots_added == 1
    assert written(result)[STAGING] == (100, 200)
    assert staging_snapshots(pg_dsn, pg_schema) == [(T0, 100), (new, 100)]
    assert staged_rows(pg_dsn, pg_schema, new) == lake_rows(lake, new)
    assert staged_rows(pg_dsn, pg_schema, T0) == published_at  # untouched
    log = fetch(pg_dsn, f"select snapshots from {pg_schema}.publish_log order by started_at")
    assert log == [([T0],), ([new],)]
    for mart in GOLD_MODELS:
        assert (
            written(result)[mart][1]
            == (fetch(pg_dsn, f"select count(*) from {pg_schema}.{mart}")[0][0])
        )


@pytest.mark.parametrize("gold_commits", [1, 2], ids=["the same id", "a later id"])
def test_a_lake_rebuilt_into_a_new_catalog_is_published(
    tmp_path: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str, gold_commits: int
) -> None:
    old = tmp_path / "old" / "lake"
    lake_templates.copy(one_snapshot, old)  # the 2023 top 100 at T0, silver and gold built
    publish(target(old, pg_dsn, pg_schema))
    assert published_versions(pg_dsn, pg_schema) == ["3"]

    # The catalog is lost; the lake is rebuilt from bronze, which has a newer run by now.
    new = tmp_path / "new" / "lake"
    land(new, at=T0)
    land(new, at=T0 + timedelta(hours=6))
    build_silver(settings_for(new))
    for _ in range(gold_commits):
        build_gold(settings_for(new))  # snapshot 3, then 4
    result = publish(target(new, pg_dsn, pg_schema))

    assert not result.up_to_date
    assert staging_snapshots(pg_dsn, pg_schema) == [(T0, 100), (T0 + timedelta(hours=6), 100)]
