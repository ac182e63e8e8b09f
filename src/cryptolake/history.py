"""Run history in the lake database (`meta.runs`): what ran, when, how long, what it did."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import __version__
from .lakedb import open_lake_db
from .settings import Settings
from .sqlfiles import load_sql


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    trigger: str
    status: str
    is_sample: bool
    started_at: datetime
    finished_at: datetime | None
    stages: list[dict[str, Any]]
    error: str | None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def record_start(
    settings: Settings, *, run_id: str, started_at: datetime, trigger: str, sample: bool
) -> int:
    """Insert the run as `running`; runs left `running` by a killed process become `killed`.

    Called with the lake lock held, so no other run can really be running. Returns how many
    runs were marked killed.
    """
    with open_lake_db(settings) as con:
        con.execute(load_sql("duckdb/meta/runs.sql"))
        killed = con.execute(
            "update meta.runs set status = 'killed', "
            "error = coalesce(error, 'the process ended without finishing the run') "
            "where status = 'running' returning run_id"
        ).fetchall()
        con.execute(
            "insert into meta.runs (run_id, trigger, status, is_sample, started_at, "
            "cryptolake_version) values (?, ?, 'running', ?, ?, ?)",
            [run_id, trigger, sample, started_at, __version__],
        )
        return len(killed)


def record_finish(
    settings: Settings,
    *,
    run_id: str,
    status: str,
    finished_at: datetime,
    stages: list[dict[str, Any]],
    error: str | None,
) -> None:
    with open_lake_db(settings) as con:
        con.execute(
            "update meta.runs set status = ?, finished_at = ?, stages = ?, error = ? "
            "where run_id = ?",
            [status, finished_at, json.dumps(stages), error, run_id],
        )


def recent_runs(settings: Settings, *, limit: int = 10) -> list[RunRecord]:
    """The latest runs, newest first; empty for a lake that never ran `cryptolake run`."""
    with open_lake_db(settings, read_only=True) as con:
        exists = con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'meta' "
            "and table_name = 'runs'"
        ).fetchone()
        if not exists or not exists[0]:
            return []
        rows = (
            con.execute(
                "select run_id, trigger, status, is_sample, started_at, finished_at, "
                "stages::varchar as stages, error from meta.runs "
                "order by started_at desc limit ?",
                [limit],
            )
            .to_arrow_table()
            .to_pylist()
        )
    return [
        RunRecord(
            run_id=r["run_id"],
            trigger=r["trigger"],
            status=r["status"],
            is_sample=r["is_sample"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            stages=json.loads(r["stages"]) if r["stages"] else [],
            error=r["error"],
        )
        for r in rows
    ]
