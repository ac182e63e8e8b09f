"""`cryptolake transform` killed with SIGKILL, and a lake in the pre-DuckLake layout, for real.

The kills hit a real `cryptolake transform` process (no mock of DuckDB or DuckLake) at fixed
delays and at moments read off the lake itself: once silver's first data file is on disk
(uncommitted), once silver's commit is in the catalog, once gold's first file is on disk. The
lake must read as its previous snapshot or as the whole new one, never in between, and the next
transform must land every bronze row exactly once, with gold equal to a full rebuild's.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cryptolake.bronze import read_manifests
from cryptolake.catalog import attach_options
from cryptolake.duck import quote_literal
from cryptolake.gold import build_gold
from cryptolake.ingest import IngestResult
from cryptolake.lake import LakePaths
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .clis import one_error_line, run_cli, start_cli
from .conftest import CATEGORIES, GLOBAL, MARKETS_250, fixture_bytes
from .lakes import T0, lake_db, land, settings_for

COINS = 250  # MARKETS_250: 250 records, 250 distinct ids, none trimmed (--top is 250)
PRICED = sum(
    isinstance(r.get("current_price"), int | float) for r in json.loads(fixture_bytes(MARKETS_250))
)  # coins with a price: those gold computes returns for
RUNS_BEFORE = 4  # transformed before the transform that is killed
RUNS_AFTER = 36  # landed after it: what the killed transform is working on
RUNS_PER_DAY = 2  # so the runs span 20 days: two silver batches (BATCH_DAYS is 14)
RUNS = RUNS_BEFORE + RUNS_AFTER

LEGACY_NOTE = (
    "note: the lake was in an older cryptolake's layout (cryptolake.duckdb and Parquet files "
    "of its own): silver and gold are rebuilt into DuckLake from bronze, and the old files "
    "removed once the new tables committed."
)


def run_at(i: int) -> datetime:
    """Run i's start: two runs a day, six hours apart, each in a minute of its own."""
    return T0 + timedelta(days=i // RUNS_PER_DAY, hours=6 * (i % RUNS_PER_DAY), minutes=i)


def priced(i: int) -> bytes:
    """The 2026 top 250 with every price times a factor of run i (1 +- 3%), so that gold's
    returns and volatilities are figures, not zeros."""
    factor = 1 + 0.03 * ((i * 7919) % 101 - 50) / 50
    records = json.loads(fixture_bytes(MARKETS_250))
    for record in records:
        if isinstance(record.get("current_price"), int | float):
            record["current_price"] *= factor
    return json.dumps(records).encode()


def global_body() -> bytes:
    """The recorded /global with a 2026 total: the top 250 sum to 94.8% of it, as they should
    (against the 2023 total the snapshot would be quarantined whole)."""
    body = json.loads(fixture_bytes(GLOBAL))
    body["data"]["total_market_cap"]["usd"] = 2.55e12
    return json.dumps(body).encode()


def land_runs(lake: Path, runs: range) -> None:
    body = global_body()
    for i in runs:
        land(lake, priced(i), at=run_at(i), global_body=body)


def transform(lake: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    done = run_cli("transform", "--lake", str(lake), *flags)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


@dataclass(frozen=True, slots=True)
class LakeState:
    """What a reader sees: silver's rows and runs, gold's rows, the catalog's snapshot."""

    silver_rows: int
    silver_snapshots: int  # distinct snapshot_at in silver.market_snapshots
    processed_runs: int
    coin_daily_rows: int
    snapshot_id: int


def state_of(con: duckdb.DuckDBPyConnection) -> LakeState:
    silver = con.execute(
        "select count(*), count(distinct snapshot_at) from silver.market_snapshots"
    ).fetchone()
    runs = con.execute("select count(*) from silver.processed_runs").fetchone()
    gold = con.execute("select count(*) from gold.coin_daily").fetchone()
    snapshot = con.execute("select id from lake.current_snapshot()").fetchone()
    assert silver and runs and gold and snapshot
    return LakeState(int(silver[0]), int(silver[1]), int(runs[0]), int(gold[0]), int(snapshot[0]))


def lake_state(lake: Path) -> LakeState:
    """Read the lake through a read-only DuckLake attach (what any reader does)."""
    with closing(lake_db(lake)) as con:
        return state_of(con)


def one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def attach_reference(con: duckdb.DuckDBPyConnection, reference: Path) -> None:
    """Attach another lake's DuckLake, read-only, as `ref` beside `lake`."""
    settings = Settings(lake=reference)
    options = attach_options(settings, read_only=True, as_of=None)
    con.execute(f"attach {quote_literal('ducklake:' + settings.catalog_uri)} as ref ({options})")


def differing_rows(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int]:
    """Rows of `table` only in the lake, and only in the reference (bags: duplicates count)."""
    return (
        one(con, f"select count(*) from (from {table} except all from ref.{table})"),
        one(con, f"select count(*) from (from ref.{table} except all from {table})"),
    )


def expected_rows_per_run(lake: Path) -> dict[str, int]:
    """Run id -> the coins its manifest says it landed (records less the trimmed ones)."""
    return {
        m.run_id: sum(
            f.records - len(f.trimmed_ids) for f in m.files if f.dataset == "coins_markets"
        )
        for m in read_manifests(LakePaths.at(lake))
    }


def catalog_snapshot(lake: Path) -> int:
    """The newest snapshot id committed to the SQLite catalog, read with sqlite3 directly
    (cheap enough to poll every few milliseconds while a transform runs)."""
    uri = f"file:{lake / 'catalog.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        row = db.execute("select max(snapshot_id) from ducklake_snapshot").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def data_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("ducklake-*.parquet"))


@dataclass(frozen=True, slots=True)
class Base:
    """A lake with RUNS_BEFORE runs transformed and RUNS_AFTER more landed, what it holds,
    and a copy of it rebuilt whole from bronze (`transform --full-refresh`)."""

    lake: Path
    before: LakeState
    reference: Path
    after: LakeState  # the reference's


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    lake = tmp_path_factory.mktemp("killed") / "lake"
    lake.mkdir()
    land_runs(lake, range(RUNS_BEFORE))
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))
    land_runs(lake, range(RUNS_BEFORE, RUNS))
    reference = lake.parent / "reference"
    shutil.copytree(lake, reference)
    transform(reference, "--full-refresh")
    return Base(lake, lake_state(lake), reference, lake_state(reference))


