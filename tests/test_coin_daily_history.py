"""gold.coin_daily from daily history, 4-hour candles and snapshots: figures against the JSON.

History is bitcoin's recorded /market_chart (2021-04-15 to 05-15, hourly) and /ohlc (4-hour
candles, 2021-05-08 to 05-15), fetched by `fetch_history` from a loopback replay server, as a
backfill does. Snapshots are the recorded 2023 top 5, landed at chosen instants of May 2021,
so some days are in both. Every expected figure is computed here from the recorded bodies.

30 days of history give 28 returns, too few for a 30-day volatility: a second coin's history
is bitcoin's first 40 recorded hourly points re-stamped to 00:00 UTC of 40 successive days
(real prices, made-up days).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryptolake.backfill import fetch_history
from cryptolake.catalog import open_lake
from cryptolake.gold import GoldResult, build_gold
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import CATEGORIES, GLOBAL, MARKETS, fixture_bytes
from .lakes import land, rows_of, same_rows, settings_for
from .test_gold_incremental import built_and_rebuilt_whole

CHART = "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
OHLC = "ohlc_bitcoin_usd_days7_julianfssen-coingecko_ruby_2021-05-15.json"
RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS))[:5]
BITCOIN = RECORDS[0]
TOP_5 = json.dumps(RECORDS).encode()
# When history is fetched: today, as the bodies' fetched_at (the client's real clock) says.
# A fixed day went wrong once the real one passed it: the plan (from `now`) and the coverage
# of the requests landed (from fetched_at) disagreed by a day, and the chart was asked again.
NOW = datetime.combine(datetime.now(UTC).date(), time(12), UTC)
RESTAMPED = "bitcoin-hourly-as-daily"  # the 40 re-stamped points (no snapshot has it)
RESTAMPED_FROM = date(2021, 2, 1)
RESTAMPED_DAYS = 40
DAY_MS = 86_400_000


def at(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


# The snapshots (the recorded top 5) of the lake, and what each is for.
SNAPSHOTS = [
    at("2021-04-15", 12),  # the day before history's first: its close is history's 04-16
    at("2021-05-01", 12),  # a day in both, without candles: high and low from the snapshot
    at("2021-05-10", 12),  # a day in both, with candles
    at("2021-05-10", 23, 50),  # 10 minutes before midnight: closes 05-10 by the snapshot rule
    at("2021-05-15", 6),  # the lake's latest day: history up to it, provisional
]


def restamped_chart() -> bytes:
    """Bitcoin's first recorded points, each series' i-th at 00:00 UTC of RESTAMPED_FROM + i."""
    body = json.loads(fixture_bytes(CHART))
    start = (RESTAMPED_FROM - date(1970, 1, 1)).days * DAY_MS
    return json.dumps(
        {
            series: [[start + i * DAY_MS, value] for i, (_, value) in enumerate(points)]
            for series, points in ((s, body[s][:RESTAMPED_DAYS]) for s in body)
        }
    ).encode()


@dataclass(frozen=True)
class Point:
    at: datetime
    price: float
    market_cap: float
    total_volume: float


def daily_points(body: bytes) -> dict[date, Point]:
    """The point of each day a /market_chart body has: the one nearest 00:00 UTC within 30
    minutes (the earlier at equal distance), never the body's last ("now") unless stamped at
    midnight exactly. The three series share their timestamps in these bodies."""
    series = json.loads(body)
    prices, caps, volumes = series["prices"], series["market_caps"], series["total_volumes"]
    assert [p[0] for p in prices] == [c[0] for c in caps] == [v[0] for v in volumes]
    best: dict[date, tuple[int, Point]] = {}
    for i, (ms, price) in enumerate(prices):
        if i == len(prices) - 1 and ms % DAY_MS:
            continue
        midnight = (ms + DAY_MS // 2) // DAY_MS * DAY_MS
        distance = abs(ms - midnight)
        if distance > 1_800_000:
            continue
        day = date(1970, 1, 1) + timedelta(days=midnight // DAY_MS)
        point = Point(datetime.fromtimestamp(ms / 1000, UTC), price, caps[i][1], volumes[i][1])
        if day not in best or distance < best[day][0]:
            best[day] = (distance, point)
    return {day: point for day, (_, point) in sorted(best.items())}


def candle_ranges() -> dict[date, tuple[float, float]]:
    """Each day's (highest high, lowest low) over its 4-hour candles: a candle is stamped at
    its close, so it belongs to the day of its stamp minus 4 hours."""
    ranges: dict[date, tuple[float, float]] = {}
    for ms, _open, high, low, _close in json.loads(fixture_bytes(OHLC)):
        day = (datetime.fromtimestamp(ms / 1000, UTC) - timedelta(hours=4)).date()
        old_high, old_low = ranges.get(day, (high, low))
        ranges[day] = (max(old_high, high), min(old_low, low))
    return ranges


HISTORY = daily_points(fixture_bytes(CHART))


def spanned_range(day: date) -> tuple[float, float]:
    """What bounds a day with candles: every price seen in it, its candles' highs and lows,
    its snapshots' prices, its open (history's point of the day) and its close (the next)."""
    high, low = candle_ranges()[day]
    seen = [high, low]
    seen += [BITCOIN["current_price"] for w in SNAPSHOTS if w.date() == day]
    seen += [HISTORY[d].price for d in (day, day + timedelta(days=1)) if d in HISTORY]
    return max(seen), min(seen)


RESTAMPED_HISTORY = daily_points(restamped_chart())


def land_history(lake: Path, coins: list[str], *, ohlc: bool = False) -> None:
    """Fetch the coins' history (and bitcoin's candles) into bronze, as `backfill` does."""
    data = ReplayData(
        markets=TOP_5,
        bodies={"/global": fixture_bytes(GLOBAL), "/coins/categories": fixture_bytes(CATEGORIES)},
        coin_bodies={
            "coin_market_chart": {
                "bitcoin": fixture_bytes(CHART),
                RESTAMPED: restamped_chart(),
            },
            "coin_ohlc": {"bitcoin": fixture_bytes(OHLC)},
        },
    )
    with ReplayServer(data) as server:
        settings = Settings.resolve(env={}, lake=lake, api_url=server.api_url, rate=60_000.0)
        result = fetch_history(settings, coins=coins, with_ohlc=ohlc, now=lambda: NOW)
    # Only bitcoin has candles: the re-stamped coin's /ohlc is the API's 404, skipped.
    assert result.not_found == ([RESTAMPED] if ohlc and RESTAMPED in coins else [])


def build(lake: Path) -> GoldResult:
    build_silver(settings_for(lake))
    return build_gold(settings_for(lake))


def coin_days(lake: Path, coin_id: str) -> dict[date, dict[str, Any]]:
    with open_lake(settings_for(lake), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        rows = rows_of(con, f"select * from gold.coin_daily where coin_id = '{coin_id}'")
    return {r["day"]: r for r in rows}


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def history_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The snapshots above, bitcoin's history and candles and the re-stamped coin's history."""
    lake = tmp_path_factory.mktemp("history") / "lake"
    lake.mkdir()
    for when in SNAPSHOTS:
        land(lake, TOP_5, at=when)
    land_history(lake, ["bitcoin", RESTAMPED], ohlc=True)
    build(lake)
    return lake


