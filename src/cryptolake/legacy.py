"""The layout of cryptolake before DuckLake, detected and removed once it is rebuilt.

Before DuckLake, silver was Parquet of our own (`silver/<table>/snapshot_date=…/data_0.parquet`
swapped in by rename, `silver/_state/processed_runs.json`, `silver/_quarantine/`) and gold a
`cryptolake.duckdb` file. Bronze is the source of truth, so such a lake is rebuilt into
DuckLake from bronze by its next transform; these files go only after that committed.
DuckLake names its own files `ducklake-<uuid>.parquet`, so none of them is ever taken.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .fserrors import lake_io
from .lake import LakePaths

_OLD_TABLES = ("market_snapshots", "global_snapshots", "category_snapshots")


def legacy_files(lake: LakePaths) -> list[Path]:
    """Every file or folder of the old layout in `lake` (empty for a DuckLake lake)."""
    root = lake.root
    found = [
        p
        for p in (
            root / "cryptolake.duckdb",
            root / "cryptolake.duckdb.wal",
            lake.silver / "_state",
            lake.silver / "_quarantine",
            lake.silver / "_staging",
        )
        if p.exists()
    ]
    found += sorted(root.glob(".cryptolake.duckdb.building-*"))
    for table in _OLD_TABLES:
        found += sorted((lake.silver / table).glob("snapshot_date=*/data_*.parquet"))
    return found


def remove_legacy(lake: LakePaths, paths: list[Path]) -> None:
    """Remove the old layout's files (after the DuckLake tables replacing them committed)."""
    with lake_io("remove the old layout's files"):
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            parent = path.parent
            if parent.name.startswith("snapshot_date=") and not any(parent.iterdir()):
                parent.rmdir()
