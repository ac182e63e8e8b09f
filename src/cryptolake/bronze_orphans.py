"""Orphan bodies: files in a dataset folder that no run manifest lists.

A run killed between moving its bodies into their partitions and writing its manifest (or a
history request killed between its body and its manifest's group commit) leaves bodies no
manifest lists. Silver never reads them, but a raw `read_json('bronze/<dataset>/*/*.json')`
would. The next ingest, holding the lake lock, sweeps them to

    quarantine/orphans/bronze/<dataset>/ingest_date=YYYY-MM-DD/<file>

(moved, not deleted: `cryptolake verify --repair` can still recover a run from them), and
`status` counts what is left. A body's manifest is found by name: a snapshot run's bodies are
`<run_id>-p0001.json`, a history request's `<run_id>-h00001-<coin>.json`, and the manifest is
`<run_id>.json` or `<run_id>-h00001.json` in `bronze/_runs/`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .lake import LakePaths

_MANIFEST_ID = re.compile(r"^(\d{8}T\d{6}Z-[0-9a-f]+(?:-h\d{5,})?)-")


def manifest_ids(lake: LakePaths) -> set[str]:
    """The id (file stem) of every run manifest, without opening any."""
    if not lake.runs.exists():
        return set()
    return {p.stem for p in lake.runs.glob("ingest_date=*/*.json")}


def manifest_id_of(body: Path) -> str | None:
    """The id of the manifest that should list `body`, from its name (None: not a body's)."""
    found = _MANIFEST_ID.match(body.name)
    return found.group(1) if found else None


def dataset_files(lake: LakePaths) -> list[Path]:
    """Every file in the dataset partitions (`bronze/<dataset>/<partition>/*`)."""
    if not lake.bronze.exists():
        return []
    found = []
    for dataset in sorted(lake.bronze.iterdir()):
        if dataset.name.startswith("_") or not dataset.is_dir():
            continue
        for partition in sorted(dataset.iterdir()):
            if partition.is_dir():
                found.extend(sorted(p for p in partition.iterdir() if p.is_file()))
    return found


def find_orphans(lake: LakePaths, *, older_than_s: float = 0.0) -> list[Path]:
    """Files in the dataset partitions that no manifest lists, untouched for `older_than_s`.

    A hidden file there is a temp file a killed write left (see lake.atomic_write).
    """
    ids = manifest_ids(lake)
    cutoff = time.time() - older_than_s
    orphans = []
    for path in dataset_files(lake):
        hidden = path.name.startswith(".")
        if not (path.suffix == ".json" or (hidden and path.suffix == ".tmp")):
            continue  # not a body (a desktop's .DS_Store): no reader's glob sees it
        owner = None if hidden else manifest_id_of(path)
        if owner in ids:
            continue
        try:
            if older_than_s and path.stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        orphans.append(path)
    return orphans


def sweep_orphans(lake: LakePaths, *, older_than_s: float = 0.0) -> int:
    """Move orphan bodies (see `find_orphans`) to `quarantine/orphans/`; returns how many.

    Call it holding the lake lock with `older_than_s=0`; without it, a run that is still
    landing has bodies whose manifest is not written yet, so leave recent files alone.
    """
    swept = 0
    for path in find_orphans(lake, older_than_s=older_than_s):
        target = lake.quarantine / "orphans" / path.relative_to(lake.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except FileNotFoundError:
            continue
        swept += 1
    return swept