def test_history_days_close_at_the_next_days_point(history_lake: Path) -> None:
    days = coin_days(history_lake, "bitcoin")
    history_days = sorted(HISTORY)
    assert history_days == [date(2021, 4, 16) + timedelta(days=n) for n in range(30)]
    assert sorted(days) == [date(2021, 4, 15), *history_days]
    both = {w.date() for w in SNAPSHOTS}
    for day in history_days:
        row, point = days[day], HISTORY[day]
        assert row["source"] == ("both" if day in both else "history")
        assert row["open_price"] == point.price
        if day + timedelta(days=1) in HISTORY:
            following = HISTORY[day + timedelta(days=1)]
            assert row["is_complete_day"] is True
            assert row["close_price"] == following.price
            assert instant(row["close_at"]) == following.at
        if day in both:
            continue
        assert (row["symbol"], row["name"]) == (BITCOIN["symbol"], BITCOIN["name"])
        assert row["market_cap_rank"] is None
        assert (row["market_cap"], row["total_volume"]) == (point.market_cap, point.total_volume)
        assert (row["snapshot_count"], row["last_snapshot_at"]) == (0, None)
    # The day before history's first has snapshots only; its close is history's first point.
    before = days[date(2021, 4, 15)]
    assert before["source"] == "snapshots"
    assert before["close_price"] == HISTORY[date(2021, 4, 16)].price
    assert instant(before["close_at"]) == HISTORY[date(2021, 4, 16)].at


