"""`cryptolake maintain` and the maintenance a run does by itself, on real DuckLake lakes.

A lake of ten transforms (ten snapshots of one day, each transformed on its own) holds ten
files per silver table for that day, and every transform's gold. Maintenance must merge them,
keep every row, expire what is older than the retention, delete the files nothing needs any
more, and leave time travel working within the retention (and failing in one line beyond it).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from cryptolake.catalog import file_counts, open_lake, snapshots
from cryptolake.gold import build_gold
from cryptolake.maintenance import maintain, maintenance_due
from cryptolake.silver import build_silver

from .clis import invoke, one_error_line, run_cli
from .lakes import T0, land, settings_for

RUNS = 10
FIRST = T0 - timedelta(hours=15)  # 2026-02-15 00:47 UTC; the tenth is 18:47, the same day
DAY = "snapshot_date=2026-02-15"
COUNT = "select count(*) as n from silver.market_snapshots"
# The files of the ten-run lake per table: silver's one per transform and day; gold's small
# tables and silver's /global rows are inlined in the catalog (no file) until maintenance.
FILES_BEFORE = {
    "gold.category_leaderboard": 1,
    "gold.coin_daily": 1,
    "gold.crypto_analytics_mart": 1,
    "gold.market_cap_segments": 0,
    "gold.market_daily": 0,
    "gold.market_segment_analysis": 0,
    "meta.build": 0,
    "meta.commit_head": 0,  # its one row, inlined in the catalog (see catalog.py)
    "meta.lake": 0,
    "meta.snapshots": 0,
    "silver.category_snapshots": RUNS,
    "silver.coin_history_daily": 0,  # no history in this lake: empty tables have no file
    "silver.coin_ohlc_4h": 0,
    "silver.global_snapshots": 0,
    "silver.market_snapshots": RUNS,
    "silver.processed_runs": 0,
    "silver.quarantine": 0,
}
EMPTY = ("silver.quarantine", "silver.coin_history_daily", "silver.coin_ohlc_4h")
FILES_AFTER = {table: 0 if table in EMPTY else 1 for table in FILES_BEFORE}
# Snapshots of the ten-run lake: 0 (empty), 1 (the schemas), then silver and gold per run.
LAST_GOLD = 1 + 2 * RUNS
FIRST_GOLD = 3
MAINTAIN_ENV = {"CRYPTOLAKE_FRESHNESS_HOURS": "876000"}  # the recorded data is months old


@pytest.fixture(scope="module")
def ten_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten snapshots of one day, each through silver and gold on its own (read-only: copy it)."""
    lake = tmp_path_factory.mktemp("ten") / "lake"
    for k in range(RUNS):
        land(lake, at=FIRST + timedelta(hours=2 * k))
        build_silver(settings_for(lake), run_id=f"run-{k}")
        build_gold(settings_for(lake), run_id=f"run-{k}")
    return lake


@pytest.fixture
def lake_copy(ten_runs: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(ten_runs, copy)
    return copy


def contents(lake: Path) -> dict[str, tuple[int, str]]:
    """Every silver and gold table: its row count and a checksum of all its rows."""
    with open_lake(settings_for(lake), read_only=True) as con:
        tables = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "where database_name = 'lake' and schema_name in ('silver', 'gold') order by 1"
        ).fetchall()
        out = {}
        for (table,) in tables:
            row = con.execute(
                "select count(*), md5(coalesce(string_agg(r, chr(10) order by r), '')) "
                f"from (select cast(t as varchar) as r from {table} as t)"
            ).fetchone()
            assert row is not None
            out[str(table)] = (int(row[0]), str(row[1]))
    return out


def parquet_files(lake: Path, under: str = "") -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in (lake / under).rglob("*.parquet"))


def catalog_files(lake: Path) -> list[str]:
    """The data files the lake's current snapshot reads, relative to the lake."""
    with open_lake(settings_for(lake), read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'lake'"
        ).fetchall()
        files = [
            str(f)
            for schema, table in tables
            for (f,) in con.execute(
                "select data_file from ducklake_list_files('lake', ?, schema => ?)",
                [table, schema],
            ).fetchall()
        ]
    return sorted(str(Path(f).relative_to(lake.resolve())) for f in files)


