"""Hostile values in real bodies: nulled, cleaned or quarantined in silver; gold audited first.

Each test lands the recorded 2023 top 100 with one value changed, the way real clients'
bug reports saw it, and asserts the value gold and silver end up with.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cryptolake.catalog import open_lake
from cryptolake.checks import ChecksFailed, quarantine_summary, run_checks
from cryptolake.cli import app
from cryptolake.gold import build_gold
from cryptolake.replay import ReplayServer
from cryptolake.silver import SILVER_FORMAT, build_silver, processed_runs
from cryptolake.status import lake_status

from .conftest import GLOBAL, MARKETS, fixture_bytes
from .lakes import T0, lake_db, land, rows_of, settings_for, silver_rows
from .test_currencies import converted
from .test_gold import gold

RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS))
SIX_H = timedelta(hours=6)


def lake_sql(lake: Path, sql: str) -> list[dict[str, Any]]:
    con = lake_db(lake)
    try:
        con.execute("set TimeZone = 'UTC'")
        return rows_of(con, sql)
    finally:
        con.close()


def changed(**by_coin: dict[str, Any]) -> bytes:
    """The recorded page with some coins' fields replaced; json writes nan as a bare NaN."""
    out = []
    for record in RECORDS:
        out.append(dict(record, **by_coin.get(record["id"], {})))
    return json.dumps(out).encode()


def test_non_finite_numbers_become_null_and_are_counted(lake: Path) -> None:
    body = changed(
        bitcoin={"market_cap": float("nan")},
        ethereum={"price_change_percentage_24h": float("inf")},
        tether={"total_volume": float("-inf")},
    )
    assert b"NaN" in body and b"-Infinity" in body  # what Python serialisers really send
    global_body = json.loads(fixture_bytes(GLOBAL))
    global_body["data"]["market_cap_percentage"]["doge"] = float("nan")
    land(lake, body, global_body=json.dumps(global_body).encode())

    silver = build_silver(settings_for(lake))
    assert silver.sanitized.non_finite == 4
    assert "4 non-finite number(s) nulled" in silver.describe_cleaning()
    rows = {r["coin_id"]: r for r in silver_rows(lake)}
    assert rows["bitcoin"]["market_cap"] is None
    assert rows["ethereum"]["price_change_percentage_24h"] is None
    assert rows["tether"]["total_volume"] is None
    (global_row,) = silver_rows(lake, "global_snapshots")
    assert global_row["market_cap_percentage"]["doge"] is None
    assert global_row["market_cap_percentage"]["btc"] == pytest.approx(37.94, abs=0.01)

    build_gold(settings_for(lake))
    # NaN no longer sorts above every number: bitcoin is not "large" by a NaN market cap,
    # ethereum is not counted as advancing, and the totals stay numbers.
    segments = {r["market_cap_category"]: r for r in gold(lake, "market_segment_analysis")}
    assert segments["unknown"]["coin_count"] == 1
    (day,) = gold(lake, "market_daily")
    changes = [r["price_change_percentage_24h"] for r in RECORDS if r["id"] != "ethereum"]
    assert day["advancing_coins"] == sum(1 for c in changes if c > 0)
    assert day["tracked_market_cap"] == pytest.approx(
        sum(r["market_cap"] for r in RECORDS if r["id"] != "bitcoin")
    )


def test_nul_characters_are_removed_from_text_and_counted(lake: Path) -> None:
    land(lake, changed(bitcoin={"name": "Bit\u0000coin", "symbol": "\u0000btc"}))
    silver = build_silver(settings_for(lake))
    assert silver.sanitized.nul_chars == 2
    rows = {r["coin_id"]: r for r in silver_rows(lake)}
    assert (rows["bitcoin"]["name"], rows["bitcoin"]["symbol"]) == ("Bitcoin", "btc")


def test_a_negative_value_is_quarantined_and_does_not_block_later_runs(lake: Path) -> None:
    land(lake, changed(solana={"total_volume": -1.0}), at=T0)
    silver = build_silver(settings_for(lake))
    assert silver.quarantined == {"market_snapshots_non_negative": 1}
    assert "1 row(s) quarantined (market_snapshots_non_negative: 1)" in silver.describe_cleaning()
    assert "solana" not in {r["coin_id"] for r in silver_rows(lake)}
    build_gold(settings_for(lake))  # the bad row never reached gold: every check passes
    assert "solana" not in {r["coin_id"] for r in gold(lake, "coin_daily")}
    assert quarantine_summary(settings_for(lake)) == [
        ("market_snapshots", "market_snapshots_non_negative", 1)
    ]
    assert lake_status(settings_for(lake)).quarantined_rows == 1
    (kept,) = lake_sql(lake, "select * from silver.quarantine")
    assert (kept["table_name"], kept["check_name"]) == (
        "market_snapshots",
        "market_snapshots_non_negative",
    )
    assert json.loads(kept["row_key"])["coin_id"] == "solana"
    assert json.loads(kept["row"])["total_volume"] == -1.0

    # The next snapshot is clean: it lands, and the old row does not hold it up.
    land(lake, at=T0 + timedelta(hours=6))
    again = build_silver(settings_for(lake))
    assert again.quarantined == {}
    build_gold(settings_for(lake))
    assert all(r.passed for r in run_checks(settings_for(lake)))
    assert {r["snapshot_at"] for r in gold(lake, "crypto_analytics_mart")} == {
        "2026-02-15 21:47:00+00"
    }
    # A full refresh sets the same row aside again, once.
    build_silver(settings_for(lake), full_refresh=True)
    build_gold(settings_for(lake))
    assert len(lake_sql(lake, "select * from silver.quarantine")) == 1