def test_the_base_lake_is_what_the_kills_are_checked_against(base: Base) -> None:
    # Before: 4 runs of 250 coins over 2 days; after: 40 runs over 20 days.
    assert base.before == LakeState(
        silver_rows=RUNS_BEFORE * COINS,
        silver_snapshots=RUNS_BEFORE,
        processed_runs=RUNS_BEFORE,
        coin_daily_rows=2 * COINS,
        snapshot_id=base.before.snapshot_id,
    )
    assert base.after == LakeState(
        silver_rows=RUNS * COINS,
        silver_snapshots=RUNS,
        processed_runs=RUNS,
        coin_daily_rows=20 * COINS,
        snapshot_id=base.after.snapshot_id,
    )
    assert set(expected_rows_per_run(base.lake).values()) == {COINS}
    with closing(lake_db(base.reference)) as con:
        # Gold carries real figures: a return on every complete day after the first, and a
        # 7-day volatility once 7 returns exist, for every priced coin.
        priced_coins, returns, moved, volatile = con.execute(
            "select count(distinct coin_id) filter (where daily_return_ratio is not null), "
            "count(daily_return_ratio), count(*) filter (where daily_return_ratio <> 0), "
            "count(volatility_7d_ratio) from gold.coin_daily"
        ).fetchone() or (0, 0, 0, 0)
        # The comparison used below sees a lake that differs: the base has 4 runs of 40.
        attach_reference(con, base.lake)
        differ = differing_rows(con, "silver.market_snapshots")
    assert priced_coins == PRICED
    # Days 0-18 are complete; returns from day 1, volatilities from day 7; every return moves.
    assert (returns, moved, volatile) == (18 * PRICED, 18 * PRICED, 12 * PRICED)
    assert differ == ((RUNS - RUNS_BEFORE) * COINS, 0)


# When to kill: a fixed delay after the start, or a moment read off the lake.
Trigger = Callable[[Path, Base], bool]


def silver_file_written(lake: Path, base: Base) -> bool:
    return data_files(lake / "silver" / "market_snapshots") > data_files(
        base.lake / "silver" / "market_snapshots"
    )


def silver_committed(lake: Path, base: Base) -> bool:
    return catalog_snapshot(lake) > base.before.snapshot_id


def gold_file_written(lake: Path, base: Base) -> bool:
    return data_files(lake / "gold") > data_files(base.lake / "gold")


@dataclass(frozen=True, slots=True)
class KillPoint:
    name: str
    delay: float | None = None  # seconds after the start
    trigger: Trigger | None = None
    silver_new: bool | None = None  # what a reader must see after a kill at a known moment
    gold_new: bool | None = None