def snapshot_ids(lake: Path) -> list[int]:
    with open_lake(settings_for(lake), read_only=True) as con:
        return [s.snapshot_id for s in snapshots(con, limit=1000)]


def count_as_of(lake: Path, snapshot: int) -> int:
    with open_lake(settings_for(lake), read_only=True, as_of=snapshot) as con:
        row = con.execute(COUNT).fetchone()
    return int(row[0]) if row else -1


def test_the_ten_run_lake_has_a_file_per_transform(ten_runs: Path) -> None:
    with open_lake(settings_for(ten_runs), read_only=True) as con:
        assert file_counts(con) == FILES_BEFORE
        history = snapshots(con, limit=1000)
    assert [s.snapshot_id for s in history] == list(range(LAST_GOLD, -1, -1))
    assert len(parquet_files(ten_runs, f"silver/market_snapshots/{DAY}")) == RUNS


def test_maintain_merges_the_days_files_and_keeps_every_row(lake_copy: Path) -> None:
    before = contents(lake_copy)
    assert before["silver.market_snapshots"][0] == 100 * RUNS

    result = maintain(settings_for(lake_copy))

    assert result.files_before == FILES_BEFORE
    assert result.files_after == FILES_AFTER
    with open_lake(settings_for(lake_copy), read_only=True) as con:
        # The marker of the maintenance, its one row inlined in the catalog.
        assert file_counts(con) == FILES_AFTER | {"meta.maintenance": 0}
        labelled = [(s.message, s.extra.get("stage")) for s in snapshots(con, limit=4)]
    assert labelled == [
        ("maintain: done", "maintain"),
        ("maintain: merge adjacent files", "maintain"),
        ("maintain: rewrite files with deleted rows", "maintain"),
        ("maintain: flush inlined rows", "maintain"),
    ]
    # The merged files replace the ten on disk; the merged one keeps each row's snapshot.
    assert len(parquet_files(lake_copy, f"silver/market_snapshots/{DAY}")) == 1
    assert result.snapshots_expired == 0  # all younger than the 30 days kept
    assert result.describe().startswith("23 data files -> 14; 0 snapshot(s) expired; ")
    assert contents(lake_copy) == before
    # Time travel within the retention still reads each snapshot as it was.
    assert count_as_of(lake_copy, FIRST_GOLD) == 100
    assert count_as_of(lake_copy, FIRST_GOLD + 2 * 4) == 500
    assert count_as_of(lake_copy, LAST_GOLD) == 100 * RUNS
    # And the lake goes on: a transform on the maintained lake reads and extends it.
    land(lake_copy, at=FIRST + timedelta(hours=2 * RUNS))
    build_silver(settings_for(lake_copy))
    assert build_gold(settings_for(lake_copy)).coin_daily_from == "2026-02-14"
    assert contents(lake_copy)["silver.market_snapshots"][0] == 100 * (RUNS + 1)


def test_snapshots_older_than_the_retention_expire_and_their_files_go(lake_copy: Path) -> None:
    before = contents(lake_copy)

    result = maintain(settings_for(lake_copy).with_(snapshot_retention_days=0))

    # Flush (22), rewrite (23) and merge (24) commit first; every snapshot but the current one
    # (24) is then older than now; the marker commit (25) follows.
    assert result.snapshots_expired == LAST_GOLD + 3
    assert snapshot_ids(lake_copy) == [LAST_GOLD + 4, LAST_GOLD + 3]
    assert result.files_after == FILES_AFTER
    assert contents(lake_copy) == before
    # Only the files the current snapshot reads are left on disk.
    assert parquet_files(lake_copy) == catalog_files(lake_copy)
    assert len(parquet_files(lake_copy)) == sum(FILES_AFTER.values())


