"""Verify benchmark (issue 15): what checking the lake costs, and a repair against a rebuild.

    uv run python benchmarks/bench_verify.py --days 14 --coins 15000

Builds a synthetic lake (benchmarks/synthetic_lake.py: `days` of 15k-coin snapshots every 6
hours, silver and gold built), then measures, in this process, one run after another:

- the checksums a scheduled transform adds: sha256 and size of one new run's 60 bodies,
  against that run's whole transform (silver, gold, checks), which includes them;
- `verify` of the whole lake, per check, and the bronze bytes hashed per second;
- `verify --repair` of one deleted silver data file (one day's partition rebuilt from
  bronze, then gold), against a full refresh of silver and gold, which would also heal it.

The machine may be shared, so the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic_lake  # noqa: E402
from cryptolake.bronze import latest_manifest  # noqa: E402
from cryptolake.bronze_verify import check_runs  # noqa: E402
from cryptolake.catalog import open_lake  # noqa: E402
from cryptolake.gold import build_gold  # noqa: E402
from cryptolake.lake import LakePaths  # noqa: E402
from cryptolake.settings import Settings  # noqa: E402
from cryptolake.silver import build_silver  # noqa: E402
from cryptolake.verify import verify_lake  # noqa: E402

SCRATCH = Path(__file__).resolve().parent / ".data" / "verify"


def _timed(what: str, fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    seconds = time.perf_counter() - t0
    print(f"  {what}: {seconds:.2f} s", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--coins", type=int, default=15_000)
    parser.add_argument("--out", type=Path, default=SCRATCH / "lake")
    args = parser.parse_args(argv)
    lake = LakePaths.at(args.out)
    shutil.rmtree(lake.root, ignore_errors=True)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    times = synthetic_lake.snapshot_times(start, days=args.days, every_hours=6)
    print(f"lake: {len(times)} runs x {args.coins:,} coins at {lake.root}", flush=True)
    made = synthetic_lake.generate(
        lake.root, snapshots=synthetic_lake.make_snapshots(times, seed=1), coins=args.coins
    )
    print(f"  bronze: {made.files:,} bodies, {made.bytes / 1e9:.2f} GB", flush=True)
    settings = Settings.resolve(env={}, lake=lake.root, freshness_hours=1e6)
    _timed(
        "first transform (silver + gold)", lambda: (build_silver(settings), build_gold(settings))
    )

    print("one new run:", flush=True)
    new = synthetic_lake.make_snapshots([times[-1] + timedelta(hours=6)], seed=2)
    synthetic_lake.generate(lake.root, snapshots=new, coins=args.coins)
    run = latest_manifest(lake)
    assert run is not None
    run_bytes = sum(e.bytes for e in run.files)
    check = min(
        _timed("checksums of its bodies", lambda: check_runs(lake, [run])) for _ in range(3)
    )
    transform = _timed(
        "its transform (silver + gold + checks)",
        lambda: (build_silver(settings), build_gold(settings)),
    )
    print(
        f"  -> {len(run.files)} bodies, {run_bytes / 1e6:.1f} MB: checksums "
        f"{check * 1000:.0f} ms = {check / transform:.1%} of the transform",
        flush=True,
    )

    print("verify of the whole lake:", flush=True)
    report = verify_lake(settings)
    assert report.consistent, report.findings
    for c in report.checks:
        print(f"  {c.check}: {c.checked:,} × {c.what} in {c.seconds:.2f} s", flush=True)
    total = sum(c.seconds for c in report.checks)
    bronze = next(c for c in report.checks if c.check == "bronze")
    print(
        f"  -> {total:.2f} s; bronze hashed at "
        f"{(made.bytes + run_bytes) / bronze.seconds / 1e9:.2f} GB/s",
        flush=True,
    )

    print("a deleted silver data file:", flush=True)
    with open_lake(settings, read_only=True) as con:
        files = [
            str(r[0])
            for r in con.execute(
                "select data_file from ducklake_list_files('lake', 'market_snapshots', "
                "schema => 'silver')"
            ).fetchall()
        ]
    victim = sorted(files)[len(files) // 2]
    os.unlink(victim)
    repair = _timed("verify --repair", lambda: verify_lake(settings, repair=True))
    assert verify_lake(settings).consistent
    rebuild = _timed(
        "full refresh (silver + gold) instead",
        lambda: (
            build_silver(settings, full_refresh=True),
            build_gold(settings, full_rebuild=True),
        ),
    )
    print(f"  -> repair = {repair / rebuild:.2f}x a full refresh", flush=True)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
