"""Silver built from real recorded bodies, checked against the JSON itself (not the SQL)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryptolake import silver, silver_io
from cryptolake.bronze import read_manifests
from cryptolake.catalog import open_lake
from cryptolake.errors import LakeError, TransformError
from cryptolake.ingest import IngestResult, ingest
from cryptolake.lake import LakePaths
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import CATEGORIES, FIXTURES, GLOBAL, MARKETS, MARKETS_250, fixture_bytes
from .lakes import T0, as_float, land, settings_for, silver_rows

MARKET_FIXTURES = sorted(p.name for p in FIXTURES.glob("markets_*.json"))


def land_markets(lake: Path, *args: Any, **kwargs: Any) -> IngestResult:
    """`land` without /global: these bodies were recorded with none of their own, and silver
    sets aside a snapshot at odds with a /global of another day (test_quarantine)."""
    return land(lake, *args, datasets=("coins_markets", "coins_categories"), **kwargs)


# silver column -> API field, for every numeric column that is a plain cast of one field.
NUMERIC = {
    "current_price": "current_price",
    "market_cap": "market_cap",
    "fully_diluted_valuation": "fully_diluted_valuation",
    "total_volume": "total_volume",
    "high_24h": "high_24h",
    "low_24h": "low_24h",
    "price_change_24h": "price_change_24h",
    "price_change_percentage_1h": "price_change_percentage_1h_in_currency",
    "price_change_percentage_7d": "price_change_percentage_7d_in_currency",
    "price_change_percentage_30d": "price_change_percentage_30d_in_currency",
    "market_cap_change_24h": "market_cap_change_24h",
    "market_cap_change_percentage_24h": "market_cap_change_percentage_24h",
    "circulating_supply": "circulating_supply",
    "total_supply": "total_supply",
    "max_supply": "max_supply",
    "ath": "ath",
    "ath_change_percentage": "ath_change_percentage",
    "atl": "atl",
    "atl_change_percentage": "atl_change_percentage",
}


def partition_files(lake: Path) -> dict[str, tuple[int, int]]:
    """Every silver data file with its (size, mtime_ns): proof of what changed on disk."""
    silver = lake / "silver"
    return {
        str(p.relative_to(silver)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in silver.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("fixture", MARKET_FIXTURES)
def test_market_snapshots_equal_the_recorded_json(lake: Path, fixture: str) -> None:
    currency = "eur" if "_eur_" in fixture else "usd"
    run = land_markets(lake, fixture, vs_currency=currency)
    build_silver(settings_for(lake))

    records = {r["id"]: r for r in json.loads(fixture_bytes(fixture))}
    rows = {r["coin_id"]: r for r in silver_rows(lake)}
    assert rows.keys() == records.keys()
    for coin_id, record in records.items():
        row = rows[coin_id]
        assert row["symbol"] == record["symbol"]
        assert row["name"] == record["name"]
        assert row["vs_currency"] == currency
        assert row["run_id"] == run.run_id
        assert row["snapshot_at"] == "2026-02-15 15:47:00+00"
        rank = record.get("market_cap_rank")
        assert row["market_cap_rank"] == (None if rank is None else int(rank))
        for column, field in NUMERIC.items():
            assert row[column] == as_float(record.get(field)), (coin_id, column)
        plain_24h = record.get("price_change_percentage_24h_in_currency")
        if plain_24h is None:
            plain_24h = record.get("price_change_percentage_24h")
        assert row["price_change_percentage_24h"] == as_float(plain_24h)
        roi = record.get("roi")
        if isinstance(roi, dict):
            assert row["roi_times"] == roi["times"]
            assert row["roi_currency"] == roi["currency"]
            assert row["roi_percentage"] == roi["percentage"]
        else:  # null, or the 2018 schema's bare 0
            assert (row["roi_times"], row["roi_currency"], row["roi_percentage"]) == (None,) * 3
        if record.get("last_updated"):
            stamp = datetime.fromisoformat(record["last_updated"].replace("Z", "+00:00"))
            assert datetime.fromisoformat(row["last_updated_at"]) == stamp


def test_quirks_of_real_data_survive(lake: Path) -> None:
    land_markets(lake, MARKETS_250, at=T0)
    land(
        lake,
        "markets_usd_ids-cosmos-bitcanna-bitcoin_forbole-soljuno_2022-03-21.json",
        at=T0 + timedelta(hours=6),
    )
    land(
        lake,
        "markets_usd_1coin_legacy-string-numbers_man-c-pycoingecko_2018-08-28.json",
        at=T0 + timedelta(hours=12),
    )
    build_silver(settings_for(lake))
    rows = silver_rows(lake)
    assert min(r["current_price"] for r in rows if r["current_price"]) == 3.46535e-07
    assert 6.514e-09 in {r["price_change_24h"] for r in rows}
    assert 2.22e-16 in {r["price_change_24h"] for r in rows}
    assert max(r["total_supply"] or 0 for r in rows) > 9e14
    monero = next(r for r in rows if r["coin_id"] == "monero")
    assert monero["circulating_supply"] == 18446744.07370955
    bitcanna = next(r for r in rows if r["coin_id"] == "bitcanna")
    assert bitcanna["market_cap"] == 0 and bitcanna["market_cap_rank"] is None
    legacy = next(r for r in rows if r["snapshot_at"].startswith("2026-02-16 03:47"))
    assert legacy["price_change_24h"] == 299.72373285508  # was the string "299.72373285508"
    assert legacy["roi_times"] is None and legacy["total_supply"] is None  # "roi": 0, missing
    # The coin with every 24h field null stays a row, with nulls.
    usyc = next(r for r in rows if r["coin_id"] == "hashnote-usyc")
    assert usyc["market_cap_rank"] == 50 and usyc["current_price"] == 1.12
    assert usyc["high_24h"] is None and usyc["price_change_percentage_24h"] is None
    # A stale coin keeps its own last_updated_at, days before the snapshot.
    assert usyc["last_updated_at"].startswith("2026-02-10 05:42:11.457")


def test_global_and_categories(lake: Path) -> None:
    run = land(lake)
    build_silver(settings_for(lake))
    body = json.loads(fixture_bytes(GLOBAL))["data"]
    (g,) = silver_rows(lake, "global_snapshots")
    assert g["run_id"] == run.run_id
    assert g["total_market_cap"] == body["total_market_cap"]["usd"]
    assert g["total_volume"] == body["total_volume"]["usd"]
    assert g["btc_market_cap_percentage"] == body["market_cap_percentage"]["btc"]
    assert g["active_cryptocurrencies"] == body["active_cryptocurrencies"]
    assert dict(g["market_cap_percentage"]) == body["market_cap_percentage"]

    categories = json.loads(fixture_bytes(CATEGORIES))
    rows = {r["category_id"]: r for r in silver_rows(lake, "category_snapshots")}
    assert rows.keys() == {c["id"] for c in categories}
    for c in categories:
        row = rows[c["id"]]
        assert row["market_cap_usd"] == as_float(c["market_cap"])
        assert row["market_cap_change_percentage_24h"] == as_float(c["market_cap_change_24h"])
        assert row["volume_24h_usd"] == as_float(c["volume_24h"])
        assert row["description"] == (c["content"] or None)


def test_trimmed_records_stay_in_bronze_but_not_silver(lake: Path) -> None:
    land_markets(lake, MARKETS_250, top=120, per_page=50)
    build_silver(settings_for(lake))
    records = json.loads(fixture_bytes(MARKETS_250))
    assert sorted(r["coin_id"] for r in silver_rows(lake)) == sorted(r["id"] for r in records[:120])


def test_duplicate_coin_across_pages_keeps_one_row(lake: Path) -> None:
    # Page 1 and page 2 overlap by one coin, as when the ranking shifts while paging.
    records = json.loads(fixture_bytes(MARKETS_250))[:4]
    shifted = dict(records[1], last_updated="2030-01-01T00:00:00.000Z", current_price=1.5)
    data = ReplayData(markets=json.dumps(records[:2] + [shifted] + records[2:]).encode())
    with ReplayServer(data) as server:
        settings = Settings.resolve(
            env={}, lake=lake, api_url=server.api_url, rate=60_000.0, top=5, per_page=2
        )
        ingest(settings, datasets=["coins_markets"], now=lambda: T0)
    build_silver(settings_for(lake))
    rows = silver_rows(lake)
    assert len(rows) == 4
    duplicate = next(r for r in rows if r["coin_id"] == records[1]["id"])
    assert duplicate["current_price"] == 1.5  # the fresher quote wins


def test_incremental_adds_then_is_a_no_op_on_disk(lake: Path) -> None:
    land_markets(lake, MARKETS_250, at=T0)
    first = build_silver(settings_for(lake))
    assert [t.rows_added for t in first.tables] == [250, 0, 90, 0, 0]

    land_markets(lake, MARKETS, at=T0 + timedelta(hours=6))
    land_markets(lake, MARKETS, at=T0 + timedelta(days=1))
    second = build_silver(settings_for(lake))
    assert len(second.runs) == 2
    market = second.tables[0]
    assert (market.rows_added, market.partitions_written) == (200, 2)
    assert len(silver_rows(lake)) == 450
    assert sorted(os.listdir(lake / "silver" / "market_snapshots")) == [
        "snapshot_date=2026-02-15",
        "snapshot_date=2026-02-16",
    ]

    before = partition_files(lake)
    third = build_silver(settings_for(lake))
    assert not third.changed
    assert partition_files(lake) == before


def test_incremental_rewrites_only_touched_partitions(lake: Path) -> None:
    land_markets(lake, MARKETS_250, at=T0)
    land_markets(lake, MARKETS_250, at=T0 + timedelta(days=1))
    build_silver(settings_for(lake))
    before = partition_files(lake)
    land_markets(lake, MARKETS_250, at=T0 + timedelta(days=1, hours=6))
    build_silver(settings_for(lake))
    after = partition_files(lake)
    day1 = "market_snapshots/snapshot_date=2026-02-15/"
    day2 = "market_snapshots/snapshot_date=2026-02-16/"
    # Day 1's files are untouched; the new snapshot is one new file in day 2 (DuckLake never
    # rewrites a file: an upsert adds files, and deletes, of the partitions it touches).
    assert {p: v for p, v in after.items() if p.startswith(day1)} == {
        p: v for p, v in before.items() if p.startswith(day1)
    }
    added = sorted(set(after) - set(before))
    assert [p for p in added if p.startswith("market_snapshots/")] == [
        p for p in added if p.startswith(day2)
    ]
    assert len([p for p in added if p.startswith(day2)]) == 1
    assert set(before) <= set(after)


def test_failed_and_incomplete_runs_are_ignored(lake: Path) -> None:
    land_markets(lake, MARKETS_250, at=T0)
    # A run killed after landing its bodies but before its manifest: no manifest, no silver.
    orphan = lake / "bronze/coins_markets/ingest_date=2026-02-15/20260215T200000Z-dead00-p0001.json"
    orphan.write_bytes(fixture_bytes("markets_usd_JKorf-CoinGecko.Net_2023-01-08.json"))
    build_silver(settings_for(lake))
    assert len(silver_rows(lake)) == 250


def test_crash_mid_write_keeps_silver_readable_and_next_run_repairs(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land_markets(lake, MARKETS_250, at=T0)
    build_silver(settings_for(lake))
    good = silver_rows(lake)
    land_markets(lake, MARKETS, at=T0 + timedelta(hours=6))
    land_markets(lake, MARKETS, at=T0 + timedelta(days=1))

    real_upsert = silver_io.upsert_batch
    calls = {"n": 0}

    def crash_on_second(*args: Any, **kwargs: Any) -> tuple[int, list[str]]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device (disk pulled out)")
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(silver, "upsert_batch", crash_on_second)
    with pytest.raises(LakeError, match="disk full"):
        build_silver(settings_for(lake))
    monkeypatch.undo()

    # One transaction: silver is exactly as before (not one table half-updated), and the new
    # runs are not recorded as processed.
    assert silver_rows(lake) == good
    with open_lake(settings_for(lake), read_only=True) as con:
        assert len(silver.processed_runs(con)) == 1

    repaired = build_silver(settings_for(lake))
    assert len(repaired.runs) == 2
    assert len(silver_rows(lake)) == 450


def test_transform_error_is_a_cryptolake_error(lake: Path) -> None:
    run = land_markets(lake, MARKETS_250, at=T0)
    body = lake / read_manifests(LakePaths.at(lake))[0].files[0].path
    body.chmod(0o644)
    broken = b'[{"id": "x", '
    body.write_bytes(broken)  # a body DuckDB cannot parse...
    # ...that its manifest vouches for (else it is quarantined: test_bronze_verify.py).
    manifest = next((lake / "bronze" / "_runs").glob(f"*/{run.run_id}.json"))
    data = json.loads(manifest.read_bytes())
    data["files"][0] |= {"sha256": hashlib.sha256(broken).hexdigest(), "bytes": len(broken)}
    manifest.write_text(json.dumps(data))
    with pytest.raises(TransformError, match="cryptolake transform"):
        build_silver(settings_for(lake))


def test_full_refresh_equals_incremental(lake: Path) -> None:
    for i, fixture in enumerate(MARKET_FIXTURES[:5]):
        currency = "eur" if "_eur_" in fixture else "usd"
        if currency == "eur":
            continue
        land_markets(lake, fixture, at=T0 + timedelta(hours=7 * i))
        build_silver(settings_for(lake))
    tables = ("market_snapshots", "category_snapshots")  # landed without /global
    incremental = {t: sorted(map(repr, silver_rows(lake, t))) for t in tables}
    result = build_silver(settings_for(lake), full_refresh=True)
    assert result.full_refresh
    refreshed = {t: sorted(map(repr, silver_rows(lake, t))) for t in tables}
    assert refreshed == incremental


def test_schema_drift_reads_by_name(lake: Path) -> None:
    """Reordered keys, a field the API adds later and a field it dropped shift nothing."""
    records = json.loads(fixture_bytes(MARKETS_250))[:10]
    drifted = []
    for record in records:
        changed = dict(reversed(list(record.items())))
        changed["some_future_field"] = {"nested": [1, 2, 3]}
        del changed["max_supply"]
        drifted.append(changed)
    data = ReplayData(markets=json.dumps(drifted).encode())
    with ReplayServer(data) as server:
        settings = Settings.resolve(
            env={}, lake=lake, api_url=server.api_url, rate=60_000.0, top=10
        )
        ingest(settings, datasets=["coins_markets"], now=lambda: T0)
    build_silver(settings_for(lake))
    rows = {r["coin_id"]: r for r in silver_rows(lake)}
    assert "some_future_field" not in next(iter(rows.values()))
    for record in records:
        row = rows[record["id"]]
        assert row["max_supply"] is None
        assert row["ath"] == as_float(record["ath"])
        assert row["current_price"] == as_float(record["current_price"])
        assert row["atl"] == as_float(record["atl"])
        assert row["market_cap_rank"] == record["market_cap_rank"]