KILL_POINTS = [
    KillPoint("after-0.8s", delay=0.8),
    KillPoint("after-1.2s", delay=1.2),
    KillPoint("after-1.8s", delay=1.8),
    KillPoint("silver-file-on-disk", trigger=silver_file_written, silver_new=False, gold_new=False),
    # The first of its two silver batches committed: silver partly new (a batch boundary).
    KillPoint("silver-committed", trigger=silver_committed),
    KillPoint("gold-file-on-disk", trigger=gold_file_written, silver_new=True, gold_new=False),
]


def kill_transform(lake: Path, *, at: Callable[[float], bool], name: str, timed: bool) -> int:
    """Start `cryptolake transform` on `lake` and SIGKILL it once `at(seconds since the
    start)` holds; its exit code. Only a `timed` kill may miss (the transform finished first,
    exit 0); a kill at a moment read off the lake must hit a process holding the lake's lock.
    """
    proc = start_cli("transform", "--lake", str(lake))
    started = time.monotonic()
    try:
        while proc.poll() is None and not at(time.monotonic() - started):
            assert time.monotonic() - started < 60, f"the transform never reached {name}"
            time.sleep(0.002)
        if proc.poll() is None:
            holder = "" if timed else (lake / ".lock").read_text()
            proc.kill()  # SIGKILL
            if not timed:
                assert json.loads(holder)["pid"] == proc.pid
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    if not timed:
        assert proc.returncode == -signal.SIGKILL, f"the transform exited before {name}: {err}"
    return proc.returncode


def kill_at(lake: Path, base: Base, point: KillPoint) -> int:
    trigger, delay = point.trigger, point.delay
    if trigger is None:
        assert delay is not None
        return kill_transform(
            lake, at=lambda elapsed: elapsed >= delay, name=point.name, timed=True
        )
    return kill_transform(lake, at=lambda _: trigger(lake, base), name=point.name, timed=False)


