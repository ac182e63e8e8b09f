"""`backfill` and the history stage against real HTTP servers on loopback.

Bodies are the recorded ones (bitcoin's /market_chart and /ohlc of 2021-05-15). Tests that need
many coins serve that same recorded body under several ids (`bitcoin-replica-NN`): what they
count is requests, bodies and rows, never the prices of those ids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cryptolake.backfill import fetch_history
from cryptolake.bronze import read_manifests, run_id_of, run_manifest_paths
from cryptolake.lake import LakePaths
from cryptolake.pipeline import run
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import GLOBAL, MARKETS, fixture_bytes
from .lakes import land, silver_rows

CHART = "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
OHLC = "ohlc_bitcoin_usd_days7_julianfssen-coingecko_ruby_2021-05-15.json"
# Today at noon: the day the client's real clock stamps each body's fetched_at with, which
# the plan's coverage reads (a fixed day went wrong once the real one passed it).
NOW = datetime.combine(datetime.now(UTC).date(), clock_time(12), UTC)


def replicas(n: int) -> list[str]:
    return [f"bitcoin-replica-{i:02d}" for i in range(1, n + 1)]


def history_data(coins: list[str], *, ohlc: bool = False) -> ReplayData:
    chart = fixture_bytes(CHART)
    bodies = {"coin_market_chart": dict.fromkeys(coins, chart)}
    if ohlc:
        bodies["coin_ohlc"] = dict.fromkeys(coins, fixture_bytes(OHLC))
    return ReplayData(
        markets=fixture_bytes(MARKETS),
        bodies={"/global": fixture_bytes(GLOBAL)},
        coin_bodies=bodies,
    )


def asked(server: ReplayServer, endpoint: str = "market_chart") -> list[tuple[str, int]]:
    """(coin, days) of each history request the server saw, in order."""
    found = []
    for raw in server.requests:
        parts = urlsplit(raw)
        segments = parts.path.split("/")
        if segments[-1] == endpoint:
            found.append((segments[-2], int(parse_qs(parts.query)["days"][0])))
    return found


def settings_on(lake: Path, server: ReplayServer, **extra: Any) -> Settings:
    return Settings.resolve(env={}, lake=lake, api_url=server.api_url, rate=60_000.0, **extra)


def test_counts_and_values_match_the_recorded_body(tmp_path: Path) -> None:
    body = json.loads(fixture_bytes(CHART))
    with ReplayServer(history_data(["bitcoin"], ohlc=True)) as server:
        result = fetch_history(
            settings_on(tmp_path, server), coins="bitcoin", with_ohlc=True, now=lambda: NOW
        )
    assert (result.requests, result.bodies, result.coins) == (2, 2, 1)
    assert result.points == len(body["prices"]) + len(json.loads(fixture_bytes(OHLC)))
    build_silver(Settings.resolve(env={}, lake=tmp_path))
    rows = {r["day"]: r for r in silver_rows(tmp_path, "coin_history_daily")}
    # 30 UTC midnights from 2021-04-16 to 2021-05-15 have a point within minutes.
    assert sorted(rows) == [date(2021, 4, 16) + timedelta(days=i) for i in range(30)]
    midnight = int(datetime(2021, 5, 1, tzinfo=UTC).timestamp() * 1000)
    nearest = min(body["prices"], key=lambda p: abs(p[0] - midnight))
    assert rows[date(2021, 5, 1)]["price"] == nearest[1]
    assert {r["coin_id"] for r in rows.values()} == {"bitcoin"}
    candles = silver_rows(tmp_path, "coin_ohlc_4h")
    assert len(candles) == 42


def test_a_killed_backfill_resumes_without_refetching(tmp_path: Path) -> None:
    coins = replicas(24)
    lake = tmp_path / "lake"
    with ReplayServer(history_data(coins)) as server:
        env = {**os.environ, "CRYPTOLAKE_API_URL": server.api_url}
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cryptolake",
                "backfill",
                "--lake",
                str(lake),
                "--coins",
                ",".join(coins),
                "--rate",
                "600",  # 0.1 s a request: the kill lands mid-backfill
                "--fetch-only",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(asked(server)) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        first = asked(server)
        landed = {m.coin_id for m in read_manifests(LakePaths.at(lake)) if m.kind == "history"}
        assert 9 <= len(landed) < len(coins)  # all but the request in flight, at most
        server.requests.clear()
        result = fetch_history(settings_on(lake, server), coins=coins, now=lambda: NOW)
        second = [coin for coin, _ in asked(server)]
    # Every coin whose body landed before the kill is not asked again; the rest are.
    assert set(second) == set(coins) - landed
    assert len(second) == len(set(second)) == result.requests
    # At most the request in flight at the kill was asked twice.
    assert len({c for c, _ in first} & set(second)) <= 1


def test_incremental_top_up_asks_only_for_missing_days(tmp_path: Path) -> None:
    coins = replicas(3)
    with ReplayServer(history_data(coins)) as server:
        settings = settings_on(tmp_path, server)
        fetch_history(settings, coins=coins, now=lambda: NOW)
        assert asked(server) == [(c, 365) for c in coins]
        server.requests.clear()
        again = fetch_history(settings, coins=coins, now=lambda: NOW)
        assert (again.planned, again.requests, asked(server)) == (0, 0, [])
        later = NOW + timedelta(days=3)
        fetch_history(settings, coins=[*coins, "bitcoin-replica-04"], now=lambda: later)
    # Covered up to 3 days ago: 3 missing days and one of overlap. The newcomer: a year.
    assert asked(server) == [*((c, 4) for c in coins), ("bitcoin-replica-04", 365)]


def test_unknown_coins_are_skipped_recorded_and_not_asked_again(tmp_path: Path) -> None:
    lake = tmp_path / "new-lake"  # not there yet: the first answer, a 404, lands all the same
    with ReplayServer(history_data(["bitcoin"], ohlc=True)) as server:
        settings = settings_on(lake, server)
        result = fetch_history(
            settings, coins="no-such-coin,bitcoin", with_ohlc=True, now=lambda: NOW
        )
        assert result.not_found == ["no-such-coin"]
        # The unknown coin's candles are not asked for once its chart answered 404.
        assert [r.split("?")[0].split("/")[-2:] for r in server.requests] == [
            ["no-such-coin", "market_chart"],
            ["bitcoin", "market_chart"],
            ["bitcoin", "ohlc"],
        ]
        assert (result.requests, result.bodies, result.left) == (3, 2, 0)
        skipped = list(read_manifests(LakePaths.at(lake), status="skipped"))
        assert [(m.coin_id, m.error) for m in skipped] == [
            ("no-such-coin", "coin not found (HTTP 404): no-such-coin")
        ]
        # Planned from the top coins, it is left alone for a week...
        land(lake, at=NOW - timedelta(hours=1))
        server.requests.clear()
        later = fetch_history(settings, top=3, now=lambda: NOW + timedelta(days=1))
        assert "no-such-coin" not in {c for c, _ in asked(server)}
        assert later.requests == len(asked(server)) + len(asked(server, "ohlc"))
        # ...but a coin named in --coins is asked again.
        server.requests.clear()
        fetch_history(settings, coins="no-such-coin", now=lambda: NOW + timedelta(days=1))
        assert [c for c, _ in asked(server)] == ["no-such-coin"]


def test_a_clamped_request_that_finds_no_coin_skips_it(tmp_path: Path) -> None:
    with ReplayServer(history_data(["bitcoin"])) as server:
        result = fetch_history(
            settings_on(tmp_path, server), coins="zz-9,bitcoin", days=400, now=lambda: NOW
        )
        seen = asked(server)
    assert seen == [("zz-9", 400), ("zz-9", 365), ("bitcoin", 365)]
    assert (result.not_found, result.bodies, len(result.notes)) == (["zz-9"], 1, 1)


def test_the_cli_builds_what_a_fetch_only_or_killed_backfill_landed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cryptolake.cli import app

    lake = tmp_path / "lake"
    with ReplayServer(history_data(["bitcoin"])) as server:
        args = ["backfill", "--lake", str(lake), "--api-url", server.api_url, "--rate", "60000"]
        fetched = CliRunner().invoke(app, [*args, "--coins", "bitcoin", "--fetch-only"])
        assert fetched.exit_code == 0, fetched.output
        assert not (lake / "catalog.sqlite").exists()
        again = CliRunner().invoke(app, [*args, "--coins", "bitcoin"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "nothing to fetch" in again.output
    assert "the lake has no snapshot yet" in again.output  # so no gold, and said why
    assert len(silver_rows(lake, "coin_history_daily")) == 30


def test_time_range_error_clamps_to_365_days_once(tmp_path: Path) -> None:
    coins = replicas(3)
    with ReplayServer(history_data(coins)) as server:
        result = fetch_history(
            settings_on(tmp_path, server), coins=coins, days=500, now=lambda: NOW
        )
        seen = asked(server)
    # The first coin is asked for 500 days (401, error 10012), then 365; the rest at 365.
    assert seen == [(coins[0], 500), *((c, 365) for c in coins)]
    assert result.bodies == 3
    assert len(result.notes) == 1 and "10012" in result.notes[0]
    assert {m.days for m in read_manifests(LakePaths.at(tmp_path)) if m.kind == "history"} == {365}


def test_the_history_stage_never_exceeds_its_budget(tmp_path: Path) -> None:
    land(tmp_path, at=NOW - timedelta(hours=1))  # a snapshot: its top coins are the plan
    with ReplayServer(history_data(["bitcoin", "ethereum"])) as server:
        settings = settings_on(tmp_path, server, history_budget=3, top=10)
        result = run(settings, stages=["history"], now=lambda: NOW)
        assert len([r for r in server.requests if "/coins/" in r]) == 3
        (stage,) = result.stages
        assert stage.rows["history_requests"] == 3
        assert "7 requests left" in stage.detail
        # Newest gaps first, by rank: the top 3 coins of the snapshot.
        assert [c for c, _ in asked(server)] == ["bitcoin", "ethereum", "tether"]


def test_each_request_has_its_own_manifest(tmp_path: Path) -> None:
    coins = replicas(2)
    with ReplayServer(history_data(coins)) as server:
        result = fetch_history(settings_on(tmp_path, server), coins=coins, now=lambda: NOW)
    names = sorted(run_id_of(k) for k in run_manifest_paths(LakePaths.at(tmp_path)))
    assert names == [f"{result.run_id}-h00001", f"{result.run_id}-h00002"]
    bodies = sorted(p.name for p in (tmp_path / "bronze" / "coin_market_chart").rglob("*.json"))
    assert bodies == [
        f"{result.run_id}-h00001-{coins[0]}.json",
        f"{result.run_id}-h00002-{coins[1]}.json",
    ]


@pytest.mark.parametrize("bad", ["", "bit coin", "a/b"])
def test_bad_coin_ids_are_a_usage_error(tmp_path: Path, bad: str) -> None:
    from cryptolake.errors import ConfigError

    with pytest.raises(ConfigError, match="--coins"):
        fetch_history(Settings.resolve(env={}, lake=tmp_path), coins=bad or " , ")
