"""Backfill benchmark (issue 14): the local work of a history backfill, and the rate it holds.

    uv run python benchmarks/bench_backfill.py --coins 250

Over a loopback replay server at an unlimited rate, a backfill of N coins is timed in its
parts: fetching and landing each body in bronze (a manifest per request, made durable in
groups), then silver reading all of them. Each coin is answered with a year of daily points
as `interval=daily` gives them: the recorded bitcoin /market_chart body's first 365 values
(real ones) stamped at the 365 UTC midnights up to today, plus its "now" point. The replay
server runs in a process of its own, so the figures are cryptolake's work alone: wall
seconds and CPU seconds (user + system) of this process. Local seconds per coin times 18,000
is the local work of a backfill of every coin.

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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


YEAR_POINTS = 366


def year_body() -> bytes:
    """A daily year: the recorded values, re-stamped at midnights (the values unchanged)."""
    data = json.loads(FIXTURE.read_bytes())
    day_ms = 86_400_000
    today = int(time.time() * 1000) // day_ms * day_ms
    stamps = [today - (YEAR_POINTS - 2 - i) * day_ms for i in range(YEAR_POINTS - 1)]
    stamps.append(int(time.time() * 1000))  # "now"
    return json.dumps(
        {k: [[t, p[1]] for t, p in zip(stamps, v, strict=False)] for k, v in data.items()}
    ).encode()


def replay(coins: list[str]) -> ReplayData:
    body = year_body()
    return ReplayData(markets=b"[]", coin_bodies={"coin_market_chart": dict.fromkeys(coins, body)})


def coin_ids(count: int) -> list[str]:
    return [f"bitcoin-replica-{i:05d}" for i in range(count)]


@contextmanager
def replay_process(count: int) -> Iterator[str]:
    """A replay server for `count` coins in a child process; yields its API URL."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        child.terminate()
        child.wait(timeout=30)


def serve(count: int) -> None:
    with ReplayServer(replay(coin_ids(count))) as server:
        print(server.api_url, flush=True)
        threading.Event().wait()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def local_work(count: int, root: Path) -> dict[str, float]:
    coins = coin_ids(count)
    lake = root / f"lake-{count}"
    with replay_process(count) as api_url:
        settings = Settings.resolve(env={}, lake=lake, api_url=api_url, rate=1e9)
        t0, c0 = time.perf_counter(), cpu_seconds()
        result = fetch_history(settings, coins=coins)
        fetch_s, fetch_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    assert result.bodies == count, result
    t0, c0 = time.perf_counter(), cpu_seconds()
    silver = build_silver(Settings.resolve(env={}, lake=lake))
    silver_s, silver_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    rows = next(t.rows_added for t in silver.tables if t.table == "coin_history_daily")
    wall = fetch_s + silver_s
    return {
        "coins": count,
        "fetch_and_land_s": round(fetch_s, 2),
        "fetch_and_land_cpu_s": round(fetch_cpu, 2),
        "silver_s": round(silver_s, 2),
        "silver_cpu_s": round(silver_cpu, 2),
        "history_rows": rows,
        "local_ms_per_coin": round(1000 * wall / count, 2),
        "all_coins_estimate_s": round(wall / count * ALL_COINS, 1),
    }


def held_rate(rate: float, seconds: float, root: Path) -> dict[str, float]:
    count = int(rate * seconds / 60) + 1
    coins = coin_ids(count)
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
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
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