@pytest.mark.parametrize("point", KILL_POINTS, ids=[p.name for p in KILL_POINTS])
def test_sigkill_leaves_a_snapshot_and_the_next_transform_lands_every_row_once(
    base: Base, point: KillPoint, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(base.lake, lake)

    code = kill_at(lake, base, point)

    assert code in (-signal.SIGKILL, 0)
    # Readable, and at a committed snapshot: silver's rows and its processed runs agree (each
    # batch of runs commits whole: the old state, the new one, or a batch boundary between),
    # and gold is never newer than silver.
    old, new = base.before, base.after
    seen = lake_state(lake)
    silver_new = seen.silver_rows == new.silver_rows
    gold_new = seen.coin_daily_rows == new.coin_daily_rows
    assert old.processed_runs <= seen.processed_runs <= new.processed_runs
    assert (seen.silver_rows, seen.silver_snapshots) == (
        seen.processed_runs * COINS,
        seen.processed_runs,
    )
    assert seen.coin_daily_rows == (new if gold_new else old).coin_daily_rows
    assert silver_new or not gold_new
    if code == 0:  # not killed: the delay outlasted the transform
        assert (silver_new, gold_new) == (True, True)
    if point.silver_new is not None:
        assert (silver_new, gold_new) == (point.silver_new, point.gold_new)

    # The next transform takes over the killed one's lock and finishes its work.
    done = transform(lake)
    assert (lake / ".lock").read_text() == ""  # released cleanly this time
    if silver_new:
        assert "silver is up to date: no new complete bronze runs." in done.stdout
    else:
        left = new.processed_runs - seen.processed_runs
        assert f"silver (incremental, {left} runs)" in done.stdout

    expected = expected_rows_per_run(lake)
    assert len(expected) == RUNS
    with closing(lake_db(lake)) as con:
        final = state_of(con)
        per_run = con.execute(
            "select run_id, count(*), count(distinct coin_id), count(distinct snapshot_at) "
            "from silver.market_snapshots group by run_id"
        ).fetchall()
        duplicates = one(
            con,
            "select count(*) from (select coin_id, snapshot_at from silver.market_snapshots "
            "group by all having count(*) > 1)",
        )
        recorded = con.execute(
            "select p.run_id, count(*) from silver.processed_runs as p "
            "join silver.market_snapshots as s on s.run_id = p.run_id "
            "and s.snapshot_at = p.snapshot_at group by p.run_id"
        ).fetchall()
        attach_reference(con, base.reference)
        silver_differs = differing_rows(con, "silver.market_snapshots")
        gold_differs = differing_rows(con, "gold.coin_daily")
    assert (final.silver_rows, final.silver_snapshots, final.processed_runs) == (
        RUNS * COINS,
        RUNS,
        RUNS,
    )
    assert final.coin_daily_rows == 20 * COINS
    assert {run_id: rows for run_id, rows, _, _ in per_run} == expected
    assert all(coins == rows and at == 1 for _, rows, coins, at in per_run)
    assert duplicates == 0
    assert dict(recorded) == expected  # each run recorded once, with its own snapshot_at
    # Row for row what a full rebuild from bronze gives, in silver and in gold.
    assert (silver_differs, gold_differs) == ((0, 0), (0, 0))


# The pre-DuckLake layout: silver as Parquet of our own plus a JSON state, gold in a DuckDB file.


def legacy_lake(lake: Path) -> list[IngestResult]:
    """Three bronze runs (the 2023 top 100, 2 days) plus every kind of file an older cryptolake
    left: its gold database, silver's state, its partitions (one on a day bronze also has,
    one on a day it has not), its quarantine and a half-built gold database."""
    runs = [land(lake, at=T0 + timedelta(hours=6 * i)) for i in range(3)]
    with closing(duckdb.connect(str(lake / "cryptolake.duckdb"))) as con:
        con.execute("create schema gold")
        con.execute(
            "create table gold.coin_daily as select 'old-layout-coin' as coin_id, "
            "date '2026-02-15' as day, 1.5 as close_price"
        )
    state = lake / "silver" / "_state"
    state.mkdir(parents=True)
    (state / "processed_runs.json").write_text(
        json.dumps({"format": 3, "runs": [r.run_id for r in runs]})
    )
    partitions = {
        "market_snapshots/snapshot_date=2026-02-15": (
            "select 'old-layout-coin' as coin_id, 'usd' as vs_currency, "
            "timestamptz '2026-02-15 15:47:00+00' as snapshot_at, 1.5 as current_price"
        ),
        "global_snapshots/snapshot_date=2026-01-31": (
            "select timestamptz '2026-01-31 00:00:00+00' as snapshot_at, 1.0e12 as total_mc"
        ),
    }
    with closing(duckdb.connect()) as con:
        for folder, sql in partitions.items():
            target = lake / "silver" / folder
            target.mkdir(parents=True)
            con.execute(f"copy ({sql}) to '{target / 'data_0.parquet'}' (format parquet)")
        quarantine = lake / "silver" / "_quarantine"
        quarantine.mkdir()
        con.execute(f"copy (select 1 as x) to '{quarantine / 'rows.parquet'}' (format parquet)")
    (lake / ".cryptolake.duckdb.building-1234").write_bytes(b"half a database")
    return runs


LEGACY_PATHS = (
    "cryptolake.duckdb",
    ".cryptolake.duckdb.building-1234",
    "silver/_state/processed_runs.json",
    "silver/_quarantine/rows.parquet",
    "silver/market_snapshots/snapshot_date=2026-02-15/data_0.parquet",
    "silver/global_snapshots/snapshot_date=2026-01-31/data_0.parquet",
)


def assert_rebuilt_from_bronze(lake: Path, runs: list[IngestResult]) -> None:
    """Silver holds bronze's rows only (100 per run), gold none of the old file's, and no file
    of the old layout is left: silver/ holds DuckLake's data files alone."""
    with closing(lake_db(lake)) as con:
        per_run = con.execute(
            "select run_id, count(*), count(distinct coin_id) from silver.market_snapshots "
            "group by run_id order by run_id"
        ).fetchall()
        old = con.execute(
            "select (select count(*) from silver.market_snapshots where coin_id = "
            "'old-layout-coin'), (select count(*) from gold.coin_daily where coin_id = "
            "'old-layout-coin'), (select count(*) from gold.coin_daily), "
            "(select count(*) from silver.global_snapshots)"
        ).fetchone()
        processed = con.execute(
            "select run_id, silver_format from silver.processed_runs order by run_id"
        ).fetchall()
    assert per_run == sorted((r.run_id, 100, 100) for r in runs)
    assert old == (0, 0, 2 * 100, 3)  # 2 days of the top 100; 3 /global snapshots
    assert processed == sorted((r.run_id, 4) for r in runs)
    for path in LEGACY_PATHS:
        assert not (lake / path).exists(), path
    assert not (lake / "silver" / "_state").exists()
    assert not (lake / "silver" / "_quarantine").exists()
    assert not (lake / "silver" / "global_snapshots" / "snapshot_date=2026-01-31").exists()
    silver_files = [p for p in (lake / "silver").rglob("*") if p.is_file()]
    assert silver_files
    assert [p for p in silver_files if not p.name.startswith("ducklake-")] == []
    assert {p.suffix for p in silver_files} == {".parquet"}


def test_transform_rebuilds_an_old_layout_lake_from_bronze_and_removes_its_files(
    lake: Path,
) -> None:
    runs = legacy_lake(lake)

    done = transform(lake)

    assert LEGACY_NOTE in done.stderr.splitlines()
    assert "silver (full refresh, 3 runs)" in done.stdout
    assert_rebuilt_from_bronze(lake, runs)


def test_build_silver_rebuilds_an_old_layout_lake_and_says_so(lake: Path) -> None:
    runs = legacy_lake(lake)
    settings = settings_for(lake)

    result = build_silver(settings)

    assert result.notes == [LEGACY_NOTE.removeprefix("note: ")]
    assert result.full_refresh is True
    assert result.runs == [r.run_id for r in runs]
    assert {t.table: t.rows_added for t in result.tables} == {
        "market_snapshots": 300,
        "global_snapshots": 3,
        "category_snapshots": 3 * len(json.loads(fixture_bytes(CATEGORIES))),
        "coin_history_daily": 0,
        "coin_ohlc_4h": 0,
    }
    build_gold(settings)
    assert_rebuilt_from_bronze(lake, runs)
    again = build_silver(settings)
    assert (again.notes, again.runs, again.full_refresh) == ([], [], False)


def test_a_migration_killed_before_its_commit_keeps_the_old_files_and_is_redone(
    lake: Path,
) -> None:
    runs = legacy_lake(lake)
    code = kill_transform(
        lake,
        at=lambda _: data_files(lake / "silver" / "market_snapshots") > 0,
        name="silver's first file",
        timed=False,
    )
    assert code == -signal.SIGKILL

    # Nothing committed, so the old files are all still there, and silver is empty.
    for path in LEGACY_PATHS:
        assert (lake / path).exists(), path
    with closing(lake_db(lake)) as con:
        silver = con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'silver' "
            "and table_name = 'market_snapshots'"
        ).fetchone()
        processed = con.execute("select count(*) from silver.processed_runs").fetchone()
    assert (silver, processed) == ((0,), (0,))

    done = transform(lake)
    assert LEGACY_NOTE in done.stderr.splitlines()
    assert_rebuilt_from_bronze(lake, runs)


