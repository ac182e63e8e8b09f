"""SIGKILL at every stage boundary and inside the bronze commit, the history group commit, the
silver and gold transactions and the publish transaction (issue 15).

Each case starts from a lake after one good run, runs a command with CRYPTOLAKE_FAILPOINTS
naming one point (the process SIGKILLs itself there: no sleep, no race), copies the lake as
the kill left it, then runs one plain `cryptolake run`. The kill must leave what was
acknowledged readable and once, and Postgres at its previous state (or, killed after its
commit, the whole new one); the plain run must take over the lock in one line, mark the killed
run, and leave every invariant of `invariants.py` true.

The cases are independent processes, so a module fixture runs them two at a time, each with
its checks (`check_case`); each test then reports its own case's outcome.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..clis import run_cli
from ..published import fetch, state
from .conftest import (
    NO_HISTORY,
    copy_lake,
    drop_schema,
    lock_holder,
    new_schema_name,
    run_record,
    stage_statuses,
)
from .invariants import (
    acknowledged,
    assert_in_silver_once,
    assert_invariants,
    orphan_bodies,
    silver_rows_per_run,
    staging_rows_per_run,
)

RUN = ("run", "--sample")
# The history stage and backfill fetch bitcoin's recorded history (the base lake has none)
# and 404s for the sample's other coins.
HISTORY_BUDGET = {"CRYPTOLAKE_HISTORY_BUDGET": "20"}


@dataclass(frozen=True, slots=True)
class Kill:
    """One case: `command` killed at failpoint `point`, reached in `stage`."""

    point: str
    stage: str
    command: tuple[str, ...] = RUN
    history: bool = False  # the command makes history requests
    postgres: bool = False  # it publishes
    # Whether the schema was published before the kill (else the kill hits the first publish
    # into an empty schema, whose day tables are loaded in parallel before its transaction).
    published_before: bool = True

    @property
    def orphans(self) -> bool:
        """Whether the kill leaves bodies no manifest lists (inside a bronze commit)."""
        return self.point.split(".")[0] in ("bronze", "history")

    @property
    def id(self) -> str:
        return f"{self.command[0]}-{self.point}"

    @property
    def env(self) -> dict[str, str]:
        return HISTORY_BUDGET if self.history else NO_HISTORY


def boundary(point: str) -> Kill:
    stage = point.split(".")[1]
    return Kill(point, stage, history=stage == "history", postgres=stage == "publish")


CASES = [
    # Inside the bronze commit: after the first body moved, and after all of them.
    Kill("bronze.body_moved", "ingest"),
    Kill("bronze.before_manifest", "ingest"),
    # History bodies durable, their manifests not written.
    Kill("history.bodies_synced", "history", history=True),
    # Inside the silver and the gold transaction, and the publish transaction.
    Kill("silver.before_commit", "transform"),
    Kill("gold.before_commit", "transform"),
    Kill("publish.before_commit", "publish", postgres=True),
    # Every boundary between stages of `run`, and before the first and after the last.
    # (`stage.<next>.start` differs from `stage.<previous>.end` only by the run record naming
    # the next stage as running: the boundary is tried once, and publish's start as well,
    # as the one that has Postgres.)
    *map(
        boundary,
        [
            "stage.ingest.start",
            "stage.ingest.end",
            "stage.history.end",
            "stage.transform.end",
            "stage.check.end",
            "stage.publish.start",
            "stage.publish.end",
        ],
    ),
    # The commands that run one stage alone (transform's points are `run`'s, above).
    Kill("bronze.body_moved", "ingest", command=("ingest", "--sample")),
    Kill(
        "history.bodies_synced",
        "history",
        command=("backfill", "--sample", "--top", "5"),
        history=True,
    ),
    Kill(
        "publish.before_commit",
        "publish",
        command=("publish",),
        postgres=True,
        published_before=False,
    ),
]


def postgres_state(dsn: str, schema: str) -> tuple[Any, ...] | None:
    """What consumers see (`published.state`), or None before the first publish committed."""
    ((exists,),) = fetch(dsn, f"select to_regclass('{schema}.publish_log') is not null")
    return state(dsn, schema) if exists else None


def check_case(case: Kill, lake: Path, dsn: str | None, schema: str | None) -> None:
    """Kill `case.command` at its failpoint on `lake`, check the lake as the kill left it, run
    once plainly, and check every invariant."""
    before = acknowledged(lake)
    publish_to: list[str] = []
    if case.postgres:
        assert dsn is not None and schema is not None
        publish_to = ["--postgres", dsn, "--pg-schema", schema]
        if case.published_before:  # the first good run's publish
            published = run_cli("publish", "--lake", str(lake), *publish_to)
            assert published.returncode == 0, published.stderr
    postgres_before = postgres_state(dsn, schema) if dsn and schema else None

    killed = run_cli(
        *case.command,
        "--lake",
        str(lake),
        *publish_to,
        env=case.env | {"CRYPTOLAKE_FAILPOINTS": case.point},
    )

    # It died at the failpoint, by SIGKILL, holding the lake's lock.
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    assert "Traceback" not in killed.stderr
    holder = lock_holder(lake)
    assert holder is not None, "the killed command's lock file is empty"
    if case.command[0] == "run":
        record = run_record(lake, holder["run_id"])
        assert record is not None
        assert record["status"] == "running"
        assert stage_statuses(record)[case.stage] == "running"
    # What was acknowledged before the kill is still there, once. (On a copy: reading the
    # lake must not be what recovers it.)
    at_kill = copy_lake(lake, lake.parent / "at-kill")
    assert set(before) <= set(acknowledged(at_kill))
    # Only a kill inside a bronze commit leaves bodies no manifest lists (for the next
    # ingest to sweep), and there it does: the case is the fault it claims to be.
    assert bool(orphan_bodies(at_kill)) == case.orphans, orphan_bodies(at_kill)
    assert_in_silver_once(at_kill, before.values())
    # Consumers see the previous state, or the whole new one once the commit was done.
    if dsn is not None and schema is not None:
        seen = postgres_state(dsn, schema)
        if case.point == "stage.publish.end":
            assert seen != postgres_before
            assert staging_rows_per_run(dsn, schema) == silver_rows_per_run(at_kill)
        elif case.published_before:
            assert postgres_before is not None
            assert seen == postgres_before
        else:  # the first publish: its tables may exist, but consumers see no row in them
            assert seen is None or set(seen) == {0, None}, seen

    recovered = run_cli(*RUN, "--json", "--lake", str(lake), *publish_to, env=case.env)

    # One plain run recovers, and says in one line whose lock it took over.
    assert recovered.returncode == 0, recovered.stderr
    result = json.loads(recovered.stdout)
    assert result["status"] == "success", result
    assert {s["status"] for s in result["stages"]} <= {"ok", "skipped"}, result["stages"]
    takeover = [note for note in result["notes"] if f"(pid {holder['pid']} " in note]
    assert len(takeover) == 1, result["notes"]
    assert takeover[0].startswith("took over the lock left by killed "), takeover
    if case.command[0] == "run":
        record = run_record(lake, holder["run_id"])
        assert record is not None
        assert record["status"] == "killed"
    assert_invariants(
        lake, before, postgres=(dsn, schema) if dsn is not None and schema is not None else None
    )


def selected_cases(request: pytest.FixtureRequest) -> list[Kill]:
    """The cases whose tests this session runs (all of them unless deselected)."""
    chosen = {
        item.callspec.params["case"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.module is request.module
        and hasattr(item, "callspec")
    }
    return [case for case in CASES if case in chosen]


@pytest.fixture(scope="module")
def checked_cases(
    request: pytest.FixtureRequest, base_lake: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Kill, Future[None]]]:
    """Every selected case, killed, recovered and checked, two at a time."""
    cases = selected_cases(request)
    dsn: str | None = None
    if any(case.postgres for case in cases):
        try:
            dsn = request.getfixturevalue("pg_dsn")
        except (pytest.skip.Exception, pytest.fail.Exception):
            # Without Postgres their tests skip (or fail, where CI requires it) by themselves.
            cases = [case for case in cases if not case.postgres]
    schemas: list[str] = []
    try:
        jobs: list[tuple[Kill, Path, str | None]] = []
        for case in cases:
            lake = copy_lake(base_lake, tmp_path_factory.mktemp("killed") / "lake")
            schema = None
            if case.postgres and dsn is not None:
                schema = new_schema_name()
                schemas.append(schema)
            jobs.append((case, lake, schema))
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {job[0]: pool.submit(check_case, job[0], job[1], dsn, job[2]) for job in jobs}
            for future in futures.values():
                future.exception()  # wait for all: teardown drops their schemas
        yield futures
    finally:
        for schema in schemas:
            assert dsn is not None
            drop_schema(dsn, schema)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_sigkill_at_a_failpoint_then_one_plain_run_recovers(
    case: Kill, checked_cases: dict[Kill, Future[None]], request: pytest.FixtureRequest
) -> None:
    if case.postgres:
        request.getfixturevalue("pg_dsn")  # skipped (or failed, if required) without one
    checked_cases[case].result()  # raises what `check_case` found