def test_a_snapshot_at_odds_with_its_global_is_set_aside_whole(lake: Path) -> None:
    land(lake, at=T0)  # consistent: the 2023 top 100 and its /global
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))
    before = gold(lake, "crypto_analytics_mart")

    # Ethereum's market cap a thousand times too large: the coins come to far more than the
    # whole market. Every figure built on that snapshot would be wrong.
    land(lake, changed(ethereum={"market_cap": RECORDS[1]["market_cap"] * 1000}), at=T0 + SIX_H)
    silver = build_silver(settings_for(lake))
    # Every table's rows of that snapshot: its coins, its /global, its categories.
    assert silver.quarantined == {"market_snapshots_within_global_total": 100 + 1 + 90}
    assert {t.table: t.quarantined for t in silver.tables} == {
        "market_snapshots": {"market_snapshots_within_global_total": 100},
        "global_snapshots": {"market_snapshots_within_global_total": 1},
        "category_snapshots": {"market_snapshots_within_global_total": 90},
        "coin_history_daily": {},
        "coin_ohlc_4h": {},
    }
    build_gold(settings_for(lake))  # passes: the snapshot is not in silver
    assert gold(lake, "crypto_analytics_mart") == before
    (day,) = gold(lake, "market_daily")  # the day's figures are the good snapshot's, all of them
    assert day["last_snapshot_at"] == "2026-02-15 15:47:00+00"
    # A good snapshot after it goes through; the bad one never reaches gold.
    land(lake, at=T0 + 2 * SIX_H)
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))
    snapshots = {r["snapshot_at"] for r in lake_sql(lake, "select * from meta.snapshots")}
    assert snapshots == {"2026-02-15 15:47:00+00", "2026-02-16 03:47:00+00"}


def test_a_snapshot_whose_global_is_wrong_is_set_aside_whole(lake: Path) -> None:
    land(lake, at=T0)
    body = json.loads(fixture_bytes(GLOBAL))
    body["data"]["total_market_cap"]["usd"] /= 10  # the /global is the wrong one this time
    land(lake, at=T0 + SIX_H, global_body=json.dumps(body).encode())
    silver = build_silver(settings_for(lake))
    assert silver.quarantined == {"market_snapshots_within_global_total": 191}
    build_gold(settings_for(lake))
    (day,) = gold(lake, "market_daily")
    assert (
        day["total_market_cap"]
        == json.loads(fixture_bytes(GLOBAL))["data"]["total_market_cap"]["usd"]
    )
    assert {r["snapshot_at"] for r in gold(lake, "category_leaderboard")} == {
        "2026-02-15 15:47:00+00"
    }


def test_silver_of_an_older_cryptolake_is_rebuilt_from_bronze(lake: Path) -> None:
    land(lake, changed(ethereum={"market_cap": RECORDS[1]["market_cap"] * 1000}), at=T0)
    build_silver(settings_for(lake))
    # As an older cryptolake left it: its rows in silver (it had no such check), recorded as
    # built by an older silver format.
    with open_lake(settings_for(lake)) as con:
        con.execute("delete from silver.quarantine")
        con.execute("update silver.processed_runs set silver_format = 3")
    land(lake, at=T0 + SIX_H)
    silver = build_silver(settings_for(lake))
    assert silver.full_refresh and len(silver.runs) == 2
    assert silver.notes == [
        "silver was built by an older cryptolake: rebuilt from bronze (a full refresh) so that "
        "every row is cleaned and checked as new rows are."
    ]
    assert silver.quarantined == {"market_snapshots_within_global_total": 191}
    with open_lake(settings_for(lake), read_only=True) as con:
        assert set(processed_runs(con).values()) == {SILVER_FORMAT}
    assert not build_silver(settings_for(lake)).changed  # and then incremental again


