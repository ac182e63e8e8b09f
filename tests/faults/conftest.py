"""Fixtures of the fault suite: one good lake built once, copied for each fault to break."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.clis import run_cli

# The invariants are plain functions with asserts: show their values when one fails.
pytest.register_assert_rewrite("tests.faults.invariants")

# Most faults need no history: without a budget the history stage makes no request (the
# sample's 19 unknown coins would cost 404s and time). Faults in history set their own.
NO_HISTORY = {"CRYPTOLAKE_HISTORY_BUDGET": "0"}


@pytest.fixture(scope="session")
def base_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake after one good `cryptolake run --sample` (no history), shared by the session:
    tests never write it, they break a copy (`copy_lake`)."""
    lake = tmp_path_factory.mktemp("faults") / "lake"
    built = run_cli("run", "--sample", "--quiet", "--lake", str(lake), env=NO_HISTORY)
    assert built.returncode == 0, built.stderr
    return lake


def copy_lake(base: Path, to: Path) -> Path:
    """A copy of `base` at `to` (a copied lake reads and writes its own files)."""
    shutil.copytree(base, to, symlinks=True)
    return to


@pytest.fixture
def lake_copy(base_lake: Path, tmp_path: Path) -> Path:
    """A copy of the base lake, for this test to break."""
    return copy_lake(base_lake, tmp_path / "lake")


def lock_holder(lake: Path) -> dict[str, Any] | None:
    """Who the lake's lock file names (a killed holder stays named), or None if empty."""
    raw = (lake / ".lock").read_text()
    return json.loads(raw) if raw.strip() else None


def run_record(lake: Path, run_id: str) -> dict[str, Any] | None:
    """A run's record in `_meta/runs`, if it has one."""
    path = lake / "_meta" / "runs" / f"{run_id}.json"
    return json.loads(path.read_text()) if path.exists() else None


def stage_statuses(record: dict[str, Any]) -> dict[str, str]:
    return {stage["stage"]: stage["status"] for stage in record["stages"]}


def new_schema_name() -> str:
    """A fresh schema name, as `pg_schema` makes (drop it with `drop_schema`)."""
    return f"t_{uuid.uuid4().hex[:12]}"


def drop_schema(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {name} cascade")
