"""Team-lake benchmark (issue 16): one new snapshot's transform, local disk vs S3, same run.

    uv run python benchmarks/bench_team_lake.py --days 365 --pg postgresql://postgres@127.0.0.1/postgres

Builds (once, kept in benchmarks/.data/team) a synthetic lake of `--days` days of 15k-coin
snapshots with its DuckLake catalog in Postgres (database `bench_team_base`), then puts the
same lake on a loopback S3 server (moto's): silver and gold's Parquet files, the run
manifests and run records. Bronze bodies of runs silver already holds are left out: an
incremental transform never reads them (only their manifests are listed), and the server
keeps every object in memory (a year is 23 GB of JSON).

Then, `--repeat` times, alternating the two lakes: the catalog is reset to the built lake (a
Postgres database copied from the template), one new synthetic snapshot (60 bodies, 15k
coins) is in bronze, and a fresh process runs the transform (`build_silver`, `build_gold`
with its checks), timing each part:

- list: listing the run manifests (what is pending);
- verify: reading and hashing the new run's bodies (bronze_verify.check_runs);
- silver: the rest of `build_silver` (the models over the bodies, the upsert, the commit);
- gold: `build_gold` (incremental gold from the new day, its checks, the commit).
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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from cryptolake.bronze import run_id_of, run_manifest_paths
from cryptolake.bronze_verify import check_runs
from cryptolake.gold import build_gold
from cryptolake.lake import LakePaths
from cryptolake.settings import Settings
from cryptolake.silver import build_silver
from cryptolake.silver_runs import pending_runs

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from tests.s3 import MotoServer, client, make_bucket  # noqa: E402

import synthetic_lake  # noqa: E402

SCRATCH = ROOT / ".data" / "team"
BASE = "bench_team_base"
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def _catalog(dsn: str, database: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return (
        f"postgres:dbname={database} host={info.get('host', '127.0.0.1')} "
        f"port={info.get('port', 5432)} user={info.get('user', 'postgres')}"
    )


def _copy_database(dsn: str, name: str, *, data_path: str) -> None:
    """A copy of the built catalog, its lake moved to `data_path` (the catalog's data path is
    a setting of the catalog: DuckLake refuses any other)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name} template {BASE}")
    with psycopg.connect(psycopg.conninfo.make_conninfo(dsn, dbname=name)) as conn:
        conn.execute("update ducklake_metadata set value = %s where key = 'data_path'", [data_path])


def build_base(lake: Path, *, dsn: str, days: int, coins: int, log: Any) -> None:
    """The synthetic lake and its full transform into the template catalog."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop database if exists {BASE} with (force)")
        conn.execute(f"create database {BASE}")
    shutil.rmtree(lake, ignore_errors=True)
    times = synthetic_lake.snapshot_times(
        datetime(2025, 1, 1, tzinfo=UTC), days=days, every_hours=6
    )
    result = synthetic_lake.generate(
        lake, snapshots=synthetic_lake.make_snapshots(times, seed=1), coins=coins, log=log
    )
    log(f"generated {result.runs} runs, {result.bytes / 1e9:.2f} GB in {result.seconds:.0f} s")
    settings = Settings.resolve(env={}, lake=lake, catalog=_catalog(dsn, BASE)).with_(
        freshness_hours=1_000_000.0, maintain_every=0
    )
    t0 = time.perf_counter()
    build_silver(settings)
    build_gold(settings)
    log(f"built silver and gold in {time.perf_counter() - t0:.0f} s")


def upload(lake: Path, s3: Any, bucket: str, *, with_bodies_of: set[str]) -> int:
    """The lake's files an incremental transform reads, copied to `bucket/lake`; returns bytes."""
    sent = 0
    for path in sorted(p for p in lake.rglob("*") if p.is_file()):
        key = path.relative_to(lake).as_posix()
        body = key.startswith("bronze/") and not key.startswith("bronze/_runs/")
        if key.startswith(".") or "/." in key:
            continue
        if body and not any(run in path.name for run in with_bodies_of):
            continue
        data = path.read_bytes()
        with s3.open_output_stream(f"{bucket}/lake/{key}") as out:
            out.write(data)
        sent += len(data)
    return sent


