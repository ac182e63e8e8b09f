"""Gold figures checked against values computed here from the recorded JSON."""

from __future__ import annotations

import json
import statistics
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cryptolake.gold import GOLD_MODELS, build_gold
from cryptolake.silver import build_silver

from .conftest import CATEGORIES, GLOBAL, MARKETS, LakeTemplates, fixture_bytes
from .lakes import T0, lake_db, land, rows_of, settings_for

OLDER = "markets_usd_IanaIagudina-cryptocurrency_2022-10-04.json"


def category(market_cap: float | None) -> str:
    if not market_cap:
        return "unknown"
    if market_cap >= 10e9:
        return "large"
    if market_cap >= 1e9:
        return "mid"
    if market_cap >= 100e6:
        return "small"
    return "micro"


def gold(lake: Path, table: str) -> list[dict[str, Any]]:
    con = lake_db(lake)
    try:
        con.execute("set TimeZone = 'UTC'")
        return rows_of(con, f"select * from gold.{table}")
    finally:
        con.close()


def build(lake: Path) -> None:
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


def older_then_2023(lake: Path) -> None:
    """An older snapshot (the 2022 top 100) six hours before the 2023 one: gold uses the latter."""
    # (The older one without /global: the 2023 /global is not its own.)
    land(lake, OLDER, at=T0 - timedelta(hours=6), datasets=("coins_markets", "coins_categories"))
    land(lake, MARKETS, at=T0)
    build(lake)


@pytest.fixture
def two_snapshots(lake: Path, lake_templates: LakeTemplates) -> Path:
    """`older_then_2023`, a copy of the session's (each test changes its own)."""
    return lake_templates.copy(older_then_2023, lake)


def test_analytics_mart_is_the_latest_top_50(two_snapshots: Path) -> None:
    records = json.loads(fixture_bytes(MARKETS))
    ranked = sorted(
        (r for r in records if r["market_cap_rank"] is not None),
        key=lambda r: r["market_cap_rank"],
    )[:50]
    rows = gold(two_snapshots, "crypto_analytics_mart")
    assert [r["coin_id"] for r in rows] == [r["id"] for r in ranked]
    for row, r in zip(rows, ranked, strict=True):
        assert row["snapshot_at"] == "2026-02-15 15:47:00+00"
        assert row["market_cap_category"] == category(r["market_cap"])
        assert row["current_price"] == r["current_price"]
        assert row["price_change_24h_pct"] == r["price_change_percentage_24h"]
        ratio = r["total_volume"] / r["market_cap"] if r["market_cap"] else None
        assert row["volume_to_market_cap_ratio"] == pytest.approx(ratio)
        if r["high_24h"] is not None and r["high_24h"] != r["low_24h"]:
            position = (r["current_price"] - r["low_24h"]) / (r["high_24h"] - r["low_24h"])
            assert row["price_position_24h"] == pytest.approx(min(1, max(0, position)))
        else:
            assert row["price_position_24h"] is None
        assert row["ath_distance_pct"] == pytest.approx((r["current_price"] / r["ath"] - 1) * 100)
        if r["max_supply"]:
            expected = r["circulating_supply"] / r["max_supply"]
            assert row["circulating_supply_ratio"] == pytest.approx(expected)
        else:
            assert row["circulating_supply_ratio"] is None
        assert row["market_cap_usd"] == r["market_cap"]  # a usd lake: the same figure
        assert row["volatility_7d_ratio"] is None  # two snapshots are not 7 days of history
    assert 0 <= min(r["price_position_24h"] for r in rows if r["price_position_24h"] is not None)


def test_segments_cover_every_coin_of_the_latest_snapshot(two_snapshots: Path) -> None:
    records = json.loads(fixture_bytes(MARKETS))
    rows = {r["market_cap_category"]: r for r in gold(two_snapshots, "market_segment_analysis")}
    assert list(rows) == ["large", "mid", "small", "micro", "unknown"]
    total = sum(r["market_cap"] or 0 for r in records)
    for name, row in rows.items():
        members = [r for r in records if category(r["market_cap"]) == name]
        assert row["coin_count"] == len(members)
        cap = sum(r["market_cap"] or 0 for r in members)
        assert row["total_market_cap"] == pytest.approx(cap)
        assert row["tracked_market_cap_share_pct"] == pytest.approx(100 * cap / total)
        assert row["vs_currency"] == "usd"
        assert row["total_volume"] == pytest.approx(sum(r["total_volume"] or 0 for r in members))
        changes = [
            (r["price_change_percentage_24h"], r["id"])
            for r in members
            if r["price_change_percentage_24h"] is not None
        ]
        if changes:
            values = [c for c, _ in changes]
            assert row["avg_price_change_24h_pct"] == pytest.approx(statistics.fmean(values))
            assert row["median_price_change_24h_pct"] == pytest.approx(statistics.median(values))
            assert (row["best_performer_change_24h_pct"], row["best_performer_coin_id"]) == max(
                changes
            )
            assert (row["worst_performer_change_24h_pct"], row["worst_performer_coin_id"]) == min(
                changes
            )
        else:
            assert row["median_price_change_24h_pct"] is None
    assert sum(r["tracked_market_cap_share_pct"] for r in rows.values()) == pytest.approx(100)


