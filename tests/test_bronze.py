"""Bronze runs: bodies staged, landed all at once with a manifest, or abandoned whole."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryptolake.bronze import (
    BronzeRun,
    Manifest,
    iso,
    new_run_id,
    read_manifests,
)
from cryptolake.coingecko import Fetched
from cryptolake.errors import LakeError
from cryptolake.lake import LakePaths

from .conftest import CATEGORIES, GLOBAL, fixture_bytes

STARTED = datetime(2026, 2, 15, 15, 47, 12, 345678, tzinfo=UTC)
PAGE = fixture_bytes("markets_usd_ids-cosmos-bitcanna-bitcoin_forbole-soljuno_2022-03-21.json")


def fetched(body: bytes, path: str = "/coins/markets", page: int = 1) -> Fetched:
    params = {"vs_currency": "usd", "page": str(page)}
    return Fetched(
        path=path,
        params=params,
        url=f"http://127.0.0.1:1/api/v3{path}?vs_currency=usd&page={page}",
        status=200,
        body=body,
        data=json.loads(body),
        fetched_at=STARTED,
        attempts=1,
        elapsed_s=0.01,
    )


def manifest(run: BronzeRun, status: str = "complete", error: str | None = None) -> Manifest:
    return Manifest(
        run_id=run.run_id,
        status="complete" if status == "complete" else "failed",
        source="api",
        started_at=iso(run.started_at),
        finished_at=iso(run.started_at),
        ingest_date=run.ingest_date,
        api_url="http://127.0.0.1:1/api/v3",
        api_plan="demo",
        keyed=False,
        vs_currency="usd",
        top=2,
        per_page=3,
        files=list(run.files),
        error=error,
    )


def visible_bodies(lake: LakePaths) -> list[Path]:
    """Body files where downstream looks: bronze/<dataset>/*/*.json."""
    return sorted(p for p in lake.bronze.glob("*/*/*.json") if not p.parts[-3].startswith("_"))


@pytest.fixture
def paths(lake: Path) -> LakePaths:
    return LakePaths.at(lake)


def test_run_id_sorts_by_start_time_and_is_unique() -> None:
    ids = {new_run_id(STARTED) for _ in range(50)}

    assert len(ids) == 50
    assert all(re.fullmatch(r"20260215T154712Z-[0-9a-f]{6}", i) for i in ids)
    assert iso(STARTED) == "2026-02-15T15:47:12.345678Z"


def test_staged_bodies_are_invisible_until_commit(paths: LakePaths) -> None:
    run = BronzeRun(paths, run_id="20260215T154712Z-abc123", started_at=STARTED)

    entry = run.stage("coins_markets", 1, fetched(PAGE), records=3, trimmed_ids=["bitcoin"])

    assert entry.path == (
        "bronze/coins_markets/ingest_date=2026-02-15/20260215T154712Z-abc123-p0001.json"
    )
    assert (entry.records, entry.trimmed_ids, entry.bytes) == (3, ["bitcoin"], len(PAGE))
    assert entry.sha256 == hashlib.sha256(PAGE).hexdigest()
    assert entry.fetched_at == "2026-02-15T15:47:12.345678Z"
    assert visible_bodies(paths) == []
    assert not paths.runs.exists()


def test_commit_lands_every_body_then_the_manifest(paths: LakePaths) -> None:
    run = BronzeRun(paths, run_id="20260215T154712Z-abc123", started_at=STARTED)
    run.stage("coins_markets", 1, fetched(PAGE), records=3, trimmed_ids=[])
    run.stage("global", 1, fetched(fixture_bytes(GLOBAL), "/global"), records=1, trimmed_ids=[])

    manifest_path = Path(run.commit(manifest(run)))

    assert manifest_path == paths.runs / "ingest_date=2026-02-15" / "20260215T154712Z-abc123.json"
    assert [p.relative_to(paths.root).as_posix() for p in visible_bodies(paths)] == [
        "bronze/coins_markets/ingest_date=2026-02-15/20260215T154712Z-abc123-p0001.json",
        "bronze/global/ingest_date=2026-02-15/20260215T154712Z-abc123-p0001.json",
    ]
    assert (paths.root / run.files[0].path).read_bytes() == PAGE
    assert (paths.root / run.files[1].path).read_bytes() == fixture_bytes(GLOBAL)
    assert run.staging is not None and not run.staging.exists()
    assert [p for p in paths.incoming.rglob("*") if p.is_file()] == []
    (landed,) = read_manifests(paths)
    assert landed == Manifest.from_json(manifest_path.read_bytes())
    assert landed.status == "complete"
    assert [f.path for f in landed.files] == [f.path for f in run.files]


def test_abandon_lands_nothing_but_a_failed_manifest(paths: LakePaths) -> None:
    run = BronzeRun(paths, run_id="20260215T154712Z-abc123", started_at=STARTED)
    run.stage("coins_markets", 1, fetched(PAGE), records=3, trimmed_ids=[])

    path = run.abandon(manifest(run, "failed", "CoinGecko /global failed: HTTP 404"))

    assert visible_bodies(paths) == []
    assert run.staging is not None and not run.staging.exists()
    assert read_manifests(paths) == []  # complete runs only, by default
    (failed,) = read_manifests(paths, status="failed")
    assert failed.error == "CoinGecko /global failed: HTTP 404"
    assert read_manifests(paths, status=None) == [failed]
    assert Path(path).is_file()


def test_commit_never_replaces_a_bronze_file(paths: LakePaths) -> None:
    first = BronzeRun(paths, run_id="20260215T154712Z-abc123", started_at=STARTED)
    first.stage(
        "coins_categories", 1, fetched(fixture_bytes(CATEGORIES)), records=90, trimmed_ids=[]
    )
    first.commit(manifest(first))
    again = BronzeRun(paths, run_id="20260215T154712Z-abc123", started_at=STARTED)
    again.stage("coins_categories", 1, fetched(b"[]"), records=0, trimmed_ids=[])

    with pytest.raises(LakeError, match="bronze is immutable"):
        again.commit(manifest(again))

    (body,) = visible_bodies(paths)
    assert body.read_bytes() == fixture_bytes(CATEGORIES)


def test_manifests_are_read_oldest_first(paths: LakePaths) -> None:
    for run_id, started in [
        ("20260216T000000Z-bbbbbb", datetime(2026, 2, 16, tzinfo=UTC)),
        ("20260214T120000Z-aaaaaa", datetime(2026, 2, 14, 12, tzinfo=UTC)),
        ("20260216T000000Z-000000", datetime(2026, 2, 16, tzinfo=UTC)),
    ]:
        run = BronzeRun(paths, run_id=run_id, started_at=started)
        run.commit(manifest(run))

    assert [m.run_id for m in read_manifests(paths)] == [
        "20260214T120000Z-aaaaaa",
        "20260216T000000Z-000000",
        "20260216T000000Z-bbbbbb",
    ]


def test_an_unreadable_manifest_is_a_lake_error_naming_it(paths: LakePaths) -> None:
    bad = paths.runs / "ingest_date=2026-02-15" / "20260215T154712Z-abc123.json"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'{"run_id": "20260215T154712Z-abc1')

    with pytest.raises(LakeError, match=re.escape(str(bad))):
        read_manifests(paths)


def test_manifest_json_round_trips(paths: LakePaths) -> None:
    run = BronzeRun(paths, run_id="20260215T154712Z-abc123", started_at=STARTED)
    run.stage("coins_markets", 1, fetched(PAGE), records=3, trimmed_ids=["bitcoin"])
    original = manifest(run)

    raw = original.to_json()

    assert Manifest.from_json(raw) == original
    data = json.loads(raw)
    assert data["manifest_version"] == 1
    assert data["files"][0]["trimmed_ids"] == ["bitcoin"]
