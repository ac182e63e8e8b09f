"""Postgres dies mid-publish: one error line, exit 1, the run recorded failed, nothing half-done.

Each fault runs `cryptolake run --stages publish` as a child process (this module, run as
`python -m tests.faults.test_postgres_dies FAULT -- ARGS`) against a throwaway cluster
(pgcluster.py), never the shared server. The child stops the server from inside the publish:

    step:K      from the publish's progress callback at step K (after K steps are done)
    copy:TABLE  while a COPY into TABLE... streams: the rows are repeated so that it lasts,
                and Postgres is stopped once it has taken some, with the client still
                sending (the socket write fails: DuckDB's internal error, issue 15's abort)
    commit      after every table is written, just before COMMIT

A `kill:` prefix SIGKILLs the postmaster and every server process instead of
`pg_ctl stop -m immediate`. After each fault the cluster is started again, Postgres must
hold exactly what it held before, and after all of them one plain `cryptolake publish`
must publish every row once. FAULT_TRIES=n (default 1) repeats every fault n times; the
matrix (fault, tries, survived) is printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from cryptolake.gold import GOLD_MODELS
from cryptolake.history import recent_runs
from cryptolake.publish import HISTORY, STAGING, publish
from cryptolake.staging import LOADING_COMMENT

from ..clis import CLI, clean_env, run_cli
from ..conftest import LakeTemplates
from ..lakes import T0, lake_db, land, one_snapshot, settings_for
from ..published import fetch, rebuild, state, target
from .pgcluster import PgCluster, pg_cluster

SCHEMA = "cryptolake"
PUBLISH_STEPS = len(GOLD_MODELS) + 4  # history, each mart, indexes, staging, committed
# Steps 1..PUBLISH_STEPS-1 end inside the publish transaction; the last is "committed".
IN_TRANSACTION = [f"step:{k}" for k in range(1, PUBLISH_STEPS)]
FIRST_FAULTS = [
    *IN_TRANSACTION,
    "copy:staging_market_snapshots_p",  # a worker's day (a first publish loads in parallel)
    "copy:crypto_analytics_mart",  # on the publish transaction's own connection
    "kill:copy:staging_market_snapshots_p",
]
LATER_FAULTS = [*IN_TRANSACTION, "commit", "kill:step:5"]
# Faults run in this many lanes at once, each with its own cluster, database and lake.
LANES = 2
TRIES = int(os.environ.get("FAULT_TRIES", "1"))
# A killed postmaster ends its backends ("terminating connection due to unexpected postmaster
# exit"), which explain_pg words as the server ending the connection.
CAUSES = re.compile(
    r"connection to Postgres was lost|not accepting connections|lost the"
    r"|the Postgres server ended the connection"
)
Matrix = list[tuple[str, int, int]]  # (fault, tries, survived)


@pytest.fixture(scope="module")
def clusters() -> Iterator[list[PgCluster]]:
    """Throwaway Postgres clusters for this module, one per lane (never the shared server)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(pg_cluster()) for _ in range(LANES)]


def test_first_publish_survives_postgres_dying_at_every_step(
    clusters: list[PgCluster], lake_templates: LakeTemplates, tmp_path: Path
) -> None:
    lakes = [lake_templates.copy(one_snapshot, tmp_path / f"lake{i}") for i in range(LANES)]

    def lane(i: int, faults: list[str]) -> tuple[Matrix, list[str]]:
        dsn = clusters[i].create_database("first")
        matrix, failures = run_faults(clusters[i], lakes[i], dsn, faults, nothing_published)
        publish_again(lakes[i], dsn)
        assert_every_row_once(lakes[i], dsn, publishes=1)
        return matrix, failures

    in_lanes(lane, FIRST_FAULTS)


def test_later_publish_survives_postgres_dying_at_every_step(
    clusters: list[PgCluster], lake_templates: LakeTemplates, tmp_path: Path
) -> None:
    lakes = [lake_templates.copy(one_snapshot, tmp_path / f"lake{i}") for i in range(LANES)]

    def lane(i: int, faults: list[str]) -> tuple[Matrix, list[str]]:
        dsn = clusters[i].create_database("later")
        publish(target(lakes[i], dsn, SCHEMA))
        land(lakes[i], at=T0 + timedelta(hours=6))
        rebuild(lakes[i])
        before = state(dsn, SCHEMA)

        def unchanged(dsn: str) -> None:
            assert state(dsn, SCHEMA) == before, "Postgres changed"

        matrix, failures = run_faults(clusters[i], lakes[i], dsn, faults, unchanged)
        publish_again(lakes[i], dsn)
        assert_every_row_once(lakes[i], dsn, publishes=2)
        return matrix, failures

    in_lanes(lane, LATER_FAULTS)


