"""Runs and publishes at once, and readers polling while a run publishes (issue 15).

Several `cryptolake run` on one lake: the lake's lock lets one in at a time; a run refused is
one clear line (exit 1) and leaves no trace; nothing is landed or published twice. Publishes
from two lakes to one Postgres schema at once: the publish lock serialises them, each
(snapshot, coin) is staged once (and an older copy of a lake must not roll the marts back:
a known bug, marked). Four readers (two of Postgres, the lake through `cryptolake
query` and through DuckDB) polling while a run transforms and publishes see the old state or
the new one, never part of one: a snapshot is all its coins or absent.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolake.history import all_runs
from cryptolake.lake import LakePaths
from cryptolake.staging import STAGING

from ..clis import one_error_line, run_cli, start_cli
from ..lakes import lake_db
from ..published import fetch
from .conftest import NO_HISTORY, copy_lake
from .invariants import (
    acknowledged,
    assert_invariants,
    assert_postgres_matches_silver,
    silver_rows_per_run,
    staging_rows_per_run,
)

CONTENDERS = 3


def at_once(*commands: list[str], env: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    """Start every `cryptolake` command at once; (exit code, stdout, stderr) of each."""
    procs = [start_cli(*command, env=env) for command in commands]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append((proc.returncode, out, err))
    return done


def test_runs_at_once_on_one_lake_go_one_at_a_time(lake_copy: Path) -> None:
    lake = LakePaths.at(lake_copy)
    before = acknowledged(lake_copy)
    records_before = {r.run_id for r in all_runs(lake)}

    done = at_once(
        *[["run", "--sample", "--quiet", "--lake", str(lake_copy)]] * CONTENDERS, env=NO_HISTORY
    )

    succeeded = [d for d in done if d[0] == 0]
    refused = [d for d in done if d[0] != 0]
    assert succeeded, done
    for code, _, err in refused:
        assert code == 1, err
        line = one_error_line(err)
        assert line.startswith(f"error: The lake {lake.root} is busy: run "), line
        assert line.endswith("a killed run's lock is taken over automatically."), line
    # A refused run never started: no record. Those that ran never overlapped.
    runs = sorted(
        (r for r in all_runs(lake) if r.run_id not in records_before), key=lambda r: r.started_at
    )
    assert len(runs) == len(succeeded)
    assert {r.status for r in runs} == {"success"}
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier.finished_at is not None
        assert earlier.finished_at <= later.started_at, (earlier, later)
    assert len(acknowledged(lake_copy)) == len(before) + len(succeeded)
    assert_invariants(lake_copy, before)


def publish_command(lake: Path, dsn: str, schema: str) -> list[str]:
    return ["publish", "--lake", str(lake), "--postgres", dsn, "--pg-schema", schema]


def publish_log_rows(dsn: str, schema: str) -> int:
    ((rows,),) = fetch(dsn, f"select count(*) from {schema}.publish_log")
    return int(rows)


def test_two_publishes_of_one_lake_at_once_publish_it_once(
    lake_copy: Path, tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    # Two copies (the lake lock keeps two publishes of one folder apart already).
    twin = copy_lake(lake_copy, tmp_path / "twin")

    done = at_once(*(publish_command(lake, pg_dsn, pg_schema) for lake in (lake_copy, twin)))

    assert [code for code, _, _ in done] == [0, 0], done
    assert all("error:" not in err for _, _, err in done), done
    # One published, the other waited for it and found Postgres up to date.
    assert publish_log_rows(pg_dsn, pg_schema) == 1
    assert_postgres_matches_silver(lake_copy, pg_dsn, pg_schema)


@pytest.fixture(scope="module")
def newer_lake(base_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base lake after one more good run: a newer version of the same lake (same id)."""
    newer = copy_lake(base_lake, tmp_path_factory.mktemp("newer") / "lake")
    ran = run_cli("run", "--sample", "--quiet", "--lake", str(newer), env=NO_HISTORY)
    assert ran.returncode == 0, ran.stderr
    return newer


