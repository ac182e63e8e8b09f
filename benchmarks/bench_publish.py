"""Publish benchmark (issue 5): `publish` of ~1M staging rows against a bare DuckDB CTAS.

    uv run python benchmarks/synthetic_lake.py --coins 15000 --days 17 --every-hours 6 \\
        --out benchmarks/.data/publish_lake
    uv run python benchmarks/bench_publish.py --lake benchmarks/.data/publish_lake \\
        --dsn postgresql://postgres@127.0.0.1:5432/test

Silver and gold are built first if the lake has runs not in silver yet. Every measurement
writes into a fresh Postgres schema (`bench_publish_<random>_*`); all of them are dropped at
the end. Measurements, each repeated `--repeat` times (the median is reported):

- (a) `publish(settings)` into a new schema: staging (every silver row, its 17 days loaded in
  parallel on worker connections and attached by the publish transaction) plus the gold
  marts, their indexes and ANALYZE, end to end (lock, extension load, attach, commit).
- (b) `create table pg.<schema>.t as select * from read_parquet(<silver's files>)`: the same
  rows through the same DuckDB postgres extension and connection settings (one DuckDB
  thread, as publish uses), end to end (connect, load, attach, CTAS), no indexes. (a) and
  (b) alternate which goes first.
- (c) an incremental publish of one new snapshot (a run 3 hours after the newest, on the same
  day) on top of each schema (a) left, once VACUUMed (as autovacuum would have by then). The
  lake is restored afterwards.
- (d) as (c), with the run at 00:30 the day after the newest: a new day partition, loaded
  inside the publish transaction.

Postgres is CHECKPOINTed before every measurement so none pays for its predecessor's dirty
pages. The time inside publish is split with its progress events and by timing its
`pg_execute` / `count` calls (wrapped here; publish itself is not changed by the benchmark).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg

import cryptolake.marts as marts_module
import cryptolake.publish_transaction as publish_module
from cryptolake.bronze import read_manifest, read_manifests, run_manifest_paths
from cryptolake.catalog import attach_lake, open_lake
from cryptolake.duck import connect, quote_literal
from cryptolake.gold import build_gold
from cryptolake.lake import LakePaths
from cryptolake.progress import Progress
from cryptolake.publish import PublishResult, load_postgres_extension, publish
from cryptolake.secret import Secret
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

sys.path.insert(0, str(Path(__file__).parent))
import lake_state  # noqa: E402
import synthetic_lake  # noqa: E402  (a sibling script, not a package)

SCRATCH = Path(__file__).parent / ".data"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
# What the issue measured on this machine for 1M staging rows (not re-measured here: pandas
# is not a dependency of cryptolake).
ISSUE_PANDAS_TO_SQL_S = 227.0
ISSUE_DUCKDB_COPY_S = 1.4


# --- measurements -----------------------------------------------------------------------------
@dataclass(slots=True)
class PublishRun:
    """One `publish` call: its result and where its time went."""

    seconds: float
    result: PublishResult
    steps: dict[str, float] = field(default_factory=dict)  # from progress events
    parts: dict[str, float] = field(default_factory=dict)  # timed helper calls

    @property
    def staging_seconds(self) -> float:
        return self.result.tables[0].seconds

    @property
    def rows(self) -> int:
        return self.result.tables[0].rows_written


@dataclass(frozen=True, slots=True)
class CtasRun:
    seconds: float  # connect, load, attach, CTAS, close
    statement_seconds: float  # the CTAS statement alone
    rows: int


def _classify_pg(sql: str) -> str:
    if "attach partition" in sql:
        return "attach partitions (+ analyze of appended days)"
    if match := re.search(r"index if not exists (\w+)", sql):
        return f"index {match.group(1)}"
    lowered = sql.lstrip().lower()
    if lowered.startswith("analyze"):
        return "analyze marts"
    if "analyze" in lowered and "staging_market_snapshots" in lowered:
        return "analyze appended days"
    if lowered.startswith("delete"):
        return "delete marts"
    if "publish_log (publish_id" in lowered:
        return "publish_log insert"
    return "ddl and session setup"


def _classify_count(sql: str) -> str:
    if "postgres_query" in sql:
        return "count(*) in postgres (staging)"
    if "lake.gold" in sql:
        return "count(*) gold (duckdb)"
    return "count(*) new rows (silver parquet)"


@contextmanager
def _timed_helpers(parts: dict[str, float]) -> Iterator[None]:
    """Time publish's `_pg` and `count` calls by kind; restores them on exit."""
    original_pg = publish_module.pg_execute  # type: ignore[attr-defined]  # imported there
    original_count = marts_module.count

    def timed_pg(con: duckdb.DuckDBPyConnection, sql: str) -> None:
        t0 = time.perf_counter()
        original_pg(con, sql)
        key = _classify_pg(sql)
        parts[key] = parts.get(key, 0.0) + time.perf_counter() - t0

    def timed_count(
        con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
    ) -> int:
        t0 = time.perf_counter()
        n = original_count(con, sql, params)
        key = _classify_count(sql)
        parts[key] = parts.get(key, 0.0) + time.perf_counter() - t0
        return n

    publish_module.pg_execute = timed_pg  # type: ignore[attr-defined]  # imported there
    publish_module.count = timed_count  # type: ignore[attr-defined]  # imported there
    marts_module.count = timed_count
    try:
        yield
    finally:
        publish_module.pg_execute = original_pg  # type: ignore[attr-defined]  # imported there
        publish_module.count = original_count  # type: ignore[attr-defined]  # imported there
        marts_module.count = original_count


