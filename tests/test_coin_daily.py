"""gold.coin_daily on partial days, gaps and odd schedules: figures against values computed here.

Snapshots are the recorded 2023 top 5 with every price multiplied by a known factor, landed at
chosen instants; every expected figure is computed in Python from those prices.
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .conftest import MARKETS, fixture_bytes
from .lakes import land
from .test_gold import build, gold

RECORDS = json.loads(fixture_bytes(MARKETS))[:5]
BITCOIN: float = RECORDS[0]["current_price"]
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def factor(when: datetime) -> float:
    """A deterministic, wiggly price path: 1 +- a few percent, different at every instant."""
    n = int((when - DAY0).total_seconds() // 60)
    return 1 + 0.03 * ((n * 7919) % 101 - 50) / 50


def scaled(when: datetime) -> bytes:
    """The recorded top 5 with every price multiplied by `factor(when)`."""
    out = []
    for record in RECORDS:
        record = dict(record)
        record["current_price"] = record["current_price"] * factor(when)
        out.append(record)
    return json.dumps(out).encode()


def land_all(lake: Path, instants: list[datetime]) -> None:
    for when in instants:
        land(lake, scaled(when), at=when)
    build(lake)


def bitcoin_days(lake: Path) -> dict[str, dict[str, Any]]:
    return {str(r["day"]): r for r in gold(lake, "coin_daily") if r["coin_id"] == "bitcoin"}


def price(when: datetime) -> float:
    return BITCOIN * factor(when)


def test_a_partial_day_is_provisional_and_closes_come_from_the_next_midnight(lake: Path) -> None:
    # Every 6 hours just after midnight for 9 days, then today: 00:05 and 06:05 only.
    instants = [at(d, h, 5) for d in range(9) for h in (0, 6, 12, 18)]
    instants += [at(9, 0, 5), at(9, 6, 5)]
    land_all(lake, instants)
    days = bitcoin_days(lake)
    assert len(days) == 10

    today = days["2026-03-11"]
    assert today["is_complete_day"] is False
    assert today["close_price"] == pytest.approx(price(at(9, 6, 5)))  # latest so far
    assert today["daily_return_ratio"] is None
    assert today["volatility_7d_ratio"] is None

    closes = []
    for d in range(9):
        row = days[f"2026-03-{d + 2:02d}"]
        own = [price(at(d, h, 5)) for h in (0, 6, 12, 18)]
        close = price(at(d + 1, 0, 5))  # 5 minutes after midnight beats 5 h 55 min before it
        assert row["is_complete_day"] is True
        assert row["open_price"] == pytest.approx(own[0])
        assert row["close_price"] == pytest.approx(close)
        assert row["close_at"] == f"{at(d + 1, 0, 5):%Y-%m-%d %H:%M}:00+00"
        assert row["high_price"] == pytest.approx(max(own + [close]))
        assert row["low_price"] == pytest.approx(min(own + [close]))
        assert row["snapshot_count"] == 4
        # No history or candles in this lake: every figure is the snapshots'.
        assert (row["source"], row["high_low_source"]) == ("snapshots", "snapshots")
        assert row["volatility_30d_ratio"] is None  # 8 returns
        closes.append(close)
    returns: list[float | None] = [None] + [closes[i] / closes[i - 1] - 1 for i in range(1, 9)]
    for d in range(9):
        row = days[f"2026-03-{d + 2:02d}"]
        assert row["daily_return_ratio"] == pytest.approx(returns[d])
        window = returns[max(0, d - 6) : d + 1]
        known = [r for r in window if r is not None]
        if len(known) == 7:
            assert row["volatility_7d_ratio"] == pytest.approx(statistics.stdev(known))
        else:
            assert row["volatility_7d_ratio"] is None
    # The mart reads the last complete day, never today's half day.
    last_complete = days["2026-03-10"]["volatility_7d_ratio"]
    assert last_complete is not None
    (mart,) = [r for r in gold(lake, "crypto_analytics_mart") if r["coin_id"] == "bitcoin"]
    assert mart["volatility_7d_ratio"] == pytest.approx(last_complete)
    # A day opens at the previous day's close.
    for d in range(1, 10):
        assert days[f"2026-03-{d + 2:02d}"]["open_price"] == pytest.approx(
            days[f"2026-03-{d + 1:02d}"]["close_price"]
        )


def test_the_snapshot_nearest_midnight_closes_the_day(lake: Path) -> None:
    # Once a day at 18:00 (the next day's first is 18 h after midnight, the day's last 6 h
    # before it), then 23:30 and 00:20 (20 minutes after beats 30 before).
    instants = [at(0, 18), at(1, 18), at(2, 23, 30), at(3, 0, 20), at(3, 18)]
    land_all(lake, instants)
    days = bitcoin_days(lake)
    assert days["2026-03-02"]["close_price"] == pytest.approx(price(at(0, 18)))
    assert days["2026-03-03"]["close_price"] == pytest.approx(price(at(1, 18)))
    assert days["2026-03-04"]["close_price"] == pytest.approx(price(at(3, 0, 20)))
    assert days["2026-03-04"]["close_at"] == "2026-03-05 00:20:00+00"
    # 03-05 opens at 03-04's close (00:20) and its high and low span it and 18:00.
    assert days["2026-03-05"]["open_price"] == pytest.approx(price(at(3, 0, 20)))
    assert days["2026-03-05"]["is_complete_day"] is False
    assert days["2026-03-03"]["daily_return_ratio"] == pytest.approx(
        price(at(1, 18)) / price(at(0, 18)) - 1
    )
    assert days["2026-03-04"]["daily_return_ratio"] == pytest.approx(
        price(at(3, 0, 20)) / price(at(1, 18)) - 1
    )


def test_a_gap_has_no_return_across_it(lake: Path) -> None:
    # Days 0, 1, 2, then nothing on day 3, then days 4 and 5 (each at 00:00 and 12:00).
    instants = [at(d, h) for d in (0, 1, 2, 4, 5) for h in (0, 12)]
    land_all(lake, instants)
    days = bitcoin_days(lake)
    assert sorted(days) == ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-06", "2026-03-07"]
    # 03-04 is complete (the lake went on), but no snapshot is within 12 hours of the next
    # midnight (its last is 12 h before it, the next 48 h after): it has no close.
    assert days["2026-03-04"]["is_complete_day"] is True
    assert days["2026-03-04"]["close_price"] is None
    assert days["2026-03-04"]["close_at"] is None
    assert days["2026-03-06"]["daily_return_ratio"] is None  # no 03-05 to compare with
    assert days["2026-03-06"]["open_price"] == pytest.approx(price(at(4, 0)))
    assert days["2026-03-03"]["daily_return_ratio"] == pytest.approx(
        price(at(2, 0)) / price(at(1, 0)) - 1
    )
    assert days["2026-03-07"]["is_complete_day"] is False


def test_no_snapshot_closes_two_days(lake: Path) -> None:
    # Once a day at 00:30, with the run of the 23rd missing. 00:30 on the 22nd closes the
    # 21st (30 minutes after its midnight); it cannot also close the 22nd, which is 23.5 h
    # away: the 22nd has no close and no return, never a made-up 0%.
    land_all(lake, [at(0, 0, 30), at(1, 0, 30), at(2, 0, 30), at(4, 0, 30)])
    days = bitcoin_days(lake)
    assert days["2026-03-03"]["close_price"] == pytest.approx(price(at(2, 0, 30)))
    assert days["2026-03-03"]["daily_return_ratio"] == pytest.approx(
        price(at(2, 0, 30)) / price(at(1, 0, 30)) - 1
    )
    assert days["2026-03-04"]["is_complete_day"] is True
    assert (days["2026-03-04"]["close_price"], days["2026-03-04"]["daily_return_ratio"]) == (
        None,
        None,
    )
    # The 6th opens at 00:30 on the 6th, its own first snapshot and the 5th's missing close.
    assert days["2026-03-06"]["open_price"] == pytest.approx(price(at(4, 0, 30)))
    # A lake's first day, starting at 15:47, has no price at its midnight: no open, no fake.
    land_all(lake.parent / "other", [at(0, 15, 47)])
    (first,) = bitcoin_days(lake.parent / "other").values()
    assert first["open_price"] is None and first["close_price"] == pytest.approx(
        price(at(0, 15, 47))
    )


def test_market_daily_marks_complete_days(lake: Path) -> None:
    land_all(lake, [at(0, 12), at(1, 0), at(1, 6)])
    rows = {str(r["day"]): r["is_complete_day"] for r in gold(lake, "market_daily")}
    assert rows == {"2026-03-02": True, "2026-03-03": False}