def test_returns_and_volatility_run_over_history_closes(history_lake: Path) -> None:
    days = coin_days(history_lake, "bitcoin")
    closes = {d: days[d]["close_price"] for d in sorted(days)}
    # 04-15 (a snapshot day closed by history) to 05-14 have a close; 05-15 is provisional.
    returns: dict[date, float | None] = {}
    for day in sorted(days):
        previous = day - timedelta(days=1)
        if day < date(2021, 5, 15) and previous in closes:
            returns[day] = closes[day] / closes[previous] - 1
        else:
            returns[day] = None
        assert days[day]["daily_return_ratio"] == pytest.approx(returns[day])
    assert sum(r is not None for r in returns.values()) == 29
    for day in sorted(days):
        window = [r for n in range(7) if (r := returns.get(day - timedelta(days=n))) is not None]
        if len(window) == 7:
            assert days[day]["volatility_7d_ratio"] == pytest.approx(statistics.stdev(window))
        else:
            assert days[day]["volatility_7d_ratio"] is None
        assert days[day]["volatility_30d_ratio"] is None  # 29 returns: never 30
    assert days[date(2021, 5, 14)]["volatility_7d_ratio"] is not None


def test_thirty_returns_make_a_30_day_volatility(history_lake: Path) -> None:
    days = coin_days(history_lake, RESTAMPED)
    points = RESTAMPED_HISTORY
    assert sorted(days) == sorted(points)
    assert len(days) == RESTAMPED_DAYS
    order = sorted(points)
    closes = [points[d].price for d in order[1:]]  # day i closes at day i + 1's point
    returns: list[float | None] = [None]
    returns += [closes[i] / closes[i - 1] - 1 for i in range(1, len(closes))] + [None]
    for i, day in enumerate(order):
        row = days[day]
        assert row["source"] == "history"
        assert (row["symbol"], row["name"], row["market_cap_rank"]) == (None, None, None)
        assert row["daily_return_ratio"] == pytest.approx(returns[i])
        window = [r for r in returns[max(0, i - 29) : i + 1] if r is not None]
        if len(window) == 30:
            assert row["volatility_30d_ratio"] == pytest.approx(statistics.stdev(window))
        else:
            assert row["volatility_30d_ratio"] is None
    set_on = [d for d in order if days[d]["volatility_30d_ratio"] is not None]
    # Returns run from the 2nd day to the 39th (the 40th has no close): the 31st day is the
    # first with 30 of them, the 39th the last.
    assert set_on == order[30:39]


def test_candles_give_high_and_low_where_fetched(history_lake: Path) -> None:
    days = coin_days(history_lake, "bitcoin")
    ranges = candle_ranges()
    assert sorted(ranges) == [date(2021, 5, 8) + timedelta(days=n) for n in range(8)]
    for day in ranges:
        row = days[day]
        assert (row["high_price"], row["low_price"]) == spanned_range(day)
        assert row["high_low_source"] == "candles"
    # A day the candles cover only in part (2 of 6 on 05-08) still spans its open.
    assert days[date(2021, 5, 8)]["low_price"] == HISTORY[date(2021, 5, 8)].price
    # Days of history only and without candles have no range: never one made of open and close.
    for day in HISTORY:
        if day not in ranges and day not in {w.date() for w in SNAPSHOTS}:
            row = days[day]
            assert (row["high_price"], row["low_price"], row["high_low_source"]) == (
                None,
                None,
                None,
            )


