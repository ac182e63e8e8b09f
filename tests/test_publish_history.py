"""Publishing silver's daily history: staging_coin_history_daily in the real Postgres.

Lakes are built as `run --sample` and `backfill --sample` build them: bitcoin's recorded
30 days of history (2021-04-16 to 05-15), the other coins unknown to the sample (404).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolake import backfill
from cryptolake.ingest import ingest
from cryptolake.progress import Progress
from cryptolake.publish import HISTORY, publish
from cryptolake.replay import sample_data

from .conftest import LakeTemplates, fixture_bytes
from .lakes import lake_db, one_snapshot
from .published import (
    Boom,
    backfill_sample,
    fetch,
    rebuild,
    sample_lake_with_history,
    state,
    target,
)

pytestmark = pytest.mark.postgres

CHART = "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
COLUMNS = (
    "coin_id, vs_currency, day, price, market_cap, total_volume, point_at, fetched_at, "
    "run_id, is_sample"
)
ORDER = "order by coin_id, vs_currency, day"


@pytest.fixture
def history_lake(lake: Path, lake_templates: LakeTemplates) -> Path:
    """A sample lake with bitcoin's 30 days of history, silver and gold built (a copy of the
    session's: each test changes its own)."""
    return lake_templates.copy(sample_lake_with_history, lake)


def silver_history(lake: Path) -> list[tuple[Any, ...]]:
    con = lake_db(lake)
    try:
        # Through Arrow: DuckDB's own fetch of tz-aware timestamps needs pytz.
        table = con.sql(f"select {COLUMNS} from silver.coin_history_daily {ORDER}")
        return [tuple(r.values()) for r in table.to_arrow_table().to_pylist()]
    finally:
        con.close()


