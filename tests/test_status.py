"""`cryptolake status` never drops a section silently: what it cannot read, it names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .clis import invoke


@pytest.fixture
def lake(sample_lake: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(sample_lake, copy)
    return copy


def status_of(lake: Path) -> tuple[dict[str, object], str, str]:
    """(status --json, the text's stdout, the text's stderr); both exit 0."""
    as_json = invoke("status", "--json", "--lake", str(lake))
    as_text = invoke("status", "--lake", str(lake))
    assert as_json.exit_code == as_text.exit_code == 0, as_text.output
    assert "Traceback" not in as_text.output
    document: dict[str, object] = json.loads(as_json.stdout)
    return document, as_text.stdout, as_text.stderr


def test_a_whole_lake_has_no_problems(lake: Path) -> None:
    document, text, errors = status_of(lake)

    assert document["problems"] == []
    assert errors == ""
    assert "gold.coin_daily" in text and "last runs" in text


def test_a_damaged_catalog_is_named_and_the_rest_shown(lake: Path) -> None:
    catalog = lake / "catalog.sqlite"
    for leftover in lake.glob("catalog.sqlite-*"):
        leftover.unlink()
    catalog.write_bytes(b"not a database" * 100)

    document, text, errors = status_of(lake)

    assert document["gold"] == {}
    problems = document["problems"]
    assert isinstance(problems, list) and len(problems) == 1
    problem = str(problems[0])
    assert problem.startswith(
        f"lake catalog: The lake catalog sqlite:{catalog} is damaged or not a SQLite database"
    )
    assert problem.endswith("`cryptolake transform --full-refresh`.")
    assert "lake catalog" in errors
    assert "coins_markets" in text and "last runs" in text


def test_an_unreadable_silver_file_is_named_and_the_rest_shown(lake: Path) -> None:
    (broken,) = (lake / "silver" / "category_snapshots").glob("*/*.parquet")
    broken.write_bytes(b"bad")

    document, text, errors = status_of(lake)

    assert document["problems"] == [
        f"silver.category_snapshots: Invalid Input Error: File '{broken}' too small to be a "
        "Parquet file"
    ]
    silver = document["silver"]
    assert isinstance(silver, dict)
    assert silver["market_snapshots"]["rows"] == 100
    assert "cannot read silver.category_snapshots" in errors
    assert "gold.coin_daily" in text


def test_an_unreadable_run_record_is_named(lake: Path) -> None:
    (record,) = (lake / "_meta" / "runs").glob("*.json")
    record.write_text("{bad")

    document, _, errors = status_of(lake)

    problems = document["problems"]
    assert isinstance(problems, list) and len(problems) == 1
    assert problems[0].startswith(f"runs: Run record {record} is unreadable")
    assert problems[0].endswith("move it aside.")
    assert document["runs"] == []
    assert errors.startswith("cannot read runs: Run record")