def test_market_daily_dominance_and_breadth(two_snapshots: Path) -> None:
    body = json.loads(fixture_bytes(GLOBAL))["data"]
    records = json.loads(fixture_bytes(MARKETS))
    older = json.loads(fixture_bytes(OLDER))
    (row,) = gold(two_snapshots, "market_daily")  # both snapshots fall on 2026-02-15
    assert str(row["day"]) == "2026-02-15"
    assert row["total_market_cap"] == body["total_market_cap"]["usd"]
    assert row["total_volume"] == body["total_volume"]["usd"]
    assert row["btc_dominance_pct"] == body["market_cap_percentage"]["btc"]
    assert row["eth_dominance_pct"] == body["market_cap_percentage"]["eth"]
    # Breadth comes from the day's last snapshot only, not the older one.
    changes = [r["price_change_percentage_24h"] for r in records]
    assert row["coins_tracked"] == len(records)
    assert row["is_complete_day"] is False  # the lake has no snapshot of the next day yet
    assert row["tracked_market_cap"] == pytest.approx(sum(r["market_cap"] for r in records))
    older_changes = [r["price_change_percentage_24h"] for r in older]
    assert sum(1 for c in older_changes if c > 0) != row["advancing_coins"]
    assert row["advancing_coins"] == sum(1 for c in changes if c is not None and c > 0)
    assert row["declining_coins"] == sum(1 for c in changes if c is not None and c < 0)


def test_category_leaderboard(two_snapshots: Path) -> None:
    categories = json.loads(fixture_bytes(CATEGORIES))
    ranked = sorted(
        categories, key=lambda c: (c["market_cap"] is None, -(c["market_cap"] or 0), c["id"])
    )
    rows = gold(two_snapshots, "category_leaderboard")
    assert [r["category_id"] for r in rows] == [c["id"] for c in ranked]
    assert [r["category_rank"] for r in rows] == list(range(1, len(ranked) + 1))
    for row, c in zip(rows, ranked, strict=True):
        assert row["market_cap_change_24h_pct"] == c["market_cap_change_24h"]
        assert row["volume_24h_usd"] == c["volume_24h"]


def test_gold_is_rebuilt_atomically_and_views_work_from_anywhere(
    two_snapshots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the lake's parent: the views must not depend on cwd
    con = lake_db(two_snapshots)
    counts = {
        t: con.execute(f"select count(*) from silver.{t}").fetchone()
        for t in ("market_snapshots", "global_snapshots", "category_snapshots")
    }
    con.close()
    assert counts == {
        "market_snapshots": (200,),
        "global_snapshots": (1,),
        "category_snapshots": (180,),
    }
    tables = {t: len(gold(two_snapshots, t)) for t in GOLD_MODELS}
    assert tables == {
        "market_cap_segments": 5,
        "coin_daily": len(
            {r["id"] for r in json.loads(fixture_bytes(OLDER))}
            | {r["id"] for r in json.loads(fixture_bytes(MARKETS))}
        ),
        "market_daily": 1,
        "crypto_analytics_mart": 50,
        "market_segment_analysis": 5,
        "category_leaderboard": 90,
    }


def test_a_reader_in_a_transaction_never_blocks_a_build(two_snapshots: Path) -> None:
    reader = lake_db(two_snapshots)  # e.g. someone's DuckDB shell, mid-transaction
    try:
        reader.execute("begin")
        before = reader.execute("select count(*) from gold.coin_daily").fetchone()
        land(two_snapshots, at=T0 + timedelta(days=1))
        build(two_snapshots)  # commits while the reader's transaction is open
        assert reader.execute("select count(*) from gold.coin_daily").fetchone() == before
        reader.execute("commit")
        after = reader.execute("select count(*) from gold.coin_daily").fetchone()
    finally:
        reader.close()
    assert before is not None and after == (before[0] + 100,)
