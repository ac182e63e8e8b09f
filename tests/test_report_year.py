"""The report's year section: the top 10 coins' last 365 days, against independent sums.

Figures are checked three ways: `read_year` on a gold.coin_daily with a known history (in a
real DuckDB) against the same figures computed here in Python; the HTML against those
figures; and, on a lake built like `run --sample` + `backfill --sample`, bitcoin's drawdown
against the recorded CoinGecko body it came from.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from cryptolake.backfill import fetch_history
from cryptolake.formatting import format_change, format_price, format_volatility
from cryptolake.gold import build_gold
from cryptolake.ingest import ingest
from cryptolake.report import build_report
from cryptolake.report_year import YearData, read_year
from cryptolake.report_year_html import year_section
from cryptolake.silver import build_silver

from .conftest import LakeTemplates, fixture_bytes
from .lakes import T0, lake_db, settings_for, two_days

CHART = "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
FIRST = date(2025, 1, 1)
DAYS = 400  # the last one provisional: a year and a month of complete days before it
LATEST = FIRST + timedelta(days=DAYS - 1)
END = LATEST - timedelta(days=1)  # the last complete day
START = END - timedelta(days=364)


# --- a gold.coin_daily with a known history ---------------------------------------------------


def coin_days(seed: int = 7) -> list[dict[str, Any]]:
    """Rows of gold.coin_daily for 12 coins, returns and 7-day volatility as gold has them.

    c00..c07 trade every day; c05 misses a day 10 days before the end (so no 30 straight
    returns); c08 starts 20 days before the end; c09 has one complete day; c10 and c11 are
    smaller than the top 10 on the latest day.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for n in range(12):
        coin = f"c{n:02d}"
        price = 10.0 ** (4 - n / 3)
        first = {8: END - timedelta(days=19), 9: END}.get(n, FIRST)
        previous: tuple[date, float] | None = None
        returns: list[tuple[date, float]] = []
        for k in range(DAYS):
            day = FIRST + timedelta(days=k)
            if day < first or (n == 5 and day == END - timedelta(days=10)):
                continue
            price *= math.exp(rng.gauss(0.0005, 0.03))
            complete = day < LATEST
            ratio = None
            if complete and previous and previous[0] == day - timedelta(days=1):
                ratio = price / previous[1] - 1
                returns.append((day, ratio))
            week = [r for d, r in returns if (day - d).days < 7]
            rows.append(
                {
                    "coin_id": coin,
                    "day": day,
                    "symbol": f"s{n}",
                    "name": f"Coin {n}",
                    "vs_currency": "usd",
                    "is_complete_day": complete,
                    "close_price": price,
                    # The latest day ranks them: c00 largest, c10 and c11 outside the top 10.
                    "market_cap": 1e12 / (n + 1) if day == LATEST else price * 1e6,
                    "daily_return_ratio": ratio,
                    "volatility_7d_ratio": statistics.stdev(week) if len(week) == 7 else None,
                }
            )
            if complete:
                previous = (day, price)
    return rows


@pytest.fixture
def gold_con() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding gold.coin_daily from `coin_days` (no 30-day column)."""
    con = duckdb.connect()
    con.execute("create schema gold")
    table = pa.Table.from_pylist(coin_days())
    con.register("coin_days_arrow", table)
    con.execute("create table gold.coin_daily as select * from coin_days_arrow")
    con.unregister("coin_days_arrow")
    yield con
    con.close()


def expected_year(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each top coin's closes, drawdown and 30-day volatility, computed straight from rows."""
    latest = [r for r in rows if r["day"] == LATEST]
    top = sorted(latest, key=lambda r: (-r["market_cap"], r["coin_id"]))[:10]
    out = {}
    for coin in (r["coin_id"] for r in top):
        mine = [r for r in rows if r["coin_id"] == coin]
        year = [r for r in mine if r["is_complete_day"] and START <= r["day"] <= END]
        closes = [r["close_price"] for r in year]
        last = year[-1]["day"] if year else None
        month = [
            r["daily_return_ratio"]
            for r in mine
            if last and 0 <= (last - r["day"]).days < 30 and r["daily_return_ratio"] is not None
        ]
        out[coin] = {
            "days": len(year),
            "drawdown_pct": 100 * (closes[-1] / max(closes) - 1) if len(closes) > 1 else None,
            "volatility": statistics.stdev(month) if len(month) == 30 else None,
            "first_close": closes[0] if closes else None,
        }
    return out


