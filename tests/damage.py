"""A small real lake to damage (three daily snapshots, silver and gold), and ways to damage it."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cryptolake.bronze import Manifest, read_manifests
from cryptolake.catalog import open_lake
from cryptolake.gold import build_gold
from cryptolake.lake import LakePaths
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .lakes import land, rows_of, settings_for

DAYS = [datetime(2026, 1, 10 + d, 12, tzinfo=UTC) for d in range(3)]
_BUILT: dict[str, Path] = {}


def three_day_lake(factory: pytest.TempPathFactory, into: Path) -> Path:
    """A copy at `into` of a lake with three runs (2026-01-10..12, 100 coins each), silver
    and gold built; the original is built once per session."""
    if "lake" not in _BUILT:
        lake = factory.mktemp("three-days") / "lake"
        for at in DAYS:
            land(lake, at=at)
        settings = settings_for(lake)
        build_silver(settings)
        build_gold(settings)
        _BUILT["lake"] = lake
    shutil.copytree(_BUILT["lake"], into)
    return into


def manifests(lake: Path) -> list[Manifest]:
    return read_manifests(LakePaths.at(lake))


def flip_digit(path: Path) -> None:
    """Change one digit of a body in place (same size): 1 becomes 9, as a bad sector might."""
    raw = path.read_bytes()
    at = raw.index(b"1")
    path.write_bytes(raw[:at] + b"9" + raw[at + 1 :])


def truncate(path: Path, size: int = 100) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


def data_files(lake: Path, table: str) -> list[Path]:
    """The Parquet files DuckLake lists for `table` (schema.name), now."""
    schema, name = table.split(".")
    with open_lake(settings_for(lake), read_only=True) as con:
        return [
            Path(str(r[0]))
            for r in con.execute(
                "select data_file from ducklake_list_files('lake', ?, schema => ?)", [name, schema]
            ).fetchall()
        ]


def figures(lake: Path, tables: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Every row of `tables`, in a stable order, without the columns a rebuild changes."""
    volatile = {"processed_at", "built_at", "run_id"}
    found = {}
    with open_lake(settings_for(lake), read_only=True) as con:
        for table in tables:
            rows = rows_of(con, f"select * from {table}")
            rows = [{k: v for k, v in r.items() if k not in volatile} for r in rows]
            found[table] = sorted(rows, key=repr)
    return found


def settings(lake: Path) -> Settings:
    return settings_for(lake)