def measure_publish(settings: Settings) -> PublishRun:
    events: list[tuple[float, str]] = []
    parts: dict[str, float] = {}

    def on_progress(p: Progress) -> None:
        events.append((time.perf_counter(), p.detail))

    with _timed_helpers(parts):
        t0 = time.perf_counter()
        result = publish(settings, progress=on_progress)
        seconds = time.perf_counter() - t0
    # Each event closes a step: one per mart, the marts' indexes and statistics, staging
    # (waiting for the parallel day loads that started before the marts, then attaching
    # them), commit. The first step also holds the connection, DDL and lookups.
    steps: dict[str, float] = {}
    before = t0
    for at, detail in events:
        steps[detail.split(":")[0]] = at - before
        before = at
    return PublishRun(seconds, result, steps, parts)


def measure_ctas(settings: Settings, dsn: str, schema: str, source_sql: str) -> CtasRun:
    t0 = time.perf_counter()
    # One DuckDB thread, as publish's own connections use: with more, DuckDB spins while
    # the Postgres backend parses the COPY, and the CTAS is slower (5.2 s instead of 6.0 s).
    con = connect(settings.with_(threads=1))
    try:
        load_postgres_extension(con)
        attach_lake(con, settings)
        con.execute(f"attach {quote_literal(dsn)} as pg (type postgres)")
        t1 = time.perf_counter()
        con.execute(f"create table pg.{schema}.t as {source_sql}")
        statement = time.perf_counter() - t1
    finally:
        con.close()
    seconds = time.perf_counter() - t0
    rows = _pg_scalar(dsn, f"select count(*) from {schema}.t")
    return CtasRun(seconds, statement, rows)


# --- Postgres housekeeping --------------------------------------------------------------------
def _pg_scalar(dsn: str, sql: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def _pg_run(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def checkpoint(dsn: str) -> None:
    """Flush dirty pages now, so the next measurement does not pay for the previous one."""
    try:
        _pg_run(dsn, "checkpoint")
    except psycopg.Error as exc:  # needs superuser or pg_checkpoint
        print(f"  (checkpoint skipped: {exc})", flush=True)


def vacuum_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select tablename from pg_tables where schemaname = %s", [schema]
            ).fetchall()
        ]
        for table in tables:
            conn.execute(f"vacuum {schema}.{table}")


def drop_schemas(dsn: str, prefix: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "select nspname from pg_namespace where nspname like %s", [prefix + "%"]
            ).fetchall()
        ]
        for name in names:
            conn.execute(f"drop schema {name} cascade")


# --- the lake ---------------------------------------------------------------------------------
def ensure_built(settings: Settings) -> None:
    """Silver and gold for every run in the lake (a no-op when they are up to date)."""
    lake = LakePaths.of(settings)
    t0 = time.perf_counter()
    result = build_silver(settings)
    if result.changed or not (lake.root / "catalog.sqlite").exists():
        build_gold(settings)
        print(f"Built silver and gold in {time.perf_counter() - t0:.0f}s", flush=True)


