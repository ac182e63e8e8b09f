"""A deleted run manifest written again from the run's bodies and what silver recorded of it.

Silver records every run it processed (`silver.processed_runs`: run id, snapshot time,
currency, sample or not). If a processed run's manifest is deleted, its bodies look like
orphans and the next full refresh would drop its snapshot, while Postgres keeps it. As long as
the bodies exist (in their partitions, or swept to `quarantine/orphans/`), bronze still proves
the snapshot: `recover_manifest` moves the bodies back and writes a manifest listing them,
with a note saying it was recovered. What the lost manifest knew and the bodies do not (the
request URLs, attempts, the API plan) is recorded as unknown; checksums are of the bodies as
found.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .bronze import BronzeFile, Manifest
from .bronze_orphans import dataset_files, manifest_id_of
from .lake import LakePaths, atomic_write

_PAGE = re.compile(r"-p(\d+)(?:-r(\d+))?\.json$")
_HISTORY_BODY = re.compile(r"-h\d{5,}-(?P<coin>.+)\.json$")


@dataclass(frozen=True, slots=True)
class ProcessedRun:
    """A run as silver recorded it (a row of silver.processed_runs)."""

    run_id: str
    snapshot_at: str  # ISO 8601, UTC, `Z`
    vs_currency: str
    is_sample: bool


def bodies_of(lake: LakePaths, run_id: str) -> list[Path]:
    """The run's bodies, wherever they are: in their partitions or among swept orphans."""
    orphans = lake.quarantine / "orphans"
    swept = sorted(orphans.glob("bronze/*/*/*.json")) if orphans.exists() else []
    bodies = [lake.root / key for key in dataset_files(lake)]
    return [p for p in [*bodies, *swept] if manifest_id_of(p.name) == run_id]


def recover_manifest(
    lake: LakePaths, run: ProcessedRun, *, silver_ids: Collection[str] = ()
) -> Path | None:
    """Write `run`'s manifest from its bodies; None when no body is left (or it has one).

    `silver_ids`: the coins silver holds for the run's snapshot; ids a markets page carries
    beyond them were trimmed (past --top) and are listed so, as the lost manifest did.
    """
    if any(lake.runs.glob(f"ingest_date=*/{run.run_id}.json")):
        return None  # it has a manifest: nothing to recover
    bodies = bodies_of(lake, run.run_id)
    if not bodies:
        return None
    ingest_date = f"{run.run_id[0:4]}-{run.run_id[4:6]}-{run.run_id[6:8]}"
    entries = []
    for body in bodies:
        rel = _home(lake, body)
        if body != lake.root / rel:
            (lake.root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(body, lake.root / rel)
        raw = (lake.root / rel).read_bytes()
        dataset = rel.split("/")[1]
        data = json.loads(raw)
        points = data.get("prices") if isinstance(data, dict) else data
        records = len(points) if isinstance(points, list) else 1
        page = _PAGE.search(rel)
        coin = _HISTORY_BODY.search(rel)
        trimmed = (
            [
                str(r.get("id"))
                for r in data
                if isinstance(r, dict) and r.get("id") not in silver_ids
            ]
            if dataset == "coins_markets" and silver_ids and isinstance(data, list)
            else []
        )
        entries.append(
            BronzeFile(
                dataset=dataset,
                page=int(page.group(1)) if page else 1,
                path=rel,
                url="unknown (recovered)",
                params={},
                http_status=200,
                fetched_at=run.snapshot_at,
                attempts=1,
                sha256=hashlib.sha256(raw).hexdigest(),
                bytes=len(raw),
                records=records,
                trimmed_ids=trimmed,
                refetch=int(page.group(2)) if page and page.group(2) else 0,
                coin_id=coin.group("coin") if coin else None,
            )
        )
    history = any(e.coin_id for e in entries)
    days = None
    if history:
        data = json.loads((lake.root / entries[0].path).read_bytes())
        points = data.get("prices", []) if isinstance(data, dict) else data
        # The days the body spans (the days asked are not in it): [ms, ...] per point.
        stamps = [p[0] for p in points if isinstance(p, list) and p]
        span_ms = max(stamps) - min(stamps) if stamps else 0
        days = max(1, -(-int(span_ms) // 86_400_000))
    markets = [e for e in entries if e.dataset == "coins_markets"]
    manifest = Manifest(
        run_id=run.run_id,
        status="complete",
        source="sample" if run.is_sample else "api",
        started_at=run.snapshot_at,
        finished_at=run.snapshot_at,
        ingest_date=ingest_date,
        api_url="unknown (recovered)",
        api_plan="unknown",
        keyed=False,
        vs_currency=run.vs_currency,
        top=sum(e.records - len(e.trimmed_ids) for e in markets),
        per_page=max((e.records for e in markets), default=0),
        files=entries,
        notes=[
            "manifest recovered by `cryptolake verify --repair` from the run's bodies and "
            "silver's record of the run; the original was missing"
        ],
        kind="history" if history else "snapshot",
        dataset=entries[0].dataset if history else None,
        coin_id=entries[0].coin_id if history else None,
        days=days,
        parent_run_id=run.run_id.rsplit("-h", 1)[0] if history else None,
    )
    path = lake.runs / f"ingest_date={ingest_date}" / f"{run.run_id}.json"
    atomic_write(path, manifest.to_json(), overwrite=False)
    return path


def _home(lake: LakePaths, body: Path) -> str:
    """A body's path relative to the lake root, where it belongs (not where it was swept)."""
    orphans = lake.quarantine / "orphans"
    if body.is_relative_to(orphans):
        return body.relative_to(orphans).as_posix()
    return body.relative_to(lake.root).as_posix()
