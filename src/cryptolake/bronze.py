"""Bronze: raw API bodies, byte for byte, immutable, Hive-partitioned by ingest date.

Layout (documented in the README):

    bronze/<dataset>/ingest_date=YYYY-MM-DD/<run_id>-p0001.json   one response body each
    bronze/_runs/ingest_date=YYYY-MM-DD/<run_id>.json             the run's manifest
    bronze/_incoming/<run_id>/...                                  bodies of a run in flight
    bronze/_rejected/<run_id>/...                                  bodies that broke a contract

A run stages its bodies under `_incoming`, moves them into their partitions only once every
dataset was fetched, and writes its manifest last. So a manifest with `"status": "complete"`
is the one signal that a run is whole; a crash leaves at most files without a manifest, which
downstream ignores. Nothing is ever overwritten or deleted in a dataset folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .coingecko import Fetched
from .errors import LakeError
from .failpoints import failpoint
from .lake import LakePaths, atomic_write, move_no_replace

MANIFEST_VERSION = 1
# A history request's id: its run's id and its number in the run.
HISTORY_REQUEST = re.compile(r"-h\d{5,}$")
# "skipped": a history request the API answered with "no such coin" (HTTP 404): no body, and
# a record so the coin is not asked again at once.
RunStatus = Literal["complete", "failed", "skipped"]
RunKind = Literal["snapshot", "history"]


def new_run_id(started_at: datetime) -> str:
    """Sortable by start time, unique across concurrent machines."""
    return f"{started_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BronzeFile:
    """Fetch metadata of one body; `path` is relative to the lake root."""

    dataset: str
    page: int
    path: str
    url: str
    params: dict[str, str]
    http_status: int
    fetched_at: str
    attempts: int
    sha256: str
    bytes: int
    records: int
    # Records the API sent beyond --top on the last page: kept in the body (bronze is
    # verbatim) and dropped by silver.
    trimmed_ids: list[str] = field(default_factory=list)
    # 1, 2, ... for a page fetched again in the same run (ranks shifted while paging).
    refetch: int = 0
    # Fields the body carries that no contract knows (the API added them): kept, not read.
    unknown_fields: list[str] = field(default_factory=list)
    # The coin of a per-coin request (history datasets).
    coin_id: str | None = None

    @classmethod
    def of(
        cls, fetched: Fetched, *, dataset: str, page: int, path: str, records: int, **extra: Any
    ) -> BronzeFile:
        """The entry of one fetched body stored at `path` (relative to the lake root)."""
        return cls(
            dataset=dataset,
            page=page,
            path=path,
            url=fetched.url,
            params=fetched.params,
            http_status=fetched.status,
            fetched_at=iso(fetched.fetched_at),
            attempts=fetched.attempts,
            sha256=hashlib.sha256(fetched.body).hexdigest(),
            bytes=len(fetched.body),
            records=records,
            **extra,
        )


@dataclass(slots=True)
class Manifest:
    run_id: str
    status: RunStatus
    source: str
    started_at: str
    finished_at: str
    ingest_date: str
    api_url: str
    api_plan: str
    keyed: bool
    vs_currency: str
    top: int | None  # None: every coin listed (--top all)
    per_page: int
    files: list[BronzeFile]
    error: str | None = None
    # What happened that a reader of the run should know (coins re-fetched, fields added).
    notes: list[str] = field(default_factory=list)
    manifest_version: int = MANIFEST_VERSION
    # "snapshot": one ingest run of every snapshot dataset. "history": one request of a
    # history dataset for one coin (a manifest per request, see backfill.py), which names its
    # dataset, coin and the days it asked for, and the backfill or run it belongs to.
    kind: RunKind = "snapshot"
    dataset: str | None = None
    coin_id: str | None = None
    days: int | None = None
    parent_run_id: str | None = None

    def to_json(self) -> bytes:
        # Field by field, not dataclasses.asdict: that deep-copies every value, which cost
        # more than the rest of landing a history request.
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["files"] = [
            {g.name: getattr(entry, g.name) for g in fields(entry)} for entry in self.files
        ]
        return json.dumps(data, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(raw)
        data["files"] = [BronzeFile(**f) for f in data.get("files", [])]
        return cls(**data)


class BronzeRun:
    """Collects one ingest run's bodies and lands them all at once.

    On local disk the bodies are staged under `_incoming` and moved into their partitions
    when the run is whole. On object storage (no rename there) each body is written once at
    its final key, unique to the run; until the manifest is written no reader sees them, and
    a run that dies leaves only bodies no manifest lists, swept later.
    """

    def __init__(self, lake: LakePaths, *, run_id: str, started_at: datetime) -> None:
        self.lake = lake
        self.store = lake.store
        self.run_id = run_id
        self.started_at = started_at
        self.ingest_date = f"{started_at:%Y-%m-%d}"
        self.staging = None if lake.remote else lake.incoming / run_id
        self.files: list[BronzeFile] = []

    def relative_path(self, dataset: str, page: int, refetch: int = 0) -> str:
        again = f"-r{refetch}" if refetch else ""
        return (
            f"bronze/{dataset}/ingest_date={self.ingest_date}/{self.run_id}-p{page:04d}{again}.json"
        )

    def stage(
        self,
        dataset: str,
        page: int,
        fetched: Fetched,
        *,
        records: int,
        trimmed_ids: list[str],
        refetch: int = 0,
        unknown_fields: list[str] | None = None,
    ) -> BronzeFile:
        rel = self.relative_path(dataset, page, refetch)
        if self.staging is None:
            self.store.write_new(rel, fetched.body)
        else:
            atomic_write(self.staging / rel, fetched.body, overwrite=False)
        entry = BronzeFile.of(
            fetched,
            dataset=dataset,
            page=page,
            path=rel,
            records=records,
            trimmed_ids=trimmed_ids,
            refetch=refetch,
            unknown_fields=list(unknown_fields or []),
        )
        self.files.append(entry)
        return entry

    def manifest_key(self) -> str:
        return manifest_key(run_id=self.run_id, ingest_date=self.ingest_date)

    def _write_manifest(self, manifest: Manifest) -> str:
        key = self.manifest_key()
        try:
            self.store.write_new(key, manifest.to_json())
        except FileExistsError:
            raise LakeError(
                f"Run manifest {self.store.uri(key)} already exists; run ids must be unique."
            ) from None
        return self.store.uri(key)

    def commit(self, manifest: Manifest) -> str:
        """Land every body in its partition, then write the manifest; returns its location.

        All or nothing: if a move or the manifest fails (a full disk, an immutable folder, an
        object store gone), the bodies already landed are taken back (to staging on disk,
        deleted on object storage), so no body lands without its manifest.
        """
        if self.staging is None:
            return self._commit_in_place(manifest)
        staging = self.staging
        moved: list[BronzeFile] = []
        try:
            for entry in self.files:
                try:
                    move_no_replace(staging / entry.path, self.lake.root / entry.path)
                except FileExistsError:
                    raise LakeError(
                        f"Bronze file {entry.path} already exists; bronze is immutable, so this "
                        "run was not landed. Remove its manifest-less leftovers only if you are "
                        "sure."
                    ) from None
                moved.append(entry)
                failpoint("bronze.body_moved")
            failpoint("bronze.before_manifest")
            path = self._write_manifest(manifest)
        except BaseException:
            for entry in reversed(moved):
                with contextlib.suppress(OSError):
                    os.replace(self.lake.root / entry.path, staging / entry.path)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return path

    def _commit_in_place(self, manifest: Manifest) -> str:
        """Object storage: the bodies are at their keys already; the manifest makes them a run."""
        try:
            failpoint("bronze.before_manifest")
            return self._write_manifest(manifest)
        except BaseException:
            self._drop_bodies()
            raise

    def _drop_bodies(self) -> None:
        """Delete a dead run's bodies from object storage (best effort: the sweep finishes)."""
        for entry in self.files:
            with contextlib.suppress(Exception):
                self.store.delete(entry.path)

    def rejected_path(self, entry: BronzeFile) -> str:
        """Where `entry`'s body is kept, relative to the lake root, if its run is rejected."""
        return f"bronze/_rejected/{self.run_id}/{entry.path.removeprefix('bronze/')}"

    def abandon(self, manifest: Manifest, *, keep_bodies: bool = False) -> str:
        """Record a failed run: its bodies never become bronze, its manifest says why.

        With `keep_bodies` (a body broke its contract) the bodies are kept under
        `bronze/_rejected/<run_id>/`, outside every dataset folder, as evidence; the manifest
        lists them there.
        """
        if keep_bodies and self.files:
            for entry in self.files:
                if self.staging is None:
                    self.store.move(entry.path, self.rejected_path(entry))
                    continue
                target = self.lake.root / self.rejected_path(entry)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.staging / entry.path, target)
            manifest.files = [replace(f, path=self.rejected_path(f)) for f in manifest.files]
        elif self.staging is None:
            self._drop_bodies()
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        return self._write_manifest(manifest)


