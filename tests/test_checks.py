"""Each data-quality check passes on a good lake and fails on data built to break it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryptolake.catalog import open_lake
from cryptolake.checks import ChecksFailed, run_checks
from cryptolake.cli import app
from cryptolake.sqlfiles import sql_names

from .conftest import LakeTemplates
from .lakes import one_snapshot, settings_for

# check -> statements that break exactly that check on a good lake (run on its DuckLake).
BREAKERS: dict[str, list[str]] = {
    "market_snapshots_key_unique": [
        "insert into silver.market_snapshots "
        "select * from silver.market_snapshots order by market_cap limit 1"
    ],
    "market_snapshots_key_not_null": [
        "update silver.market_snapshots set coin_id = null where market_cap_rank = 3"
    ],
    "market_snapshots_non_negative": [
        "update silver.market_snapshots set current_price = -1 where market_cap_rank = 50"
    ],
    "crypto_analytics_mart_key_unique": [
        "insert into gold.crypto_analytics_mart select * from gold.crypto_analytics_mart limit 1"
    ],
    "crypto_analytics_mart_non_negative": [
        "update gold.crypto_analytics_mart set market_cap = -5 where market_cap_rank = 7"
    ],
    "market_cap_category_accepted": [
        "update gold.crypto_analytics_mart set market_cap_category = 'giant' "
        "where market_cap_rank = 1"
    ],
    "market_segment_shares_sum_to_100": [
        "update gold.market_segment_analysis "
        "set tracked_market_cap_share_pct = tracked_market_cap_share_pct + 1 "
        "where market_cap_category = 'large'"
    ],
    "market_snapshots_within_global_total": [
        "update silver.market_snapshots set market_cap = market_cap * 1.2"
    ],
    "crypto_analytics_mart_market_cap_usd_known": [
        "update gold.crypto_analytics_mart set market_cap_usd = null where market_cap_rank = 2"
    ],
    "coin_daily_key_unique": ["insert into gold.coin_daily select * from gold.coin_daily limit 1"],
    "market_daily_key_unique": ["insert into gold.market_daily select * from gold.market_daily"],
    "category_leaderboard_key_unique": [
        "insert into gold.category_leaderboard select * from gold.category_leaderboard limit 2"
    ],
}


@pytest.fixture
def good_lake(lake: Path, lake_templates: LakeTemplates) -> Path:
    """A lake with one snapshot, silver and gold built (a copy of the session's: tests break it)."""
    return lake_templates.copy(one_snapshot, lake)


def break_lake(lake: Path, statements: list[str]) -> None:
    with open_lake(settings_for(lake)) as con:
        for statement in statements:
            con.execute(statement)


def test_every_check_has_a_breaker() -> None:
    assert set(sql_names("duckdb/checks")) == set(BREAKERS) | {"latest_snapshot_fresh"}


def test_all_checks_pass_on_a_good_lake(good_lake: Path) -> None:
    results = run_checks(settings_for(good_lake))
    assert len(results) == len(BREAKERS) + 1
    assert all(r.passed and r.description for r in results)
    assert {r.name: r.on_fail for r in results if r.on_fail != "block"} == {
        "latest_snapshot_fresh": "warn",
        "market_snapshots_non_negative": "quarantine",
        "market_snapshots_within_global_total": "quarantine",
    }


@pytest.mark.parametrize("check", sorted(BREAKERS))
def test_check_fails_on_broken_data(good_lake: Path, check: str) -> None:
    break_lake(good_lake, BREAKERS[check])
    with pytest.raises(ChecksFailed) as failed:
        run_checks(settings_for(good_lake))
    assert [f.name for f in failed.value.failures] == [check]
    failure = failed.value.failures[0]
    assert failure.failing_rows >= 1 and failure.sample and failure.columns
    assert check in str(failed.value) and failure.description in str(failed.value)


def test_freshness_limit_warns_and_never_blocks(good_lake: Path) -> None:
    stale = settings_for(good_lake).with_(freshness_hours=24.0)  # the snapshot is from Feb 2026
    results = {r.name: r for r in run_checks(stale)}  # no ChecksFailed: a warning
    assert not results["latest_snapshot_fresh"].passed
    assert not results["latest_snapshot_fresh"].blocks
    assert [n for n, r in results.items() if not r.passed] == ["latest_snapshot_fresh"]
    assert results["latest_snapshot_fresh"].columns == [
        "latest_snapshot_at",
        "age_hours",
        "limit_hours",
    ]


def test_check_command_prints_name_description_and_rows(good_lake: Path) -> None:
    break_lake(good_lake, BREAKERS["crypto_analytics_mart_non_negative"])
    result = CliRunner().invoke(
        app,
        ["check", "--lake", str(good_lake)],
        env={"CRYPTOLAKE_FRESHNESS_HOURS": "1000000", "COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert "crypto_analytics_mart_non_negative" in result.output
    assert "never negative" in result.output
    assert "-5" in result.output
    assert "Traceback" not in result.output