def test_a_day_in_both_takes_history_prices_and_snapshot_figures(history_lake: Path) -> None:
    days = coin_days(history_lake, "bitcoin")
    # 05-10: snapshots at 12:00 and 23:50; 23:50 would close it by the snapshot rule, but
    # history's 05-11 point is the close, and the candles give the range.
    day = days[date(2021, 5, 10)]
    assert day["source"] == "both"
    assert day["open_price"] == HISTORY[date(2021, 5, 10)].price
    assert day["close_price"] == HISTORY[date(2021, 5, 11)].price
    assert instant(day["close_at"]) == HISTORY[date(2021, 5, 11)].at
    assert (day["high_price"], day["low_price"]) == spanned_range(date(2021, 5, 10))
    assert (day["market_cap"], day["total_volume"]) == (
        BITCOIN["market_cap"],
        BITCOIN["total_volume"],
    )
    assert (day["market_cap_rank"], day["snapshot_count"]) == (BITCOIN["market_cap_rank"], 2)
    assert instant(day["last_snapshot_at"]) == at("2021-05-10", 23, 50)
    # 05-01: no candles; the range spans the day's snapshot, open and close.
    day = days[date(2021, 5, 1)]
    spanned = [BITCOIN["current_price"], HISTORY[date(2021, 5, 1)].price]
    spanned.append(HISTORY[date(2021, 5, 2)].price)
    assert day["source"] == "both"
    assert day["high_low_source"] == "snapshots"
    assert (day["high_price"], day["low_price"]) == (max(spanned), min(spanned))
    # 05-15: history has its 00:00 point but not 05-16's, and the lake's latest snapshot is
    # of 05-15: provisional, at the latest snapshot's price, no return.
    today = days[date(2021, 5, 15)]
    assert (today["source"], today["is_complete_day"]) == ("both", False)
    assert today["open_price"] == HISTORY[date(2021, 5, 15)].price
    assert today["close_price"] == BITCOIN["current_price"]
    assert instant(today["close_at"]) == at("2021-05-15", 6)
    assert today["daily_return_ratio"] is None
    assert days[date(2021, 5, 14)]["is_complete_day"] is True


def test_snapshot_only_coins_keep_their_snapshot_figures(history_lake: Path) -> None:
    days = coin_days(history_lake, "ethereum")
    assert sorted(days) == sorted({w.date() for w in SNAPSHOTS})
    assert {r["source"] for r in days.values()} == {"snapshots"}
    assert {r["high_low_source"] for r in days.values()} == {"snapshots"}
    assert {r["volatility_30d_ratio"] for r in days.values()} == {None}


# The same lake built in steps, each gold build incremental, compared with a whole rebuild.
STEPS = [
    ("snapshots first", "snapshots", None),
    # A backfill's history reaches far back: everything from the day before its first.
    ("a backfill", "history", "2021-01-31"),
    # Candles only (the chart is covered today): from the day before their first day.
    ("candles", "candles", "2021-05-07"),
    # New snapshots: from the day before the first changed, or gold's latest snapshot day.
    ("later snapshots", "later", "2021-05-09"),
    ("a new latest day", "latest", "2021-05-15"),
    # An old snapshot amid the re-stamped coin's days: their 30-day windows reach 29 days
    # before the first day recomputed, read from the lookback.
    ("an old snapshot", "old", "2021-03-04"),
]


def test_incremental_builds_after_a_backfill_equal_a_whole_rebuild(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    for what, step, expected_from in STEPS:
        if step == "snapshots":
            for when in SNAPSHOTS[:3]:
                land(lake, TOP_5, at=when)
        elif step == "history":
            land_history(lake, ["bitcoin", RESTAMPED])
        elif step == "candles":
            land_history(lake, ["bitcoin"], ohlc=True)
        elif step == "later":
            for when in SNAPSHOTS[3:]:
                land(lake, TOP_5, at=when)
        elif step == "latest":
            land(lake, TOP_5, at=at("2021-05-20", 12))
        else:
            land(lake, TOP_5, at=at("2021-03-05", 12))
        gold = build(lake)
        assert gold.coin_daily_from == expected_from, what
        # The lake's latest snapshot: gold's commit (lake_version is its snapshot id).
        built, whole = built_and_rebuilt_whole(lake, "usd", as_of=int(gold.lake_version))
        assert same_rows(built, whole), what
        assert built
    final = coin_days(lake, "bitcoin")
    assert final[date(2021, 5, 15)]["is_complete_day"] is True
    assert final[date(2021, 5, 10)]["high_low_source"] == "candles"
    assert len([d for d in final if final[d]["source"] != "snapshots"]) == 30
    restamped = coin_days(lake, RESTAMPED)
    recomputed = [d for d in sorted(restamped) if d >= date(2021, 3, 4)]
    assert all(restamped[d]["volatility_30d_ratio"] is not None for d in recomputed[:-1])
