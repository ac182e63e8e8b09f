"""Silver benchmark (issue 3): full build, one added snapshot, peak memory, on a synthetic lake.

    uv run python benchmarks/synthetic_lake.py --out benchmarks/.data/lake
    uv run python benchmarks/bench_silver.py --lake benchmarks/.data/lake --memory-limit 1GB

Each measurement runs `build_silver` in a fresh Python process, so its RSS high-water mark
(`ru_maxrss`) is that build's alone. Scenarios:

- full: silver built from nothing over the whole lake, both as the first `cryptolake transform`
  does (incremental, from empty silver) and as `--full-refresh` does.
- add one run: one new snapshot transformed into (1) an empty lake, (2) a lake holding one day,
  (3) the whole lake. In (2) and (3) the run lands on a day that already has runs, so its
  partition is read, merged and rewritten: the worst case. (3) leaves the lake as it found it.

The machine may be shared, so the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from cryptolake.bronze import read_manifest, run_manifest_paths
from cryptolake.lake import LakePaths
from cryptolake.settings import Settings
from cryptolake.silver import PARTITION, PARTITION_FILE, TABLES, build_silver

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_lake  # noqa: E402  (a sibling script, not a package)

SCRATCH = Path(__file__).parent / ".data"


@dataclass(frozen=True, slots=True)
class Measurement:
    seconds: float  # build_silver only, imports excluded
    runs: int
    market_rows_added: int
    market_rows_total: int
    max_rss_mib: float


class BuildFailed(Exception):
    pass


# --- the child: one build_silver in a fresh process -----------------------------------------
def _measure(lake: Path, memory_limit: str, full_refresh: bool) -> Measurement:
    settings = Settings.resolve(env={}, lake=lake, memory_limit=memory_limit)
    t0 = time.perf_counter()
    result = build_silver(settings, full_refresh=full_refresh)
    seconds = time.perf_counter() - t0
    market = next(t for t in result.tables if t.table == "market_snapshots")
    total = duckdb.sql(
        "select coalesce(sum(num_rows), 0) from parquet_file_metadata("
        f"'{LakePaths.at(lake).silver}/market_snapshots/*/*.parquet')"
    ).fetchone()
    return Measurement(
        seconds=seconds,
        runs=len(result.runs),
        market_rows_added=market.rows_added,
        market_rows_total=int(total[0]) if total else 0,
        # Linux reports KiB
        max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def measure(lake: Path, *, memory_limit: str, full_refresh: bool = False) -> Measurement:
    """Run `_measure` in a fresh interpreter and return what it reports."""
    command = [sys.executable, __file__, "_measure", str(lake), memory_limit]
    if full_refresh:
        command.append("--full-refresh")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        # e.g. killed for memory: report it instead of losing the other scenarios
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise BuildFailed(f"build_silver failed (exit {done.returncode}): {tail}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


# --- lake surgery for the add-one-run scenarios ---------------------------------------------
def _lake_shape(lake: LakePaths) -> tuple[int, datetime]:
    """Coins per run and start of the newest run, from the newest manifest."""
    newest = read_manifest(run_manifest_paths(lake)[-1])
    return newest.top, datetime.fromisoformat(newest.started_at.replace("Z", "+00:00"))


def _add_run(lake: LakePaths, at: datetime, coins: int, seed: int) -> synthetic_lake.Snapshot:
    snap = synthetic_lake.make_snapshots([at], seed=seed)[0]
    synthetic_lake.generate(lake.root, snapshots=[snap], coins=coins, seed=seed)
    return snap


def _silver_files_of(lake: LakePaths, date: str) -> list[Path]:
    files = [t.folder(lake) / f"{PARTITION}={date}" / PARTITION_FILE for t in TABLES]
    return files + [lake.silver_state / "processed_runs.json"]


@contextmanager
def _saved(files: Sequence[Path]) -> Iterator[None]:
    """Restores these files (or their absence) on exit; silver partitions are a few MB."""
    saved = {f: f.read_bytes() if f.exists() else None for f in files}
    try:
        yield
    finally:
        for f, data in saved.items():
            if data is None:
                f.unlink(missing_ok=True)
            else:
                f.write_bytes(data)


def _remove_run(lake: LakePaths, snap: synthetic_lake.Snapshot) -> None:
    path = lake.runs / f"ingest_date={snap.started_at:%Y-%m-%d}" / f"{snap.run_id}.json"
    for entry in read_manifest(path).files:
        (lake.root / entry.path).unlink()
    path.unlink()


def add_one_run(
    lake: LakePaths, at: datetime, *, coins: int, memory_limit: str, repeat: int
) -> list[Measurement]:
    """Transform one new run landing at `at`, `repeat` times, restoring silver in between."""
    snap = _add_run(lake, at, coins, seed=7)
    try:
        results = []
        for _ in range(repeat):
            with _saved(_silver_files_of(lake, f"{at:%Y-%m-%d}")):
                results.append(measure(lake.root, memory_limit=memory_limit))
        return results
    finally:
        _remove_run(lake, snap)


# --- the parent ------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    with open("/proc/meminfo") as handle:
        total_kib = int(handle.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(total_kib / 2**20, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "load_average": os.getloadavg(),
    }


def _row(scenario: str, lake: str, m: Sequence[Measurement], memory_limit: str) -> str:
    """One Markdown row; several measurements show as the median and the range."""
    secs = [x.seconds for x in m]
    med = statistics.median(secs)
    time_s = f"{med:.2f}" if len(m) == 1 else f"{med:.2f} ({min(secs):.2f}–{max(secs):.2f})"
    rows = m[0].market_rows_added
    rss = max(x.max_rss_mib for x in m)
    return (
        f"| {scenario} | {lake} | {m[0].runs:,} | {rows:,} | {m[0].market_rows_total:,} | "
        f"{time_s} | {rows / med:,.0f} | {rss:,.0f} | {memory_limit} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_measure":
        m = _measure(Path(argv[1]), argv[2], full_refresh="--full-refresh" in argv)
        print(json.dumps(asdict(m)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, default=SCRATCH / "lake", help="a synthetic lake")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's, for every build")
    parser.add_argument("--repeat", type=int, default=3, help="for the add-one-run cases")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["first", "full-refresh", "add"],
        help="leave out a scenario (repeatable)",
    )
    args = parser.parse_args(argv)
    lake = LakePaths.at(args.lake)
    if not lake.runs.exists():
        print(f"No synthetic lake at {lake.root}; run benchmarks/synthetic_lake.py first.")
        return 1
    coins, newest = _lake_shape(lake)
    runs = len(run_manifest_paths(lake))
    big = f"{runs:,} runs × {coins:,} coins"
    ml = args.memory_limit
    print(f"Machine: {_machine()}", flush=True)
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    for scenario, full_refresh in (("first", False), ("full-refresh", True)):
        if scenario in args.skip:
            continue
        name = "full build, " + ("--full-refresh" if full_refresh else "first transform")
        shutil.rmtree(lake.silver, ignore_errors=True)
        try:
            m = measure(lake.root, memory_limit=ml, full_refresh=full_refresh)
            report(_row(name, big, [m], ml))
        except BuildFailed as exc:
            report(f"| {name} | {big} | {runs:,} | – | – | {exc} | – | – | {ml} |")
    if "add" not in args.skip:
        if not lake.silver_state.exists():
            measure(lake.root, memory_limit="4GB")  # the big lake needs its silver first
        # Three hours after the newest run: the same UTC day, which already has runs.
        at = newest.replace(microsecond=0) + timedelta(hours=3) - timedelta(seconds=newest.second)
        if at.date() != newest.date():
            at = newest - timedelta(minutes=30)
        small = SCRATCH / "bench-small"
        shutil.rmtree(small, ignore_errors=True)
        try:
            # (1) an empty lake: the new run is its only one
            empty = LakePaths.at(small / "empty")
            _add_run(empty, at, coins, seed=7)
            ms = []
            for _ in range(args.repeat):
                shutil.rmtree(empty.silver, ignore_errors=True)
                ms.append(measure(empty.root, memory_limit=ml))
            report(_row("add 1 run, empty lake", "0 runs", ms, ml))
            # (2) a lake holding the same day's other runs, silver built
            day = LakePaths.at(small / "day")
            day_start = at.replace(hour=0, minute=0, second=0)
            times = synthetic_lake.snapshot_times(day_start, days=1, every_hours=6)
            earlier = [t for t in times if t < at - timedelta(minutes=30)]
            synthetic_lake.generate(
                day.root, snapshots=synthetic_lake.make_snapshots(earlier, seed=1), coins=coins
            )
            measure(day.root, memory_limit=ml)
            ms = add_one_run(day, at, coins=coins, memory_limit=ml, repeat=args.repeat)
            report(_row("add 1 run, same day", f"{len(earlier)} runs", ms, ml))
        finally:
            shutil.rmtree(small, ignore_errors=True)
        # (3) the big lake
        ms = add_one_run(lake, at, coins=coins, memory_limit=ml, repeat=args.repeat)
        report(_row("add 1 run, same day", big, ms, ml))

    print()
    print(f"Machine after: {_machine()}")
    print()
    print(
        "| scenario | lake before | runs transformed | market rows added | market rows in "
        "silver | seconds | rows/s | peak RSS (MiB) | memory_limit |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    print()
    print("Commands:")
    print(f"  uv run python benchmarks/bench_silver.py {' '.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