def test_the_year_is_the_top_10_over_365_complete_days(
    gold_con: duckdb.DuckDBPyConnection,
) -> None:
    year = read_year(gold_con)
    expected = expected_year(coin_days())
    assert (year.latest_day, year.end, year.start) == (LATEST, END, START)
    assert not year.volatility_from_gold
    assert [c.coin_id for c in year.coins] == list(expected) == [f"c{n:02d}" for n in range(10)]
    for coin in year.coins:
        want = expected[coin.coin_id]
        assert coin.days == want["days"]
        assert coin.first_day is None or coin.first_day >= START
        assert coin.last_day in (None, END)
        if want["drawdown_pct"] is None:
            assert coin.drawdown_pct is None
        else:
            assert coin.drawdown_pct == pytest.approx(want["drawdown_pct"], rel=1e-12)
            assert (coin.drawdown_pct or 0.0) <= 0
        if want["volatility"] is None:
            assert coin.volatility_30d_ratio is None
        else:
            assert coin.volatility_30d_ratio == pytest.approx(want["volatility"], rel=1e-9)
        assert coin.indexed[0][1] == pytest.approx(100) if coin.indexed else True
    by_id = {c.coin_id: c for c in year.coins}
    assert by_id["c00"].days == 365
    assert by_id["c08"].days == 20 and by_id["c09"].days == 1
    # No 30 straight returns: a missed day (c05), too short a history (c08, c09).
    assert [c for c in by_id if by_id[c].volatility_30d_ratio is None] == ["c05", "c08", "c09"]


def test_golds_own_30_day_volatility_wins_when_gold_has_it(
    gold_con: duckdb.DuckDBPyConnection,
) -> None:
    gold_con.execute("alter table gold.coin_daily add column volatility_30d_ratio double")
    gold_con.execute(
        "update gold.coin_daily set volatility_30d_ratio = cast(coin_id[2:] as int) / 1000 "
        "where coin_id <> 'c03'"
    )
    year = read_year(gold_con)
    assert year.volatility_from_gold
    assert {c.coin_id: c.volatility_30d_ratio for c in year.coins} == {
        f"c{n:02d}": None if n == 3 else n / 1000 for n in range(10)
    }


def test_the_year_in_html_matches_the_figures(gold_con: duckdb.DuckDBPyConnection) -> None:
    year = read_year(gold_con)
    html = year_section(year, currency="usd", is_sample=False)
    drawdown_table, volatility_table = html.split("<h3>Drawdown")[1].split("<h3>30-day")
    for coin in year.coins:
        row = drawdown_table.split(f"Coin {int(coin.coin_id[1:])} <span")[1].split("</tr>")[0]
        assert format_price(coin.latest_close) in row
        assert format_change(coin.drawdown_pct) in row
        assert f">{coin.days:,}</td>" in row
    # Highest volatility first; coins without 30 returns are named below the table.
    ranked = sorted(
        (c for c in year.coins if c.volatility_30d_ratio is not None),
        key=lambda c: -(c.volatility_30d_ratio or 0),
    )
    shown = re.findall(r'<td class="num strong">([0-9.]+%)</td>', volatility_table)
    assert shown == [format_volatility(c.volatility_30d_ratio) for c in ranked]
    assert "Not enough history yet for Coin 5, Coin 8, Coin 9" in volatility_table
    # A line per coin with two closes or more (both drawings of each chart); Coin 9's one
    # close is a point and a sentence.
    assert html.count("<path ") == 2 * 2 * 9
    assert "One close only for Coin 9: a point, not a line." in html
    assert "Coin 8 starts on " + f"{(END - timedelta(days=19)):%b} " in html
    assert "2025" in html and "Sample data" not in html


def test_a_gold_without_complete_days_says_so() -> None:
    con = duckdb.connect()
    con.execute("create schema gold")
    con.execute(
        "create table gold.coin_daily as select 'bitcoin' as coin_id, date '2026-02-15' as day, "
        "'btc' as symbol, 'Bitcoin' as name, false as is_complete_day, 1.0 as close_price, "
        "2.0 as market_cap, null::double as daily_return_ratio, "
        "null::double as volatility_7d_ratio"
    )
    year = read_year(con)
    assert year.end is None and [c.coin_id for c in year.coins] == ["bitcoin"]
    html = year_section(year, currency="usd", is_sample=True)
    assert "No complete day yet" in html and "<svg" not in html and ">sample<" in html


