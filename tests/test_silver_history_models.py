"""silver.coin_history_daily and silver.coin_ohlc_4h, run straight on recorded bodies.

Each model runs in an in-memory DuckDB with the inputs cryptolake.silver_io gives it (the
`bronze_files` temp table and variable). Bodies are the recorded bitcoin /market_chart and
/ohlc responses, or copies of them with real points reordered, repeated or re-stamped: every
value asserted is a value of the recorded JSON, and which one is computed here, not by SQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cryptolake.sqlfiles import load_sql

from .conftest import FIXTURES

MARKET_CHART = (
    FIXTURES / "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
)
OHLC = FIXTURES / "ohlc_bitcoin_usd_days7_julianfssen-coingecko_ruby_2021-05-15.json"
Points = list[list[Any]]  # [[ms_timestamp, value, ...], ...]
CHART: dict[str, Points] = json.loads(MARKET_CHART.read_text())
CANDLES: Points = json.loads(OHLC.read_text())
SERIES = ("prices", "market_caps", "total_volumes")

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
# The chart's last ("now") point is 14:13:29.000 UTC: the bodies arrived right after it.
FETCHED_AT = datetime(2021, 5, 15, 14, 13, 30, tzinfo=UTC)

DAILY_COLUMNS = [
    ("coin_id", "VARCHAR"),
    ("vs_currency", "VARCHAR"),
    ("day", "DATE"),
    ("price", "DOUBLE"),
    ("market_cap", "DOUBLE"),
    ("total_volume", "DOUBLE"),
    ("point_at", "TIMESTAMP WITH TIME ZONE"),
    ("fetched_at", "TIMESTAMP WITH TIME ZONE"),
    ("run_id", "VARCHAR"),
    ("is_sample", "BOOLEAN"),
]
OHLC_COLUMNS = [
    ("coin_id", "VARCHAR"),
    ("vs_currency", "VARCHAR"),
    ("candle_at", "TIMESTAMP WITH TIME ZONE"),
    ("day", "DATE"),
    ("open_price", "DOUBLE"),
    ("high_price", "DOUBLE"),
    ("low_price", "DOUBLE"),
    ("close_price", "DOUBLE"),
    ("is_complete", "BOOLEAN"),
    ("fetched_at", "TIMESTAMP WITH TIME ZONE"),
    ("run_id", "VARCHAR"),
    ("is_sample", "BOOLEAN"),
]


@dataclass(frozen=True)
class Body:
    """A bronze body file with the manifest fields the models read."""

    path: Path
    run_id: str = "run-a"
    fetched_at: datetime = FETCHED_AT
    coin_id: str = "bitcoin"
    vs_currency: str = "usd"


@dataclass(frozen=True)
class Output:
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]  # timestamps with time zone as epoch ms


def run_model(name: str, bodies: Sequence[Body]) -> Output:
    """silver model `name` over `bodies`, with the inputs cryptolake.silver_io sets."""
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(
            "create temp table bronze_files (path varchar, run_id varchar, "
            "snapshot_at timestamptz, fetched_at timestamptz, vs_currency varchar, "
            "page integer, trimmed_ids varchar[], is_sample boolean, coin_id varchar)"
        )
        for body in bodies:
            con.execute(
                "insert into bronze_files values (?, ?, cast(? as timestamptz), "
                "cast(? as timestamptz), ?, 1, [], false, ?)",
                [
                    str(body.path),
                    body.run_id,
                    (body.fetched_at - timedelta(seconds=1)).isoformat(),
                    body.fetched_at.isoformat(),
                    body.vs_currency,
                    body.coin_id,
                ],
            )
        con.execute("set variable bronze_files = ?", [[str(b.path) for b in bodies]])
        con.execute(f"create temp table model_rows as {load_sql(f'duckdb/silver/{name}.sql')}")
        columns = [(n, str(t)) for n, t, *_ in con.execute("describe model_rows").fetchall()]
        # epoch ms, not datetimes: tz-aware fetches need pytz
        select = ", ".join(f"epoch_ms({n}) as {n}" if "TIME ZONE" in t else n for n, t in columns)
        cur = con.execute(f"select {select} from model_rows")
        names = [d[0] for d in cur.description or []]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return Output(columns, rows)
    finally:
        con.close()


def daily(*bodies: Body) -> dict[date, dict[str, Any]]:
    rows = run_model("coin_history_daily", bodies).rows
    by_day = {r["day"]: r for r in rows}
    assert len(by_day) == len(rows)
    return by_day


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(content))
    return path


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def midnight_ms(day: date) -> int:
    return ms(datetime(day.year, day.month, day.day, tzinfo=UTC))


def day_of(point_ms: int) -> date:
    return datetime.fromtimestamp(point_ms / 1000, UTC).date()


def nearest_to_midnight(points: Points) -> dict[date, int]:
    """Index of the point nearest each UTC midnight, if within 30 minutes; the last point
    ("now") left out."""
    candidates = points[:-1]
    out: dict[date, int] = {}
    day = day_of(candidates[0][0])
    while day <= day_of(candidates[-1][0]) + timedelta(days=1):
        m = midnight_ms(day)
        i = min(range(len(candidates)), key=lambda j: (abs(candidates[j][0] - m), j))
        if abs(candidates[i][0] - m) <= 30 * MINUTE_MS:
            out[day] = i
        day += timedelta(days=1)
    return out


NEAREST = nearest_to_midnight(CHART["prices"])
LAST_DAY = date(2021, 5, 15)
K = NEAREST[LAST_DAY]  # the point nearest 2021-05-15 00:00 UTC


def each_series(change: Callable[[Points], Points]) -> dict[str, Points]:
    """The recorded chart with `change` applied to each of its three series."""
    return {name: change(CHART[name]) for name in SERIES}


# coin_history_daily


@pytest.mark.parametrize(
    ("name", "columns"),
    [("coin_history_daily", DAILY_COLUMNS), ("coin_ohlc_4h", OHLC_COLUMNS)],
)
def test_empty_batch_gives_the_columns_and_no_rows(
    tmp_path: Path, name: str, columns: list[tuple[str, str]]
) -> None:
    # silver_io hands a model a file holding `[]` when the batch has no body of its dataset.
    out = run_model(name, [Body(write(tmp_path, "empty", []))])
    assert out.columns == columns
    assert out.rows == []


def test_hourly_body_gives_the_point_nearest_each_midnight() -> None:
    rows = daily(Body(MARKET_CHART))

    assert sorted(rows) == [date(2021, 4, 16) + timedelta(days=n) for n in range(30)]
    assert NEAREST.keys() == rows.keys()
    for day, row in rows.items():
        i = NEAREST[day]
        assert row["point_at"] == CHART["prices"][i][0]
        assert row["price"] == CHART["prices"][i][1]
        assert row["market_cap"] == CHART["market_caps"][i][1]
        assert row["total_volume"] == CHART["total_volumes"][i][1]
        assert (row["coin_id"], row["vs_currency"], row["run_id"]) == ("bitcoin", "usd", "run-a")
        assert row["fetched_at"] == ms(FETCHED_AT)
        assert row["is_sample"] is False
        # the recorded hourly points are at most 16.6 minutes from midnight
        assert abs(row["point_at"] - midnight_ms(day)) < 17 * MINUTE_MS
    assert rows[LAST_DAY]["point_at"] == ms(datetime(2021, 5, 15, 0, 0, 42, 94_000, tzinfo=UTC))
    assert CHART["prices"][-1][0] not in {r["point_at"] for r in rows.values()}


@pytest.mark.parametrize("offset_ms", [1, 0])
def test_now_point_is_not_a_day_unless_stamped_at_midnight(tmp_path: Path, offset_ms: int) -> None:
    # The last real point copied to the end again, its timestamp moved back to 00:00:00.001 (or
    # 00:00:00.000) of 2021-05-14: nearer that midnight than any point, but "now".
    stamp = midnight_ms(date(2021, 5, 14)) + offset_ms
    body = each_series(lambda points: [*points, [stamp, points[-1][1]]])
    rows = daily(Body(write(tmp_path, "backwards", body)))

    original = daily(Body(MARKET_CHART))
    if offset_ms:
        assert rows == original
    else:
        assert rows[date(2021, 5, 14)]["point_at"] == stamp
        assert rows[date(2021, 5, 14)]["price"] == CHART["prices"][-1][1]
        assert rows[date(2021, 5, 14)]["total_volume"] == CHART["total_volumes"][-1][1]
        assert {d: r for d, r in rows.items() if d != date(2021, 5, 14)} == {
            d: r for d, r in original.items() if d != date(2021, 5, 14)
        }


def test_now_point_repeating_the_previous_timestamp_is_not_the_day(tmp_path: Path) -> None:
    # The body cut after the point nearest 2021-05-15 00:00, then the real "now" values
    # stamped with that point's timestamp again (the API's repeated last timestamp).
    body = each_series(lambda points: [*points[: K + 1], [points[K][0], points[-1][1]]])
    rows = daily(Body(write(tmp_path, "repeat", body)))

    assert len(rows) == 30
    assert rows[LAST_DAY]["point_at"] == CHART["prices"][K][0]
    for name, column in zip(SERIES, ("price", "market_cap", "total_volume"), strict=True):
        assert rows[LAST_DAY][column] == CHART[name][K][1]


def test_nearest_point_wins_then_the_earlier_position(tmp_path: Path) -> None:
    # After the point nearest 2021-05-15 00:00 (K): a copy 3 ms later and a copy with the same
    # timestamp, both carrying the next real point's values.
    def duplicated(points: Points) -> Points:
        later = points[K + 1][1]
        extra = [[points[K][0] + 3, later], [points[K][0], later]]
        return [*points[: K + 1], *extra, *points[K + 1 :]]

    rows = daily(Body(write(tmp_path, "dups", each_series(duplicated))))
    assert rows[LAST_DAY]["point_at"] == CHART["prices"][K][0]
    for name, column in zip(SERIES, ("price", "market_cap", "total_volume"), strict=True):
        assert rows[LAST_DAY][column] == CHART[name][K][1]

    # Equally far from midnight: 3 ms after it (next point's values) first in the body, 3 ms
    # before it (point K's values) second. Position decides, not time.
    m = midnight_ms(LAST_DAY)

    def equidistant(points: Points) -> Points:
        extra = [[m + 3, points[K + 1][1]], [m - 3, points[K][1]]]
        return [*points[:K], *extra, *points[K + 1 :]]

    rows = daily(Body(write(tmp_path, "ties", each_series(equidistant))))
    assert rows[LAST_DAY]["point_at"] == m + 3
    for name, column in zip(SERIES, ("price", "market_cap", "total_volume"), strict=True):
        assert rows[LAST_DAY][column] == CHART[name][K + 1][1]


@pytest.mark.parametrize("offset_ms", [30 * MINUTE_MS, -30 * MINUTE_MS, 30 * MINUTE_MS + 1])
def test_a_day_takes_points_up_to_30_minutes_from_midnight(tmp_path: Path, offset_ms: int) -> None:
    # The point nearest 2021-05-14 00:00 (the day's only one within 30 minutes) re-stamped.
    day = date(2021, 5, 14)
    i = NEAREST[day]

    def restamped(points: Points) -> Points:
        out = [list(p) for p in points]
        out[i][0] = midnight_ms(day) + offset_ms
        return out

    rows = daily(Body(write(tmp_path, "edge", each_series(restamped))))
    if abs(offset_ms) <= 30 * MINUTE_MS:
        assert rows[day]["point_at"] == midnight_ms(day) + offset_ms
        assert rows[day]["price"] == CHART["prices"][i][1]
    else:
        assert day not in rows
        assert len(rows) == 29


def test_series_are_joined_on_the_exact_timestamp(tmp_path: Path) -> None:
    # market_caps without the point nearest 2021-05-15 00:00, total_volumes without the one
    # nearest 2021-05-14 00:00, prices without its first point (nowhere near a midnight).
    j = NEAREST[date(2021, 5, 14)]
    body = {
        "prices": CHART["prices"][1:],
        "market_caps": CHART["market_caps"][:K] + CHART["market_caps"][K + 1 :],
        "total_volumes": CHART["total_volumes"][:j] + CHART["total_volumes"][j + 1 :],
    }
    rows = daily(Body(write(tmp_path, "gaps", body)))

    original = daily(Body(MARKET_CHART))
    assert rows[LAST_DAY] == original[LAST_DAY] | {"market_cap": None}
    assert rows[date(2021, 5, 14)] == original[date(2021, 5, 14)] | {"total_volume": None}
    assert {d: r for d, r in rows.items() if d < date(2021, 5, 14)} == {
        d: r for d, r in original.items() if d < date(2021, 5, 14)
    }


def test_numbers_sent_as_strings_read_like_numbers(tmp_path: Path) -> None:
    body = {name: [[str(t), str(v)] for t, v in CHART[name]] for name in SERIES}
    assert daily(Body(write(tmp_path, "strings", body))) == daily(Body(MARKET_CHART))


ERROR_BODIES = [
    "error_422_missing_vs_currency_julianfssen-coingecko_ruby_2021-07-19.json",
    "error_429_rate_limit_nimblehq-jetpack-compose-crypto_2022-09-29.json",
    "error_500_ohlc_missing_params_julianfssen-coingecko_ruby_2021-07-19.json",
]


def test_bodies_without_a_prices_array_give_no_rows(tmp_path: Path) -> None:
    bodies = [
        Body(write(tmp_path, "not_found", {"error": "coin not found"})),
        *(Body(FIXTURES / name) for name in ERROR_BODIES),
        Body(OHLC),  # an array, not an object
        Body(write(tmp_path, "no_prices", {n: CHART[n] for n in SERIES if n != "prices"})),
        Body(write(tmp_path, "prices_object", {"prices": {"bitcoin": CHART["prices"]}})),
    ]
    for body in bodies:
        assert daily(body) == {}, body.path.name
    # ... and do not disturb a good body in the same batch
    assert daily(*bodies, Body(MARKET_CHART)) == daily(Body(MARKET_CHART))


@pytest.mark.parametrize(
    ("run_b", "fetched_b"),
    [
        ("run-0", FETCHED_AT + timedelta(hours=1)),  # fetched later, though sorted first
        ("run-b", FETCHED_AT),  # fetched at the same instant: the run id decides
    ],
)
def test_body_fetched_last_wins_each_day(tmp_path: Path, run_b: str, fetched_b: datetime) -> None:
    # Body B: the first 300 points (to 2021-04-28 01:06), with the point nearest 2021-04-20 00:00
    # moved 10 minutes later: B wins that day even though A has a point nearer midnight.
    moved_day = date(2021, 4, 20)
    i = NEAREST[moved_day]

    def moved(points: Points) -> Points:
        head = [list(p) for p in points[:300]]
        head[i][0] += 10 * MINUTE_MS
        return head

    b_body = each_series(moved)
    b_days = set(nearest_to_midnight(b_body["prices"]))
    rows = daily(
        Body(MARKET_CHART, run_id="run-a"),
        Body(write(tmp_path, "b", b_body), run_id=run_b, fetched_at=fetched_b),
    )

    assert len(rows) == 30
    assert b_days == {date(2021, 4, 16) + timedelta(days=n) for n in range(13)}
    for day, row in rows.items():
        assert row["run_id"] == (run_b if day in b_days else "run-a")
        assert row["fetched_at"] == ms(fetched_b if day in b_days else FETCHED_AT)
    assert rows[moved_day]["point_at"] == CHART["prices"][i][0] + 10 * MINUTE_MS
    assert rows[moved_day]["price"] == CHART["prices"][i][1]


# coin_ohlc_4h


def ohlc(*bodies: Body) -> dict[int, dict[str, Any]]:
    rows = run_model("coin_ohlc_4h", bodies).rows
    by_candle = {r["candle_at"]: r for r in rows}
    assert len(by_candle) == len(rows)
    return by_candle


def test_ohlc_candles_equal_the_recorded_json() -> None:
    rows = ohlc(Body(OHLC))

    assert len(rows) == 42
    assert sorted(rows) == [c[0] for c in CANDLES]
    for stamp, open_, high, low, close in CANDLES:
        row = rows[stamp]
        assert (row["open_price"], row["high_price"], row["low_price"], row["close_price"]) == (
            open_,
            high,
            low,
            close,
        )
        # the timestamp is the close: the candle opened 4 hours earlier, on this day
        assert row["day"] == day_of(stamp - 4 * HOUR_MS)
        assert (row["coin_id"], row["vs_currency"], row["run_id"]) == ("bitcoin", "usd", "run-a")

    first = rows[CANDLES[0][0]]
    assert first["candle_at"] == ms(datetime(2021, 5, 8, 20, tzinfo=UTC))
    assert first["day"] == date(2021, 5, 8)
    assert (first["open_price"], first["high_price"]) == (57945.79, 59122.18)
    assert (first["low_price"], first["close_price"]) == (57945.79, 59122.18)
    # the candle closing at midnight is the previous day's last
    assert rows[ms(datetime(2021, 5, 9, tzinfo=UTC))]["day"] == date(2021, 5, 8)
    assert rows[ms(datetime(2021, 5, 9, 4, tzinfo=UTC))]["day"] == date(2021, 5, 9)
    # fetched at 14:13:30: the candle closing at 16:00 was still forming
    assert [r["candle_at"] for r in rows.values() if not r["is_complete"]] == [
        ms(datetime(2021, 5, 15, 16, tzinfo=UTC))
    ]


def test_ohlc_duplicates_keep_the_last_occurrence_and_the_last_fetch(tmp_path: Path) -> None:
    # Candle 5 again at the end with candle 6's prices; candle 0 again without a timestamp.
    body = [*CANDLES, [CANDLES[5][0], *CANDLES[6][1:]], [None, *CANDLES[0][1:]]]
    rows = ohlc(Body(write(tmp_path, "dups", body)))
    assert len(rows) == 42
    assert [rows[CANDLES[5][0]][c] for c in ("open_price", "close_price")] == [
        CANDLES[6][1],
        CANDLES[6][4],
    ]

    # The first 3 candles fetched at 02:30 on 2021-05-09: its last (closing 04:00) was forming.
    early = Body(
        write(tmp_path, "early", CANDLES[:3]),
        run_id="run-0",
        fetched_at=datetime(2021, 5, 9, 2, 30, tzinfo=UTC),
    )
    alone = ohlc(early)
    assert [alone[c[0]]["is_complete"] for c in CANDLES[:3]] == [True, True, False]
    # Fetched at the very instant it closed, it is complete.
    on_time = Body(early.path, fetched_at=datetime(2021, 5, 9, 4, tzinfo=UTC))
    assert [r["is_complete"] for r in ohlc(on_time).values()] == [True, True, True]
    # Fetched again later (the whole recorded body), it is complete: the last fetch wins.
    both = ohlc(early, Body(OHLC, run_id="run-a"))
    assert both == ohlc(Body(OHLC))
    assert both[CANDLES[2][0]]["is_complete"] is True


def test_ohlc_bodies_that_are_not_arrays_give_no_rows(tmp_path: Path) -> None:
    bodies = [
        Body(write(tmp_path, "not_found", {"error": "coin not found"})),
        *(Body(FIXTURES / name) for name in ERROR_BODIES),
        Body(MARKET_CHART),  # an object
    ]
    for body in bodies:
        assert ohlc(body) == {}, body.path.name
    assert ohlc(*bodies, Body(OHLC)) == ohlc(Body(OHLC))