def _measure(env_json: str) -> None:
    """In a fresh process: one transform of the pending run, timed by part."""
    env = json.loads(env_json)
    new_run = env.pop("BENCH_RUN_ID")
    settings = Settings.resolve(env=env).with_(freshness_hours=1_000_000.0, maintain_every=0)
    lake = LakePaths.of(settings)
    t0 = time.perf_counter()
    keys = run_manifest_paths(lake)
    listed = time.perf_counter() - t0
    done = {run_id_of(k) for k in keys} - {new_run}
    runs = pending_runs(lake, done)
    assert [m.run_id for m in runs] == [new_run]
    t1 = time.perf_counter()
    assert not check_runs(lake, runs)
    verified = time.perf_counter() - t1
    t2 = time.perf_counter()
    silver = build_silver(settings)
    silver_s = time.perf_counter() - t2
    t3 = time.perf_counter()
    build_gold(settings)
    gold_s = time.perf_counter() - t3
    rows = sum(t.rows_added for t in silver.tables if t.table == "market_snapshots")
    print(
        json.dumps(
            {
                "list": listed,
                "verify": verified,
                # build_silver verifies the bodies itself: its own part is the rest.
                "silver": silver_s - verified,
                "gold": gold_s,
                "total": listed + silver_s + gold_s,
                "rows": rows,
                "manifests": len(keys),
                "rss_mib": _peak_rss_mib(),
            }
        )
    )


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: its own, unlike ru_maxrss, which a child inherits
    from the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(env: dict[str, str]) -> dict[str, float]:
    command = [sys.executable, __file__, "_measure", json.dumps(env)]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=os.environ | env
    )
    if done.returncode != 0:
        raise SystemExit(f"transform failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["_measure"]:
        _measure(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--coins", type=int, default=15_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("CRYPTOLAKE_TEST_PG_DSN", ""))
    parser.add_argument("--rebuild", action="store_true", help="build the base lake again")
    args = parser.parse_args(argv)
    if not args.pg:
        parser.error("--pg (or CRYPTOLAKE_TEST_PG_DSN) names the Postgres for the catalogs")
    lake = SCRATCH / f"lake-{args.days}d-{args.coins}"
    built = lake / ".built"
    if args.rebuild or not built.exists():
        build_base(lake, dsn=args.pg, days=args.days, coins=args.coins, log=print)
        built.write_text("ok\n")
    # The new snapshot: 6 hours after the lake's last one, into a folder of its own.
    new = SCRATCH / "new"
    shutil.rmtree(new, ignore_errors=True)
    last = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=args.days)
    snap = synthetic_lake.make_snapshots([last], seed=7)[0]
    synthetic_lake.generate(new, snapshots=[snap], coins=args.coins, seed=7)
    new_files = [p for p in new.rglob("*") if p.is_file() and not p.name.startswith(".")]
    placed = []
    for path in new_files:
        target = lake / path.relative_to(new)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        placed.append(target)
    try:
        with MotoServer() as server:
            bucket = make_bucket(server.endpoint, key_id="bench", secret="bench")
            s3 = client(server.endpoint, key_id="bench", secret="bench")
            t0 = time.perf_counter()
            sent = upload(lake, s3, bucket, with_bodies_of={snap.run_id})
            print(f"uploaded {sent / 1e9:.2f} GB to S3 in {time.perf_counter() - t0:.0f} s")
            targets = {
                "local": {"CRYPTOLAKE_LAKE": str(lake)},
                "s3": {
                    "CRYPTOLAKE_LAKE": f"s3://{bucket}/lake",
                    "AWS_ENDPOINT_URL": server.endpoint,
                    **KEYS,
                },
            }
            results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for _ in range(args.repeat):
                for name, env in targets.items():
                    database = f"bench_team_{name}"
                    _copy_database(args.pg, database, data_path=env["CRYPTOLAKE_LAKE"] + "/")
                    env = env | {
                        "CRYPTOLAKE_CATALOG": _catalog(args.pg, database),
                        "BENCH_RUN_ID": snap.run_id,
                    }
                    results[name].append(measure(env))
    finally:
        for path in placed:
            path.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    print(f"\n{args.days} days x {args.coins:,} coins; load average {load:.1f}; medians (s):")
    parts = ("list", "verify", "silver", "gold", "total")
    print(f"{'lake':<6} " + " ".join(f"{p:>8}" for p in parts) + "   rows   RSS MiB")
    med = {
        name: {p: statistics.median(r[p] for r in runs) for p in (*parts, "rss_mib", "rows")}
        for name, runs in results.items()
    }
    for name, m in med.items():
        cells = " ".join(f"{m[p]:8.2f}" for p in parts)
        print(f"{name:<6} {cells} {m['rows']:>6.0f} {m['rss_mib']:8.0f}")
    ratio = med["s3"]["total"] / med["local"]["total"]
    print(f"S3 / local, whole transform: {ratio:.2f}x (goal <= 2x)")
    print(json.dumps({"results": results, "ratio": ratio, "load": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
