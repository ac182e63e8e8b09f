"""Checks a synthetic lake: shapes against the real page, manifests against the files, and
silver (built in a scratch lake) against the bodies, value for value.

    uv run python benchmarks/synthetic_lake.py --coins 1200 --days 2 --out /tmp/small-lake
    uv run python benchmarks/verify_synthetic.py /tmp/small-lake

Reads every body with Python's json module, so keep the lake small.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from cryptolake.bronze import iso, read_manifests
from cryptolake.lake import LakePaths
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_lake import MARKETS_FIXTURE  # noqa: E402  (a sibling script, not a package)

# The fields ingest's price_change_percentage=1h,24h,7d,30d adds, in the API's order.
PCP_KEYS = [f"price_change_percentage_{w}_in_currency" for w in ("1h", "24h", "30d", "7d")]
# silver column <- API field, compared exactly (floats with ==)
SILVER_FIELDS = {
    "symbol": "symbol",
    "name": "name",
    "market_cap_rank": "market_cap_rank",
    "current_price": "current_price",
    "market_cap": "market_cap",
    "fully_diluted_valuation": "fully_diluted_valuation",
    "total_volume": "total_volume",
    "high_24h": "high_24h",
    "low_24h": "low_24h",
    "price_change_24h": "price_change_24h",
    "price_change_percentage_1h": "price_change_percentage_1h_in_currency",
    "price_change_percentage_24h": "price_change_percentage_24h_in_currency",
    "price_change_percentage_7d": "price_change_percentage_7d_in_currency",
    "price_change_percentage_30d": "price_change_percentage_30d_in_currency",
    "market_cap_change_24h": "market_cap_change_24h",
    "market_cap_change_percentage_24h": "market_cap_change_percentage_24h",
    "circulating_supply": "circulating_supply",
    "total_supply": "total_supply",
    "max_supply": "max_supply",
    "ath": "ath",
    "ath_change_percentage": "ath_change_percentage",
    "ath_at": "ath_date",
    "atl": "atl",
    "atl_change_percentage": "atl_change_percentage",
    "atl_at": "atl_date",
    "last_updated_at": "last_updated",
}


def _json_type(value: Any) -> str:
    return type(value).__name__


def _bronze_records(lake: LakePaths, problems: list[str]) -> dict[tuple[str, str], Any]:
    """Every market record by (coin id, run start), checking files and shapes on the way."""
    real = json.loads(MARKETS_FIXTURE.read_bytes())
    keys = list(real[0]) + PCP_KEYS
    allowed = {k: {_json_type(r[k]) for r in real} | {"NoneType"} for k in real[0]}
    allowed.update({k: {"float", "NoneType"} for k in PCP_KEYS})
    records: dict[tuple[str, str], Any] = {}
    for manifest in read_manifests(lake):
        for entry in manifest.files:
            body = (lake.root / entry.path).read_bytes()
            if hashlib.sha256(body).hexdigest() != entry.sha256 or len(body) != entry.bytes:
                problems.append(f"{entry.path}: sha256 or bytes differ from the manifest")
            data = json.loads(body)
            if entry.dataset != "coins_markets":
                continue
            if len(data) != entry.records:
                problems.append(f"{entry.path}: {len(data)} records, manifest: {entry.records}")
            for record in data:
                if list(record) != keys:
                    problems.append(f"{entry.path}: keys {list(record)}")
                    break
                for k, v in record.items():
                    if _json_type(v) not in allowed[k]:
                        problems.append(f"{entry.path}: {k} is a {_json_type(v)}: {v!r}")
                records[(record["id"], manifest.started_at)] = record
    return records


def _silver_rows(lake: LakePaths) -> list[dict[str, Any]]:
    """silver.market_snapshots built from this lake's bronze in a scratch lake."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bronze").symlink_to(lake.bronze)
        build_silver(Settings.resolve(env={}, lake=Path(tmp), memory_limit="2GB"))
        con = duckdb.connect()
        # naive UTC timestamps: timestamptz would need pytz to reach Python
        rel = con.sql(
            "select * replace (snapshot_at::timestamp as snapshot_at, ath_at::timestamp as "
            "ath_at, atl_at::timestamp as atl_at, last_updated_at::timestamp as "
            f"last_updated_at) from read_parquet('{tmp}/silver/market_snapshots/*/*.parquet')"
        )
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def verify(lake_root: Path) -> list[str]:
    """Problems found in the lake at `lake_root`; none means it is what it claims."""
    lake = LakePaths.at(lake_root)
    problems: list[str] = []
    expected = _bronze_records(lake, problems)
    rows = _silver_rows(lake)
    if len(rows) != len(expected):
        problems.append(f"silver has {len(rows)} market rows, bronze {len(expected)}")
    for got in rows:
        started = got["snapshot_at"].replace(tzinfo=UTC)
        where = f"{got['coin_id']} {started:%Y-%m-%dT%H:%M:%S}"
        record = expected.get((got["coin_id"], iso(started)))
        if record is None:
            problems.append(f"{where}: in silver, not in bronze")
            continue
        for column, field in SILVER_FIELDS.items():
            want, have = record[field], got[column]
            if isinstance(want, str) and field.endswith(("_date", "updated")):
                want = datetime.fromisoformat(want.removesuffix("Z"))
            if want != have:
                problems.append(f"{where} {column}: silver {have!r}, bronze {want!r}")
        roi = record["roi"] or {}
        for part in ("times", "currency", "percentage"):
            if roi.get(part) != got[f"roi_{part}"]:
                problems.append(f"{where} roi_{part}: silver {got[f'roi_{part}']!r}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(__doc__)
        return 2
    problems = verify(Path(args[0]))
    for problem in problems[:20]:
        print("  " + problem)
    print(f"{len(problems)} problems" + (" (first 20 shown)" if len(problems) > 20 else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
