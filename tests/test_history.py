"""Run records: a run's start marks the runs a killed process left `running`, reading only
the records written since the last finished one (a year of 6-hourly runs is 1,460 files)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryptolake.errors import LakeError
from cryptolake.history import RunRecord, recent_runs, record_start
from cryptolake.settings import Settings

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def settings_for(lake: Path) -> Settings:
    return Settings.resolve(env={}, lake=lake)


def put(lake: Path, n: int, status: str, *, raw: bytes | None = None) -> Path:
    """Run record number `n`, written at 1,000 + n seconds after the epoch (its mtime)."""
    started = T0 + timedelta(hours=6 * n)
    record = RunRecord(f"run{n:04d}", "schedule", status, False, started)
    path = lake / "_meta" / "runs" / f"run{n:04d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record.to_json() if raw is None else raw)
    os.utime(path, ns=((1_000 + n) * 10**9, (1_000 + n) * 10**9))
    return path


def statuses(lake: Path) -> dict[str, str]:
    return {r.run_id: r.status for r in recent_runs(settings_for(lake), limit=100)}


def test_runs_left_running_since_the_last_finished_one_are_marked_killed(
    tmp_path: Path,
) -> None:
    put(tmp_path, 1, "success")
    put(tmp_path, 2, "running")  # killed; the next start marked it
    put(tmp_path, 3, "failed")
    put(tmp_path, 4, "running")  # killed, then one more killed before a start saw it
    put(tmp_path, 5, "running")
    killed = record_start(
        settings_for(tmp_path), run_id="run0006", started_at=T0, trigger="cli", sample=False
    )
    assert killed == 2
    found = statuses(tmp_path)
    assert [found[f"run{n:04d}"] for n in (3, 4, 5, 6)] == ["failed", "killed", "killed", "running"]
    # Written before the finished run 3: a start since looked at it, this one did not.
    assert found["run0002"] == "running"


def test_records_written_before_the_last_finished_run_are_not_read(tmp_path: Path) -> None:
    put(tmp_path, 1, "success", raw=b"not json")  # older than run 2's end: never read
    put(tmp_path, 2, "success")
    assert (
        record_start(
            settings_for(tmp_path), run_id="run0003", started_at=T0, trigger="cli", sample=False
        )
        == 0
    )
    put(tmp_path, 4, "success", raw=b"not json")  # written after run 2 ended: read
    with pytest.raises(LakeError, match=r"run0004\.json is unreadable .*; move it aside"):
        record_start(
            settings_for(tmp_path), run_id="run0005", started_at=T0, trigger="cli", sample=False
        )
