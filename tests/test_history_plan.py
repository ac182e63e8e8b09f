"""Planning history requests: coverage from manifests, days per coin, newest gaps first."""

from __future__ import annotations

from datetime import date, timedelta

from cryptolake.history_plan import Coverage, HistoryRequest, plan_requests

TODAY = date(2026, 11, 30)


def covered(first_ago: int, last_ago: int) -> Coverage:
    return Coverage(TODAY - timedelta(days=first_ago), TODAY - timedelta(days=last_ago))


def plan(
    coverage: dict[tuple[str, str], Coverage], coins: list[str], **kw: object
) -> list[tuple[str, str, int]]:
    requests: list[HistoryRequest] = plan_requests(
        coins, coverage, today=TODAY, days=365, with_ohlc=bool(kw.get("with_ohlc"))
    )
    return [(r.dataset, r.coin_id, r.days) for r in requests]


def test_a_new_coin_gets_the_whole_year_and_a_covered_one_nothing() -> None:
    coverage = {("coin_market_chart", "bitcoin"): covered(365, 0)}
    assert plan(coverage, ["bitcoin", "ethereum"]) == [("coin_market_chart", "ethereum", 365)]


def test_a_coin_covered_up_to_some_day_is_topped_up_with_one_day_of_overlap() -> None:
    coverage = {("coin_market_chart", "bitcoin"): covered(370, 3)}
    assert plan(coverage, ["bitcoin"]) == [("coin_market_chart", "bitcoin", 4)]


def test_a_coin_missing_older_days_gets_the_window_again() -> None:
    coverage = {("coin_market_chart", "bitcoin"): covered(30, 0)}
    assert plan(coverage, ["bitcoin"]) == [("coin_market_chart", "bitcoin", 365)]


def test_newest_gaps_first_then_by_rank() -> None:
    coverage = {
        ("coin_market_chart", "bitcoin"): covered(30, 0),  # only old days missing
        ("coin_market_chart", "ethereum"): covered(365, 2),  # the last two days missing
    }
    assert plan(coverage, ["bitcoin", "ethereum", "tether"]) == [
        ("coin_market_chart", "ethereum", 3),
        ("coin_market_chart", "tether", 365),
        ("coin_market_chart", "bitcoin", 365),
    ]


def test_candles_when_asked_and_kept_current_once_fetched() -> None:
    coverage = {
        ("coin_market_chart", "bitcoin"): covered(365, 0),
        ("coin_market_chart", "ethereum"): covered(365, 0),
        ("coin_ohlc", "ethereum"): covered(31, 1),
    }
    assert plan(coverage, ["bitcoin", "ethereum"]) == [("coin_ohlc", "ethereum", 30)]
    assert plan(coverage, ["bitcoin", "ethereum"], with_ohlc=True) == [
        ("coin_ohlc", "bitcoin", 30),
        ("coin_ohlc", "ethereum", 30),
    ]


def test_a_coin_not_found_is_left_alone_for_a_week() -> None:
    gone = Coverage(not_found_on=TODAY - timedelta(days=6))
    assert plan({("coin_market_chart", "x"): gone}, ["x"]) == []
    gone = Coverage(not_found_on=TODAY - timedelta(days=7))
    assert plan({("coin_market_chart", "x"): gone}, ["x"]) == [("coin_market_chart", "x", 365)]


def test_coverage_adds_requests_up() -> None:
    c = Coverage().add(made_on=TODAY - timedelta(days=10), days=365, found=True)
    c = c.add(made_on=TODAY, days=11, found=True)
    assert (c.first_day, c.last_day) == (TODAY - timedelta(days=375), TODAY)
