"""Run history: one JSON record per run in `<lake>/_meta/runs/`, shown as `meta.runs`.

Records are files (written atomically) rather than rows in the lake database, so recording a
run never competes for the database's write lock with someone reading it in a DuckDB shell;
the database exposes them as the view `meta.runs`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .errors import LakeError
from .fserrors import lake_io
from .lake import LakePaths, atomic_write
from .settings import Settings


@dataclass(slots=True)
class RunRecord:
    run_id: str
    trigger: str
    status: str
    is_sample: bool
    started_at: datetime
    finished_at: datetime | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    cryptolake_version: str = __version__

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> bytes:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return json.dumps(data, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> RunRecord:
        data = json.loads(raw)
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        if data.get("finished_at"):
            data["finished_at"] = datetime.fromisoformat(data["finished_at"])
        return cls(**data)


def runs_folder(lake: LakePaths) -> Path:
    return lake.root / "_meta" / "runs"


def _path(lake: LakePaths, run_id: str) -> Path:
    return runs_folder(lake) / f"{run_id}.json"


def _read(path: Path) -> RunRecord:
    try:
        return RunRecord.from_json(path.read_bytes())
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(f"Run record {path} is unreadable ({exc}); move it aside.") from None


def record_start(
    settings: Settings, *, run_id: str, started_at: datetime, trigger: str, sample: bool
) -> int:
    """Record the run as `running`; runs left `running` by a killed process become `killed`.

    Called with the lake lock held, so no other run can really be running. Returns how many
    runs were marked killed.
    """
    lake = LakePaths.at(settings.lake)
    killed = 0
    with lake_io(f"record the run in {runs_folder(lake)}"):
        for record in all_runs(lake):
            if record.status == "running":
                record.status = "killed"
                record.error = record.error or "the process ended without finishing the run"
                atomic_write(_path(lake, record.run_id), record.to_json())
                killed += 1
        record = RunRecord(run_id, trigger, "running", sample, started_at)
        atomic_write(_path(lake, run_id), record.to_json())
    return killed


def record_finish(
    settings: Settings,
    *,
    run_id: str,
    status: str,
    finished_at: datetime | None,
    stages: list[dict[str, Any]],
    error: str | None,
) -> None:
    """Rewrite the run's record: its stages so far and, once it ended, its outcome."""
    lake = LakePaths.at(settings.lake)
    with lake_io(f"record the run in {runs_folder(lake)}"):
        record = _read(_path(lake, run_id))
        record.status, record.finished_at, record.stages, record.error = (
            status,
            finished_at,
            stages,
            error,
        )
        atomic_write(_path(lake, run_id), record.to_json())


def all_runs(lake: LakePaths) -> list[RunRecord]:
    folder = runs_folder(lake)
    if not folder.exists():
        return []
    return [_read(p) for p in sorted(folder.glob("*.json"))]


def recent_runs(settings: Settings, *, limit: int = 10) -> list[RunRecord]:
    """The latest runs, newest first; empty for a lake that never ran `cryptolake run`."""
    records = all_runs(LakePaths.at(settings.lake))
    records.sort(key=lambda r: r.started_at, reverse=True)
    return records[:limit]