def silver_rows(settings: Settings) -> int:
    with open_lake(settings, read_only=True) as con:
        row = con.execute("select count(*) from silver.market_snapshots").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def one_more_run(settings: Settings, *, next_day: bool = False) -> Iterator[datetime]:
    """The lake with one more run in silver and gold; then restored.

    The run is 3 hours after the newest, on the same day (staging has its partition), or
    with `next_day` at 00:30 the day after (a new partition).
    """
    lake = LakePaths.of(settings)
    manifests = read_manifests(lake)
    newest = max(datetime.fromisoformat(m.started_at.replace("Z", "+00:00")) for m in manifests)
    coins = manifests[-1].top
    assert coins is not None, "a synthetic run names its coins"
    at = newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
    if next_day:
        at = newest.replace(hour=0, minute=30, second=0, microsecond=0) + timedelta(days=1)
    elif at.date() != newest.date():
        at = newest - timedelta(minutes=30)
    before = set(run_manifest_paths(lake))
    snap = synthetic_lake.make_snapshots([at], seed=7)[0]
    try:
        with lake_state.restored(lake.root):
            synthetic_lake.generate(lake.root, snapshots=[snap], coins=coins, seed=7)
            build_silver(settings)
            build_gold(settings)
            yield snap.started_at
    finally:
        for key in set(run_manifest_paths(lake)) - before:
            for entry in read_manifest(lake, key).files:
                (lake.root / entry.path).unlink(missing_ok=True)
            (lake.root / key).unlink()


# --- reporting --------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    with open("/proc/meminfo") as handle:
        total_kib = int(handle.readline().split()[1])
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(total_kib / 2**20, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "load_average": tuple(round(x, 2) for x in os.getloadavg()),
    }