def test_as_of_an_expired_snapshot_is_one_line(lake_copy: Path) -> None:
    maintained = run_cli(
        "maintain", "--lake", str(lake_copy), env={"CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS": "0"}
    )
    assert maintained.returncode == 0, maintained.stderr
    assert "24 snapshot(s) expired" in maintained.stdout

    result = run_cli("query", "--lake", str(lake_copy), "--as-of", str(FIRST_GOLD), COUNT)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: The lake has no snapshot {FIRST_GOLD} ("), line
    assert line.endswith("(older ones are expired after CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS).")
    current = run_cli("query", "--lake", str(lake_copy), "--format", "csv", COUNT)
    assert current.returncode == 0, current.stderr
    assert current.stdout.splitlines()[1] == str(100 * RUNS)


def test_cli_maintain_prints_files_before_and_after(lake_copy: Path) -> None:
    result = invoke("maintain", "--lake", str(lake_copy))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.match(
        r"maintained in \d+\.\ds: 23 data files -> 14; 0 snapshot\(s\) expired; "
        r"\d+ file\(s\) deleted",
        lines[0],
    ), lines[0]
    rows = {
        cells[0]: cells[1:]
        for line in lines
        if len(cells := re.split(r"[\s│|]+", line.strip(" │|"))) == 3 and "." in cells[0]
    }
    assert rows == {t: [str(n), str(FILES_AFTER[t])] for t, n in FILES_BEFORE.items()}


def test_maintenance_is_due_after_every_n_gold_commits(lake_copy: Path) -> None:
    settings = settings_for(lake_copy)
    # Ten gold commits and no maintenance yet.
    assert maintenance_due(settings.with_(maintain_every=3))
    assert maintenance_due(settings.with_(maintain_every=RUNS))
    assert not maintenance_due(settings.with_(maintain_every=RUNS + 1))
    assert not maintenance_due(settings.with_(maintain_every=0))  # never

    maintain(settings)
    every_3 = settings.with_(maintain_every=3)
    assert not maintenance_due(every_3)
    assert build_gold(settings).up_to_date  # silver unchanged: no gold commit
    assert not maintenance_due(every_3)
    build_gold(settings, full_rebuild=True)  # a gold commit each
    build_gold(settings, full_rebuild=True)
    assert not maintenance_due(every_3)
    build_gold(settings, full_rebuild=True)
    assert maintenance_due(every_3)
    assert not maintenance_due(every_3.with_(maintain_every=4))


def test_a_run_maintains_the_lake_every_3_runs(lake: Path) -> None:
    notes = []
    for k in range(4):
        land(lake, at=FIRST + timedelta(hours=2 * k))
        result = invoke(
            "run",
            "--stages",
            "transform",
            "--json",
            "--lake",
            str(lake),
            env=MAINTAIN_ENV | {"CRYPTOLAKE_MAINTAIN_EVERY": "3"},
        )
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["status"] == "success", document
        notes.append(document["notes"])
    assert notes[:2] == [[], []]
    assert notes[3] == []
    (note,) = notes[2]
    assert re.fullmatch(
        r"maintenance \(every 3 runs\): 9 data files -> 14 \(rows inlined in the catalog now in "
        r"files\); 0 snapshot\(s\) expired; "
        r"\d+ file\(s\) deleted",
        note,
    ), note
    assert len(parquet_files(lake, f"silver/market_snapshots/{DAY}")) == 2  # merged + run 4's
    with open_lake(settings_for(lake), read_only=True) as con:
        stages = [s.extra.get("stage") for s in snapshots(con, limit=7)]
    assert stages == ["gold", "silver", "maintain", "maintain", "maintain", "maintain", "gold"]


def test_a_run_whose_maintenance_expires_snapshots_succeeds(lake: Path) -> None:
    land(lake, at=FIRST)
    env = MAINTAIN_ENV | {
        "CRYPTOLAKE_MAINTAIN_EVERY": "1",
        "CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS": "0",
    }
    result = invoke("run", "--stages", "transform", "--json", "--lake", str(lake), env=env)
    document = json.loads(result.stdout)
    assert (result.exit_code, document["status"], document["error"]) == (0, "success", None)
    (note,) = document["notes"]
    assert note.startswith("maintenance (every 1 runs): ")
