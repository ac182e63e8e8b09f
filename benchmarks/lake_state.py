"""Put a benchmark lake back as it was: its DuckLake catalog and data files.

DuckLake never rewrites a data file: a commit adds files (and marks others deleted in the
catalog). So a lake is restored by restoring its catalog (SQLite's backup API, WAL included)
and deleting the data files added since, which no restored snapshot knows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

DATA_FOLDERS = ("silver", "gold")


def _data_files(root: Path) -> set[Path]:
    return {p for folder in DATA_FOLDERS for p in (root / folder).rglob("*.parquet")}


@contextmanager
def restored(root: Path) -> Iterator[None]:
    """On exit, the lake at `root` has the catalog and data files it had on entry."""
    catalog = root / "catalog.sqlite"
    saved = root / ".bench-catalog.sqlite"
    files = _data_files(root)
    with closing(sqlite3.connect(catalog)) as src, closing(sqlite3.connect(saved)) as dst:
        src.backup(dst)
    try:
        yield
    finally:
        with closing(sqlite3.connect(saved)) as src, closing(sqlite3.connect(catalog)) as dst:
            src.backup(dst)
        saved.unlink()
        for added in _data_files(root) - files:
            added.unlink()