# --- lakes -------------------------------------------------------------------------------------


def build(lake: Path) -> None:
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


@pytest.fixture(autouse=True)
def in_a_scratch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's default is ./report.html: each test runs in a folder of its own."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)


def test_two_days_of_snapshots_are_one_close_each_and_no_line(
    lake: Path, lake_templates: LakeTemplates
) -> None:
    lake_templates.copy(two_days, lake)  # snapshots at T0 and a day later, built
    result = build_report(settings_for(lake), now=T0 + timedelta(days=1, hours=1))
    html = result.path.read_text(encoding="utf-8")
    section = html.split("<h2>The last 365 days")[1].split("</section>")[0]
    assert result.year_end == T0.date() and result.drawdown_pct == {}
    assert "One close only for Bitcoin, Ethereum, Tether" in section
    assert "<path " not in section  # points, no lines
    assert f"{T0 + timedelta(days=1):%b} {(T0 + timedelta(days=1)).day}, 2026 is not over" in (
        section
    )


def daily_points(body: dict[str, Any]) -> dict[date, float]:
    """The recorded body's daily prices: per UTC day, the point nearest its 00:00 within 30
    minutes; the last point is the price at the request ("now"), never a day's."""
    best: dict[date, tuple[int, float]] = {}
    for ms, price in body["prices"][:-1]:
        midnight = (ms + 43_200_000) // 86_400_000 * 86_400_000
        distance = abs(ms - midnight)
        day = datetime.fromtimestamp(midnight / 1000, UTC).date()
        if distance <= 1_800_000 and (day not in best or distance < best[day][0]):
            best[day] = (distance, price)
    return {day: price for day, (_, price) in sorted(best.items())}


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake as `run --sample` and `backfill --sample --top 5 --with-ohlc` leave it."""
    lake = tmp_path_factory.mktemp("backfilled") / "lake"
    settings = settings_for(lake)
    ingest(settings, sample=True)
    build(lake)
    fetch_history(settings, top=5, with_ohlc=True, sample=True)
    build_silver(settings)
    # Whole, as a first transform would: the year does not depend on how gold picks new
    # history up incrementally (tested with gold).
    build_gold(settings, full_rebuild=True)
    return lake


def test_bitcoins_drawdown_on_a_backfilled_sample_lake_is_the_recorded_ones(
    backfilled: Path,
) -> None:
    con = lake_db(backfilled)
    try:
        history_days = con.execute(
            "select count(*) from gold.coin_daily where coin_id = 'bitcoin' and day < ?",
            [date(2022, 1, 1)],
        ).fetchone()
    finally:
        con.close()
    if not history_days or not history_days[0]:
        pytest.skip("gold.coin_daily does not merge silver.coin_history_daily yet")
    points = daily_points(json.loads(fixture_bytes(CHART)))
    assert len(points) == 30
    # The close of day D is the price at 00:00 UTC of D+1, for the days history has: the
    # first point opens Apr 16 (and closes Apr 15, a day the lake knows nothing else of).
    closes = [price for day, price in points.items() if day - timedelta(days=1) in points]
    assert len(closes) == 29
    drawdown = 100 * (closes[-1] / max(closes) - 1)
    result = build_report(settings_for(backfilled))
    html = result.path.read_text(encoding="utf-8")
    assert result.drawdown_pct["bitcoin"] == pytest.approx(drawdown, rel=1e-9)
    row = html.split("Drawdown from the year")[1].split("Bitcoin <span")[1].split("</tr>")[0]
    assert format_change(drawdown) in row and format_price(closes[-1]) in row
    assert format_price(max(closes)) in row and ">29</td>" in row
    # Sample data, and a year that ended long before the snapshot: both said.
    section = html.split("<h2>The last 365 days")[1].split("</section>")[0]
    assert ">sample<" in section and "Sample data:" in section
    assert "days before the lake&#x27;s latest day" in section
    # The other four of the top 5 have no history (404 in the sample): named, not drawn.
    assert "No close in the year for Ethereum, Tether" in section


def test_a_year_renders_for_an_empty_year_data() -> None:
    html = year_section(YearData([], None, None, False), currency="usd", is_sample=False)
    assert "No complete day yet" in html
