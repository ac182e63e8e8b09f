"""Schema contracts: the fields each dataset's bodies must carry for gold's figures to be right.

A body that lacks a field gold needs in most of its records (the API renamed `current_price`
to `price`, say) would turn into null prices everywhere while the run succeeds. Ingest checks
every body against its dataset's contract and fails the run naming the missing fields and the
body file, so nothing built on it is ever published. Fields the contract does not know (the
API added one) are kept in bronze, which is verbatim, recorded in the manifest and reported,
never fatal: silver reads fields by name and ignores the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A required field must be present (null or not) in more than this share of a body's records.
MIN_PRESENT_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Contract:
    required: frozenset[str]  # what gold needs
    known: frozenset[str]  # every field cryptolake knows, read by silver or ignored on purpose
    records: Callable[[Any], list[Any]]  # the records of a body (an array, or one object)


@dataclass(frozen=True, slots=True)
class BodyReport:
    records: int
    missing: Mapping[str, int]  # required field -> records that have it (too few)
    unknown: tuple[str, ...]  # fields no contract knows, sorted

    @property
    def ok(self) -> bool:
        return not self.missing


def _array(data: Any) -> list[Any]:
    return data if isinstance(data, list) else []


def _global(data: Any) -> list[Any]:
    inner = data.get("data") if isinstance(data, dict) else None
    return [inner] if isinstance(inner, dict) else []


_PCT_WINDOWS = ("1h", "24h", "7d", "14d", "30d", "200d", "1y")

CONTRACTS: dict[str, Contract] = {
    "coins_markets": Contract(
        required=frozenset(
            {
                "id",
                "symbol",
                "name",
                "current_price",
                "market_cap",
                "market_cap_rank",
                "total_volume",
                "high_24h",
                "low_24h",
                "price_change_percentage_24h",
                "ath",
                "circulating_supply",
                "last_updated",
            }
        ),
        known=frozenset(
            {
                "id",
                "symbol",
                "name",
                "image",
                "current_price",
                "market_cap",
                "market_cap_rank",
                "fully_diluted_valuation",
                "total_volume",
                "high_24h",
                "low_24h",
                "price_change_24h",
                "price_change_percentage_24h",
                "market_cap_change_24h",
                "market_cap_change_percentage_24h",
                "circulating_supply",
                "total_supply",
                "max_supply",
                "ath",
                "ath_change_percentage",
                "ath_date",
                "atl",
                "atl_change_percentage",
                "atl_date",
                "roi",
                "last_updated",
                "sparkline_in_7d",
                *(f"price_change_percentage_{w}_in_currency" for w in _PCT_WINDOWS),
            }
        ),
        records=_array,
    ),
    "global": Contract(
        required=frozenset({"total_market_cap", "total_volume", "market_cap_percentage"}),
        known=frozenset(
            {
                "active_cryptocurrencies",
                "upcoming_icos",
                "ongoing_icos",
                "ended_icos",
                "markets",
                "total_market_cap",
                "total_volume",
                "market_cap_percentage",
                "market_cap_change_percentage_24h_usd",
                "updated_at",
            }
        ),
        records=_global,
    ),
    "coins_categories": Contract(
        required=frozenset({"id", "name", "market_cap", "volume_24h"}),
        known=frozenset(
            {
                "id",
                "name",
                "market_cap",
                "market_cap_change_24h",
                "content",
                "top_3_coins",
                "top_3_coins_id",
                "volume_24h",
                "updated_at",
            }
        ),
        records=_array,
    ),
}


def check_body(dataset: str, data: Any) -> BodyReport:
    """How one parsed body of `dataset` measures up to its contract."""
    contract = CONTRACTS[dataset]
    records = [r for r in contract.records(data) if isinstance(r, dict)]
    present: Counter[str] = Counter()
    for record in records:
        present.update(record.keys())
    missing = {}
    if records:
        for name in sorted(contract.required):
            if present[name] <= MIN_PRESENT_SHARE * len(records):
                missing[name] = present[name]
    unknown = tuple(sorted(set(present) - contract.known))
    return BodyReport(records=len(records), missing=missing, unknown=unknown)


def describe_missing(report: BodyReport) -> str:
    """`current_price (in 0 of 250 records), ...` for messages."""
    return ", ".join(
        f"{name} (in {count} of {report.records} records)" for name, count in report.missing.items()
    )