def test_publishes_of_an_older_and_a_newer_lake_at_once_stage_each_snapshot_once(
    lake_copy: Path, newer_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    done = at_once(*(publish_command(lake, pg_dsn, pg_schema) for lake in (lake_copy, newer_lake)))

    assert [code for code, _, _ in done] == [0, 0], done
    assert all("error:" not in err for _, _, err in done), done
    # Whichever went first, staging holds the newer lake's snapshots (the older one's among
    # them), each coin of each once.
    ((rows, keys),) = fetch(
        pg_dsn,
        f"select count(*), count(distinct (coin_id, snapshot_at)) from {pg_schema}.{STAGING}",
    )
    assert rows == keys
    assert staging_rows_per_run(pg_dsn, pg_schema) == silver_rows_per_run(newer_lake)
    # The older one commits too if it went first; after the newer one it is up to date.
    assert publish_log_rows(pg_dsn, pg_schema) in (1, 2)
    # Either way the marts are the newer lake's.
    assert_postgres_matches_silver(newer_lake, pg_dsn, pg_schema)


def test_an_older_copy_published_after_a_newer_one_leaves_the_newer_marts(
    lake_copy: Path, newer_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    for lake in (newer_lake, lake_copy):
        done = run_cli(*publish_command(lake, pg_dsn, pg_schema))
        assert done.returncode == 0, done.stderr

    assert_postgres_matches_silver(newer_lake, pg_dsn, pg_schema)


# --- readers during a publish -------------------------------------------------------------------


class Poller:
    """Reads in a loop on a thread until stopped; keeps each read, and any error."""

    def __init__(
        self,
        read: Callable[[], Any],
        *,
        pause: float = 0.0,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.read = read
        self.pause = pause  # between reads, to leave the machine to the run
        self.close = close
        self.seen: list[Any] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            while not self.stop.wait(self.pause):
                self.seen.append(self.read())
        except Exception as exc:  # a reader must never fail: reported by the test
            self.errors.append(exc)
        finally:
            self.close()

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


# One statement (one database snapshot): the coins of each staged snapshot, what the analytics
# mart shows, and how many publishes committed.
PG_READ = (
    "select (select string_agg(run_id || '=' || n, ',' order by run_id) from "
    "(select run_id, count(*) as n from {schema}.staging_market_snapshots group by 1) as s), "
    "(select count(*) from {schema}.crypto_analytics_mart), "
    "(select max(snapshot_at)::text from {schema}.crypto_analytics_mart), "
    "(select count(*) from {schema}.publish_log)"
)
# The lake: the coins of each silver snapshot, and the snapshot gold shows.
LAKE_READ = (
    "select epoch_us(snapshot_at) as s, count(*) as n, "
    "(select epoch_us(max(snapshot_at)) from gold.crypto_analytics_mart) as g "
    "from silver.market_snapshots group by all order by s"
)
LakeState = tuple[tuple[tuple[int, int], ...], int]  # ((snapshot, coins), ...), gold's


def lake_state(rows: list[tuple[int, int, int]]) -> LakeState:
    return tuple((s, n) for s, n, _ in rows), rows[0][2]


def read_lake_in_process(lake: Path) -> LakeState:
    with closing(lake_db(lake)) as con:
        rows = con.execute(LAKE_READ).fetchall()
    return lake_state([(int(s), int(n), int(g)) for s, n, g in rows])


def read_lake_by_cli(lake: Path) -> LakeState:
    done = run_cli("query", "--format", "csv", "--lake", str(lake), LAKE_READ)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))[1:]
    return lake_state([(int(s), int(n), int(g)) for s, n, g in rows])


def test_readers_during_a_publishing_run_see_the_old_or_the_new_state(
    lake_copy: Path, pg_dsn: str, pg_schema: str
) -> None:
    first = run_cli(*publish_command(lake_copy, pg_dsn, pg_schema))
    assert first.returncode == 0, first.stderr
    pg_read = PG_READ.format(schema=pg_schema)

    def read_pg() -> tuple[Any, ...]:
        return fetch(pg_dsn, pg_read)[0]

    old_pg, old_lake = read_pg(), read_lake_in_process(lake_copy)
    pollers = [
        pg_poller(pg_dsn, pg_read),
        pg_poller(pg_dsn, pg_read),
        # A read of the lake costs an attach (a third of a CPU-second), or a process.
        Poller(lambda: read_lake_in_process(lake_copy), pause=0.3),
        Poller(lambda: read_lake_by_cli(lake_copy), pause=0.5),
    ]
    with ExitStack() as stack:
        for poller in pollers:
            stack.enter_context(poller)
        wait_for_reads(pollers, 1)  # each has read the old state
        ran = run_cli(
            "run",
            "--sample",
            "--quiet",
            *publish_command(lake_copy, pg_dsn, pg_schema)[1:],
            env=NO_HISTORY,
        )
        # Each has read again after the run (but a process per read of `cryptolake query`
        # is slow: it is only checked to have read correctly meanwhile).
        wait_for_reads(pollers[:3], 2)
    assert ran.returncode == 0, ran.stderr
    assert [p.errors for p in pollers] == [[]] * len(pollers)

    new_pg, new_lake = read_pg(), read_lake_in_process(lake_copy)
    assert new_pg != old_pg and new_lake != old_lake
    for poller in pollers[:2]:
        assert set(poller.seen) <= {old_pg, new_pg}, set(poller.seen) - {old_pg, new_pg}
        assert (poller.seen[0], poller.seen[-1]) == (old_pg, new_pg)
    # The lake commits silver, then gold: a reader may see the new silver snapshot under the
    # old gold, but each snapshot whole (all its coins), and gold never ahead of silver.
    for poller in pollers[2:]:
        for snapshots, gold in poller.seen:
            assert snapshots in (old_lake[0], new_lake[0]), snapshots
            assert gold in (old_lake[1], new_lake[1]), gold
            assert gold <= snapshots[-1][0]
        assert poller.seen[0] == old_lake
    assert pollers[2].seen[-1] == new_lake
    assert len(new_lake[0]) == 2
    assert {coins for _, coins in new_lake[0]} == {100}
    assert new_lake[1] == new_lake[0][-1][0]


def wait_for_reads(pollers: list[Poller], more: int, timeout: float = 120) -> None:
    """Wait until each poller has read `more` more times than it had (or failed)."""
    targets = [len(p.seen) + more for p in pollers]
    deadline = time.monotonic() + timeout
    while not all(len(p.seen) >= n or p.errors for p, n in zip(pollers, targets, strict=True)):
        assert time.monotonic() < deadline, "a reader stopped reading"
        time.sleep(0.01)


def pg_poller(dsn: str, sql: str) -> Poller:
    """Reads one row of `sql` on a connection of its own, each read a statement of its own
    (autocommit: it sees the latest commit, in one snapshot of the database)."""
    conn = psycopg.connect(dsn, autocommit=True)

    def read() -> tuple[Any, ...]:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return tuple(row)

    return Poller(read, pause=0.02, close=conn.close)
