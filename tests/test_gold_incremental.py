"""Incremental gold.coin_daily equals a whole rebuild, whatever order and pace snapshots come in.

One lake goes through a sequence of transforms with hostile timing: several snapshots a day,
a backlog of days at once, missed days, snapshots landing for a day older than the latest
(and older than every day gold holds), snapshots of another currency arriving meanwhile, and
switches of currency. After every transform, every column of every row of gold.coin_daily is
compared with the model computed over the whole of silver (`coin_daily_from` = 1900-01-01),
and the commit message says which days the build recomputed.

Snapshots are the recorded 2023 top 5, every price multiplied by a known factor of the instant
(and, in eur, by the /global recorded with them: the rate CoinGecko's own conversion uses).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryptolake.catalog import open_lake, snapshots
from cryptolake.gold import (
    COIN_DAILY_PRIOR_DAYS,
    COIN_DAILY_SNAPSHOT_LOOKBACK_DAYS,
    build_gold,
    define_coin_daily_prior,
)
from cryptolake.gold_scope import EVERYTHING, set_latest_snapshot
from cryptolake.silver import build_silver
from cryptolake.sqlfiles import load_sql

from .conftest import GLOBAL, MARKETS, fixture_bytes
from .lakes import land, rows_of, same_rows, settings_for

RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS))[:5]
TOTALS: dict[str, float] = json.loads(fixture_bytes(GLOBAL))["data"]["total_market_cap"]
MONEY = ("current_price", "market_cap", "total_volume", "high_24h", "low_24h", "ath", "atl")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant `day` days after 2026-03-02 00:00 UTC (negative: before it)."""
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).date().isoformat()


def factor(when: datetime) -> float:
    """A deterministic, wiggly price path: 1 +- a few percent, different at every instant."""
    n = int((when - DAY0).total_seconds() // 60)
    return 1 + 0.03 * ((n * 7919) % 101 - 50) / 50


def body(when: datetime, currency: str) -> bytes:
    """The recorded top 5 at `when`: prices moved by `factor`, money in `currency`."""
    rate = TOTALS[currency] / TOTALS["usd"]
    out = []
    for record in RECORDS:
        record = dict(record)
        for name in MONEY:
            if record.get(name) is not None:
                record[name] = record[name] * rate
        record["current_price"] = record["current_price"] * factor(when)
        out.append(record)
    return json.dumps(out).encode()


def bitcoin(when: datetime, currency: str = "usd") -> float:
    return float(RECORDS[0]["current_price"]) * TOTALS[currency] / TOTALS["usd"] * factor(when)


def every_6_hours(first: int, last: int) -> list[datetime]:
    return [at(d, h, 5) for d in range(first, last + 1) for h in (0, 6, 12, 18)]


@dataclass(frozen=True)
class Transform:
    """Snapshots landed (in this order), then one transform building gold in `currency`."""

    what: str
    usd: list[datetime]
    currency: str
    scope: str  # the end of the gold commit's message
    eur: tuple[datetime, ...] = ()


TRANSFORMS = [
    Transform("the first build", [at(0, 0, 5), at(0, 6, 5)], "usd", "whole rebuild"),
    # Several snapshots a day: the day before the changed one is recomputed too.
    Transform(
        "later the same day", [at(0, 12, 5), at(0, 18, 5)], "usd", f"coin_daily from {day(-1)}"
    ),
    # A backlog of eight days in one transform, eur snapshots arriving beside them.
    Transform(
        "a backlog of days",
        every_6_hours(1, 8),
        "usd",
        f"coin_daily from {day(0)}",
        eur=tuple(at(d, 9) for d in range(2, 9)),
    ),
    # Days 9 and 10 missed: day 8, the latest gold had, is complete now.
    Transform(
        "after two missed days", [at(11, 0, 5), at(11, 6, 5)], "usd", f"coin_daily from {day(8)}"
    ),
    # A snapshot of day 5 lands after day 11's, two minutes before midnight: day 5's close.
    Transform("a late snapshot", [at(5, 23, 58)], "usd", f"coin_daily from {day(4)}"),
    # A late first snapshot of day 3, a minute after midnight (day 3's first was at 00:05):
    # it closes day 2, the day before the one that changed.
    Transform("a late first of a day", [at(3, 0, 1)], "usd", f"coin_daily from {day(2)}"),
    # Older than every day gold holds: a new first day, and everything after it recomputed.
    Transform("older than all", [at(-2, 12)], "usd", f"coin_daily from {day(-3)}"),
    # Only eur snapshots arrive: usd's coin_daily has nothing to recompute.
    Transform("only another currency", [], "usd", "coin_daily unchanged", eur=(at(11, 9),)),
    # The gap filled in late, a snapshot per missed day, the first of them out of order.
    Transform("the gap filled", [at(10, 0, 30), at(9, 12)], "usd", f"coin_daily from {day(8)}"),
    Transform("a switch to eur", [], "eur", "whole rebuild", eur=(at(11, 18, 5), at(12, 0, 5))),
    # A late eur snapshot for a day without any, beside one of the latest day.
    Transform("eur late", [], "eur", f"coin_daily from {day(0)}", eur=(at(12, 6, 5), at(1, 9))),
    Transform("back to usd", [at(12, 0, 5)], "usd", "whole rebuild"),
    Transform("usd again", [at(12, 6, 5)], "usd", f"coin_daily from {day(11)}"),
    # Nothing new at all: no gold commit (publish stays up to date), the last gold stands.
    Transform("nothing new", [], "usd", "up to date"),
]


Rows = list[dict[str, Any]]


def coin_daily(lake: Path, *, as_of: int | None = None) -> Rows:
    with open_lake(settings_for(lake), read_only=True, as_of=as_of) as con:
        return rows_of(con, "select * from gold.coin_daily order by coin_id, day")


def built_and_rebuilt_whole(lake: Path, currency: str, *, as_of: int) -> tuple[Rows, Rows]:
    """gold.coin_daily at snapshot `as_of`, and the model over the whole of its silver (as a
    whole rebuild computes it)."""
    with open_lake(settings_for(lake), read_only=True, as_of=as_of) as con:
        built = rows_of(con, "select * from gold.coin_daily order by coin_id, day")
        con.execute("set variable vs_currency = ?", [currency])
        con.execute("set variable coin_daily_from = ?", [EVERYTHING])
        set_latest_snapshot(con)
        define_coin_daily_prior(con, incremental=False)
        model = load_sql("duckdb/gold/coin_daily.sql")
        return built, rows_of(con, f"select * from ({model}) order by coin_id, day")


@dataclass(frozen=True)
class Built:
    step: Transform
    snapshot_id: int  # of the gold commit
    message: str | None
    coin_daily_from: str | None
    up_to_date: bool = False


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Built]]:
    """One lake through every transform, and each transform's gold commit (read as of it)."""
    lake = tmp_path_factory.mktemp("incremental") / "lake"
    lake.mkdir()
    built = []
    for step in TRANSFORMS:
        for when in step.usd:
            land(lake, body(when, "usd"), at=when)
        for when in step.eur:
            land(lake, body(when, "eur"), at=when, vs_currency="eur")
        settings = settings_for(lake).with_(vs_currency=step.currency)
        build_silver(settings)
        result = build_gold(settings)
        assert result.vs_currency == step.currency
        built.append(
            Built(
                step,
                int(result.lake_version),
                None,
                result.coin_daily_from,
                up_to_date=result.up_to_date,
            )
        )
    with open_lake(settings_for(lake), read_only=True) as con:
        messages = {s.snapshot_id: s.message for s in snapshots(con, limit=1000)}
    return lake, [replace(b, message=messages[b.snapshot_id]) for b in built]


