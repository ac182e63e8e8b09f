"""`cryptolake verify [--repair] [--json]` on real lakes with real damage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cryptolake.lake import LakePaths
from cryptolake.lock import LakeLock
from cryptolake.silver import build_silver
from cryptolake.verify import verify_lake

from .clis import invoke, one_error_line
from .damage import data_files, figures, flip_digit, manifests, settings, three_day_lake, truncate
from .lakes import land, silver_rows

SILVER = ("silver.market_snapshots", "silver.global_snapshots", "silver.category_snapshots")
GOLD = (
    "gold.coin_daily",
    "gold.market_daily",
    "gold.crypto_analytics_mart",
    "gold.category_leaderboard",
    "gold.market_cap_segments",
    "gold.market_segment_analysis",
)


@pytest.fixture
def lake(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return three_day_lake(tmp_path_factory, tmp_path / "lake")


def _verify(lake: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = invoke("verify", "--lake", str(lake), "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def test_a_sound_lake_verifies_with_exit_0_and_counts_what_it_checked(lake: Path) -> None:
    code, report = _verify(lake)
    assert code == 0, report
    assert report["consistent"] is True
    assert report["findings"] == []
    checked = {c["check"]: c["checked"] for c in report["checks"]}
    assert checked["bronze"] == 9  # 3 runs x 3 bodies
    assert checked["orphans"] == 9  # the files in dataset partitions, none an orphan
    assert checked["runs"] == 3
    assert checked["data files"] >= 3  # market_snapshots alone has one per day


def _damage(lake: Path, damage: str) -> Path:
    """Damage the 2026-01-11 data file of silver.market_snapshots; returns its path."""
    target = next(p for p in data_files(lake, "silver.market_snapshots") if "2026-01-11" in str(p))
    if damage == "deleted":
        target.unlink()
    elif damage == "truncated":
        truncate(target, target.stat().st_size // 2)
    else:  # same size, other bytes: only the footer check sees it
        target.write_bytes(b"\0" * target.stat().st_size)
    return target


@pytest.mark.parametrize("damage", ["deleted", "truncated", "overwritten"])
def test_a_damaged_silver_file_is_found_and_reading_it_says_how_to_repair(
    lake: Path, damage: str
) -> None:
    target = _damage(lake, damage)
    code, report = _verify(lake)
    assert code == 1
    (finding,) = report["findings"]
    assert finding["check"] == "data files"
    assert finding["problem"].startswith("silver.market_snapshots: data file ")
    assert str(target) in finding["problem"]
    # Reading it is one clear line naming the repair, never a traceback.
    query = invoke(
        "query", "--lake", str(lake), "select avg(current_price) from silver.market_snapshots"
    )
    assert query.exit_code == 1
    assert "cryptolake verify --repair" in one_error_line(query.stderr)


def test_repair_rebuilds_a_damaged_partition_from_bronze_to_the_same_figures(
    lake: Path,
) -> None:
    before = figures(lake, SILVER + GOLD)
    _damage(lake, "truncated")
    code, report = _verify(lake, "--repair")
    assert code == 0, report
    assert [f["check"] for f in report["findings"]] == ["data files"]
    assert all(f["repaired"] for f in report["findings"])
    assert figures(lake, SILVER + GOLD) == before
    assert _verify(lake)[0] == 0


def test_a_deleted_gold_file_is_rebuilt(lake: Path) -> None:
    before = figures(lake, GOLD)
    (target,) = data_files(lake, "gold.coin_daily")[:1]
    target.unlink()
    code, report = _verify(lake, "--repair")
    assert code == 0
    assert [f["check"] for f in report["findings"]] == ["data files"]
    assert figures(lake, GOLD) == before


def test_a_deleted_manifest_is_reported_then_recovered_so_a_full_refresh_keeps_its_snapshot(
    lake: Path,
) -> None:
    before = figures(lake, SILVER)
    run = manifests(lake)[1]
    next((lake / "bronze" / "_runs").glob(f"*/{run.run_id}.json")).unlink()

    code, report = _verify(lake)
    assert code == 1
    assert sorted(f["check"] for f in report["findings"]) == ["orphans", "runs"]
    missing = next(f for f in report["findings"] if f["check"] == "runs")
    assert f"run {run.run_id} is in silver but its manifest is gone" in missing["problem"]

    code, report = _verify(lake, "--repair")
    assert code == 0, report
    (recovered,) = [m for m in manifests(lake) if m.run_id == run.run_id]
    assert recovered.started_at == run.started_at
    assert sorted((e.path, e.sha256, e.bytes) for e in recovered.files) == sorted(
        (e.path, e.sha256, e.bytes) for e in run.files
    )
    assert "recovered by `cryptolake verify --repair`" in recovered.notes[0]
    # Bronze proves the snapshot again: a full refresh keeps every row.
    build_silver(settings(lake), full_refresh=True)
    assert figures(lake, SILVER) == before


def test_a_corrupt_body_found_by_verify_is_quarantined_by_repair(lake: Path) -> None:
    run = manifests(lake)[2]
    flip_digit(lake / run.files[0].path)
    code, report = _verify(lake)
    assert code == 1
    assert report["findings"][0]["problem"] == (
        f"run {run.run_id}: {run.files[0].path} changed since it was fetched (sha256 differs)"
    )
    code, report = _verify(lake, "--repair")
    assert code == 0, report
    # Nothing proves its rows any more: gone from silver (and gold), the others kept.
    runs = {r["run_id"] for r in silver_rows(lake)}
    assert runs == {m.run_id for m in manifests(lake)}
    assert run.run_id not in runs
    assert len(silver_rows(lake)) == 200
    # Reported once repaired, and from then on as a quarantined run: not a problem.
    assert _verify(lake)[1]["findings"] == [
        {
            "check": "bronze",
            "problem": f"run {run.run_id} is in quarantine ({run.files[0].path} changed since "
            "it was fetched (sha256 differs); found by verify --repair)",
            "fix": "nothing: it is kept as evidence and read by nothing",
            "repaired": False,
            "blocking": False,
        }
    ]


def test_the_cli_says_what_it_found_in_one_error_line(lake: Path) -> None:
    truncate(lake / manifests(lake)[0].files[1].path)
    result = invoke("verify", "--lake", str(lake))
    assert result.exit_code == 1
    assert "✗ bronze: run " in result.stdout
    # Silver read that run when its body was intact: nothing proves those rows now.
    assert "✗ runs: silver holds 1 run(s) whose bronze bodies are damaged" in result.stdout
    assert one_error_line(result.stderr) == (
        f"error: 2 problem(s) in the lake {lake}; `cryptolake verify --repair` fixes them."
    )
    missing = invoke("verify", "--lake", str(lake / "nowhere"))
    assert missing.exit_code == 1
    assert "No lake at" in one_error_line(missing.stderr)


def test_verify_without_repair_changes_nothing(lake: Path) -> None:
    from .lakes import lake_files

    flip_digit(lake / manifests(lake)[0].files[0].path)
    next(iter(data_files(lake, "silver.market_snapshots"))).unlink()
    before = lake_files(lake)
    report = verify_lake(settings(lake))
    assert not report.consistent
    assert lake_files(lake) == before


def test_repair_of_a_lake_never_transformed_builds_it_and_exits_0(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    land(lake)
    code, report = _verify(lake)
    assert code == 1
    assert [f["problem"] for f in report["findings"]] == ["bronze has runs but no silver yet"]
    code, report = _verify(lake, "--repair")
    assert code == 0, report
    assert len(silver_rows(lake)) == 100


def test_plain_verify_reads_a_busy_lake_without_its_lock(lake: Path) -> None:
    with LakeLock(LakePaths.at(lake), run_id="a scheduled run"):
        assert _verify(lake)[0] == 0
        busy = invoke("verify", "--lake", str(lake), "--repair")
    assert busy.exit_code == 1
    assert "is busy" in one_error_line(busy.stderr)
