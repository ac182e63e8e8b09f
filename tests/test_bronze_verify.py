"""Bronze bodies checked against their manifests; a damaged run quarantined, later runs proceed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryptolake.bronze_verify import check_body, check_runs, quarantined_runs
from cryptolake.lake import LakePaths
from cryptolake.silver import build_silver

from .damage import flip_digit, manifests, three_day_lake, truncate
from .lakes import land, settings_for, silver_rows


@pytest.fixture
def lake(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return three_day_lake(tmp_path_factory, tmp_path / "lake")


def test_an_intact_body_passes_and_each_kind_of_damage_is_named(lake: Path) -> None:
    paths = LakePaths.at(lake)
    entries = [e for m in manifests(lake) for e in m.files]
    assert [check_body(paths, e) for e in entries] == [None] * 9
    flip_digit(lake / entries[0].path)
    truncate(lake / entries[1].path, 812)
    (lake / entries[2].path).unlink()
    with (lake / entries[3].path).open("ab") as handle:
        handle.write(b" ")
    problems = [check_body(paths, e) for e in entries[:4]]
    assert [p.problem if p else None for p in problems] == [
        "changed since it was fetched (sha256 differs)",
        f"truncated: 812 of {entries[1].bytes:,} bytes",
        "missing",
        f"grown: {entries[3].bytes + 1:,} of {entries[3].bytes:,} bytes",
    ]
    faults = check_runs(paths, manifests(lake))
    assert [f.run_id for f in faults] == [m.run_id for m in manifests(lake)][:2]
    assert len(faults[0].bodies) == 3  # the first run holds entries 0-2


def test_a_flipped_digit_never_reaches_silver_and_later_runs_proceed(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    first = land(lake, at=datetime(2026, 1, 10, 12, tzinfo=UTC))
    bad = land(lake, at=datetime(2026, 1, 11, 12, tzinfo=UTC))
    markets = next(e for e in manifests(lake)[1].files if e.dataset == "coins_markets")
    body = lake / markets.path
    original = json.loads(body.read_bytes())
    flip_digit(body)
    damaged = body.read_bytes()
    assert json.loads(damaged) != original  # still valid JSON: only a hash sees it

    result = build_silver(settings_for(lake))

    assert result.runs == [first.run_id]
    assert result.quarantined_runs == [
        (bad.run_id, f"{markets.path} changed since it was fetched (sha256 differs)")
    ]
    assert any(bad.run_id in note and "quarantined" in note for note in result.notes)
    rows = silver_rows(lake)
    assert {r["run_id"] for r in rows} == {first.run_id}
    assert len(rows) == 100
    # Moved whole, manifest first, with the reason: out of every glob silver and readers use.
    folder = lake / "quarantine" / "runs" / bad.run_id
    assert (folder / markets.path).read_bytes() == damaged
    assert not body.exists()
    assert not list((lake / "bronze" / "_runs").glob(f"*/{bad.run_id}.json"))
    assert [q.run_id for q in quarantined_runs(LakePaths.at(lake))] == [bad.run_id]
    reason = json.loads((folder / "reason.json").read_bytes())
    assert reason["bodies"] == [
        {"path": markets.path, "problem": "changed since it was fetched (sha256 differs)"}
    ]

    # The next run lands and is built: the pipeline is not wedged.
    later = land(lake, at=datetime(2026, 1, 12, 12, tzinfo=UTC))
    again = build_silver(settings_for(lake))
    assert again.runs == [later.run_id]
    assert again.quarantined_runs == []
    assert len(silver_rows(lake)) == 200


def test_a_truncated_body_is_quarantined_even_through_a_full_refresh(lake: Path) -> None:
    runs = manifests(lake)
    glob = next(e for e in runs[2].files if e.dataset == "global")
    truncate(lake / glob.path)

    result = build_silver(settings_for(lake), full_refresh=True)

    assert result.runs == [runs[0].run_id, runs[1].run_id]
    assert result.quarantined_runs == [
        (runs[2].run_id, f"{glob.path} truncated: 100 of {glob.bytes:,} bytes")
    ]
    # The full refresh drops what no complete run is behind, and says so.
    assert {r["run_id"] for r in silver_rows(lake)} == {runs[0].run_id, runs[1].run_id}
    assert any("no longer complete in bronze" in n for n in result.notes)