@pytest.mark.parametrize("n", range(len(TRANSFORMS)), ids=[t.what for t in TRANSFORMS])
def test_incremental_coin_daily_equals_a_whole_rebuild(
    history: tuple[Path, list[Built]], n: int
) -> None:
    lake, built = history
    step, snapshot = built[n].step, built[n].snapshot_id
    rows, whole = built_and_rebuilt_whole(lake, step.currency, as_of=snapshot)
    assert same_rows(rows, whole)
    assert rows and {r["vs_currency"] for r in rows} == {step.currency}
    if step.scope == "up to date":
        assert built[n].up_to_date
        assert built[n].snapshot_id == built[n - 1].snapshot_id
        return
    assert not built[n].up_to_date
    assert built[n].message == f"gold: built for {step.currency}, {step.scope}"
    if step.scope.startswith("coin_daily from "):
        assert built[n].coin_daily_from == step.scope.removeprefix("coin_daily from ")
    elif step.scope == "whole rebuild":
        assert built[n].coin_daily_from is None


def test_a_whole_rebuild_of_the_last_lake_changes_no_row(
    history: tuple[Path, list[Built]], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(history[0], copy)
    incremental = coin_daily(copy)
    result = build_gold(settings_for(copy).with_(vs_currency="usd"), full_rebuild=True)
    assert result.coin_daily_from is None
    with open_lake(settings_for(copy), read_only=True) as con:
        assert snapshots(con, limit=1)[0].message == "gold: built for usd, whole rebuild"
    assert same_rows(coin_daily(copy), incremental)


def test_the_hostile_snapshots_moved_the_figures_they_should(
    history: tuple[Path, list[Built]],
) -> None:
    """The comparisons above are of rows these snapshots made: closes, gaps and windows."""
    rows = {(r["coin_id"], str(r["day"])): r for r in coin_daily(history[0])}
    assert sorted({d for c, d in rows if c == "bitcoin"}) == [
        day(d) for d in range(-2, 13) if d != -1
    ]
    assert len(rows) == 5 * 14
    # Day 5 closes at the late snapshot, two minutes before midnight (not day 6's 00:05).
    late = rows[("bitcoin", day(5))]
    assert late["close_at"] == "2026-03-07 23:58:00+00"
    assert late["close_price"] == pytest.approx(bitcoin(at(5, 23, 58)))
    assert rows[("bitcoin", day(6))]["open_price"] == pytest.approx(bitcoin(at(5, 23, 58)))
    assert rows[("bitcoin", day(2))]["close_at"] == "2026-03-05 00:01:00+00"
    assert rows[("bitcoin", day(2))]["close_price"] == pytest.approx(bitcoin(at(3, 0, 1)))
    # The day older than all has no neighbour: no close within 12 hours, no return.
    first = rows[("bitcoin", day(-2))]
    assert (first["is_complete_day"], first["close_price"]) == (True, None)
    assert first["daily_return_ratio"] is None
    # The gap filled: day 9 closes at day 10's 00:30 snapshot, day 10 at day 11's first.
    assert rows[("bitcoin", day(9))]["close_at"] == "2026-03-12 00:30:00+00"
    assert rows[("bitcoin", day(10))]["close_at"] == "2026-03-13 00:05:00+00"
    # Seven consecutive returns (days 1 to 7) make day 7's the first 7-day volatility.
    volatile = sorted(
        d for (c, d), r in rows.items() if c == "bitcoin" and r["volatility_7d_ratio"] is not None
    )
    assert volatile == [day(d) for d in range(7, 12)]
    today = rows[("bitcoin", day(12))]
    assert today["is_complete_day"] is False
    assert today["close_price"] == pytest.approx(bitcoin(at(12, 6, 5)))


def test_an_eur_gold_reads_eur_snapshots_only(history: tuple[Path, list[Built]]) -> None:
    lake, built = history
    eur = next(b for b in built if b.step.what == "eur late")
    rows = {(r["coin_id"], str(r["day"])): r for r in coin_daily(lake, as_of=eur.snapshot_id)}
    eur_days = sorted({d for c, d in rows if c == "bitcoin"})
    assert eur_days == [day(d) for d in (1, *range(2, 9), 11, 12)]
    assert rows[("bitcoin", day(12))]["close_price"] == pytest.approx(bitcoin(at(12, 6, 5), "eur"))
    assert rows[("bitcoin", day(1))]["snapshot_count"] == 1


def test_the_model_reads_days_of_silver_and_gold_s_own_prior_days() -> None:
    """Snapshots are read from the day before `coin_daily_from`, history and candles from it,
    and the 30-day windows' earlier days from gold.coin_daily itself (coin_daily_prior), as
    gold.py documents: a month of silver is never re-read."""
    model = load_sql("duckdb/gold/coin_daily.sql")
    lookbacks = re.findall(r"getvariable\('coin_daily_from'\) - (\d+)", model)
    # The snapshots', and gold's row of the day before (the first day's return reads it).
    assert lookbacks == [str(COIN_DAILY_SNAPSHOT_LOOKBACK_DAYS), "1"]
    assert "snapshot_date >= getvariable('coin_daily_from') - 1\n" in model
    assert "where day = getvariable('coin_daily_from') - 1\n" in model
    prior = load_sql("duckdb/incremental/coin_daily_prior.sql")
    assert f"getvariable('coin_daily_from') - {COIN_DAILY_PRIOR_DAYS}" in prior
    assert COIN_DAILY_PRIOR_DAYS == 29  # a 30-day window ending on the first day recomputed


@pytest.mark.parametrize("n", range(len(TRANSFORMS)), ids=[t.what for t in TRANSFORMS])
def test_meta_snapshots_redone_from_the_changed_day_equals_all_of_silver(
    history: tuple[Path, list[Built]], n: int
) -> None:
    """meta.snapshots (what publish may ship) is redone from the first day silver changed on;
    at every gold commit it lists every snapshot silver holds, in every currency."""
    lake, built = history
    with open_lake(settings_for(lake), read_only=True, as_of=built[n].snapshot_id) as con:
        recorded = rows_of(con, "select * from meta.snapshots order by snapshot_at")
        whole = rows_of(
            con,
            "select snapshot_at, any_value(run_id) as run_id, any_value(vs_currency) as "
            "vs_currency, count(*) as coins from silver.market_snapshots group by snapshot_at "
            "order by snapshot_at",
        )
    assert recorded == whole
    assert len(recorded) == len({r["snapshot_at"] for r in recorded})
