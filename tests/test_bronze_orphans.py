"""Orphan bodies (no manifest lists them): found by name, swept by the next ingest."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from cryptolake.bronze_orphans import SWEEP_MARGIN_DAYS, find_orphans, sweep_orphans, sweep_window
from cryptolake.lake import LakePaths
from cryptolake.lock import LakeLock

from .damage import manifests, three_day_lake
from .lakes import land


@pytest.fixture
def lake(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return three_day_lake(tmp_path_factory, tmp_path / "lake")


def _raw_markets_rows(lake: Path) -> int:
    glob = str(lake / "bronze" / "coins_markets" / "*" / "*.json")
    row = duckdb.sql(f"select count(*) from read_json('{glob}')").fetchone()
    return int(row[0]) if row else 0


def _orphan_a_run(lake: Path) -> list[str]:
    """What a run killed between moving its bodies and writing its manifest leaves."""
    run = manifests(lake)[-1]
    manifest = next((lake / "bronze" / "_runs").glob(f"*/{run.run_id}.json"))
    manifest.unlink()
    # A temp file a killed atomic write leaves (hidden: no glob sees it, but it is junk).
    first = lake / run.files[0].path
    shutil.copy(first, first.parent / f".{first.name}.x1y2.tmp")
    return sorted(
        [e.path for e in run.files]
        + [str((first.parent / f".{first.name}.x1y2.tmp").relative_to(lake))]
    )


def test_orphans_are_found_by_name_and_listed_bodies_never_are(lake: Path) -> None:
    paths = LakePaths.at(lake)
    assert find_orphans(paths) == []
    expected = _orphan_a_run(lake)
    found = sorted(find_orphans(paths))
    assert found == expected
    assert _raw_markets_rows(lake) == 300  # the raw glob sees the orphan's 100 rows


def test_the_next_ingest_sweeps_them_out_of_the_raw_glob(lake: Path) -> None:
    expected = _orphan_a_run(lake)
    with LakeLock(LakePaths.at(lake), run_id="test"):
        result = land(lake, at=datetime(2026, 1, 13, 12, tzinfo=UTC))
    assert result.notes[-1].startswith("moved 4 orphan bodies (left by a killed run")
    assert find_orphans(LakePaths.at(lake)) == []
    # Two runs of the original three plus the new one: every row once, none from the orphan.
    assert _raw_markets_rows(lake) == 300
    kept = sorted(
        str(p.relative_to(lake / "quarantine" / "orphans"))
        for p in (lake / "quarantine" / "orphans").rglob("*")
        if p.is_file()
    )
    assert kept == expected


def test_without_the_lock_only_old_orphans_are_swept(lake: Path) -> None:
    paths = LakePaths.at(lake)
    expected = _orphan_a_run(lake)
    # Without the lake lock another run may still be landing: fresh files stay.
    assert sweep_orphans(paths, older_than_s=3600) == 0
    hour_ago = time.time() - 3700
    for rel in expected:
        os.utime(lake / rel, (hour_ago, hour_ago))
    assert sweep_orphans(paths, older_than_s=3600) == 4
    assert find_orphans(paths) == []


def test_an_ingest_looks_at_the_partitions_since_the_last_ingest_only(lake: Path) -> None:
    paths = LakePaths.at(lake)
    days = [m.started_at[:10] for m in manifests(lake)]  # one run a day, three days
    window = sweep_window(paths, today=date.fromisoformat(days[-1]) + timedelta(days=5))
    assert window is not None
    assert window[0] == date.fromisoformat(days[-1]) - timedelta(days=SWEEP_MARGIN_DAYS)
    assert window[-1] == date.fromisoformat(days[-1]) + timedelta(days=6)  # tomorrow
    # An orphan in the window is found; one older than the last ingest was that one's to
    # sweep, and is left to `verify` (which looks everywhere).
    expected = _orphan_a_run(lake)  # the last run: its manifest gone, the one before is last
    window = sweep_window(paths, today=date.fromisoformat(days[-1]))
    assert window is not None and window[0] <= date.fromisoformat(days[-1])
    assert sorted(find_orphans(paths, days=window)) == expected
    old = [e.path for e in manifests(lake)[0].files]
    next((lake / "bronze" / "_runs").glob(f"*/{manifests(lake)[0].run_id}.json")).unlink()
    assert sorted(find_orphans(paths, days=[date.fromisoformat(days[-1])])) == expected
    assert sorted(find_orphans(paths)) == sorted(expected + old)
