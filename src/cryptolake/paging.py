"""Paging `/coins/markets`: the top N coins by market cap, each counted once, none lost.

CoinGecko lists about 17-19k coins, `per_page` at a time, ordered by market cap, and says how
many in the `total` header. Three things go wrong on the real API, and each is handled here:

- **An empty first page** (`[]` with HTTP 200) is a hiccup, never "no coins": retried like a
  5xx, then a failed ingest.
- **A short page before the top N** (30 of 50 coins on page 2 of `--top 250`) is the end of
  the list only if `total` says so; otherwise it is retried like a 5xx, then fails. A small
  snapshot is never taken for a whole one.
- **Ranks shifting while paging**: a coin that moves from page k+1 to page k after page k was
  fetched is on neither page, and the coin it swapped with is on both. A coin seen twice is
  the sign: page k is fetched again (kept in bronze as `-p000k-r1.json`) to find the coins
  that moved up, and what happened is reported. The coin count is the number of distinct
  coins, never pages times page size; with `--top all` it is also held against the list's
  `total`, and a shortfall is reported with the count of coins not seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .coingecko import BodyProblem, CoinGeckoClient, Fetched
from .progress import Progress, ProgressCallback
from .settings import Settings

MARKETS_PATH = "/coins/markets"
PRICE_CHANGE_WINDOWS = "1h,24h,7d,30d"
# How many times a page is fetched again to find coins that moved up from the next page.
REFETCH_ROUNDS = 2


class StageBody(Protocol):
    """Lands one markets body in the run's bronze staging (and checks its contract); returns
    a handle for it, by which `PagedMarkets.trims` names the body."""

    def __call__(self, page: int, fetched: Fetched, *, records: int, refetch: int) -> int: ...


@dataclass
class PagedMarkets:
    coins: int = 0  # distinct coins kept: the snapshot's real size
    bodies: int = 0  # bodies fetched, re-fetches included
    listed: int | None = None  # coins the API lists (its `total` header), when it says
    notes: list[str] = field(default_factory=list)
    # Per body (by its stage handle): the coins it carries beyond the top N, which silver
    # leaves out. Decided once every page is in, by each coin's latest position.
    trims: dict[int, list[str]] = field(default_factory=dict)


def _listed(fetched: Fetched) -> int | None:
    try:
        return int(fetched.headers.get("total", ""))
    except ValueError:
        return None


def _page_check(
    page: int, per_page: int, top: int | None
) -> Callable[[Fetched], BodyProblem | None]:
    """The shape a page must have: an array, not empty on page 1, not short before the top N
    (`top` None: every coin; a short page is then the end when the API's `total` says so or
    does not say)."""
    needed = per_page if top is None else min(per_page, top - (page - 1) * per_page)

    def check(fetched: Fetched) -> BodyProblem | None:
        records = fetched.data
        if not isinstance(records, list):
            return BodyProblem(f"expected a JSON array, got {type(records).__name__}")
        if page == 1 and not records:
            return BodyProblem(
                "an empty first page (no coins at all)",
                transient=True,
                fix="CoinGecko listed no coins: try again later.",
            )
        listed = _listed(fetched)
        reached = (page - 1) * per_page + len(records)
        unknown_end = listed is None and top is None  # all coins, no total: short is the end
        if len(records) < needed and not unknown_end and (listed is None or reached < listed):
            of = f" of the {listed:,} it lists" if listed is not None else ""
            wanted = "every coin was listed" if top is None else f"the top {top:,} were reached"
            return BodyProblem(
                f"a short page {page} ({len(records)} of {per_page} coins) before {wanted}{of}",
                transient=True,
                fix=f"CoinGecko may be updating its list: try again later, or ask for fewer "
                f"coins (--top {reached:,}) if the list really ends there.",
            )
        return None

    return check


def _ids(records: list[Any]) -> list[str]:
    return [str(r["id"]) for r in records if isinstance(r, dict) and r.get("id") is not None]


def fetch_markets(
    settings: Settings,
    client: CoinGeckoClient,
    stage: StageBody,
    progress: ProgressCallback,
) -> PagedMarkets:
    """Fetch pages 1, 2, ... of `/coins/markets` until the top N distinct coins are in.

    The top N are the N coins with the best positions in the list, each coin at the position
    its latest fetch showed (so a coin found by a re-fetch takes its place and the coin it
    overtook drops out, if either is at the edge).
    """
    per_page, top = settings.per_page, settings.top_coins
    # All coins: as many pages as the API's `total` says (once page 1 told it), stopping at
    # the first short page; until then the number of pages is unknown.
    pages: int | None = None if top is None else math.ceil(top / per_page)
    positions: dict[str, tuple[int, int]] = {}  # coin -> (position in the list, fetch number)
    bodies: list[tuple[int, list[str]]] = []  # (stage handle, coin ids), per body
    result = PagedMarkets()

    def fetch(page: int, refetch: int = 0) -> tuple[list[str], list[str]]:
        """Fetch and stage one page: (its coin ids, those no earlier page carried)."""
        fetched = client.get(
            MARKETS_PATH,
            {
                "vs_currency": settings.ingest_currency,
                "order": "market_cap_desc",
                "per_page": per_page,
                "page": page,
                "sparkline": "false",
                "price_change_percentage": PRICE_CHANGE_WINDOWS,
            },
            validate=_page_check(page, per_page, top) if not refetch else None,
        )
        if result.listed is None:
            result.listed = _listed(fetched)
        records: list[Any] = fetched.data if isinstance(fetched.data, list) else []
        listed_ids = _ids(records)
        ids = list(dict.fromkeys(listed_ids))
        if len(records) != len(ids):
            # Said, not hidden: silver keeps one row per coin and quarantines a record
            # without an id, so the snapshot is smaller than the page.
            twice = len(listed_ids) - len(ids)
            no_id = len(records) - len(listed_ids)
            what = [
                f"{twice} coin(s) twice" if twice else "",
                f"{no_id} record(s) without an id" if no_id else "",
            ]
            result.notes.append(
                f"Page {page} of /coins/markets holds {' and '.join(w for w in what if w)}: "
                f"{len(ids)} distinct coins of {len(records)} records."
            )
        unseen = [i for i in ids if i not in positions]
        for offset, coin in enumerate(ids):
            positions[coin] = ((page - 1) * per_page + offset, len(bodies))
        handle = stage(page, fetched, records=len(records), refetch=refetch)
        bodies.append((handle, ids))
        return ids, unseen

    progress(Progress("ingest", "coins_markets", 0, pages))
    page = 0
    while pages is None or page < pages:
        page += 1
        ids, unseen = fetch(page)
        if top is None and result.listed is not None:
            pages = max(page, math.ceil(result.listed / per_page))
        repeated = [i for i in ids if i not in unseen]
        if repeated:
            result.notes.append(_recover_shifted(page, repeated, fetch))
        short = len(ids) < per_page
        coins = len(positions) if top is None else min(len(positions), top)
        progress(
            Progress(
                "ingest",
                "coins_markets",
                page,
                page if short else pages,
                f"{coins:,} coins, {client.requests_per_minute():.0f} req/min",
            )
        )
        if short:
            break
    ranked = sorted(positions, key=lambda coin: (positions[coin][0], -positions[coin][1]))
    kept = set(ranked if top is None else ranked[:top])
    result.coins = len(kept)
    result.bodies = len(bodies)
    result.trims = {handle: [i for i in ids if i not in kept] for handle, ids in bodies}
    if top is None:
        listed = f" of the {result.listed:,} it lists" if result.listed is not None else ""
        note = f"--top all: {result.coins:,} coins{listed}, in {len(bodies)} page(s) of {per_page}"
        if result.listed is not None and result.coins < result.listed:
            # Counted against the list's own length: none missing silently.
            note += (
                f"; {result.listed - result.coins:,} listed coin(s) were not seen (ranks "
                "shifted while paging, or the list changed): the next snapshot has them"
            )
        result.notes.append(note + ".")
    elif result.listed is not None and result.listed < top and result.coins >= result.listed:
        result.notes.append(
            f"The API lists {result.listed:,} coins, fewer than --top {top:,}: all of them "
            "were fetched."
        )
    return result


def _recover_shifted(
    page: int, repeated: list[str], fetch: Callable[[int, int], tuple[list[str], list[str]]]
) -> str:
    """Page `page` repeats coins of earlier pages, so as many coins moved up past it unseen:
    fetch the page before again until they are found. Returns what happened, for the notes."""
    found: list[str] = []
    for round_ in range(1, REFETCH_ROUNDS + 1):
        found += fetch(page - 1, round_)[1]
        if len(found) >= len(repeated):
            break
    text = (
        f"ranks shifted while paging: page {page} repeated {len(repeated)} coin(s) of page "
        f"{page - 1} ({', '.join(repeated[:5])}); page {page - 1} was fetched again and "
        f"{len(found)} coin(s) that had moved up were found"
        + (f" ({', '.join(found[:5])})" if found else "")
    )
    if len(found) < len(repeated):
        text += f"; {len(repeated) - len(found)} coin(s) may be missing from this snapshot"
    return text + "."
