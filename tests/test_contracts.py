"""Schema contracts at ingest: a renamed field fails the run; a new field is kept and reported."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cryptolake.bronze import read_manifests
from cryptolake.contracts import check_body
from cryptolake.errors import ContractError
from cryptolake.lake import LakePaths

from .conftest import GLOBAL, MARKETS, fixture_bytes
from .lakes import T0, land

RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS))


def renamed(share: float, old: str = "current_price", new: str = "price") -> bytes:
    """The recorded page with `old` renamed to `new` in the first `share` of its records."""
    cut = int(len(RECORDS) * share)
    out = []
    for i, record in enumerate(RECORDS):
        record = dict(record)
        if i < cut:
            record[new] = record.pop(old)
        out.append(record)
    return json.dumps(out).encode()


def dataset_files(lake: Path) -> list[Path]:
    return [
        p
        for p in (lake / "bronze").rglob("*.json")
        if not p.relative_to(lake / "bronze").parts[0].startswith("_")
    ]


def test_a_renamed_field_fails_the_run_naming_the_field_and_keeping_the_body(lake: Path) -> None:
    with pytest.raises(ContractError) as raised:
        land(lake, renamed(1.0))
    message = str(raised.value)
    (manifest,) = read_manifests(LakePaths.at(lake), status="failed")
    (markets,) = [f for f in manifest.files if f.dataset == "coins_markets"]
    kept = lake / markets.path
    assert markets.path.startswith(f"bronze/_rejected/{manifest.run_id}/coins_markets/")
    assert message == (
        "CoinGecko /coins/markets sent a body without fields gold needs: current_price (in 0 of "
        "100 records). The API may have renamed them; the run was not landed and nothing was "
        f"published. The body is kept at {kept}."
    )
    assert kept.read_bytes() == renamed(1.0)  # verbatim, as evidence
    assert markets.unknown_fields == ["price"]
    assert manifest.error == message
    assert dataset_files(lake) == []  # nothing for silver to read


@pytest.mark.parametrize(("share", "fails"), [(0.49, False), (0.5, True), (0.9, True)])
def test_a_field_must_be_in_most_records(lake: Path, share: float, fails: bool) -> None:
    # `share` of the records lack current_price: over half lacking it fails the body.
    report = check_body("coins_markets", json.loads(renamed(share)))
    assert (not report.ok) == fails
    if fails:
        assert report.missing == {"current_price": 100 - int(100 * share)}


def test_a_global_body_without_totals_fails(lake: Path) -> None:
    body = json.loads(fixture_bytes(GLOBAL))
    body["data"]["total_mcap"] = body["data"].pop("total_market_cap")
    with pytest.raises(ContractError, match=r"total_market_cap \(in 0 of 1 records\)"):
        land(lake, global_body=json.dumps(body).encode())


def test_a_new_field_is_kept_and_reported_once(lake: Path) -> None:
    added = [dict(r, fully_diluted_market_cap_rank=r["market_cap_rank"]) for r in RECORDS]
    body = json.dumps(added).encode()
    first = land(lake, body, at=T0)
    assert first.notes == [
        "coins_markets: CoinGecko sent 1 field(s) cryptolake does not read: "
        "fully_diluted_market_cap_rank (kept in bronze; silver ignores them)."
    ]
    second = land(lake, body, at=T0 + timedelta(hours=6))
    assert second.notes == []  # already reported
    for manifest in read_manifests(LakePaths.at(lake)):
        (markets,) = [f for f in manifest.files if f.dataset == "coins_markets"]
        assert markets.unknown_fields == ["fully_diluted_market_cap_rank"]