RUNS_PREFIX = "bronze/_runs"


def manifest_key(*, run_id: str, ingest_date: str) -> str:
    """Where a run's manifest lives, relative to the lake root."""
    return f"{RUNS_PREFIX}/ingest_date={ingest_date}/{run_id}.json"


def run_id_of(key: str) -> str:
    """A manifest's run id: its file name without `.json`."""
    return PurePosixPath(key).stem


def run_manifest_paths(lake: LakePaths) -> list[str]:
    """Keys of every run manifest (relative to the lake root); a file name is its run id."""
    return [
        key
        for key in lake.store.list_keys(RUNS_PREFIX, suffix=".json")
        if key.count("/") == 3 and key.split("/")[2].startswith("ingest_date=")
    ]


def read_manifest(lake: LakePaths, key: str) -> Manifest:
    try:
        return Manifest.from_json(lake.store.read(key))
    except (ValueError, TypeError, KeyError) as exc:
        raise LakeError(
            f"Run manifest {lake.store.uri(key)} is unreadable ({exc}); move it aside."
        ) from None


def read_manifests(lake: LakePaths, *, status: RunStatus | None = "complete") -> list[Manifest]:
    """Every run manifest in the lake (complete ones by default), oldest first."""
    found = [read_manifest(lake, key) for key in run_manifest_paths(lake)]
    found = [m for m in found if status is None or m.status == status]
    found.sort(key=lambda m: (m.started_at, m.run_id))
    return found


def is_history_request(key: str | Path) -> bool:
    """Whether a manifest (its key, or a run id) is a history request's (`<run_id>-h00001`)."""
    return HISTORY_REQUEST.search(PurePosixPath(key).stem) is not None


def latest_manifest(lake: LakePaths) -> Manifest | None:
    """The newest complete snapshot run's manifest (run ids sort by start time), if any."""
    keys = [k for k in run_manifest_paths(lake) if not is_history_request(k)]
    keys.sort(key=run_id_of)
    for key in reversed(keys):
        manifest = read_manifest(lake, key)
        if manifest.status == "complete":
            return manifest
    return None
