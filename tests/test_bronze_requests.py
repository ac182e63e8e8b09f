"""History requests land body first, manifests in durable groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptolake.bronze import BronzeFile, Manifest, read_manifests
from cryptolake.bronze_requests import RequestLanding, history_body_path, sync_file_system
from cryptolake.lake import LakePaths

from .conftest import fixture_bytes

CHART = "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"


def request(number: int, coin: str, body: bytes | None) -> Manifest:
    request_id = f"20261130T120000Z-abcdef-h{number:05d}"
    files = []
    if body is not None:
        files.append(
            BronzeFile(
                dataset="coin_market_chart",
                page=1,
                path=history_body_path(
                    dataset="coin_market_chart",
                    ingest_date="2026-11-30",
                    request_id=request_id,
                    coin_id=coin,
                ),
                url="http://127.0.0.1/api/v3/coins/x/market_chart",
                params={},
                http_status=200,
                fetched_at="2026-11-30T12:00:00.000000Z",
                attempts=1,
                sha256="",
                bytes=len(body),
                records=0,
                coin_id=coin,
            )
        )
    return Manifest(
        run_id=request_id,
        status="complete" if body is not None else "skipped",
        source="api",
        started_at="2026-11-30T12:00:00.000000Z",
        finished_at="2026-11-30T12:00:00.100000Z",
        ingest_date="2026-11-30",
        api_url="http://127.0.0.1/api/v3",
        api_plan="demo",
        keyed=False,
        vs_currency="usd",
        top=0,
        per_page=0,
        files=files,
        kind="history",
        dataset="coin_market_chart",
        coin_id=coin,
        days=365,
    )


def test_bodies_land_at_once_and_manifests_at_the_flush(tmp_path: Path) -> None:
    lake = LakePaths.at(tmp_path)
    landing = RequestLanding(lake, max_delay_s=60)
    body = fixture_bytes(CHART)
    landing.land(request(1, "bitcoin", body), body)
    landing.land(request(2, "gone", None), None)
    assert read_manifests(lake, status=None) == []  # no manifest before the flush
    assert [p.read_bytes() for p in (tmp_path / "bronze").rglob("*-bitcoin.json")] == [body]
    assert not landing.due
    assert landing.flush() == 2 and landing.committed == 2
    assert [(m.coin_id, m.status) for m in read_manifests(lake, status=None)] == [
        ("bitcoin", "complete"),
        ("gone", "skipped"),
    ]
    assert landing.flush() == 0
    assert not list(tmp_path.rglob(".*.tmp"))  # no temp file left behind


def test_a_manifest_that_cannot_be_written_takes_its_body_away(tmp_path: Path) -> None:
    lake = LakePaths.at(tmp_path)
    landing = RequestLanding(lake)
    body = fixture_bytes(CHART)
    landing.land(request(1, "bitcoin", body), body)
    lake.runs.parent.mkdir(parents=True, exist_ok=True)
    lake.runs.write_text("not a folder")  # the manifests' folder cannot be made
    with pytest.raises(OSError):
        landing.flush()
    assert not list((tmp_path / "bronze" / "coin_market_chart").rglob("*.json"))


def test_a_body_is_never_written_over(tmp_path: Path) -> None:
    lake = LakePaths.at(tmp_path)
    body = fixture_bytes(CHART)
    RequestLanding(lake).land(request(1, "bitcoin", body), body)
    with pytest.raises(FileExistsError):
        RequestLanding(lake).land(request(1, "bitcoin", b"{}"), b"{}")


def test_sync_file_system_flushes_a_real_folder(tmp_path: Path) -> None:
    sync_file_system(tmp_path)  # no error on a real file system
    with pytest.raises(OSError):
        sync_file_system(tmp_path / "missing")
