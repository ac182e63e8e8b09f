"""The lake's DuckLake catalog: where it lives, its snapshots, time travel, readers, and the
catalogs a user can break (missing, damaged, of a newer DuckLake version)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from cryptolake.catalog import open_lake, snapshots
from cryptolake.gold import build_gold
from cryptolake.silver import build_silver

from .clis import invoke, one_error_line, run_cli
from .conftest import LakeTemplates
from .lakes import T0, land, settings_for

COUNT = "select count(*) as n from silver.market_snapshots"


def transformed_twice(lake: Path) -> Path:
    """Two snapshots, each transformed on its own (silver and gold commits for each)."""
    for at in (T0, T0 + timedelta(hours=6)):
        land(lake, at=at)
        build_silver(settings_for(lake), run_id=f"run-{at:%H}")
        build_gold(settings_for(lake), run_id=f"run-{at:%H}")
    return lake


@pytest.fixture
def two_runs(lake: Path, lake_templates: LakeTemplates) -> Path:
    """`transformed_twice`, a copy of the session's (each test changes its own)."""
    return lake_templates.copy(transformed_twice, lake)


def count(lake: Path, *args: str) -> str:
    result = invoke("query", "--lake", str(lake), "--format", "csv", *args, COUNT)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[1]


def test_catalog_is_sqlite_in_wal_mode_with_files_under_the_lake(two_runs: Path) -> None:
    catalog = two_runs / "catalog.sqlite"
    with sqlite3.connect(catalog) as db:
        assert db.execute("pragma journal_mode").fetchone() == ("wal",)
    silver = sorted((two_runs / "silver" / "market_snapshots").glob("*/*.parquet"))
    assert [p.parent.name for p in silver] == ["snapshot_date=2026-02-15"] * 2
    assert all(p.name.startswith("ducklake-") for p in silver)
    # coin_daily by month (year=…/month=…/), so an incremental build reads the last months.
    assert list((two_runs / "gold" / "coin_daily").glob("year=*/month=*/ducklake-*.parquet"))
    assert not (two_runs / "cryptolake.duckdb").exists()


def test_every_commit_says_what_made_it(two_runs: Path) -> None:
    with open_lake(settings_for(two_runs), read_only=True) as con:
        history = list(reversed(snapshots(con, limit=100)))
    labelled = [(s.message, s.extra.get("stage"), s.extra.get("run_id")) for s in history[2:]]
    assert labelled == [
        ("silver: 1 bronze run(s)", "silver", "run-15"),
        ("gold: built for usd, whole rebuild", "gold", "run-15"),
        ("silver: 1 bronze run(s)", "silver", "run-21"),
        ("gold: built for usd, coin_daily from 2026-02-14", "gold", "run-21"),
    ]


def test_as_of_reads_the_lake_as_it_was(two_runs: Path) -> None:
    with open_lake(settings_for(two_runs), read_only=True) as con:
        first_gold = [s for s in snapshots(con, limit=100) if s.extra.get("stage") == "gold"][-1]
    assert count(two_runs) == "200"
    assert count(two_runs, "--as-of", str(first_gold.snapshot_id)) == "100"
    assert count(two_runs, "--as-of", first_gold.committed_at) == "100"
    shell = run_cli(
        "shell", "--lake", str(two_runs), "--as-of", str(first_gold.snapshot_id), "-c", COUNT
    )
    assert shell.returncode == 0, shell.stderr
    assert "100" in shell.stdout


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        ("yesterday", "error: --as-of must be a snapshot id (such as 42) or an ISO 8601 time"),
        ("999", "error: The lake has no snapshot 999"),
    ],
)
def test_a_bad_as_of_is_one_line(two_runs: Path, as_of: str, expected: str) -> None:
    result = run_cli("query", "--lake", str(two_runs), "--as-of", as_of, COUNT)
    assert result.returncode == 1
    assert one_error_line(result.stderr).startswith(expected)


def test_a_copied_lake_reads_its_own_files(lake: Path, tmp_path: Path) -> None:
    # Built here, not copied from the session's: the folder the catalog names is removed.
    two_runs = transformed_twice(lake)
    copy = tmp_path / "elsewhere" / "lake"
    shutil.copytree(two_runs, copy)
    shutil.rmtree(two_runs)  # the catalog still names the old folder: it must not matter
    assert count(copy) == "200"
    land(copy, at=T0 + timedelta(days=1))
    assert invoke("transform", "--lake", str(copy)).exit_code == 0
    assert count(copy) == "300"
    assert sorted(p.parent.name for p in copy.glob("silver/market_snapshots/*/*.parquet")) == [
        "snapshot_date=2026-02-15",
        "snapshot_date=2026-02-15",
        "snapshot_date=2026-02-16",
    ]


def test_a_missing_catalog_is_one_line_for_every_reader(lake: Path) -> None:
    land(lake)  # bronze only: no transform yet
    for command in (["query", COUNT], ["shell", "-c", COUNT], ["check"], ["report"]):
        result = run_cli(*command, "--lake", str(lake))
        assert result.returncode == 1, command
        line = one_error_line(result.stderr)
        assert line.startswith(f"error: No lake catalog at {lake / 'catalog.sqlite'}"), line