def staged_history(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    return fetch(dsn, f"select {COLUMNS} from {schema}.{HISTORY} {ORDER}")


def history_xmins(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    return fetch(dsn, f"select day, xmin::text from {schema}.{HISTORY} order by day")


def months(dsn: str, schema: str) -> list[str]:
    return [
        str(r[0])
        for r in fetch(
            dsn,
            "select c.relname from pg_inherits as i join pg_class as c on c.oid = i.inhrelid "
            f"where i.inhparent = '{schema}.{HISTORY}'::regclass order by 1",
        )
    ]


def written(result: Any, table: str) -> tuple[int, int]:
    entry = next(t for t in result.tables if t.table == table)
    return entry.rows_written, entry.rows_now


def next_day_body() -> bytes:
    """The recorded body as CoinGecko would serve it a day later: one more daily point
    (2021-05-16), and a revised 2021-05-15 price (a later fetch of a day wins in silver)."""
    body = json.loads(fixture_bytes(CHART))
    midnight_15 = int(datetime(2021, 5, 15, tzinfo=UTC).timestamp() * 1000)
    for series in ("prices", "market_caps", "total_volumes"):
        points = body[series]
        for point in points:
            if abs(point[0] - midnight_15) <= 1_800_000 and series == "prices":
                point[1] = 50_000.5
        now = points.pop()  # the price at the request stays last
        points.append([midnight_15 + 86_400_000, 47_000.25 if series == "prices" else 9e11])
        points.append([now[0] + 86_400_000, now[1]])
    return json.dumps(body).encode()


def test_history_reaches_postgres_as_silver_has_it(
    history_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    result = publish(target(history_lake, pg_dsn, pg_schema))
    silver = silver_history(history_lake)
    assert len(silver) == 30 and {r[0] for r in silver} == {"bitcoin"}
    assert written(result, HISTORY) == (30, 30)
    staged = staged_history(pg_dsn, pg_schema)
    assert staged == silver  # every column, prices to the last bit
    assert [r[2] for r in staged] == [date(2021, 4, 16) + timedelta(days=k) for k in range(30)]
    # One partition per month of `day`, named after it.
    assert months(pg_dsn, pg_schema) == [f"{HISTORY}_p202104", f"{HISTORY}_p202105"]
    log = fetch(pg_dsn, f"select rows_written ->> '{HISTORY}' from {pg_schema}.publish_log")
    assert log == [("30",)]


def test_a_lake_without_history_publishes_an_empty_table(
    lake: Path, lake_templates: LakeTemplates, pg_dsn: str, pg_schema: str
) -> None:
    lake_templates.copy(one_snapshot, lake)
    result = publish(target(lake, pg_dsn, pg_schema))
    assert written(result, HISTORY) == (0, 0)
    assert staged_history(pg_dsn, pg_schema) == []
    assert months(pg_dsn, pg_schema) == []


def test_publishes_with_no_new_history_leave_it_untouched(
    history_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(history_lake, pg_dsn, pg_schema)
    publish(settings)
    xmins = history_xmins(pg_dsn, pg_schema)
    before = state(pg_dsn, pg_schema)

    again = publish(settings)
    assert again.up_to_date and again.tables == []
    assert state(pg_dsn, pg_schema) == before
    assert history_xmins(pg_dsn, pg_schema) == xmins

    # A new market snapshot is published; history, which it did not change, is not rewritten.
    ingest(settings, sample=True)
    rebuild(history_lake)
    result = publish(settings)
    assert result.snapshots_added == 1
    assert written(result, HISTORY) == (0, 30)
    assert history_xmins(pg_dsn, pg_schema) == xmins


def test_a_backfill_a_day_later_upserts_without_duplicates(
    history_lake: Path, pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = target(history_lake, pg_dsn, pg_schema)
    publish(settings)
    served = dataclasses.replace(
        sample_data(), coin_bodies={"coin_market_chart": {"bitcoin": next_day_body()}}
    )
    monkeypatch.setattr(backfill, "sample_data", lambda: served)
    backfill_sample(history_lake, now=lambda: datetime.now(UTC) + timedelta(days=1))

    result = publish(settings)
    silver = silver_history(history_lake)
    assert len(silver) == 31
    # The body's 31 days were replaced in silver (a newer fetch), so all 31 are upserted.
    assert written(result, HISTORY) == (31, 31)
    staged = staged_history(pg_dsn, pg_schema)
    assert staged == silver
    prices = {r[2]: r[3] for r in staged}
    assert prices[date(2021, 5, 15)] == 50_000.5 and prices[date(2021, 5, 16)] == 47_000.25
    (dupes,) = fetch(
        pg_dsn,
        f"select count(*) - count(distinct (coin_id, vs_currency, day)) from {pg_schema}.{HISTORY}",
    )
    assert dupes == (0,)
    # coin_daily in Postgres is gold's, whatever days the new history changed.
    sql = "select coin_id, day, close_price, is_complete_day from {t} order by coin_id, day"
    con = lake_db(history_lake)
    gold = con.execute(sql.format(t="gold.coin_daily")).fetchall()
    con.close()
    assert fetch(pg_dsn, sql.format(t=f"{pg_schema}.coin_daily")) == gold


def test_a_failed_publish_leaves_the_history_it_had(
    history_lake: Path, pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = target(history_lake, pg_dsn, pg_schema)
    publish(settings)
    before = staged_history(pg_dsn, pg_schema)
    served = dataclasses.replace(
        sample_data(), coin_bodies={"coin_market_chart": {"bitcoin": next_day_body()}}
    )
    monkeypatch.setattr(backfill, "sample_data", lambda: served)
    backfill_sample(history_lake, now=lambda: datetime.now(UTC) + timedelta(days=1))

    def fail_after_history(event: Progress) -> None:
        if event.detail.startswith("market_daily"):  # history is upserted by then
            raise Boom("injected after the history upsert")

    with pytest.raises(Boom):
        publish(settings, progress=fail_after_history)
    assert staged_history(pg_dsn, pg_schema) == before
    # No scratch table left, no partition for the new day's month beyond those it had.
    leftovers = fetch(
        pg_dsn,
        "select relname::text from pg_class where relnamespace = "
        f"'{pg_schema}'::regnamespace and relname::text like '%publishing%'",
    )
    assert leftovers == []
    assert publish(settings).tables  # and the next publish goes through
    assert len(staged_history(pg_dsn, pg_schema)) == 31


def test_a_coins_days_are_read_through_the_key(
    history_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    publish(target(history_lake, pg_dsn, pg_schema))
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("set enable_seqscan = off")
        plan = " ".join(
            str(r[0])
            for r in conn.execute(
                f"explain select day, price from {pg_schema}.{HISTORY} where coin_id = 'bitcoin' "
                "and day between date '2021-05-01' and date '2021-05-10' order by day"
            ).fetchall()
        )
    # Only May's partition, through its primary key.
    assert f"{HISTORY}_p202105_pkey" in plan and "p202104" not in plan
