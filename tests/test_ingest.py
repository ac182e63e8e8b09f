"""Ingestion end to end: loopback CoinGecko -> bronze on tmp_path, read back with DuckDB."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest
from pytest_httpserver import HTTPServer

from cryptolake.bronze import BronzeFile, Manifest, read_manifests
from cryptolake.errors import ApiError, ConfigError, LakeError
from cryptolake.ingest import IngestResult, ingest, sweep_incoming
from cryptolake.lake import LakePaths
from cryptolake.progress import Progress
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings

from .conftest import (
    CATEGORIES,
    GLOBAL,
    MARKETS,
    MARKETS_250,
    FakeTime,
    fixture_bytes,
    replay_data,
)

IDS = [r["id"] for r in json.loads(fixture_bytes(MARKETS_250))]
RUN_DATE = "2026-02-15"  # FakeTime starts at 2026-02-15 15:47:12 UTC
KEY = "CG-kq9XtT2vB7w1s8Rz4pLm"
JSON = "application/json; charset=utf-8"


def run_ingest(settings: Settings, fake_time: FakeTime, **kwargs: Any) -> IngestResult:
    with fake_time.client(settings) as client:
        return ingest(settings, client=client, now=fake_time.now, **kwargs)


def markets_queries(requests: Sequence[str]) -> list[dict[str, str]]:
    """The query of every /coins/markets request the replay server saw, in order."""
    found = []
    for raw in requests:
        parts = urlsplit(raw)
        if parts.path == "/api/v3/coins/markets":
            found.append({k: v[-1] for k, v in parse_qs(parts.query).items()})
    return found


def markets_query(per_page: int, page: int) -> dict[str, str]:
    return {
        "vs_currency": "usd",
        "order": "market_cap_desc",
        "per_page": str(per_page),
        "page": str(page),
        "sparkline": "false",
        "price_change_percentage": "1h,24h,7d,30d",
    }


def markets_files(result: IngestResult) -> list[BronzeFile]:
    manifest = Manifest.from_json(Path(result.manifest_path).read_bytes())
    return [f for f in manifest.files if f.dataset == "coins_markets"]


def lake_files(lake: Path) -> list[Path]:
    return sorted(p for p in lake.rglob("*") if p.is_file())


def visible_bodies(lake: Path) -> list[Path]:
    """Files in any bronze dataset folder (everything but _runs and _incoming)."""
    return [
        p
        for p in lake_files(lake)
        if p.parts[len(lake.parts)] == "bronze" and not p.parts[len(lake.parts) + 1].startswith("_")
    ]


def only_manifest(lake: Path) -> Manifest:
    (path,) = LakePaths.at(lake).runs.glob("ingest_date=*/*.json")
    return Manifest.from_json(path.read_bytes())


def read_markets(lake: Path) -> list[tuple[str, str]]:
    """(id, ingest_date) of every bronze market record, read the way downstream reads them."""
    return duckdb.sql(
        f"""
        select id, ingest_date::varchar
        from read_json(
            '{lake}/bronze/coins_markets/*/*.json', hive_partitioning=true, format='array'
        )
        """
    ).fetchall()


# --- pagination ------------------------------------------------------------------------------


def test_pages_are_requested_until_top_and_the_excess_is_trimmed(
    settings: Settings, replay: ReplayServer, fake_time: FakeTime, lake: Path
) -> None:
    result = run_ingest(settings.with_(top=120, per_page=50), fake_time)

    assert markets_queries(replay.requests) == [markets_query(50, p) for p in (1, 2, 3)]
    assert [urlsplit(r).path for r in replay.requests] == [
        "/api/v3/coins/markets",
        "/api/v3/coins/markets",
        "/api/v3/coins/markets",
        "/api/v3/global",
        "/api/v3/coins/categories",
    ]
    files = markets_files(result)
    served = [replay_data().markets_page(50, page) for page in (1, 2, 3)]
    assert [(lake / f.path).read_bytes() for f in files] == served
    assert [f.sha256 for f in files] == [hashlib.sha256(b).hexdigest() for b in served]
    assert [f.records for f in files] == [50, 50, 50]
    assert [f.trimmed_ids for f in files] == [[], [], IDS[120:150]]
    markets, global_, categories = result.datasets
    assert (markets.dataset, markets.pages, markets.records) == ("coins_markets", 3, 120)
    assert markets.bytes == sum(len(b) for b in served)
    assert (global_.dataset, global_.pages, global_.records) == ("global", 1, 1)
    assert (categories.dataset, categories.records) == ("coins_categories", 90)
    assert result.records == 211
    assert (result.requests, result.retries) == (5, 0)


def test_a_short_page_ends_the_list(
    settings: Settings, replay: ReplayServer, fake_time: FakeTime
) -> None:
    result = run_ingest(settings.with_(top=1000, per_page=100), fake_time)

    assert markets_queries(replay.requests) == [markets_query(100, p) for p in (1, 2, 3)]
    files = markets_files(result)
    assert [(f.page, f.records, f.trimmed_ids) for f in files] == [
        (1, 100, []),
        (2, 100, []),
        (3, 50, []),
    ]
    assert (result.datasets[0].pages, result.datasets[0].records) == (3, 250)


def test_an_empty_page_ends_the_list(
    settings: Settings, replay: ReplayServer, fake_time: FakeTime, lake: Path
) -> None:
    result = run_ingest(settings.with_(top=500, per_page=250), fake_time)

    assert markets_queries(replay.requests) == [markets_query(250, p) for p in (1, 2)]
    first, second = markets_files(result)
    # Page 1 is the recorded body itself, byte for byte; page 2 is the API's empty array.
    assert (lake / first.path).read_bytes() == fixture_bytes(MARKETS_250)
    assert (lake / second.path).read_bytes() == b"[]"
    assert (first.records, second.records) == (250, 0)
    assert result.datasets[0].records == 250
    assert len(read_markets(lake)) == 250


def test_exactly_one_full_page_needs_one_request(
    settings: Settings, replay: ReplayServer, fake_time: FakeTime, lake: Path
) -> None:
    result = run_ingest(settings.with_(top=250, per_page=250), fake_time)

    assert markets_queries(replay.requests) == [markets_query(250, 1)]
    (page,) = markets_files(result)
    assert (lake / page.path).read_bytes() == fixture_bytes(MARKETS_250)


# --- what lands in bronze --------------------------------------------------------------------


def test_bronze_reads_back_in_duckdb_as_exactly_the_fetched_records(
    settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    run_ingest(settings.with_(top=120, per_page=50), fake_time)

    rows = read_markets(lake)

    # Bronze is verbatim: the 30 records past --top are in it (silver drops them).
    assert len(rows) == 150
    assert sorted(r[0] for r in rows) == sorted(IDS[:150])
    assert {r[1] for r in rows} == {RUN_DATE}
    bitcoin = duckdb.sql(
        f"select current_price, market_cap_rank from read_json("
        f"'{lake}/bronze/coins_markets/*/*.json', hive_partitioning=true, format='array') "
        "where id = 'bitcoin'"
    ).fetchall()
    assert bitcoin == [(69014, 1)]
    categories = duckdb.sql(
        f"select count(*), count(distinct id) from read_json("
        f"'{lake}/bronze/coins_categories/*/*.json', hive_partitioning=true, format='array')"
    ).fetchone()
    assert categories == (90, 90)
    assert len(json.loads(fixture_bytes(CATEGORIES))) == 90


def test_two_runs_on_one_day_land_side_by_side(settings: Settings, lake: Path) -> None:
    first = run_ingest(settings.with_(top=100, per_page=100), FakeTime())
    second = run_ingest(settings.with_(top=100, per_page=100), FakeTime())

    assert first.run_id != second.run_id
    assert [m.run_id for m in read_manifests(LakePaths.at(lake))] == sorted(
        [first.run_id, second.run_id]
    )
    rows = read_markets(lake)
    assert len(rows) == 200
    assert {r[1] for r in rows} == {RUN_DATE}


def test_the_manifest_describes_the_run(
    settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    result = run_ingest(settings.with_(top=120, per_page=50), fake_time)

    manifest = Manifest.from_json(Path(result.manifest_path).read_bytes())
    assert Path(result.manifest_path) == (
        LakePaths.at(lake).runs / f"ingest_date={RUN_DATE}" / f"{result.run_id}.json"
    )
    assert re.fullmatch(r"20260215T154712Z-[0-9a-f]{6}", result.run_id)
    assert manifest.run_id == result.run_id
    assert (manifest.status, manifest.source, manifest.error) == ("complete", "api", None)
    assert manifest.started_at == "2026-02-15T15:47:12.000000Z"
    assert manifest.ingest_date == RUN_DATE
    assert (manifest.api_url, manifest.api_plan, manifest.keyed) == (
        settings.api_url,
        "demo",
        False,
    )
    assert (manifest.vs_currency, manifest.top, manifest.per_page) == ("usd", 120, 50)
    assert [(f.dataset, f.page) for f in manifest.files] == [
        ("coins_markets", 1),
        ("coins_markets", 2),
        ("coins_markets", 3),
        ("global", 1),
        ("coins_categories", 1),
    ]
    for entry in manifest.files:
        body = (lake / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(body).hexdigest()
        assert (entry.bytes, entry.http_status, entry.attempts) == (len(body), 200, 1)
        assert entry.path.startswith(f"bronze/{entry.dataset}/ingest_date={RUN_DATE}/")
    assert manifest.files[3].url == f"{settings.api_url}/global"
    assert manifest.files[2].params == markets_query(50, 3)
    assert visible_bodies(lake) == sorted(lake / f.path for f in manifest.files)
    assert [p for p in lake_files(lake) if "_incoming" in p.parts] == []


def test_datasets_can_be_chosen(
    settings: Settings, replay: ReplayServer, fake_time: FakeTime, lake: Path
) -> None:
    result = run_ingest(settings, fake_time, datasets=["global"])

    assert replay.requests == ["/api/v3/global"]
    assert [d.dataset for d in result.datasets] == ["global"]
    (body,) = visible_bodies(lake)
    assert body.read_bytes() == fixture_bytes(GLOBAL)


@pytest.mark.parametrize("datasets", [["prices"], []])
def test_unknown_datasets_are_a_config_error(
    settings: Settings, replay: ReplayServer, datasets: list[str]
) -> None:
    with pytest.raises(ConfigError, match="choose from coins_markets, global, coins_categories"):
        ingest(settings, datasets=datasets)

    assert replay.requests == []


# --- the key ---------------------------------------------------------------------------------


def test_the_key_is_sent_as_a_header_and_lands_nowhere(
    httpserver: HTTPServer, lake: Path, fake_time: FakeTime
) -> None:
    header = {"x-cg-demo-api-key": KEY}
    for uri, body in [
        ("/api/v3/coins/markets", fixture_bytes(MARKETS_250)),
        ("/api/v3/global", fixture_bytes(GLOBAL)),
        ("/api/v3/coins/categories", fixture_bytes(CATEGORIES)),
    ]:
        httpserver.expect_request(uri, headers=header).respond_with_data(body, content_type=JSON)
    settings = Settings.resolve(
        env={"CRYPTOLAKE_API_KEY": KEY},
        lake=lake,
        api_url=httpserver.url_for("/api/v3"),
        rate=60_000.0,
    )

    result = run_ingest(settings, fake_time)

    httpserver.check_assertions()
    assert len(httpserver.log) == 3
    for request, response in httpserver.log:
        assert response.status_code == 200
        assert request.headers["x-cg-demo-api-key"] == KEY
        assert KEY not in request.url
    assert result.records == 250 + 1 + 90
    assert only_manifest(lake).keyed is True
    files = lake_files(lake)
    assert len(files) == 4  # three bodies and the manifest
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
        assert KEY not in str(path)
    assert KEY not in repr(result)


# --- failures leave nothing visible ----------------------------------------------------------


def test_retries_exhausted_leave_only_a_failed_manifest(
    httpserver: HTTPServer, lake: Path, fake_time: FakeTime
) -> None:
    httpserver.expect_request("/api/v3/coins/markets").respond_with_data(
        b"<!DOCTYPE html><html><title>503 Service Unavailable</title></html>",
        status=503,
        content_type="text/html",
    )
    settings = Settings.resolve(
        env={}, lake=lake, api_url=httpserver.url_for("/api/v3"), rate=60_000.0, max_attempts=3
    )

    with pytest.raises(ApiError) as raised:
        run_ingest(settings, fake_time)

    assert str(raised.value).startswith(
        "CoinGecko /coins/markets failed after 3 attempts; last: HTTP 503 with an HTML page"
    )
    assert len(httpserver.log) == 3
    assert visible_bodies(lake) == []
    assert not LakePaths.at(lake).dataset("coins_markets").exists()
    manifest = only_manifest(lake)
    assert (manifest.status, manifest.error, manifest.files) == ("failed", str(raised.value), [])
    assert lake_files(lake) == [
        LakePaths.at(lake).runs / f"ingest_date={RUN_DATE}" / (manifest.run_id + ".json")
    ]
    assert read_manifests(LakePaths.at(lake)) == []


def test_a_failure_in_the_second_dataset_lands_nothing(lake: Path, fake_time: FakeTime) -> None:
    data = ReplayData(
        markets=fixture_bytes(MARKETS_250),
        bodies={"/coins/categories": fixture_bytes(CATEGORIES)},  # no /global: HTTP 404
    )
    with ReplayServer(data) as server:
        settings = Settings.resolve(env={}, lake=lake, api_url=server.api_url, rate=60_000.0)
        with pytest.raises(ApiError, match="CoinGecko /global failed: HTTP 404"):
            run_ingest(settings.with_(top=100, per_page=50), fake_time)
        assert [urlsplit(r).path for r in server.requests] == [
            "/api/v3/coins/markets",
            "/api/v3/coins/markets",
            "/api/v3/global",
        ]

    assert visible_bodies(lake) == []
    manifest = only_manifest(lake)
    assert manifest.status == "failed"
    assert "HTTP 404" in (manifest.error or "")
    assert len(lake_files(lake)) == 1


def test_an_interrupt_during_the_second_dataset_lands_nothing(
    settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    def interrupt_at_global(event: Progress) -> None:
        if event.task == "global":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ingest(settings, fake_time, progress=interrupt_at_global)

    assert visible_bodies(lake) == []
    manifest = only_manifest(lake)
    assert (manifest.status, manifest.error) == ("failed", "interrupted (Ctrl-C)")
    assert len(lake_files(lake)) == 1


def test_a_crash_mid_write_leaves_no_partial_file(
    settings: Settings, fake_time: FakeTime, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk fails while page 2 is synced (page 1 took two fsyncs: file and folder).
    real_fsync = os.fsync
    calls = 0

    def fsync_failing_once(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_once)

    with pytest.raises(LakeError) as raised:
        run_ingest(settings.with_(top=150, per_page=50), fake_time)

    assert str(raised.value) == (
        f"Cannot write bronze in {lake}: input/output error (a failing disk?). "
        "Check the disk (dmesg)."
    )
    manifest = only_manifest(lake)
    assert manifest.status == "failed"
    assert manifest.error == str(raised.value)
    assert [p.name for p in lake_files(lake)] == [f"{manifest.run_id}.json"]
    assert list((lake / "bronze").glob("*/*/*.json")) == [
        LakePaths.at(lake).runs / f"ingest_date={RUN_DATE}" / f"{manifest.run_id}.json"
    ]


# --- the bundled sample ----------------------------------------------------------------------


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


def test_sample_ingests_offline_through_the_same_code_path(lake: Path) -> None:
    # The configured API is unreachable and keyed: the sample must use neither.
    settings = Settings.resolve(
        env={"CRYPTOLAKE_API_KEY": KEY},
        lake=lake,
        api_url=f"http://127.0.0.1:{closed_port()}/api/v3",
    )

    result = ingest(settings, sample=True)

    assert result.source == "sample"
    assert [(d.dataset, d.records) for d in result.datasets] == [
        ("coins_markets", 100),
        ("global", 1),
        ("coins_categories", 90),
    ]
    # The sample is the three bodies recorded together: its list ends at 100 coins.
    assert result.notes == [
        f"--sample wins over --api-url: the bundled recorded responses were replayed; "
        f"{settings.api_url} was not asked.",
        "The API lists 100 coins, fewer than --top 250: all of them were fetched.",
    ]
    manifest = Manifest.from_json(Path(result.manifest_path).read_bytes())
    assert (manifest.source, manifest.api_url) == ("sample", "sample (bundled recorded responses)")
    assert manifest.keyed is False
    assert manifest.notes == result.notes
    (markets,) = markets_files(result)
    assert (lake / markets.path).read_bytes() == fixture_bytes(MARKETS)
    for path in lake_files(lake):
        assert KEY.encode() not in path.read_bytes()


def test_sample_holds_usd_only(lake: Path) -> None:
    settings = Settings.resolve(env={}, lake=lake, vs_currency="eur")

    with pytest.raises(ConfigError, match="usd prices only"):
        ingest(settings, sample=True)


def test_staging_left_by_a_killed_run_is_swept_after_an_hour(lake: Path) -> None:
    paths = LakePaths.at(lake)
    old = paths.incoming / "20260101T000000Z-dead01" / "bronze" / "global"
    fresh = paths.incoming / "20260101T000000Z-live02" / "bronze" / "global"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "body.json").write_bytes(b"{}")
    hours_ago = time.time() - 2 * 3600
    for path in [old.parents[1], *old.parents[1].rglob("*")]:
        os.utime(path, (hours_ago, hours_ago))
    assert sweep_incoming(paths) == 1
    assert not old.parents[1].exists() and fresh.exists()
