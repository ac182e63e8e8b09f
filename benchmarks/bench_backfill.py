"""Backfill benchmark (issue 14): the local work of a history backfill, and the rate it holds.

    uv run python benchmarks/bench_backfill.py --coins 250

Over a loopback replay server at an unlimited rate, a backfill of N coins (each answered
with the recorded bitcoin /market_chart body, 722 points: bigger than a 366-point daily
year, so the figures are conservative) is timed in its parts: fetching and committing each
body to bronze (a manifest per request: two atomic writes), then silver reading all of
them. Local seconds per coin times 18,000 is the local work of a backfill of every coin.
The replay server runs in the same process, so its time counts as local work too.

Then the rate: a backfill at `--rate` requests a minute for `--rate-seconds`, the server
recording when each request arrived. The achieved rate must be at least 90% of the budget
and no window of the budget's length may hold more requests than it allows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from cryptolake.backfill import fetch_history
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "tests/fixtures/coingecko"
    / "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
)
ALL_COINS = 18_000


def replay(coins: list[str]) -> ReplayData:
    body = FIXTURE.read_bytes()
    return ReplayData(markets=b"[]", coin_bodies={"coin_market_chart": dict.fromkeys(coins, body)})


def local_work(count: int, root: Path) -> dict[str, float]:
    coins = [f"bitcoin-replica-{i:05d}" for i in range(count)]
    lake = root / f"lake-{count}"
    with ReplayServer(replay(coins)) as server:
        settings = Settings.resolve(env={}, lake=lake, api_url=server.api_url, rate=1e9)
        t0 = time.perf_counter()
        result = fetch_history(settings, coins=coins)
        fetch_s = time.perf_counter() - t0
    assert result.bodies == count, result
    t0 = time.perf_counter()
    silver = build_silver(Settings.resolve(env={}, lake=lake))
    silver_s = time.perf_counter() - t0
    rows = next(t.rows_added for t in silver.tables if t.table == "coin_history_daily")
    return {
        "coins": count,
        "fetch_and_commit_s": round(fetch_s, 2),
        "silver_s": round(silver_s, 2),
        "history_rows": rows,
        "local_ms_per_coin": round(1000 * (fetch_s + silver_s) / count, 2),
        "all_coins_estimate_s": round((fetch_s + silver_s) / count * ALL_COINS, 1),
    }


def held_rate(rate: float, seconds: float, root: Path) -> dict[str, float]:
    count = int(rate * seconds / 60) + 1
    coins = [f"bitcoin-replica-{i:05d}" for i in range(count)]
    with ReplayServer(replay(coins)) as server:
        settings = Settings.resolve(env={}, lake=root / "rate", api_url=server.api_url, rate=rate)
        fetch_history(settings, coins=coins)
        arrivals = list(server.arrivals)
    span = arrivals[-1] - arrivals[0]
    achieved = 60.0 * (len(arrivals) - 1) / span
    # The most requests that arrived within any window of `window` seconds, against what the
    # budget allows in it (requests start 60/rate apart: window * rate / 60, plus the one
    # the window opens with). Arrival times carry the loopback's jitter.
    window = min(10.0, span / 2)
    most = max(
        sum(1 for t in arrivals[i:] if t - start < window) for i, start in enumerate(arrivals)
    )
    allowed = int(window * rate / 60) + 1
    return {
        "budget_per_min": rate,
        "requests": len(arrivals),
        "achieved_per_min": round(achieved, 1),
        "used_ratio": round(achieved / rate, 3),
        "window_s": window,
        "most_in_window": most,
        "allowed_in_window": allowed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, nargs="+", default=[250, 2000])
    parser.add_argument("--rate", type=float, default=600.0)
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        report = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.2f}",
            "local": [local_work(n, root) for n in args.coins],
            "rate": held_rate(args.rate, args.rate_seconds, root),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
