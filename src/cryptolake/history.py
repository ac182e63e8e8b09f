"""Run history: one JSON record per run in `<lake>/_meta/runs/`, shown as `meta.runs`.

Records are files (written atomically; objects on an object-store lake) rather than rows in
the lake database, so recording a run never competes for the database's write lock with
someone reading it in a DuckDB shell; the database exposes them as the view `meta.runs`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from . import __version__
from .errors import LakeError
from .fserrors import lake_io
from .lake import LakePaths
from .settings import Settings
from .store import LocalStore


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
    # Who ran it (a team lake has several machines): the host name and process id.
    host: str | None = None
    pid: int | None = None

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


RUNS_PREFIX = "_meta/runs"


def runs_folder(lake: LakePaths) -> str:
    """Where the run records are, as DuckDB and messages name it (a folder or an s3 URL)."""
    return lake.store.uri(RUNS_PREFIX)


def _key(run_id: str) -> str:
    return f"{RUNS_PREFIX}/{run_id}.json"


def _read(lake: LakePaths, key: str) -> RunRecord:
    try:
        return RunRecord.from_json(lake.store.read(key))
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(
            f"Run record {lake.store.uri(key)} is unreadable ({exc}); move it aside."
        ) from None


def record_start(
    settings: Settings, *, run_id: str, started_at: datetime, trigger: str, sample: bool
) -> int:
    """Record the run as `running`; runs left `running` by a killed process become `killed`.

    Called with the lake lock held, so no other run on this lake can really be running;
    on object storage, where other machines run too, only this machine's runs whose process
    is gone are marked. Returns how many runs were marked killed.
    """
    lake = LakePaths.of(settings)
    killed = 0
    with lake_io(f"record the run in {runs_folder(lake)}"):
        for record in _newest_writes_first(lake):
            if record.status != "running":
                if lake.remote:
                    continue  # runs of other machines may overlap: look at every record
                # Runs of a local lake hold its lock in turn, and each start marked the
                # runs left running before it: a record written before this finished (or
                # marked) one was looked at by a start since. A year of records is not read.
                break
            if _is_dead(record, remote=lake.remote):
                record.status = "killed"
                record.error = record.error or "the process ended without finishing the run"
                lake.store.write(_key(record.run_id), record.to_json())
                killed += 1
        record = RunRecord(
            run_id,
            trigger,
            "running",
            sample,
            started_at,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        lake.store.write(_key(run_id), record.to_json())
    return killed


def _is_dead(record: RunRecord, *, remote: bool) -> bool:
    """Whether a `running` record's process is gone (the lock says so for a local lake)."""
    if not remote:
        return True
    if record.host != socket.gethostname() or record.pid is None:
        return False  # another machine's run: only it knows
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False  # alive: another run of this machine, going on


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
    lake = LakePaths.of(settings)
    with lake_io(f"record the run in {runs_folder(lake)}"):
        record = _read(lake, _key(run_id))
        record.status, record.finished_at, record.stages, record.error = (
            status,
            finished_at,
            stages,
            error,
        )
        lake.store.write(_key(run_id), record.to_json())


def _newest_writes_first(lake: LakePaths) -> Iterator[RunRecord]:
    """The run records, the last written first (a record is rewritten as its run ends)."""
    store = lake.store
    if not isinstance(store, LocalStore):
        yield from all_runs(lake)  # no write order to go by: all of them
        return
    keys = store.list_keys(RUNS_PREFIX, suffix=".json")

    def written_ns(key: str) -> int:
        try:
            return store.path(key).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    for key in sorted(keys, key=written_ns, reverse=True):
        yield _read(lake, key)


def all_runs(lake: LakePaths) -> list[RunRecord]:
    return [_read(lake, key) for key in lake.store.list_keys(RUNS_PREFIX, suffix=".json")]


def recent_runs(settings: Settings, *, limit: int = 10) -> list[RunRecord]:
    """The latest runs, newest first; empty for a lake that never ran `cryptolake run`."""
    records = all_runs(LakePaths.of(settings))
    records.sort(key=lambda r: r.started_at, reverse=True)
    return records[:limit]