def _postgres(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        version = conn.execute("show server_version").fetchone()
        settings = []
        for name in (
            "shared_buffers",
            "max_wal_size",
            "synchronous_commit",
            "wal_level",
            "max_parallel_maintenance_workers",
            "lc_collate",
        ):
            row = conn.execute(f"show {name}").fetchone()
            settings.append(f"{name}={row[0] if row else '?'}")
    return f"PostgreSQL {version[0] if version else '?'} ({', '.join(settings)})"


def _med(values: Sequence[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"


def _median_parts(
    runs: Sequence[PublishRun], get: Callable[[PublishRun], dict[str, float]]
) -> dict[str, float]:
    collected: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for key, value in get(run).items():
            collected[key].append(value)
    return {k: statistics.median(v) for k, v in collected.items()}


def _index_seconds(run: PublishRun) -> float:
    return sum(v for k, v in run.parts.items() if k.startswith("index "))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lake", type=Path, default=SCRATCH / "publish_lake", help="a synthetic lake"
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="a Postgres database to write into")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's, for every step")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-incremental", action="store_true", help="leave out (c)")
    args = parser.parse_args(argv)
    lake = LakePaths.at(args.lake)
    if not lake.runs.exists():
        print(f"No synthetic lake at {lake.root}; run benchmarks/synthetic_lake.py first.")
        return 1
    base = Settings.resolve(
        env={}, lake=lake.root, memory_limit=args.memory_limit, freshness_hours=1e9
    ).with_(postgres_dsn=Secret(args.dsn))
    ensure_built(base)
    rows = silver_rows(base)
    runs = len(run_manifest_paths(lake))
    source_sql = "select * from lake.silver.market_snapshots"
    prefix = f"bench_publish_{uuid.uuid4().hex[:6]}_"
    print(f"Machine: {_machine()}", flush=True)
    print(f"Postgres: {_postgres(args.dsn)}", flush=True)
    print(f"Lake: {lake.root}: {runs} runs, {rows:,} silver market_snapshots rows", flush=True)

    published: list[PublishRun] = []
    ctas: list[CtasRun] = []
    incremental: list[PublishRun] = []  # (c): a snapshot of a day staging has
    new_day: list[PublishRun] = []  # (d): the first snapshot of a new day
    try:
        for i in range(args.repeat):
            # Alternate the order so neither always runs on a warmer (or more tired) server.
            order = ("publish", "ctas") if i % 2 == 0 else ("ctas", "publish")
            for what in order:
                checkpoint(args.dsn)
                if what == "publish":
                    schema = f"{prefix}a{i}"
                    p = measure_publish(base.with_(pg_schema=schema))
                    published.append(p)
                    print(
                        f"  [{i}] (a) publish into {schema}: {p.seconds:.2f}s, "
                        f"staging {p.staging_seconds:.2f}s, indexes {_index_seconds(p):.2f}s, "
                        f"{p.result.tables[0].rows_now:,} rows",
                        flush=True,
                    )
                else:
                    schema = f"{prefix}b{i}"
                    _pg_run(args.dsn, f"create schema {schema}")
                    c = measure_ctas(base, args.dsn, schema, source_sql)
                    ctas.append(c)
                    _pg_run(args.dsn, f"drop schema {schema} cascade")
                    print(
                        f"  [{i}] (b) bare CTAS into {schema}: {c.seconds:.2f}s "
                        f"(statement {c.statement_seconds:.2f}s), {c.rows:,} rows",
                        flush=True,
                    )
        if not args.skip_incremental:
            # What autovacuum would have done by the next publish (it may be off here): hint
            # bits set and the visibility map built, so (c) does not pay for (a)'s first read.
            for i in range(args.repeat):
                vacuum_schema(args.dsn, f"{prefix}a{i}")
            for label, next_day, runs_ in (("(c)", False, incremental), ("(d)", True, new_day)):
                with one_more_run(base, next_day=next_day) as at:
                    print(f"  added one run at {at:%Y-%m-%dT%H:%M:%SZ}", flush=True)
                    for i in range(args.repeat):
                        checkpoint(args.dsn)
                        p = measure_publish(base.with_(pg_schema=f"{prefix}a{i}"))
                        runs_.append(p)
                        print(
                            f"  [{i}] {label} incremental publish: {p.seconds:.2f}s, "
                            f"+{p.rows:,} rows, staging {p.staging_seconds:.2f}s, "
                            f"indexes {_index_seconds(p):.2f}s",
                            flush=True,
                        )
    finally:
        drop_schemas(args.dsn, prefix)

    pub_s = [p.seconds for p in published]
    ctas_s = [c.seconds for c in ctas]
    med_pub, med_ctas = statistics.median(pub_s), statistics.median(ctas_s)
    print()
    print(f"Machine after: {_machine()}")
    print()
    print("| measurement | rows | seconds, median (min–max) | rows/s |")
    print("|---|---|---|---|")
    print(
        f"| (a) `publish`: staging + marts + indexes + ANALYZE | {rows:,} | {_med(pub_s)} "
        f"| {rows / med_pub:,.0f} |"
    )
    print(
        f"| (a) of which the staging step (`tables[0].seconds`) | {rows:,} | "
        f"{_med([p.staging_seconds for p in published])} | "
        f"{rows / statistics.median([p.staging_seconds for p in published]):,.0f} |"
    )
    print(f"| (a) of which the index builds | | {_med([_index_seconds(p) for p in published])} | |")
    print(
        f"| (b) bare CTAS, end to end | {ctas[0].rows:,} | {_med(ctas_s)} "
        f"| {ctas[0].rows / med_ctas:,.0f} |"
    )
    print(
        f"| (b) the CTAS statement alone | {ctas[0].rows:,} | "
        f"{_med([c.statement_seconds for c in ctas])} | "
        f"{ctas[0].rows / statistics.median([c.statement_seconds for c in ctas]):,.0f} |"
    )
    if incremental:
        inc_s = [p.seconds for p in incremental]
        print(
            f"| (c) incremental `publish`, one snapshot | {incremental[0].rows:,} | "
            f"{_med(inc_s)} | {incremental[0].rows / statistics.median(inc_s):,.0f} |"
        )
        print(
            f"| (c) of which the staging step | {incremental[0].rows:,} | "
            f"{_med([p.staging_seconds for p in incremental])} | |"
        )
        print(
            f"| (c) of which the index builds | | "
            f"{_med([_index_seconds(p) for p in incremental])} | |"
        )
    if new_day:
        new_s = [p.seconds for p in new_day]
        print(
            f"| (d) incremental `publish`, first snapshot of a new day | {new_day[0].rows:,} | "
            f"{_med(new_s)} | {new_day[0].rows / statistics.median(new_s):,.0f} |"
        )
    print(
        f"| issue: pandas `to_sql` (chunks of 1000, multi) | 1,000,000 | "
        f"{ISSUE_PANDAS_TO_SQL_S:.0f} | {1e6 / ISSUE_PANDAS_TO_SQL_S:,.0f} |"
    )
    print(
        f"| issue: DuckDB binary COPY | 1,000,000 | {ISSUE_DUCKDB_COPY_S} | "
        f"{1e6 / ISSUE_DUCKDB_COPY_S:,.0f} |"
    )
    print()
    print(
        f"Ratio publish / bare CTAS (medians, end to end): {med_pub / med_ctas:.2f}x "
        "(goal: at most 1.5x)"
    )
    for title, runs_ in (("(a)", published), ("(c)", incremental), ("(d)", new_day)):
        if not runs_:
            continue
        print()
        print(f"Where {title}'s time goes (medians, seconds):")
        for key, value in _median_parts(runs_, lambda r: r.steps).items():
            print(f"  step  {key:<50} {value:7.3f}")
        for key, value in sorted(_median_parts(runs_, lambda r: r.parts).items()):
            print(f"  part  {key:<50} {value:7.3f}")
    print()
    print("Commands:")
    print(f"  uv run python benchmarks/bench_publish.py {' '.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