# The first transform of a lake, killed once it created the catalog file but before DuckLake
# initialised it (loading DuckDB's sqlite and ducklake extensions takes a while in between).


def catalog_tables(lake: Path) -> int:
    with closing(sqlite3.connect(lake / "catalog.sqlite")) as db:
        row = db.execute("select count(*) from sqlite_master where type = 'table'").fetchone()
    return int(row[0]) if row else -1


def kill_the_first_transform_at_its_catalog(
    lake: Path, *, empty: bool = False
) -> list[IngestResult]:
    """Two bronze runs, never transformed; the first transform killed as soon as
    `catalog.sqlite` exists. With `empty`, the test is skipped should the kill come only after
    DuckLake initialised the catalog (it is the empty catalog the test is about)."""
    runs = [land(lake, at=T0 + timedelta(hours=6 * i)) for i in range(2)]
    code = kill_transform(
        lake,
        at=lambda _: (lake / "catalog.sqlite").exists(),
        name="the catalog's creation",
        timed=False,
    )
    assert code == -signal.SIGKILL
    if empty and catalog_tables(lake) != 0:
        pytest.skip("the kill came after DuckLake initialised the catalog")
    return runs


def test_a_first_transform_killed_at_its_catalog_is_redone_by_the_next(lake: Path) -> None:
    runs = kill_the_first_transform_at_its_catalog(lake)

    done = transform(lake)

    assert "silver (incremental, 2 runs)" in done.stdout
    with closing(lake_db(lake)) as con:
        per_run = con.execute(
            "select run_id, count(*), count(distinct coin_id) from silver.market_snapshots "
            "group by run_id order by run_id"
        ).fetchall()
        gold_rows = one(con, "select count(*) from gold.coin_daily")
    assert per_run == sorted((r.run_id, 100, 100) for r in runs)
    assert gold_rows == 100  # one day of the top 100


def test_readers_of_a_lake_whose_first_transform_was_killed_are_told_the_fix(
    lake: Path,
) -> None:
    kill_the_first_transform_at_its_catalog(lake, empty=True)

    read = run_cli("query", "--lake", str(lake), "select 1 as n")

    assert read.returncode == 1
    line = one_error_line(read.stderr)
    assert "run `cryptolake transform`" in line, line
    assert "Invalid Input Error" not in line, line
