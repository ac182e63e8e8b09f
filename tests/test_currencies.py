"""Gold in any quote currency: USD segment bounds applied at each snapshot's own rate.

The recorded 2023 top 100 and its /global were fetched together; /global carries that
moment's totals in every currency. A eur, btc or jpy page is the usd page with its money
fields converted at those totals' ratio: the figures CoinGecko's own conversion would give.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryptolake.checks import run_checks
from cryptolake.errors import LakeError
from cryptolake.gold import build_gold
from cryptolake.silver import build_silver
from cryptolake.status import lake_status

from .conftest import GLOBAL, MARKETS, LakeTemplates, fixture_bytes
from .lakes import T0, land, one_snapshot, settings_for
from .test_gold import gold

RECORDS = json.loads(fixture_bytes(MARKETS))
TOTALS = json.loads(fixture_bytes(GLOBAL))["data"]["total_market_cap"]
MONEY = ("current_price", "market_cap", "total_volume", "high_24h", "low_24h", "ath", "atl")


def converted(currency: str) -> bytes:
    rate = TOTALS[currency] / TOTALS["usd"]
    out = []
    for record in RECORDS:
        record = dict(record)
        for name in MONEY:
            if record.get(name) is not None:
                record[name] = record[name] * rate
        out.append(record)
    return json.dumps(out).encode()


def lake_in(lake: Path, currency: str) -> Path:
    land(lake, converted(currency) if currency != "usd" else MARKETS, vs_currency=currency)
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))
    return lake


@pytest.fixture(scope="module")
def usd_segments(
    lake_templates: LakeTemplates, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, int]:
    # What `lake_in(lake, "usd")` builds (the recorded 2023 top 100 in usd at T0), copied.
    lake = lake_templates.copy(one_snapshot, tmp_path_factory.mktemp("usd") / "lake")
    return {
        r["market_cap_category"]: r["coin_count"] for r in gold(lake, "market_segment_analysis")
    }


@pytest.mark.parametrize("currency", ["eur", "btc", "jpy"])
def test_segments_are_the_same_in_every_currency(
    lake: Path, currency: str, usd_segments: dict[str, int]
) -> None:
    lake_in(lake, currency)
    segments = gold(lake, "market_segment_analysis")
    assert {r["market_cap_category"]: r["coin_count"] for r in segments} == usd_segments
    assert usd_segments == {"large": 8, "mid": 32, "small": 60, "micro": 0, "unknown": 0}
    assert {r["vs_currency"] for r in segments} == {currency}
    mart = {r["coin_id"]: r for r in gold(lake, "crypto_analytics_mart")}
    by_id = {r["id"]: r for r in RECORDS}
    for coin_id, row in mart.items():
        assert row["vs_currency"] == currency
        assert row["market_cap_usd"] == pytest.approx(by_id[coin_id]["market_cap"])
    # Applied to the quote currency itself, the bounds would put bitcoin among micro caps in
    # btc (19 million BTC) and every coin among large caps in jpy.
    assert mart["bitcoin"]["market_cap_category"] == "large"
    assert mart["bitcoin"]["market_cap"] == pytest.approx(
        RECORDS[0]["market_cap"] * TOTALS[currency] / TOTALS["usd"]
    )


def test_gold_is_built_for_the_currency_the_lake_holds(lake: Path) -> None:
    land(lake, converted("eur"), vs_currency="eur")
    build_silver(settings_for(lake))
    result = build_gold(settings_for(lake))  # no currency asked for: the lake's
    assert result.vs_currency == "eur"
    assert len(gold(lake, "crypto_analytics_mart")) == 50

    with pytest.raises(LakeError) as raised:
        build_gold(settings_for(lake).with_(vs_currency="usd"))
    message = str(raised.value)
    assert message.startswith("The lake holds no usd snapshots (it holds eur: 1 snapshot(s)")
    assert "drop --vs-currency" in message and "--vs-currency usd" in message
    assert {r["vs_currency"] for r in gold(lake, "crypto_analytics_mart")} == {"eur"}  # kept


def test_a_lake_of_two_currencies_builds_the_latest_or_the_one_asked_for(lake: Path) -> None:
    land(lake, MARKETS, at=T0, vs_currency="usd")
    land(lake, converted("eur"), at=T0 + timedelta(hours=6), vs_currency="eur")
    build_silver(settings_for(lake))

    assert build_gold(settings_for(lake)).vs_currency == "eur"
    assert {r["snapshot_at"] for r in gold(lake, "crypto_analytics_mart")} == {
        "2026-02-15 21:47:00+00"
    }
    usd = build_gold(settings_for(lake).with_(vs_currency="usd"))
    assert usd.vs_currency == "usd"
    mart = gold(lake, "crypto_analytics_mart")
    assert {(r["vs_currency"], r["snapshot_at"]) for r in mart} == {
        ("usd", "2026-02-15 15:47:00+00")
    }
    assert (
        usd.lake_version.split("-")[0] != build_gold(settings_for(lake)).lake_version.split("-")[0]
    )


def test_freshness_is_that_of_the_currency_gold_is_built_for(lake: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    land(lake, MARKETS, at=now - timedelta(hours=72), vs_currency="usd")
    land(lake, converted("eur"), at=now - timedelta(hours=1), vs_currency="eur")
    build_silver(settings_for(lake))
    day = settings_for(lake).with_(freshness_hours=24.0)
    build_gold(day.with_(vs_currency="usd"))  # gold from a 72-hour-old snapshot
    status = lake_status(day)
    assert status.latest_snapshot_at == now - timedelta(hours=72)
    assert not status.is_fresh
    assert status.silver_ahead_at is None  # silver holds nothing newer in usd
    (fresh,) = [r for r in run_checks(day) if r.name == "latest_snapshot_fresh"]
    assert not fresh.passed