def in_lanes(lane: Callable[[int, list[str]], tuple[Matrix, list[str]]], faults: list[str]) -> None:
    """`lane(i, its faults)` for every lane at once (faults dealt in turn); fails with the
    matrix if any fault was not survived."""
    with ThreadPoolExecutor(max_workers=LANES) as pool:
        done = [pool.submit(lane, i, faults[i::LANES]) for i in range(LANES)]
        results = [future.result() for future in done]
    rows = {fault: row for matrix, _ in results for row in matrix for fault in [row[0]]}
    matrix = [rows[fault] for fault in faults]
    failures = [failure for _, lane_failures in results for failure in lane_failures]
    print("\n" + report(matrix))
    assert not failures, report(matrix) + "\n\n" + "\n\n".join(failures)


def run_faults(
    cluster: PgCluster, lake: Path, dsn: str, faults: list[str], expect: Callable[[str], None]
) -> tuple[Matrix, list[str]]:
    """Each fault TRIES times: a child publish Postgres dies under, then the checks; returns
    the matrix and what went wrong in each try that was not survived."""
    matrix: Matrix = []
    failures: list[str] = []
    for fault in faults:
        survived = 0
        for _ in range(TRIES):
            child = publish_with_fault(cluster, lake, dsn, fault)
            try:
                assert_one_clean_failure(child, lake, cluster)
                if not cluster.is_running():
                    cluster.start()
                expect(dsn)
                survived += 1
            except AssertionError as exc:
                failures.append(f"{fault}: {exc}")
            finally:
                if not cluster.is_running():
                    cluster.start()
        matrix.append((fault, TRIES, survived))
    return matrix, failures


def report(matrix: Matrix) -> str:
    return "fault, tries, survived\n" + "\n".join(f"{f}, {t}, {s}" for f, t, s in matrix)


def publish_again(lake: Path, dsn: str) -> None:
    """The next plain `cryptolake publish`, Postgres back: it succeeds."""
    published = run_cli("publish", "--lake", str(lake), "--postgres", dsn)
    assert published.returncode == 0, published.stderr


def publish_with_fault(
    cluster: PgCluster, lake: Path, dsn: str, fault: str
) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [
            *CLI[:1],
            "-m",
            "tests.faults.test_postgres_dies",
            fault,
            "--",
            "run",
            "--stages",
            "publish",
            "--quiet",
            "--lake",
            str(lake),
            "--postgres",
            dsn,
        ],
        capture_output=True,
        text=True,
        env=clean_env(**cluster.env()),
        cwd=root,
        timeout=120,
        check=False,
    )