def test_a_damaged_catalog_is_one_line_naming_it_and_the_fix(two_runs: Path) -> None:
    for leftover in two_runs.glob("catalog.sqlite-*"):
        leftover.unlink()
    (two_runs / "catalog.sqlite").write_bytes(b"\x00garbage" * 512)

    for command in (["query", COUNT], ["transform"]):
        result = run_cli(*command, "--lake", str(two_runs))
        assert result.returncode == 1, command
        line = one_error_line(result.stderr)
        assert line.startswith(
            f"error: The lake catalog sqlite:{two_runs / 'catalog.sqlite'} is damaged or not "
            "a SQLite database"
        ), line
        assert line.endswith("`cryptolake transform --full-refresh`.")


def test_a_catalog_of_a_newer_ducklake_is_one_line(two_runs: Path) -> None:
    with sqlite3.connect(two_runs / "catalog.sqlite") as db:
        db.execute("update ducklake_metadata set value = '9.9' where key = 'version'")

    result = run_cli("query", "--lake", str(two_runs), COUNT)

    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        f"error: The lake catalog sqlite:{two_runs / 'catalog.sqlite'} is DuckLake version "
        "9.9, which this cryptolake cannot read (it reads DuckLake 1.0): upgrade cryptolake "
        "(`uv sync` on a newer checkout), or point --catalog at another catalog."
    )


def test_a_bad_catalog_setting_names_where_it_came_from(lake: Path) -> None:
    flag = run_cli("query", "--lake", str(lake), "--catalog", "mysql:lake", COUNT)
    env = run_cli("query", "--lake", str(lake), COUNT, env={"CRYPTOLAKE_CATALOG": "lake.db"})
    assert one_error_line(flag.stderr).startswith("error: --catalog must be sqlite:<file> or")
    assert one_error_line(env.stderr).startswith(
        "error: CRYPTOLAKE_CATALOG must be sqlite:<file> or"
    )


READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cryptolake.catalog import open_lake
    from cryptolake.settings import Settings

    with open_lake(Settings(lake=Path(sys.argv[1])), read_only=True) as con:
        con.execute("begin")
        print(con.execute("select count(*) from silver.market_snapshots").fetchone()[0], flush=True)
        sys.stdin.readline()  # the test commits a transform meanwhile
        print(con.execute("select count(*) from silver.market_snapshots").fetchone()[0], flush=True)
        con.execute("commit")
        print(con.execute("select count(*) from silver.market_snapshots").fetchone()[0], flush=True)
    """
)


def test_a_reader_process_never_blocks_a_transform_and_sees_old_then_new(two_runs: Path) -> None:
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(two_runs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "200"
        land(two_runs, at=T0 + timedelta(days=1))
        # Commits while the reader's transaction is open (a rollback journal would make this
        # fail with "database is locked"; WAL lets both go on).
        transform = run_cli("transform", "--lake", str(two_runs), timeout=60)
        assert transform.returncode == 0, transform.stderr
        reader.stdin.write("go\n")
        reader.stdin.flush()
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out.split() == ["200", "300"]  # its snapshot, then the new one


@pytest.mark.postgres
def test_a_postgres_catalog_holds_the_same_lake(lake: Path, pg_catalog: str) -> None:
    land(lake)
    run = invoke("transform", "--lake", str(lake), "--catalog", pg_catalog)
    assert run.exit_code == 0, run.output
    assert not (lake / "catalog.sqlite").exists()
    assert list(lake.glob("silver/market_snapshots/*/ducklake-*.parquet"))
    assert count(lake, "--catalog", pg_catalog) == "100"
    status = invoke("status", "--lake", str(lake), "--catalog", pg_catalog, "--json")
    assert status.exit_code == 0, status.output
    assert '"gold.coin_daily": 1' in status.stdout.replace("\n", "").replace("  ", "")


@pytest.mark.postgres
def test_a_postgres_catalog_that_does_not_exist_fails_a_run_before_it_ingests(
    lake: Path, pg_catalog: str
) -> None:
    missing = pg_catalog.replace("dbname=lake_", "dbname=gone_")
    done = run_cli("run", "--sample", "--lake", str(lake), "--catalog", missing)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert 'database "gone_' in line and "does not exist; create it (createdb)" in line
    assert not (lake / "bronze").exists()  # nothing fetched, no API budget spent
    backfill = run_cli(
        "backfill", "--sample", "--coins", "bitcoin", "--lake", str(lake), "--catalog", missing
    )
    assert backfill.returncode == 1
    assert "does not exist" in one_error_line(backfill.stderr)
    assert not (lake / "bronze").exists()


@pytest.mark.postgres
def test_a_postgres_catalog_keeps_to_the_lake_it_was_made_for(
    lake: Path, tmp_path: Path, pg_catalog: str
) -> None:
    land(lake)
    assert invoke("transform", "--lake", str(lake), "--catalog", pg_catalog).exit_code == 0
    other = tmp_path / "other"
    done = run_cli("maintain", "--lake", str(other), "--catalog", pg_catalog)
    assert done.returncode == 1
    assert f"belongs to the lake at {lake}" in one_error_line(done.stderr)
    assert not list(other.rglob("*.parquet"))
