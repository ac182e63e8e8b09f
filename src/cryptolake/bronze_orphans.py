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

An ingest looks at the partitions since the previous ingest only (`sweep_window`): that one
swept everything older, so a scheduled run's cost does not grow with the lake. `verify` and
`status` look at every partition.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import PurePosixPath

from .bronze import HISTORY_REQUEST, run_id_of, run_manifest_paths
from .datasets import DATASETS
from .lake import LakePaths

_MANIFEST_ID = re.compile(r"^(\d{8}T\d{6}Z-[0-9a-f]+(?:-h\d{5,})?)-")
ORPHANS = "quarantine/orphans"
# How many days before the previous ingest's partition an ingest's sweep looks: a run killed
# while that ingest waited for the lock (a history request, a backfill) may have begun a day
# or two earlier, and lands its bodies in the partition of the day it began.
SWEEP_MARGIN_DAYS = 2


def manifest_ids(lake: LakePaths) -> set[str]:
    """The id (file stem) of every run manifest, without opening any."""
    return {run_id_of(key) for key in run_manifest_paths(lake)}


def manifest_id_of(body: str | PurePosixPath) -> str | None:
    """The id of the manifest that should list `body`, from its name (None: not a body's)."""
    found = _MANIFEST_ID.match(PurePosixPath(body).name)
    return found.group(1) if found else None


def dataset_files(lake: LakePaths, *, hidden: bool = False) -> list[str]:
    """Keys of every file in the dataset partitions (`bronze/<dataset>/<partition>/*`);
    with `hidden`, temp files (`.name.tmp`) too."""
    found = []
    for key in lake.store.list_keys("bronze", hidden=hidden):
        parts = key.split("/")
        if len(parts) == 4 and not parts[1].startswith("_"):
            found.append(key)
    return found


def sweep_window(lake: LakePaths, *, today: date) -> list[date] | None:
    """The ingest dates an ingest's sweep looks at, or None for all of them.

    Every ingest sweeps before it lands, holding the lake's lock, so orphans older than the
    latest snapshot run's partition were swept by it (or are younger than its `older_than_s`
    and lie within a day of it): from SWEEP_MARGIN_DAYS before that partition to the day
    after `today` (a clock a little ahead). None when the lake has no snapshot run yet.
    """
    days = [
        date.fromisoformat(key.split("/")[2].removeprefix("ingest_date="))
        for key in run_manifest_paths(lake)
        if not HISTORY_REQUEST.search(run_id_of(key))
    ]
    if not days:
        return None
    first = max(days) - timedelta(days=SWEEP_MARGIN_DAYS)
    last = max(max(days), today) + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _files_of(lake: LakePaths, days: Sequence[date]) -> list[str]:
    """Keys of every file (temp files too) in the declared datasets' partitions of `days`."""
    return [
        key
        for dataset in DATASETS
        for day in days
        for key in lake.store.list_keys(
            f"bronze/{dataset.name}/ingest_date={day.isoformat()}", hidden=True
        )
    ]


def find_orphans(
    lake: LakePaths, *, older_than_s: float = 0.0, days: Sequence[date] | None = None
) -> list[str]:
    """Keys of files in the dataset partitions that no manifest lists, untouched for
    `older_than_s`; in the partitions of `days` only, when given (see `sweep_window`).

    A hidden file there is a temp file a killed write left (see lake.atomic_write).
    """
    ids = manifest_ids(lake)
    orphans = []
    keys = dataset_files(lake, hidden=True) if days is None else _files_of(lake, days)
    for key in keys:
        name = PurePosixPath(key)
        hidden = name.name.startswith(".")
        if not (name.suffix == ".json" or (hidden and name.suffix == ".tmp")):
            continue  # not a body (a desktop's .DS_Store): no reader's glob sees it
        owner = None if hidden else manifest_id_of(name)
        if owner in ids:
            continue
        try:
            if older_than_s and lake.store.age_s(key) < older_than_s:
                continue
        except FileNotFoundError:
            continue
        orphans.append(key)
    return orphans


def sweep_orphans(
    lake: LakePaths, *, older_than_s: float = 0.0, days: Sequence[date] | None = None
) -> int:
    """Move orphan bodies (see `find_orphans`) to `quarantine/orphans/`; returns how many.

    Call it holding the lake lock with `older_than_s=0`; without it, a run that is still
    landing has bodies whose manifest is not written yet, so leave recent files alone.
    """
    swept = 0
    for key in find_orphans(lake, older_than_s=older_than_s, days=days):
        try:
            lake.store.move(key, f"{ORPHANS}/{key}")
        except FileNotFoundError:
            continue
        except FileExistsError:  # swept before (the same body): drop the copy left here
            with contextlib.suppress(FileNotFoundError):
                lake.store.delete(key)
        swept += 1
    return swept
