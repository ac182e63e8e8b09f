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

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .bronze import BronzeFile, Manifest
from .lake import LakePaths, atomic_write

REASON = "reason.json"


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
    path = lake.root / entry.path
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != entry.bytes:
                kind = "truncated" if size < entry.bytes else "grown"
                return BodyFault(entry.path, f"{kind}: {size:,} of {entry.bytes:,} bytes")
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        return BodyFault(entry.path, "missing")
    except OSError as exc:
        return BodyFault(entry.path, f"unreadable ({exc.strerror or exc})")
    if digest != entry.sha256:
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


def manifest_path(lake: LakePaths, *, run_id: str, ingest_date: str) -> Path:
    return lake.runs / f"ingest_date={ingest_date}" / f"{run_id}.json"


def quarantine_run(
    lake: LakePaths, fault: RunFault, files: Iterable[str], *, found_by: str
) -> Path:
    """Move a faulty run's manifest, then its bodies (`files`, lake-relative), to quarantine.

    The reason is written first and the manifest moved next, so from that moment no reader
    counts the run; a crash before the bodies follow leaves them as orphans, which the next
    ingest sweeps. Returns the run's quarantine folder.
    """
    folder = lake.quarantine / "runs" / fault.run_id
    reason = {
        "run_id": fault.run_id,
        "reason": fault.describe(),
        "bodies": [asdict(b) for b in fault.bodies],
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "found_by": found_by,
    }
    atomic_write(folder / REASON, json.dumps(reason, indent=2).encode() + b"\n")
    manifest = manifest_path(lake, run_id=fault.run_id, ingest_date=fault.ingest_date)
    for source in [manifest, *(lake.root / f for f in files)]:
        target = folder / source.relative_to(lake.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a missing body: nothing to move
            os.replace(source, target)
    return folder


def quarantined_runs(lake: LakePaths) -> list[QuarantinedRun]:
    """Every quarantined run, oldest quarantine first (not one whose manifest was moved
    back to bronze/_runs/: that undoes its quarantine)."""
    found = []
    for reason in sorted((lake.quarantine / "runs").glob(f"*/{REASON}")):
        if not any(reason.parent.glob("bronze/_runs/*/*.json")):
            continue  # its manifest was moved back: the quarantine was undone
        try:
            data = json.loads(reason.read_bytes())
            found.append(
                QuarantinedRun(
                    run_id=str(data["run_id"]),
                    reason=str(data["reason"]),
                    quarantined_at=str(data["quarantined_at"]),
                    found_by=str(data["found_by"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            found.append(QuarantinedRun(reason.parent.name, "reason.json unreadable", "?", "?"))
    found.sort(key=lambda q: (q.quarantined_at, q.run_id))
    return found
