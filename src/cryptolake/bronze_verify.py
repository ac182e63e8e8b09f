"""Bronze integrity: bodies checked against their manifests, damaged runs quarantined.

Every manifest records each body's sha256 and size as fetched. A body that no longer matches
(a flipped digit, a truncated copy, a deleted file) is not what the API sent: silver must not
read it, and bronze is immutable, so it cannot be fixed in place either. Its run is
quarantined instead: manifest and bodies move, with the reason, to

    quarantine/runs/<run_id>/reason.json
    quarantine/runs/<run_id>/bronze/...          the run's files at their lake paths

out of every glob a reader or silver uses, so later runs proceed. Nothing is deleted: moving a
run's files back to their lake paths (and its manifest first) undoes a quarantine.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from .bronze import RUNS_PREFIX, BronzeFile, Manifest, manifest_key
from .lake import LakePaths

REASON = "reason.json"
QUARANTINED_RUNS = "quarantine/runs"


@dataclass(frozen=True, slots=True)
class BodyFault:
    """A body that is not what its manifest recorded; `path` is relative to the lake root."""

    path: str
    problem: str  # e.g. "missing", "truncated: 812 of 260,113 bytes"


@dataclass(frozen=True, slots=True)
class RunFault:
    """A bronze run (or history request) with at least one faulty body."""

    run_id: str
    ingest_date: str
    bodies: tuple[BodyFault, ...]

    def describe(self) -> str:
        """`bronze/x/... changed since it was fetched (sha256 differs) and 2 more`."""
        if not self.bodies:
            return "its manifest is unreadable"
        first = self.bodies[0]
        more = f" and {len(self.bodies) - 1} more" if len(self.bodies) > 1 else ""
        return f"{first.path} {first.problem}{more}"


@dataclass(frozen=True, slots=True)
class QuarantinedRun:
    """A run in quarantine and why (read from its reason.json)."""

    run_id: str
    reason: str
    quarantined_at: str
    found_by: str


def check_body(lake: LakePaths, entry: BronzeFile) -> BodyFault | None:
    """Whether the body at `entry.path` has the size and sha256 its manifest recorded."""
    if lake.remote:
        return _check_object(lake, entry)
    path = lake.root / entry.path
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != entry.bytes:
                return _wrong_size(entry, size)
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        return BodyFault(entry.path, "missing")
    except OSError as exc:
        return BodyFault(entry.path, f"unreadable ({exc.strerror or exc})")
    if digest != entry.sha256:
        return BodyFault(entry.path, "changed since it was fetched (sha256 differs)")
    return None


def _wrong_size(entry: BronzeFile, size: int) -> BodyFault:
    kind = "truncated" if size < entry.bytes else "grown"
    return BodyFault(entry.path, f"{kind}: {size:,} of {entry.bytes:,} bytes")


def _check_object(lake: LakePaths, entry: BronzeFile) -> BodyFault | None:
    """`check_body` on object storage: the object read whole (no seek-free size check
    saves a request there). An unreachable store raises LakeError: that is no fault of
    the run's."""
    try:
        data = lake.store.read(entry.path)
    except FileNotFoundError:
        return BodyFault(entry.path, "missing")
    if len(data) != entry.bytes:
        return _wrong_size(entry, len(data))
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        return BodyFault(entry.path, "changed since it was fetched (sha256 differs)")
    return None


def check_runs(lake: LakePaths, runs: Sequence[Manifest], *, threads: int = 2) -> list[RunFault]:
    """The runs among `runs` with a body that fails `check_body`, in the order given.

    Hashing releases the GIL, so `threads` bodies are read at once.
    """
    entries = [(run, entry) for run in runs for entry in run.files]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(lambda pair: check_body(lake, pair[1]), entries))
    faults: dict[str, list[BodyFault]] = {}
    for (run, _), fault in zip(entries, results, strict=True):
        if fault is not None:
            faults.setdefault(run.run_id, []).append(fault)
    return [
        RunFault(run.run_id, run.ingest_date, tuple(faults[run.run_id]))
        for run in runs
        if run.run_id in faults
    ]


def quarantine_run(lake: LakePaths, fault: RunFault, files: Iterable[str], *, found_by: str) -> str:
    """Move a faulty run's manifest, then its bodies (`files`, lake-relative), to quarantine.

    The reason is written first and the manifest moved next, so from that moment no reader
    counts the run; a crash before the bodies follow leaves them as orphans, which the next
    ingest sweeps. Returns the key of the run's quarantine folder.
    """
    folder = f"{QUARANTINED_RUNS}/{fault.run_id}"
    reason = {
        "run_id": fault.run_id,
        "reason": fault.describe(),
        "bodies": [asdict(b) for b in fault.bodies],
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "found_by": found_by,
    }
    lake.store.write(f"{folder}/{REASON}", json.dumps(reason, indent=2).encode() + b"\n")
    manifest = manifest_key(run_id=fault.run_id, ingest_date=fault.ingest_date)
    for key in [manifest, *files]:
        try:
            lake.store.move(key, f"{folder}/{key}")
        except FileNotFoundError:  # a missing body: nothing to move
            continue
        except FileExistsError:  # moved there before (the same bytes): drop this copy
            lake.store.delete(key)
    return folder


def quarantined_runs(lake: LakePaths) -> list[QuarantinedRun]:
    """Every quarantined run, oldest quarantine first (not one whose manifest was moved
    back to bronze/_runs/: that undoes its quarantine)."""
    keys = lake.store.list_keys(QUARANTINED_RUNS, hidden=True)
    found = []
    for reason in (k for k in keys if k.count("/") == 3 and k.endswith(f"/{REASON}")):
        folder = reason.removesuffix(f"/{REASON}")
        if not any(k.startswith(f"{folder}/{RUNS_PREFIX}/") for k in keys):
            continue  # its manifest was moved back: the quarantine was undone
        try:
            data = json.loads(lake.store.read(reason))
            found.append(
                QuarantinedRun(
                    run_id=str(data["run_id"]),
                    reason=str(data["reason"]),
                    quarantined_at=str(data["quarantined_at"]),
                    found_by=str(data["found_by"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            found.append(
                QuarantinedRun(folder.rsplit("/", 1)[-1], "reason.json unreadable", "?", "?")
            )
    found.sort(key=lambda q: (q.quarantined_at, q.run_id))
    return found
