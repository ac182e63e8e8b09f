"""Scheduled-run benchmark (issue 17): the local work of one `cryptolake run --top all`.

    uv run python benchmarks/bench_scheduled_run.py --days 365 --repeat 3 \\
        --pg postgresql://postgres@127.0.0.1:5432/postgres

Builds once (kept in benchmarks/.data/sched/base-<days>d-<coins>/, `--rebuild` to redo):

- a synthetic bronze lake (benchmarks/synthetic_lake.py) of `--days` days of 15k-coin
  snapshots every 6 hours ending yesterday at 18:00 UTC, plus one more day whose 4 snapshots
  are held out: their bodies are what the replay server serves, one per measured run;
- the year lake: silver, gold and `maintain` over all but its last `--recent` runs, then those
  runs transformed one at a time as scheduled runs would (`pipeline.run`, stage transform,
  maintenance every 28 runs), with a run record per earlier run in `_meta/runs/`; so its
  catalog, files and run history look like a lake that ran every 6 hours for a year;
- the empty lake: the year's last two runs only, each transformed by a run of its own;
- both published (untimed) into a template database, `bench_sched_base_<days>d_<coins>`
  (schemas `year` and `empty`).

`--rebuild-lakes` builds both lakes again from their bronze with the code checked out now (a
change to what a build leaves in the catalog shows only in a lake built by it).

Then, per invocation: hard-linked working copies of both lakes (bodies and Parquet are never
rewritten; the catalog and small files are copied) and a Postgres database copied from the
template. A replay server (`cryptolake.replay`, in this process, which is idle meanwhile)
serves a held-out snapshot's 60 pages of 250 coins with a `total` header, `/global` and
`/coins/categories` on loopback; a fresh process runs `pipeline.run` with the stages of a
scheduled run (ingest, transform, check, publish) at an unlimited rate (60,000/min) and
`--top all`. One untimed warm-up run per lake, then `--repeat` rounds alternating the
lakes; each run is the lake's next scheduled run (the lakes grow by one snapshot per run,
nothing is restored in between: 4 + `--repeat` runs on a year is 0.3% more runs).

Per stage: seconds (the RunResult's), CPU seconds and peak RSS. The peak RSS of a stage is the
process's high-water mark (VmHWM) reset when the stage starts (`5` written to
/proc/self/clear_refs) and read when it ends: the stage functions `pipeline.run` calls are
wrapped for that, nothing else changes. `startup` is the interpreter's start and the imports
of the `cryptolake` command (`cryptolake.cli`), timed from the process's start time.
`--profile DIR` then runs once more per lake under cProfile (not among the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent
SCRATCH = ROOT / ".data" / "sched"
RUN_DB = "bench_sched_run"
LAKES = ("empty", "year")
HELD_OUT = 4  # the last day's snapshots: served, one per run
PART_NAMES = ("ingest", "silver", "gold", "checks", "maintenance_due", "publish")


# --- the child: one scheduled run in a fresh process ---------------------------------------
def _proc_age_s() -> float:
    """Seconds since this process started (from /proc: its start time in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(argv: Sequence[str]) -> None:
    lake, api_url, dsn, schema, profile = argv
    before_imports = _proc_age_s()
    import cryptolake.cli  # noqa: F401 - what the `cryptolake` command imports
    from cryptolake import gold, pipeline
    from cryptolake.settings import Settings

    startup = _proc_age_s()
    parts: dict[str, dict[str, float]] = {}
    run_peak = [0.0]

    def wrap(module: Any, name: str, part: str) -> None:
        inner: Callable[..., Any] = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            # The high-water mark so far goes into the run's before it is reset for this part.
            run_peak[0] = max(run_peak[0], _peak_mib())
            _reset_peak()
            t0, c0 = time.perf_counter(), _cpu_s()
            try:
                return inner(*args, **kwargs)
            finally:
                mine = parts.setdefault(part, {"seconds": 0.0, "cpu": 0.0, "rss_mib": 0.0})
                mine["seconds"] += time.perf_counter() - t0
                mine["cpu"] += _cpu_s() - c0
                mine["rss_mib"] = max(mine["rss_mib"], _peak_mib())
                run_peak[0] = max(run_peak[0], mine["rss_mib"])

        setattr(module, name, timed)

    wrap(pipeline, "ingest", "ingest")
    wrap(pipeline, "build_silver", "silver")
    wrap(pipeline, "build_gold", "gold")
    wrap(gold, "evaluate", "checks")  # inside gold: its seconds are part of gold's
    wrap(pipeline, "maintenance_due", "maintenance_due")
    wrap(pipeline, "publish", "publish")
    settings = Settings.resolve(
        env={},
        lake=Path(lake),
        api_url=api_url,
        rate=60_000.0,
        top="all",
        postgres_dsn=dsn,
        pg_schema=schema,
    )
    stages = ("ingest", "transform", "check", "publish")
    _reset_peak()
    t0, c0 = time.perf_counter(), _cpu_s()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(pipeline.run, settings, stages=stages, trigger="schedule")
        profiler.dump_stats(profile)
    else:
        result = pipeline.run(settings, stages=stages, trigger="schedule")
    total, cpu = time.perf_counter() - t0, _cpu_s() - c0
    if result.status != "success":
        raise SystemExit(f"run {result.status}: {result.error}")
    by_stage = {s.stage: s for s in result.stages}
    if "staging_market_snapshots" not in by_stage["publish"].rows:
        raise SystemExit(f"publish wrote no snapshot: {by_stage['publish'].summary}")
    print(
        json.dumps(
            {
                "interpreter": before_imports,
                "startup": startup,
                "run": total,
                "run_cpu": cpu,
                "run_rss_mib": max(run_peak[0], _peak_mib()),
                "stages": {s.stage: s.seconds for s in result.stages},
                "parts": parts,
                "coins": by_stage["ingest"].rows.get("coins_markets", 0),
                "staged": by_stage["publish"].rows["staging_market_snapshots"],
            }
        )
    )


# --- building the base lakes (once) --------------------------------------------------------
def _settings(lake: Path, **flags: Any) -> Any:
    from cryptolake.settings import Settings

    return Settings.resolve(env={}, lake=lake, **flags)


def _manifest_keys(lake: Path) -> list[str]:
    from cryptolake.bronze import run_manifest_paths
    from cryptolake.lake import LakePaths

    return sorted(run_manifest_paths(LakePaths.at(lake)), key=lambda k: Path(k).name)


def _as_api_run(lake: Path, key: str) -> Any:
    """Mark a synthetic run as an API run (ingest refuses to mix sources); returns it."""
    from cryptolake.bronze import read_manifest
    from cryptolake.lake import LakePaths

    manifest = replace(read_manifest(LakePaths.at(lake), key), source="api")
    (lake / key).write_bytes(manifest.to_json())
    return manifest


def _write_run_record(lake: Path, manifest: Any) -> None:
    """What `pipeline.run` leaves in `_meta/runs/` for a scheduled run of that snapshot."""
    from cryptolake.history import RunRecord

    started = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
    stages: list[dict[str, Any]] = [
        {"stage": s, "status": "ok", "seconds": 1.0, "rows": {}, "summary": "", "detail": ""}
        for s in ("ingest", "transform", "check", "publish")
    ]
    record = RunRecord(
        manifest.run_id,
        "schedule",
        "success",
        False,
        started,
        started + timedelta(seconds=8),
        stages,
        host="bench",
        pid=1,
    )
    path = lake / "_meta" / "runs" / f"{manifest.run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record.to_json())


def _move_run(src: Path, dst: Path, key: str, *, copy: bool = False) -> None:
    """A run's manifest and bodies from lake `src` to lake `dst` (same keys)."""
    from cryptolake.bronze import read_manifest
    from cryptolake.lake import LakePaths

    manifest = read_manifest(LakePaths.at(src), key)
    for rel in [*(f.path for f in manifest.files), key]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copyfile(src / rel, dst / rel)
        else:
            os.replace(src / rel, dst / rel)


def _transform_one_at_a_time(lake: Path, held: Path, keys: Sequence[str], log: Any) -> None:
    """Bring the runs of `keys` (waiting in `held`) into `lake` one by one, each transformed
    by a scheduled run (transform only), maintenance every 28 runs as configured."""
    from cryptolake.pipeline import run

    settings = _settings(lake)
    t0 = time.perf_counter()
    for i, key in enumerate(keys, start=1):
        (lake / key).parent.mkdir(parents=True, exist_ok=True)
        os.replace(held / key, lake / key)
        result = run(settings, stages=("transform",), trigger="schedule")
        if result.status != "success":
            raise SystemExit(f"building {lake}: run {i} {result.status}: {result.error}")
        if i % 20 == 0 or i == len(keys):
            log(
                f"  {lake.name}: {i}/{len(keys)} runs one at a time, "
                f"{time.perf_counter() - t0:.0f}s"
            )


def build_base(base: Path, *, days: int, coins: int, recent: int, dsn: str, log: Any) -> None:
    """Generate the bronze (`days` + 1 days ending today at 18:00 UTC), then `adopt_bronze`."""
    import synthetic_lake

    shutil.rmtree(base, ignore_errors=True)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    times = synthetic_lake.snapshot_times(
        today - timedelta(days=days), days=days + 1, every_hours=6
    )
    generated = synthetic_lake.generate(
        base / "year", snapshots=synthetic_lake.make_snapshots(times, seed=1), coins=coins, log=log
    )
    log(
        f"generated {generated.runs} runs, {generated.bytes / 1e9:.2f} GB "
        f"in {generated.seconds:.0f}s"
    )
    adopt_bronze(base, recent=recent, dsn=dsn, log=log)


def base_database(base: Path) -> str:
    """The template database of the base lakes at `base` (`bench_sched_base_365d_15000`)."""
    return "bench_sched_" + base.name.replace("-", "_")


def adopt_bronze(base: Path, *, recent: int, dsn: str, log: Any) -> None:
    """Everything after generating `base/year`'s bronze (see `build_base`)."""
    from cryptolake.bronze import read_manifest
    from cryptolake.lake import LakePaths

    year, empty, serve = (base / n for n in ("year", "empty", "serve"))
    for folder in (empty, serve):
        shutil.rmtree(folder, ignore_errors=True)
    keys = _manifest_keys(year)
    for key in keys:
        _as_api_run(year, key)
    # The held-out day: served as the API's answers, one snapshot per measured run.
    for i, key in enumerate(keys[-HELD_OUT:]):
        manifest = read_manifest(LakePaths.at(year), key)
        target = serve / str(i)
        target.mkdir(parents=True)
        for entry in manifest.files:
            os.replace(year / entry.path, target / f"{entry.dataset}-p{entry.page:04d}.json")
        (year / key).unlink()
    for key in keys[-HELD_OUT - 2 : -HELD_OUT]:
        _move_run(year, empty, key, copy=True)
    build_lakes(base, recent=recent, dsn=dsn, log=log)


def _clear_derived(lake: Path) -> None:
    """Everything of `lake` but its bronze: the catalog, silver, gold, run records."""
    for entry in lake.iterdir():
        if entry.name != "bronze":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def build_lakes(base: Path, *, recent: int, dsn: str, log: Any) -> None:
    """The year and empty lakes built from their bronze (again: `--rebuild-lakes`), as the
    code checked out now builds them, and published into the template database."""
    from cryptolake.bronze import read_manifest
    from cryptolake.gold import build_gold
    from cryptolake.lake import LakePaths
    from cryptolake.maintenance import maintain
    from cryptolake.publish import publish
    from cryptolake.silver import build_silver

    year, empty, held = (base / n for n in ("year", "empty", ".held"))
    for lake in (year, empty):
        _clear_derived(lake)
        # Manifests a build stopped midway left aside go back first.
        if held.is_dir():
            for manifest in held.rglob("*.json"):
                rel = manifest.relative_to(held)
                (lake / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(manifest, lake / rel)
            shutil.rmtree(held)
    keys = _manifest_keys(year)
    # The recent runs wait aside (manifests only: bodies without a manifest are never read).
    for key in keys[-recent:]:
        (held / key).parent.mkdir(parents=True, exist_ok=True)
        os.replace(year / key, held / key)
    for key in keys[:-recent]:
        _write_run_record(year, read_manifest(LakePaths.at(year), key))
    settings = _settings(year)
    t0 = time.perf_counter()
    build_silver(settings)
    build_gold(settings)
    maintain(settings)
    log(
        f"year: silver, gold and maintain over {len(keys) - recent} runs "
        f"in {time.perf_counter() - t0:.0f}s"
    )
    _transform_one_at_a_time(year, held, keys[-recent:], log)
    shutil.rmtree(held)
    empty_keys = _manifest_keys(empty)
    for key in empty_keys:
        (held / key).parent.mkdir(parents=True, exist_ok=True)
        os.replace(empty / key, held / key)
    _transform_one_at_a_time(empty, held, empty_keys, log)
    shutil.rmtree(held)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop database if exists {base_database(base)} with (force)")
        conn.execute(f"create database {base_database(base)}")
    base_dsn = psycopg.conninfo.make_conninfo(dsn, dbname=base_database(base))
    for name in LAKES:
        t0 = time.perf_counter()
        publish(_settings(base / name, postgres_dsn=base_dsn, pg_schema=name))
        log(f"{name}: published in {time.perf_counter() - t0:.0f}s")


# --- the working copies ---------------------------------------------------------------------
def working_copy(src: Path, dst: Path) -> None:
    """`dst` as a copy of lake `src`: bodies and data files hard-linked (never rewritten),
    the catalog and every other small file copied."""
    shutil.rmtree(dst, ignore_errors=True)
    for top, _, names in os.walk(src):
        rel = Path(top).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        immutable = rel.parts[:1] in (("silver",), ("gold",)) or (
            rel.parts[:1] == ("bronze",) and rel.parts[1:2] != ("_runs",)
        )
        for name in names:
            if immutable and not name.startswith("."):
                os.link(src / rel / name, dst / rel / name)
            else:
                shutil.copy2(src / rel / name, dst / rel / name)


def copy_database(dsn: str, template: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop database if exists {RUN_DB} with (force)")
        conn.execute(f"create database {RUN_DB} template {template}")
    return psycopg.conninfo.make_conninfo(dsn, dbname=RUN_DB)


# --- serving a held-out snapshot --------------------------------------------------------------
@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """A loopback replay of the snapshot in `folder`: its market pages byte for byte."""
    from cryptolake.replay import ReplayData, ReplayServer

    pages = [p.read_bytes() for p in sorted(folder.glob("coins_markets-p*.json"))]
    listed = sum(len(json.loads(p)) for p in pages)

    class Pages(ReplayData):
        def markets_page(self, per_page: int, page: int) -> bytes:
            assert per_page == 250, "the synthetic pages hold 250 coins"
            return pages[page - 1] if 1 <= page <= len(pages) else b"[]"

        def markets_listed(self) -> int:
            return listed

    data = Pages(
        markets=b"[]",
        bodies={
            "/global": (folder / "global-p0001.json").read_bytes(),
            "/coins/categories": (folder / "coins_categories-p0001.json").read_bytes(),
        },
    )
    with ReplayServer(data) as server:
        yield server.api_url


def measure(lake: Path, *, serve: Path, dsn: str, schema: str, profile: str = "") -> dict[str, Any]:
    with serving(serve) as api_url:
        command = [sys.executable, __file__, "_measure", str(lake), api_url, dsn, schema, profile]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run failed: {done.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the report ---------------------------------------------------------------------------
ROWS: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (
    ("startup (interpreter + imports)", lambda r: r["startup"]),
    ("ingest (60 pages + 2 bodies, landed)", lambda r: r["stages"]["ingest"]),
    ("transform: silver", lambda r: r["parts"]["silver"]["seconds"]),
    (
        "transform: gold (without checks)",
        lambda r: r["parts"]["gold"]["seconds"] - r["parts"]["checks"]["seconds"],
    ),
    ("transform: checks (in gold's transaction)", lambda r: r["parts"]["checks"]["seconds"]),
    (
        "transform: the rest (maintenance due?, notes)",
        lambda r: (
            r["stages"]["transform"]
            - r["parts"]["silver"]["seconds"]
            - r["parts"]["gold"]["seconds"]
        ),
    ),
    ("check stage", lambda r: r["stages"]["check"]),
    ("publish (one new snapshot)", lambda r: r["stages"]["publish"]),
    ("run overhead (lock, run records)", lambda r: r["run"] - sum(r["stages"].values())),
    ("**the run** (`pipeline.run`)", lambda r: r["run"]),
    ("**the command** (startup + the run)", lambda r: r["startup"] + r["run"]),
)
RSS: tuple[tuple[str, str], ...] = (
    ("ingest", "ingest"),
    ("silver", "silver"),
    ("gold (with checks)", "gold"),
    ("publish", "publish"),
)


def report(results: dict[str, list[dict[str, Any]]], *, days: int) -> dict[str, Any]:
    med: dict[str, dict[str, float]] = {name: {} for name in results}
    lines = [
        f"| part (median of {len(results['year'])}, seconds) | empty lake (2 runs) | "
        f"year lake ({days} days) | year / empty |",
        "|---|---|---|---|",
    ]
    for label, get in ROWS:
        cells = []
        for name in LAKES:
            values = [get(r) for r in results[name]]
            med[name][label] = statistics.median(values)
            cells.append(f"{med[name][label]:.2f} ({min(values):.2f}–{max(values):.2f})")
        ratio = med["year"][label] / med["empty"][label] if med["empty"][label] > 0.005 else 0
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio:.2f}× |")
    lines += ["", "| peak RSS (MiB, max over runs) | empty lake | year lake |", "|---|---|---|"]
    for label, part in RSS:
        peaks = [max(r["parts"][part]["rss_mib"] for r in results[n]) for n in LAKES]
        lines.append(f"| {label} | {peaks[0]:,.0f} | {peaks[1]:,.0f} |")
    peaks = [max(r["run_rss_mib"] for r in results[n]) for n in LAKES]
    lines.append(f"| the whole run | {peaks[0]:,.0f} | {peaks[1]:,.0f} |")
    cpu = [statistics.median(r["parts"]["ingest"]["cpu"] for r in results[n]) for n in LAKES]
    lines.append("")
    lines.append(f"ingest CPU seconds (median): empty {cpu[0]:.2f}, year {cpu[1]:.2f}")
    print("\n".join(lines))
    return {"medians": med, "table": lines}


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["_measure"]:
        _measure(sys.argv[2:])
        return 0
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--coins", type=int, default=15_000)
    parser.add_argument("--recent", type=int, default=120, help="runs transformed one by one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("CRYPTOLAKE_TEST_PG_DSN", ""))
    parser.add_argument("--rebuild", action="store_true", help="build the base lakes again")
    parser.add_argument("--adopt", action="store_true", help="base/year holds generated bronze")
    parser.add_argument(
        "--rebuild-lakes",
        action="store_true",
        help="build the lakes again from their bronze, with the code checked out now",
    )
    parser.add_argument("--profile", type=Path, help="then cProfile one run per lake into DIR")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if not args.pg:
        parser.error("--pg (or CRYPTOLAKE_TEST_PG_DSN) names the Postgres to publish to")
    base = SCRATCH / f"base-{args.days}d-{args.coins}"
    built = base / ".built"
    if args.rebuild_lakes:
        build_lakes(base, recent=args.recent, dsn=args.pg, log=print)
        built.write_text("ok\n")
    elif args.adopt:
        adopt_bronze(base, recent=args.recent, dsn=args.pg, log=print)
        built.write_text("ok\n")
    elif args.rebuild or not built.exists():
        build_base(
            base, days=args.days, coins=args.coins, recent=args.recent, dsn=args.pg, log=print
        )
        built.write_text("ok\n")
    if args.repeat == 0:
        return 0  # built only
    work = SCRATCH / "run"
    t0 = time.perf_counter()
    for name in LAKES:
        working_copy(base / name, work / name)
    dsn = copy_database(args.pg, base_database(base))
    print(f"working copies and database in {time.perf_counter() - t0:.0f}s", flush=True)
    serves = sorted((base / "serve").iterdir())
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in LAKES}
    for i in range(1 + args.repeat):
        for name in LAKES:
            got = measure(work / name, serve=serves[i % len(serves)], dsn=dsn, schema=name)
            print(f"{'warm-up' if i == 0 else f'run {i}'} {name}: {json.dumps(got)}", flush=True)
            if i > 0:
                results[name].append(got)
    if args.profile is not None:
        # One more run per lake, under cProfile (slower: not among the figures).
        args.profile.mkdir(parents=True, exist_ok=True)
        for name in LAKES:
            profile = str(args.profile / f"{name}.prof")
            measure(work / name, serve=serves[0], dsn=dsn, schema=name, profile=profile)
            print(f"profile of a run on the {name} lake: {profile}")
    load = os.getloadavg()
    print(f"\n{args.days} days x {args.coins:,} coins; load average {load[0]:.1f}:")
    summary = report(results, days=args.days)
    if args.json:
        args.json.write_text(json.dumps({"results": results, **summary, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
