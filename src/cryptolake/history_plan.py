"""What history to ask for: which coins, how many days each, in which order.

Coverage is read from bronze, the source of truth: every history request has a manifest of
its own (see backfill.py) naming its dataset, coin, currency, the day it was made and the
`days` it asked for, so it covered the UTC days from (that day - days) to that day. A killed
backfill's committed requests count at once, before silver has read them: that is what makes
a backfill resumable per request.

A coin's history is complete when requests cover the whole window (the last `days` days up
to today). A coin never asked (it just entered the top N) gets the whole window in one
request; a coin covered up to some day gets one request with `days` reaching back just past
it (the top-up); a coin whose older days are missing gets the whole window again (CoinGecko's
`days` always ends at now). A coin CoinGecko said it does not know (HTTP 404) is not asked
again for NOT_FOUND_RETRY_DAYS.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from .bronze import is_history_request, latest_manifest, read_manifest, run_manifest_paths
from .datasets import COIN_MARKET_CHART, COIN_OHLC, OHLC_DAYS
from .errors import ConfigError, LakeError
from .fserrors import lake_io
from .lake import LakePaths

NOT_FOUND_RETRY_DAYS = 7


@dataclass(frozen=True, slots=True)
class Coverage:
    """The days requests of one dataset have covered for one coin, in one currency."""

    first_day: date | None = None  # the earliest day a request reached back to
    last_day: date | None = None  # the day of the latest successful request
    not_found_on: date | None = None  # the latest day the API answered 404 for the coin

    def add(self, *, made_on: date, days: int | None, found: bool) -> Coverage:
        if not found:
            latest = max(filter(None, (self.not_found_on, made_on)))
            return Coverage(self.first_day, self.last_day, latest)
        reach = made_on - timedelta(days=days or 0)
        first = min(filter(None, (self.first_day, reach)))
        last = max(filter(None, (self.last_day, made_on)))
        return Coverage(first, last, self.not_found_on)


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """One request to make: `days` of `dataset` for `coin_id`."""

    dataset: str
    coin_id: str
    days: int
    rank: int  # the coin's position in the top N (1 = largest)
    newest_gap: date  # the newest day it fills, for "newest gaps first"


@lake_io("read bronze history manifests")
def read_coverage(lake: LakePaths, *, vs_currency: str) -> dict[tuple[str, str], Coverage]:
    """(dataset, coin id) -> what its history requests in `vs_currency` have covered."""
    coverage: dict[tuple[str, str], Coverage] = {}
    for path in run_manifest_paths(lake):
        if not is_history_request(path):
            continue
        manifest = read_manifest(lake, path)
        if manifest.vs_currency != vs_currency or manifest.status == "failed":
            continue
        if manifest.dataset is None or manifest.coin_id is None:
            continue
        key = (manifest.dataset, manifest.coin_id)
        coverage[key] = coverage.get(key, Coverage()).add(
            made_on=date.fromisoformat(manifest.started_at[:10]),
            days=manifest.days,
            found=manifest.status == "complete",
        )
    return coverage


@lake_io("read the latest snapshot's coins from bronze")
def top_coins(lake: LakePaths, top: int | None) -> list[str]:
    """The ids of the top `top` coins of the lake's latest snapshot, largest first (None:
    all of them).

    Read from the latest complete run's `/coins/markets` bodies in bronze, so it works right
    after an ingest, before silver has run. Raises LakeError for a lake with no snapshot.
    """
    manifest = latest_manifest(lake)
    if manifest is None:
        raise LakeError(
            f"The lake {lake.root} has no snapshot to take its top coins from: run "
            "`cryptolake run` (or `cryptolake ingest`) first, or name the coins with --coins."
        )
    ids: list[str] = []
    for entry in sorted(manifest.files, key=lambda f: (f.page, f.refetch)):
        if entry.dataset != "coins_markets":
            continue
        records = json.loads(lake.store.read(entry.path))
        trimmed = set(entry.trimmed_ids)
        for record in records if isinstance(records, list) else []:
            coin = record.get("id") if isinstance(record, dict) else None
            if isinstance(coin, str) and coin and coin not in trimmed:
                ids.append(coin)
    distinct = list(dict.fromkeys(ids))
    return distinct if top is None else distinct[:top]


def plan_requests(
    coins: Sequence[str],
    coverage: dict[tuple[str, str], Coverage],
    *,
    today: date,
    days: int,
    with_ohlc: bool,
    retry_not_found: bool = False,
) -> list[HistoryRequest]:
    """The requests that complete `coins`' history, newest gaps first, then by rank.

    `with_ohlc` adds a 30-day `/ohlc` request for coins whose candles are not from today;
    without it, candles are still topped up for coins that have some (a lake that opted in
    stays complete). A coin the API did not know within NOT_FOUND_RETRY_DAYS is left out
    unless `retry_not_found` (the coins were named).
    """
    window_start = today - timedelta(days=days)
    planned: list[HistoryRequest] = []
    for rank, coin in enumerate(dict.fromkeys(coins), start=1):
        chart = coverage.get((COIN_MARKET_CHART.name, coin), Coverage())
        if not retry_not_found and _recently_not_found(chart, today):
            continue
        if chart.first_day is None or chart.first_day > window_start or chart.last_day is None:
            newest = today if chart.last_day is None or chart.last_day < today else window_start
            planned.append(HistoryRequest(COIN_MARKET_CHART.name, coin, days, rank, newest))
        elif chart.last_day < today:
            # One day of overlap: the previous request's day may have lacked its 00:00 point.
            top_up = min(days, (today - chart.last_day).days + 1)
            planned.append(HistoryRequest(COIN_MARKET_CHART.name, coin, top_up, rank, today))
        candles = coverage.get((COIN_OHLC.name, coin))
        wanted = with_ohlc or (candles is not None and candles.last_day is not None)
        if wanted and (retry_not_found or not _recently_not_found(candles or Coverage(), today)):
            if candles is None or candles.last_day is None or candles.last_day < today:
                planned.append(HistoryRequest(COIN_OHLC.name, coin, OHLC_DAYS, rank, today))
    planned.sort(key=lambda r: (-r.newest_gap.toordinal(), r.rank, r.dataset))
    return planned


def _recently_not_found(coverage: Coverage, today: date) -> bool:
    found_since = coverage.last_day is not None and (
        coverage.not_found_on is None or coverage.last_day >= coverage.not_found_on
    )
    return (
        not found_since
        and coverage.not_found_on is not None
        and (today - coverage.not_found_on).days < NOT_FOUND_RETRY_DAYS
    )


def parse_coin_ids(value: str | Iterable[str]) -> list[str]:
    """`bitcoin, ethereum` -> ['bitcoin', 'ethereum']; raises ConfigError for a bad id."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    ids = [p.strip().lower() for p in parts if p.strip()]
    bad = [i for i in ids if not all(c.isalnum() or c in "-_." for c in i)]
    if bad or not ids:
        raise ConfigError(
            f"--coins takes CoinGecko coin ids separated by commas (bitcoin,ethereum), got "
            f"{', '.join(bad) or 'nothing'}."
        )
    return list(dict.fromkeys(ids))
