"""Lake benchmark (issues 3 and 13): silver and gold on DuckLake, on a synthetic lake.

    uv run python benchmarks/synthetic_lake.py --out benchmarks/.data/lake
    uv run python benchmarks/bench_lake.py --lake benchmarks/.data/lake --memory-limit 2GB

Each measurement runs in a fresh Python process, so its RSS high-water mark (`ru_maxrss`) is
that build's alone. Scenarios:

- full: the first `cryptolake transform` of the whole lake (silver from nothing in one
  transaction, then gold and its checks), with the data files per table it leaves, then
  those after `cryptolake maintain`.
- add one run (silver only): one new snapshot transformed into an empty lake, and into the
  whole lake, on a day that already has runs (its partition gains a file). The ratio of the
  two is the cost of the lake's size.
- one new snapshot, the whole local transform (silver, gold, checks) on the whole lake.

Add-one-run cases restore the lake between repeats (benchmarks/lake_state.py). The machine
may be shared, so the load average is printed with the results.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from cryptolake.bronze import manifest_key, read_manifest, run_manifest_paths
from cryptolake.catalog import file_counts, open_lake
from cryptolake.gold import build_gold
from cryptolake.lake import LakePaths
from cryptolake.maintenance import maintain
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lake_state  # noqa: E402
import synthetic_lake  # noqa: E402

SCRATCH = Path(__file__).resolve().parent / ".data"


@dataclass
class Measurement:
    silver_seconds: float
    gold_seconds: float
    runs: int
    market_rows_added: int
    market_rows_total: int
    max_rss_mib: float
    files: dict[str, int] = field(default_factory=dict)
    files_after_maintain: dict[str, int] = field(default_factory=dict)
    maintain_seconds: float = 0.0


class BuildFailed(Exception):
    pass


# --- the child: one build in a fresh process -------------------------------------------------
def _measure(lake: Path, memory_limit: str, what: str) -> Measurement:
    settings = Settings.resolve(env={}, lake=lake, memory_limit=memory_limit).with_(
        freshness_hours=1_000_000.0, maintain_every=0
    )
    t0 = time.perf_counter()
    silver = build_silver(settings)
    silver_seconds = time.perf_counter() - t0
    gold_seconds = 0.0
    if what in ("transform", "full"):
        t1 = time.perf_counter()
        build_gold(settings)
        gold_seconds = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    with open_lake(settings, read_only=True) as con:
        total = con.execute("select count(*) from silver.market_snapshots").fetchone()
        files = file_counts(con)
    after: dict[str, int] = {}
    maintain_seconds = 0.0
    if what == "full":
        t2 = time.perf_counter()
        after = maintain(settings).files_after
        maintain_seconds = time.perf_counter() - t2
    market = next(t for t in silver.tables if t.table == "market_snapshots")
    return Measurement(
        silver_seconds=silver_seconds,
        gold_seconds=gold_seconds,
        runs=len(silver.runs),
        market_rows_added=market.rows_added,
        market_rows_total=int(total[0]) if total else 0,
        max_rss_mib=rss,
        files=files,
        files_after_maintain=after,
        maintain_seconds=maintain_seconds,
    )


def measure(lake: Path, *, memory_limit: str, what: str) -> Measurement:
    """Run `_measure` in a fresh interpreter and return what it reports."""
    command = [sys.executable, __file__, "_measure", str(lake), memory_limit, what]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise BuildFailed(f"build failed (exit {done.returncode}): {tail}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def verify_counts(lake: LakePaths, memory_limit: str) -> str:
    """Rows per run in silver against the records each manifest lists (minus trimmed ids)."""
    expected: dict[str, int] = {}
    for path in run_manifest_paths(lake):
        manifest = read_manifest(lake, path)
        if manifest.status == "complete":
            expected[manifest.run_id] = sum(
                f.records - len(f.trimmed_ids or [])
                for f in manifest.files
                if f.dataset == "coins_markets"
            )
    settings = Settings.resolve(env={}, lake=lake.root, memory_limit=memory_limit)
    with open_lake(settings, read_only=True) as con:
        found = dict(
            con.execute(
                "select run_id, count(*) from silver.market_snapshots group by run_id"
            ).fetchall()
        )
    wrong = {r: (expected.get(r), found.get(r)) for r in set(expected) | set(found)}
    wrong = {r: v for r, v in wrong.items() if v[0] != v[1]}
    return (
        f"rows per run against the manifests: {len(expected):,} runs, "
        f"{sum(expected.values()):,} rows expected, {sum(found.values()):,} in silver, "
        f"{len(wrong)} run(s) differ" + (f" (e.g. {next(iter(wrong.items()))})" if wrong else "")
    )


def _lake_shape(lake: LakePaths) -> tuple[int, datetime]:
    """Coins per run and start of the newest run, from the newest manifest."""
    newest = read_manifest(lake, run_manifest_paths(lake)[-1])
    assert newest.top is not None, "a synthetic run names its coins"
    return newest.top, datetime.fromisoformat(newest.started_at.replace("Z", "+00:00"))


def _remove_run(lake: LakePaths, snap: synthetic_lake.Snapshot) -> None:
    key = manifest_key(run_id=snap.run_id, ingest_date=f"{snap.started_at:%Y-%m-%d}")
    path = lake.root / key
    for entry in read_manifest(lake, key).files:
        (lake.root / entry.path).unlink()
    path.unlink()


def add_one_run(
    lake: LakePaths, at: datetime, *, coins: int, memory_limit: str, repeat: int, what: str
) -> list[Measurement]:
    """Transform one new run landing at `at`, `repeat` times, restoring the lake in between."""
    snap = synthetic_lake.make_snapshots([at], seed=7)[0]
    synthetic_lake.generate(lake.root, snapshots=[snap], coins=coins, seed=7)
    try:
        results = []
        for _ in range(repeat):
            with lake_state.restored(lake.root):
                results.append(measure(lake.root, memory_limit=memory_limit, what=what))
        return results
    finally:
        _remove_run(lake, snap)


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


def _seconds(values: Sequence[float]) -> str:
    med = statistics.median(values)
    return f"{med:.2f}" if len(values) == 1 else f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"


def _row(scenario: str, lake: str, m: Sequence[Measurement]) -> str:
    """One Markdown row; several measurements show as the median and the range."""
    silver = [x.silver_seconds for x in m]
    total = [x.silver_seconds + x.gold_seconds for x in m]
    rss = max(x.max_rss_mib for x in m)
    return (
        f"| {scenario} | {lake} | {m[0].runs:,} | {m[0].market_rows_added:,} | "
        f"{m[0].market_rows_total:,} | {_seconds(silver)} | {_seconds(total)} | {rss:,.0f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_measure":
        print(json.dumps(asdict(_measure(Path(argv[1]), argv[2], argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lake", type=Path, default=SCRATCH / "lake", help="a synthetic lake")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB's, for every build")
    parser.add_argument("--repeat", type=int, default=3, help="for the add-one-run cases")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["full", "add"], help="leave one out"
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
    notes: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    if "full" not in args.skip:
        for leftover in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
            (lake.root / leftover).unlink(missing_ok=True)
        for folder in ("silver", "gold"):
            shutil.rmtree(lake.root / folder, ignore_errors=True)
        try:
            m = measure(lake.root, memory_limit=ml, what="full")
            report(_row("full build, first transform (silver + gold + checks)", big, [m]))
            notes.append(f"files per table after the full build: {m.files}")
            notes.append(verify_counts(lake, ml))
            notes.append(
                f"files per table after `maintain` ({m.maintain_seconds:.1f}s): "
                f"{m.files_after_maintain}"
            )
        except BuildFailed as exc:
            report(f"| full build | {big} | {runs:,} | – | – | {exc} | – | – |")
    if "add" not in args.skip:
        if not (lake.root / "catalog.sqlite").exists():
            measure(lake.root, memory_limit="4GB", what="transform")
        # Three hours after the newest run: the same UTC day, which already has runs.
        at = newest.replace(microsecond=0) + timedelta(hours=3) - timedelta(seconds=newest.second)
        if at.date() != newest.date():
            at = newest - timedelta(minutes=30)
        small = SCRATCH / "bench-small"
        shutil.rmtree(small, ignore_errors=True)
        try:
            empty = LakePaths.at(small / "empty")
            snap = synthetic_lake.make_snapshots([at], seed=7)[0]
            synthetic_lake.generate(empty.root, snapshots=[snap], coins=coins, seed=7)
            ms = []
            for _ in range(args.repeat):
                for leftover in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
                    (empty.root / leftover).unlink(missing_ok=True)
                shutil.rmtree(empty.silver, ignore_errors=True)
                ms.append(measure(empty.root, memory_limit=ml, what="silver"))
            report(_row("add 1 run, silver", "0 runs", ms))
            empty_median = statistics.median(x.silver_seconds for x in ms)
        finally:
            shutil.rmtree(small, ignore_errors=True)
        ms = add_one_run(lake, at, coins=coins, memory_limit=ml, repeat=args.repeat, what="silver")
        report(_row("add 1 run, silver", big, ms))
        ratio = statistics.median(x.silver_seconds for x in ms) / empty_median
        notes.append(f"add 1 run, silver: the year lake over the empty lake = {ratio:.2f}×")
        ms = add_one_run(
            lake, at, coins=coins, memory_limit=ml, repeat=args.repeat, what="transform"
        )
        report(_row("add 1 run, whole transform (silver + gold + checks)", big, ms))

    print()
    print(f"Machine after: {_machine()}")
    print()
    print(
        "| scenario | lake before | runs transformed | market rows added | market rows in "
        "silver | silver seconds | silver + gold seconds | peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    print()
    print("\n".join(notes))
    print()
    print(f"Command: uv run python benchmarks/bench_lake.py {' '.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