def assert_one_clean_failure(
    child: subprocess.CompletedProcess[str], lake: Path, cluster: PgCluster
) -> None:
    """Exit 1 with one `error:` line naming the target, the cause and the fix; the run
    recorded as failed in its publish stage. A native abort is exit -6 (134 in a shell)."""
    where = f"exit {child.returncode}\n{child.stderr[-3000:]}"
    assert "[fault] stopped Postgres" in child.stderr, where
    assert child.returncode == 1, where
    assert "Traceback" not in child.stderr, where
    errors = [line for line in child.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, where
    assert f"on 127.0.0.1:{cluster.port} as postgres" in errors[0], where
    assert CAUSES.search(errors[0]), where
    assert "publish again" in errors[0] or "cryptolake publish` again" in errors[0], where
    (run,) = recent_runs(settings_for(lake), limit=1)
    assert run.status == "failed", where
    assert [s["status"] for s in run.stages if s["stage"] == "publish"] == ["failed"], where


def nothing_published(dsn: str) -> None:
    """A first publish that failed left no rows a consumer can see."""
    for table in (STAGING, HISTORY, *GOLD_MODELS, "publish_log"):
        (exists,) = fetch(dsn, f"select to_regclass('{SCHEMA}.{table}') is not null")[0]
        if exists:
            assert fetch(dsn, f"select count(*) from {SCHEMA}.{table}") == [(0,)], table


def assert_every_row_once(lake: Path, dsn: str, *, publishes: int) -> None:
    """Postgres holds the lake: staging every silver row once, each mart its gold rows, one
    publish log row per successful publish, and no table a failed load left behind."""
    con = lake_db(lake)
    try:
        silver = con.execute("select count(*) from silver.market_snapshots").fetchone()
        gold = {m: con.execute(f"select count(*) from gold.{m}").fetchone() for m in GOLD_MODELS}
    finally:
        con.close()
    staged = fetch(
        dsn,
        f"select count(*), count(distinct (coin_id, snapshot_at)) from {SCHEMA}.{STAGING}",
    )[0]
    assert silver is not None and staged == (silver[0], silver[0])
    for mart, rows in gold.items():
        assert rows is not None
        assert fetch(dsn, f"select count(*) from {SCHEMA}.{mart}") == [(rows[0],)], mart
    assert fetch(dsn, f"select count(*) from {SCHEMA}.publish_log") == [(publishes,)]
    leftovers = fetch(
        dsn,
        f"select count(*) from pg_class where obj_description(oid, 'pg_class') = "
        f"'{LOADING_COMMENT}'",
    )
    assert leftovers == [(0,)]


# ---- the child: `cryptolake` with Postgres stopped at a fault point ---------------------

REPEAT = 20_000  # rows of a COPY repeated this often: it streams for a second or more
_INSERT = re.compile(r"(?is)^(\s*insert into pg\.(\S+) by name select \* from )(\S+)(.*)$")


def child_main(argv: list[str]) -> None:
    """`FAULT -- cryptolake args`: run the CLI in this process with the fault armed."""
    import cryptolake.pipeline as pipeline
    import cryptolake.publish as publish_module
    import cryptolake.publish_transaction as publish_transaction
    import cryptolake.staging_loads as staging_loads
    from cryptolake.entry import main

    fault, args = argv[0], argv[argv.index("--") + 1 :]
    cluster = PgCluster.from_env()
    kill = fault.startswith("kill:")
    kind, _, arg = fault.removeprefix("kill:").partition(":")
    target_dsn = args[args.index("--postgres") + 1]
    stopped = threading.Event()
    lock = threading.Lock()

    def stop(where: str) -> None:
        with lock:
            if stopped.is_set():
                return
            stopped.set()
            # Said first: the publish may fail and exit before the stop returns.
            sys.stderr.write(f"[fault] stopped Postgres at {where}\n")
            sys.stderr.flush()
            cluster.kill() if kill else cluster.stop("immediate")

    def stopping_at_step(real: Callable[..., Any]) -> Callable[..., Any]:
        def publish(settings: Any, *, progress: Any, **kwargs: Any) -> Any:
            def on_progress(event: Any) -> None:
                progress(event)
                if kind == "step" and event.stage == "publish" and event.completed == int(arg):
                    stop(f"publish step {arg} ({event.detail})")

            return real(settings, progress=on_progress, **kwargs)

        return publish

    def stopping_at_commit(real: Callable[[str], None]) -> Callable[[str], None]:
        def failpoint(name: str) -> None:
            if kind == "commit" and name == "publish.before_commit":
                stop("COMMIT")
            real(name)

        return failpoint

    _patch(pipeline, "publish", stopping_at_step)
    _patch(publish_transaction, "failpoint", stopping_at_commit)

    def watch(relation: str) -> None:
        # By the statement: a table the publish transaction created is invisible here.
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not stopped.is_set():
                row = conn.execute(
                    "select p.tuples_processed from pg_stat_progress_copy as p "
                    "join pg_stat_activity as a using (pid) where a.query like %s",
                    [f'COPY %"{relation}"%'],
                ).fetchone()
                if row and row[0] > 0:
                    stop(f"a COPY into {relation}, {row[0]} rows in")
                    return
                time.sleep(0.001)

    armed = threading.Event()

    class Connection:
        """A DuckDB connection whose COPY into the fault's table streams for a while."""

        def __init__(self, con: Any) -> None:
            self._con = con

        def __getattr__(self, name: str) -> Any:
            return getattr(self._con, name)

        def execute(self, sql: str, *params: Any) -> Any:
            insert = _INSERT.match(sql)
            if kind == "copy" and insert:
                relation = insert[2].split(".")[-1]
                with lock:
                    mine = relation.startswith(arg) and not armed.is_set()
                    armed.set() if mine else None
                if mine:
                    # The same rows, repeated; no ORDER BY, or the sort would read them all
                    # before the COPY starts. The server dies long before an index sees them.
                    rest = re.sub(r"(?is)\border by .*$", "", insert[4])
                    sql = f"{insert[1]}(select s.* from {insert[3]} as s, range({REPEAT})){rest}"
                    threading.Thread(target=watch, args=(relation,), daemon=True).start()
            return self._con.execute(sql, *params)

    def streaming_slowly(real: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args, **kwargs: Connection(real(*args, **kwargs))

    for module in (publish_module, staging_loads):
        for name in ("connect_for_postgres", "connect"):  # (`connect` before the fix)
            if name in vars(module):
                _patch(module, name, streaming_slowly)
    sys.argv = ["cryptolake", *args]
    main()


def _patch(module: ModuleType, name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace `module.name` by `wrap(module.name)` (in this child process only)."""
    namespace = vars(module)
    namespace[name] = wrap(namespace[name])


if __name__ == "__main__":
    child_main(sys.argv[1:])
