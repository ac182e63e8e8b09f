"""verify against the real Postgres: silver and staging agree, and `--repair` makes them agree
without ever deleting from Postgres what bronze still proves. Also a damaged history table."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptolake.publish import STAGING, publish
from cryptolake.silver import build_silver
from cryptolake.verify import verify_lake

from .damage import data_files, figures, manifests, three_day_lake
from .lakes import settings_for
from .published import fetch, sample_lake_with_history, target


@pytest.fixture
def lake(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return three_day_lake(tmp_path_factory, tmp_path / "lake")


def _staged(dsn: str, schema: str) -> list[tuple[str, int]]:
    return [
        (str(at), int(n))
        for at, n in fetch(
            dsn,
            f"select snapshot_at at time zone 'UTC', count(*) from {schema}.{STAGING} "
            "group by 1 order by 1",
        )
    ]


def _problems(report: object) -> list[str]:
    return [f.problem for f in report.findings if f.blocking and not f.repaired]  # type: ignore[attr-defined]


def test_rows_missing_from_staging_are_found_and_published_again(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    whole = _staged(pg_dsn, pg_schema)
    assert [n for _, n in whole] == [100, 100, 100]
    assert verify_lake(settings).consistent
    staging = f"{pg_schema}.{STAGING}"
    deleted = fetch(
        pg_dsn,
        f"delete from {staging} where snapshot_at = (select min(snapshot_at) from {staging}) "
        "returning 1",
    )
    assert len(deleted) == 100
    fetch(
        pg_dsn,
        f"delete from {staging} where coin_id = 'bitcoin' and snapshot_at = "
        f"(select max(snapshot_at) from {staging}) returning 1",
    )

    report = verify_lake(settings)
    problems = _problems(report)
    assert len(problems) == 2
    assert "lacks 1 snapshot(s) silver holds (first 2026-01-10T12:00:00.000000Z)" in problems[0]
    assert "(first 2026-01-12T12:00:00.000000Z: 100 in silver, 99 in Postgres)" in problems[1]

    repaired = verify_lake(settings, repair=True)
    assert repaired.consistent
    assert _staged(pg_dsn, pg_schema) == whole
    assert verify_lake(settings).consistent


def test_a_snapshot_postgres_holds_and_bronze_still_proves_is_recovered_not_deleted(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    whole = _staged(pg_dsn, pg_schema)
    before = figures(lake, ("silver.market_snapshots",))
    # The manifest goes, then a full refresh drops the snapshot from silver, as the issue
    # found: Postgres keeps it, and the bodies are still in bronze.
    run = manifests(lake)[1]
    next((lake / "bronze" / "_runs").glob(f"*/{run.run_id}.json")).unlink()
    build_silver(settings_for(lake), full_refresh=True)

    report = verify_lake(settings)
    postgres = [f.problem for f in report.findings if f.check == "postgres"]
    assert len(postgres) == 1
    assert postgres[0].endswith(
        " holds 1 snapshot(s) silver does not (first 2026-01-11T12:00:00.000000Z): 1 with "
        "bodies still in bronze, 0 proven by no bronze run"
    )

    assert verify_lake(settings, repair=True).consistent
    assert _staged(pg_dsn, pg_schema) == whole
    assert figures(lake, ("silver.market_snapshots",)) == before
    assert verify_lake(settings).consistent


def test_a_snapshot_no_bronze_run_proves_is_removed_from_postgres(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    run = manifests(lake)[1]
    next((lake / "bronze" / "_runs").glob(f"*/{run.run_id}.json")).unlink()
    for entry in run.files:
        (lake / entry.path).unlink()
    build_silver(settings_for(lake), full_refresh=True)

    assert not verify_lake(settings).consistent
    assert verify_lake(settings, repair=True).consistent
    assert [at for at, _ in _staged(pg_dsn, pg_schema)] == [
        "2026-01-10 12:00:00",
        "2026-01-12 12:00:00",
    ]


def test_a_damaged_history_file_is_rebuilt_from_every_history_request(tmp_path: Path) -> None:
    lake = sample_lake_with_history(tmp_path / "lake")
    tables = ("silver.coin_history_daily", "gold.coin_daily")
    before = figures(lake, tables)
    assert len(before["silver.coin_history_daily"]) >= 30
    data_files(lake, "silver.coin_history_daily")[0].unlink()

    report = verify_lake(settings_for(lake))
    assert [f.check for f in report.findings] == ["data files"]
    assert verify_lake(settings_for(lake), repair=True).consistent
    assert figures(lake, tables) == before


def test_a_mart_that_differs_from_gold_is_published_again(
    lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    settings = target(lake, pg_dsn, pg_schema)
    publish(settings)
    mart = f"{pg_schema}.crypto_analytics_mart"
    (whole,) = fetch(pg_dsn, f"select count(*) from {mart}")[0]
    fetch(pg_dsn, f"delete from {mart} where market_cap_rank > 25 returning 1")

    report = verify_lake(settings)
    (problem,) = _problems(report)
    assert f"crypto_analytics_mart: {whole:,} rows in gold, " in problem
    assert verify_lake(settings, repair=True).consistent
    assert fetch(pg_dsn, f"select count(*) from {mart}")[0][0] == whole