def test_gold_that_fails_a_check_is_never_promoted(lake: Path) -> None:
    eur = converted("eur")
    land(lake, eur, at=T0, vs_currency="eur")
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))
    before = gold(lake, "crypto_analytics_mart")

    # A eur snapshot without its /global: its market caps cannot be put in USD, so segments
    # cannot be drawn. The audit stops it; the lake keeps the previous gold.
    land(lake, eur, at=T0 + SIX_H, vs_currency="eur", datasets=("coins_markets",))
    build_silver(settings_for(lake))
    with pytest.raises(ChecksFailed) as raised:
        build_gold(settings_for(lake))
    (failure,) = raised.value.failures
    assert failure.name == "crypto_analytics_mart_market_cap_usd_known"
    assert failure.failing_rows == 50
    assert gold(lake, "crypto_analytics_mart") == before  # the previous gold, untouched
    assert not list(lake.glob(".cryptolake.duckdb.building-*"))
    # Freshness is that of the gold users see; status and check say silver is ahead of it.
    status = lake_status(settings_for(lake))
    assert status.latest_snapshot_at == T0
    assert status.silver_ahead_at == T0 + SIX_H
    checked = CliRunner().invoke(app, ["check", "--lake", str(lake)], env={"COLUMNS": "200"})
    assert "not built from silver's newest snapshot" in checked.output

    result = CliRunner().invoke(
        app,
        ["transform", "--lake", str(lake)],
        env={"COLUMNS": "200", "CRYPTOLAKE_FRESHNESS_HOURS": "1000000"},
    )
    assert result.exit_code == 1
    assert "crypto_analytics_mart_market_cap_usd_known" in result.output
    assert "the lake keeps its previous gold and nothing was published" in result.output
    assert "Traceback" not in result.output


def test_a_key_that_holds_a_nul_is_set_aside_not_merged_into_another_coin(lake: Path) -> None:
    # Stripped of its NUL, "bit\u0000coin" would become bitcoin's key: two bitcoins.
    land(lake, changed(**{"wrapped-bitcoin": {"id": "bit\u0000coin"}}), at=T0)
    silver = build_silver(settings_for(lake))
    assert silver.quarantined == {"market_snapshots_key_clean": 1}
    bitcoin = [r for r in silver_rows(lake) if r["coin_id"] == "bitcoin"]
    assert [r["current_price"] for r in bitcoin] == [RECORDS[0]["current_price"]]
    build_gold(settings_for(lake))  # keys unique: the audit passes
    land(lake, at=T0 + SIX_H)  # and so does every later run
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


def test_a_lone_surrogate_in_a_name_is_repaired_not_a_wedge(lake: Path) -> None:
    # JSON allows a lone "\ud800" (a name cut inside an emoji); DuckDB's reader refuses it.
    body = changed(tether={"name": "Teth\ud800er"}, bitcoin={"name": "Bitcoin \U0001f680"})
    assert b'"Teth\\ud800er"' in body and b'"Bitcoin \\ud83d\\ude80"' in body
    land(lake, body, at=T0)
    silver = build_silver(settings_for(lake))
    assert silver.sanitized.bad_unicode == 1
    rows = {r["coin_id"]: r for r in silver_rows(lake)}
    assert rows["tether"]["name"] == "Teth\ufffder"
    assert rows["bitcoin"]["name"] == "Bitcoin \U0001f680"  # a whole pair is left as it is
    assert len(rows) == 100
    assert rows["tether"]["current_price"] == RECORDS[2]["current_price"]
    assert "1 text value(s) with invalid Unicode repaired" in silver.describe_cleaning()
    land(lake, at=T0 + SIX_H)  # later runs go on
    assert len(build_silver(settings_for(lake)).runs) == 1


def test_ids_that_only_differ_in_invalid_unicode_never_merge(lake: Path) -> None:
    # Both become "coin\ufffdx" once repaired: neither may pose as the other.
    land(lake, changed(ripple={"id": "coin\ud800x"}, cardano={"id": "coin\udc00x"}), at=T0)
    silver = build_silver(settings_for(lake))
    assert silver.quarantined == {"market_snapshots_key_clean": 1}
    coins = {r["coin_id"] for r in silver_rows(lake)}
    assert len(coins) == 98 and not any("\ufffd" in c for c in coins)


def test_a_first_run_wholly_quarantined_says_which_check(lake: Path, replay: ReplayServer) -> None:
    # The 2026 top 250 against 2023's /global: the coins sum to 20x the total. Set aside
    # whole, silver has nothing; the run says why, not "run ingest first".
    result = CliRunner().invoke(
        app,
        ["run", "--lake", str(lake), "--api-url", replay.api_url, "--rate", "60000"],
        # The replay has no history: the history stage would only spend its budget on 404s.
        env={"COLUMNS": "200", "CRYPTOLAKE_HISTORY_BUDGET": "0"},
    )

    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: silver.market_snapshots has no rows: every row bronze gave it failed a check and "
        "is in silver.quarantine: "
        "market_snapshots_within_global_total (A snapshot's coins sum to at most its /global "
        "total market cap plus 10%, or it is set aside whole.)."
    ]
