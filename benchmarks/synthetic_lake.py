"""A synthetic bronze lake shaped like real CoinGecko responses, for benchmarks.

    uv run python benchmarks/synthetic_lake.py --coins 15000 --days 365 --every-hours 6 \\
        --out benchmarks/.data/lake

Every run is what `cryptolake ingest --top <coins>` would land: `ceil(coins / 250)` pages of
`/coins/markets` (the keys, key order and JSON types of the recorded 2026 page, plus the four
`price_change_percentage_*_in_currency` fields ingest asks for, in the API's order), one
`/global` body and one `/coins/categories` body (the recorded fixtures with their values
moved), and a complete manifest with true sha256, bytes and record counts.

The first 250 coins are the real ones of the recorded page (ids, images, supplies, ATH/ATL,
ROI); the rest are made up with the same shape: market caps falling with rank, log-uniform
prices, `max_supply` null for ~43%, an `roi` object for ~11%, a few dead coins (cap 0, rank
null) and stale quotes. Prices are a per-coin random walk in log space (plus a market factor),
so ranks shuffle and the 24h / 7d / 30d changes, highs, lows and ATH/ATL agree with the walk.

DuckDB builds every page body (to_json per record, string_agg per page); Python only writes
the bytes, hashes them and writes manifests. Deterministic for a given seed and DuckDB version.
`verify_synthetic.py` checks a (small) generated lake against the real page and silver.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import pyarrow as pa

from cryptolake.bronze import BronzeFile, Manifest, iso
from cryptolake.lake import LakePaths

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "coingecko"
MARKETS_FIXTURE = (
    FIXTURES / "markets_usd_per250_page1_DonicusMcGinty-biz-active-rss_2026-02-15.json"
)
GLOBAL_FIXTURE = FIXTURES / "global_JKorf-CoinGecko.Net_2023-01-08.json"
CATEGORIES_FIXTURE = FIXTURES / "categories_JKorf-CoinGecko.Net_2023-01-08.json"

API_URL = "https://pro-api.coingecko.com/api/v3"  # 60 pages every 6 hours needs a paid key
PER_PAGE = 250
# Warm-up before the first snapshot, so 30-day changes exist from the start.
WARMUP_DAYS = 30
# Pages per DuckDB query: enough rows (~250k) for DuckDB to spread to_json over two row
# groups (threads), yet only ~250 MB of bodies in flight.
CHUNK_PAGES = 1000

SYLLABLES = (
    "ba ko ri zen lu mo xa ve ta qui do sol nex ar fi po "
    "ly ra the ion vo ka mi sa ter un ze ga hy pe os cu"
).split()


# --- SQL --------------------------------------------------------------------------------------
# Uniform [0, 1) and standard normal draws from hashes: reproducible, and unlike random()
# independent of how DuckDB splits the work over threads.
MACROS = """
create or replace macro unif(h) as ((h >> 11)::double + 0.5) / 9007199254740992.0;
create or replace macro draw(a, b, salt) as unif(hash(a, b, salt));
create or replace macro gauss(a, b, salt) as
    sqrt(-2 * ln(draw(a, b, salt))) * cos(2 * pi() * draw(a, b, salt + 1));
-- CoinGecko's rounding of quoted prices: whole dollars (a JSON int) from 10,000, cents from 1,
-- six significant digits below.
create or replace macro api_price(p) as case
    when p is null then null
    when p >= 10000 then to_json(round(p)::bigint)
    when p >= 1 then to_json(round(p, 2))
    else to_json(round(p, 5 - floor(log10(p))::int))
end;
-- Volumes are ints, except small ones (and 0.0), which come as floats.
create or replace macro api_volume(v) as case
    when v >= 10000 then to_json(round(v)::bigint)
    else to_json(round(v, 1))
end;
create or replace macro api_time(t) as strftime(t, '%Y-%m-%dT%H:%M:%S.%gZ');
"""

# The real coins of the recorded page, as starting values.
REAL_COINS = """
create or replace table real_coins as
select
    row_number() over () as k,
    id, symbol, name, image, current_price, market_cap, total_volume,
    high_24h is null as no_24h,
    circulating_supply, total_supply, max_supply, ath, ath_date, atl, atl_date, roi,
    max(last_updated) over () - last_updated > interval 1 hour as is_stale
from read_json(
    $fixture,
    format = 'array',
    columns = {
        id: 'varchar', symbol: 'varchar', name: 'varchar', image: 'varchar',
        current_price: 'double', market_cap: 'double', total_volume: 'double',
        high_24h: 'double', circulating_supply: 'double', total_supply: 'double',
        max_supply: 'double', ath: 'double', ath_date: 'timestamp', atl: 'double',
        atl_date: 'timestamp', last_updated: 'timestamp',
        roi: 'struct(times double, currency varchar, percentage double)'
    }
)
"""

# One row per coin: identity and the constants of its walk. Salts (the last hash argument)
# keep the draws of different attributes independent.
COINS = """
create or replace table coins as
with real_part as (
    select
        k, id, symbol, name, image,
        ln(current_price) as lp0,
        circulating_supply as circ,
        total_supply,
        max_supply,
        -- stablecoins barely move
        case when ath < 1.5 and atl > 0.5 and abs(current_price - 1) < 0.02 then 0.0003
            else 0.01 + 0.02 * draw(k, 0, 11) end as sigma,
        total_volume / market_cap as volume_ratio,
        ln(ath) as ath_lp0, ath_date as ath_at0, ln(atl) as atl_lp0, atl_date as atl_at0,
        case when roi is not null
            then current_price / greatest(1 + roi.times, 0.01) end as ico_price,
        roi.currency as roi_currency,
        no_24h, is_stale, false as is_dead
    from real_coins
    where k <= $coins
),

made_up as (
    select
        k,
        -- the coin number, shuffled, in base 32 with a syllable per digit: ids look like
        -- slugs and never repeat (3 syllables, 4 beyond 32,768 made-up coins)
        array_to_string(
            list_transform(
                range(case when k - 251 < 32768 then 3 else 4 end),
                lambda i: $syllables[1 + (((
                    case when k - 251 < 32768 then (k - 251) * 7919 % 32768 else k - 251 end
                ) >> (5 * i)) & 31)]
            ),
            ''
        ) as slug,
        -- market caps fall with rank (a power law through the real page's rank 250)
        1.2e8 * pow(k / 250.0, -1.6) * exp(0.3 * gauss(k, 0, 23)) as cap0,
        exp(ln(1e-9) + ln(1e12) * draw(k, 0, 25)) as price0,
        draw(k, 0, 27) as d
    from range(251, $coins + 1) t(k)
),

made_up_coins as (
    select
        k,
        slug as id,
        left(slug, 3 + (hash(k, 31) % 2)::int) as symbol,
        upper(left(slug, 1)) || substr(slug, 2) as name,
        'https://coin-images.coingecko.com/coins/images/' || (70000 + k) || '/large/' || slug
            || '.png?' || (1696500000 + hash(k, 32) % 70000000) as image,
        ln(price0) as lp0,
        -- 2% dead coins (no circulating supply: cap 0, rank null) in the long tail
        case when k > 5000 and d < 0.02 then 0.0
            when draw(k, 0, 33) < 0.2 then round(cap0 / price0)
            else cap0 / price0 end as circ,
        case when draw(k, 0, 34) < 0.4 then cap0 / price0
            else round(cap0 / price0 * (1 + 2 * draw(k, 0, 35))) end as total_supply,
        case when draw(k, 0, 36) < 0.43 then null
            else round(cap0 / price0 * (2 + 2 * draw(k, 0, 37))) end as max_supply,
        0.005 + 0.035 * draw(k, 0, 38) as sigma,
        case when draw(k, 0, 39) < 0.02 then 0.0
            else exp(ln(0.002) + ln(150) * draw(k, 0, 40)) end as volume_ratio,
        ln(price0) + 3 * draw(k, 0, 41) as ath_lp0,
        timestamp '2018-01-01' + to_seconds((draw(k, 0, 42) * 2.2e8)::bigint) as ath_at0,
        ln(price0) - 3 * draw(k, 0, 43) as atl_lp0,
        timestamp '2015-01-01' + to_seconds((draw(k, 0, 44) * 9e7)::bigint) as atl_at0,
        case when draw(k, 0, 45) < 0.11
            then price0 / exp(4 * draw(k, 0, 46) - 1) end as ico_price,
        case when draw(k, 0, 47) < 0.75 then 'usd'
            when draw(k, 0, 47) < 0.9 then 'eth' else 'btc' end as roi_currency,
        draw(k, 0, 48) < 0.004 as no_24h,
        draw(k, 0, 49) < 0.02 as is_stale,
        k > 5000 and d < 0.02 as is_dead
    from made_up
),

all_coins as (
    select * from real_part
    union all by name
    select * from made_up_coins
)

select
    * exclude (id),
    -- made-up slugs can repeat (or hit a real id): suffix the number
    case when k > 250 and count(*) over (partition by id) > 1 then id || '-' || k
        else id end as id,
    coalesce(total_supply, circ) as fdv_supply,
    draw(k, 0, 50) < 0.25 as has_int_cap_change
from all_coins
"""

# Log price per coin per step: a random walk with a market-wide factor.
WALK = """
create or replace table walk as
select
    c.k,
    st.s,
    c.lp0 + sum(c.sigma * (0.5 * st.market_z + 0.87 * gauss(c.k, st.s, 101)))
        over (partition by c.k order by st.s) as lp
from coins as c
cross join steps as st
"""

# Everything a page row needs, per coin and snapshot, in page order.
SNAP = """
create or replace table snap as
with lagged as (
    select
        k, s, lp,
        lag(lp, 1) over w as lp_prev,
        lag(lp, $day) over w as lp_1d,
        lag(lp, 7 * $day) over w as lp_7d,
        lag(lp, 30 * $day) over w as lp_30d,
        max(lp) over (w rows between $day - 1 preceding and current row) as lp_high,
        min(lp) over (w rows between $day - 1 preceding and current row) as lp_low,
        max(lp) over (w rows unbounded preceding) as lp_max,
        arg_max(s, lp) over (w rows unbounded preceding) as s_max,
        min(lp) over (w rows unbounded preceding) as lp_min,
        arg_min(s, lp) over (w rows unbounded preceding) as s_min
    from walk
    window w as (partition by k order by s)
),

valued as (
    select
        l.k,
        l.s,
        exp(l.lp) as price,
        exp(l.lp_1d) as price_1d,
        l.lp - l.lp_prev as lp_step,
        l.lp - l.lp_7d as lp_7d_change,
        l.lp - l.lp_30d as lp_30d_change,
        -- intraday extremes lie a little beyond the 6-hourly samples
        exp(l.lp_high + c.sigma * 0.3 * draw(l.k, l.s, 102)) as high,
        exp(l.lp_low - c.sigma * 0.3 * draw(l.k, l.s, 103)) as low,
        c.circ * exp(l.lp) as cap,
        c.circ * exp(l.lp_1d) as cap_1d,
        c.circ * exp(l.lp) * c.volume_ratio * exp(0.4 * gauss(l.k, l.s, 104)) as volume,
        greatest(c.ath_lp0, l.lp_max) as ath_lp,
        case when l.lp_max > c.ath_lp0 then smax.started_at - interval 37 second
            else c.ath_at0 end as ath_at,
        least(c.atl_lp0, l.lp_min) as atl_lp,
        case when l.lp_min < c.atl_lp0 then smin.started_at - interval 41 second
            else c.atl_at0 end as atl_at
    from lagged as l
    inner join coins as c on l.k = c.k
    left join steps as smax on l.s_max = smax.s
    left join steps as smin on l.s_min = smin.s
    where l.s >= 0
)

select
    *,
    row_number() over (partition by s order by cap desc, k) as pos
from valued
order by s, pos
"""

MARKET_PAGES = """
select
    p.s,
    (p.pos - 1) // $per_page + 1 as page,
    count(*)::int as records,
    encode('[' || string_agg(to_json({
        'id': c.id,
        'symbol': c.symbol,
        'name': c.name,
        'image': c.image,
        'current_price': api_price(p.price),
        'market_cap': round(p.cap)::bigint,
        'market_cap_rank': case when p.cap > 0 then p.pos end,
        'fully_diluted_valuation': round(p.price * c.fdv_supply)::bigint,
        'total_volume': api_volume(p.volume),
        'high_24h': case when not c.no_24h then api_price(p.high) end,
        'low_24h': case when not c.no_24h then api_price(p.low) end,
        'price_change_24h': case when not c.no_24h then p.price - p.price_1d end,
        'price_change_percentage_24h':
            case when not c.no_24h then round(100 * (p.price / p.price_1d - 1), 5) end,
        'market_cap_change_24h': case
            when c.no_24h then null
            when c.has_int_cap_change then to_json(round(p.cap - p.cap_1d)::bigint)
            else to_json(p.cap - p.cap_1d) end,
        'market_cap_change_percentage_24h': case
            when not c.no_24h then round(100 * (p.cap / nullif(p.cap_1d, 0) - 1), 5) end,
        'circulating_supply': c.circ,
        'total_supply': c.total_supply,
        'max_supply': c.max_supply,
        'ath': api_price(exp(p.ath_lp)),
        'ath_change_percentage': round(100 * (p.price / exp(p.ath_lp) - 1), 5),
        'ath_date': api_time(p.ath_at),
        'atl': api_price(exp(p.atl_lp)),
        'atl_change_percentage': round(100 * (p.price / exp(p.atl_lp) - 1), 5),
        'atl_date': api_time(p.atl_at),
        'roi': case when c.ico_price is not null then {
            'times': p.price / c.ico_price - 1,
            'currency': c.roi_currency,
            'percentage': 100 * (p.price / c.ico_price - 1)
        } end,
        'last_updated': api_time(
            st.started_at - to_microseconds((draw(p.k, p.s, 105)
                * case when c.is_stale then 4.3e11 else 1.5e7 end)::bigint)
        ),
        -- the API's order for price_change_percentage=1h,24h,7d,30d is 1h, 24h, 30d, 7d
        'price_change_percentage_1h_in_currency':
            100 * (exp(p.lp_step / 6 + c.sigma * 0.3 * gauss(p.k, p.s, 106)) - 1),
        'price_change_percentage_24h_in_currency':
            case when not c.no_24h then 100 * (p.price / p.price_1d - 1) end,
        'price_change_percentage_30d_in_currency': 100 * (exp(p.lp_30d_change) - 1),
        'price_change_percentage_7d_in_currency': 100 * (exp(p.lp_7d_change) - 1)
    }), ',' order by p.pos) || ']') as body
from snap as p
inner join coins as c on p.k = c.k
inner join steps as st on p.s = st.s
where p.s >= $first and p.s < $stop
group by p.s, page
order by p.s, page
"""

# Market-wide figures per snapshot, for the /global body.
TOTALS = """
select
    p.s,
    sum(p.cap) as cap,
    sum(p.cap_1d) as cap_1d,
    sum(p.volume) as volume,
    list({'symbol': c.symbol, 'cap': p.cap} order by p.pos) filter (where p.pos <= 10) as top
from snap as p
inner join coins as c on p.k = c.k
where p.s >= $first and p.s < $stop
group by p.s
order by p.s
"""


# --- Python -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Snapshot:
    """One run: when it started and its id."""

    started_at: datetime
    run_id: str


@dataclass(frozen=True, slots=True)
class GenerateResult:
    runs: int
    files: int
    bytes: int
    market_records: int
    seconds: float


def snapshot_times(start: datetime, *, days: int, every_hours: int) -> list[datetime]:
    return [start + timedelta(hours=every_hours * i) for i in range(days * 24 // every_hours)]


def make_snapshots(times: Sequence[datetime], *, seed: int) -> list[Snapshot]:
    """Runs start a few seconds after the scheduled time, like a cron job's."""
    rng = random.Random(f"runs-{seed}")
    snaps = []
    for t in times:
        started = t + timedelta(microseconds=rng.randrange(3_000_000, 25_000_000))
        snaps.append(Snapshot(started, f"{started:%Y%m%dT%H%M%SZ}-{rng.randbytes(3).hex()}"))
    return snaps


def _sql(template: str, **values: object) -> str:
    """Fills `$name` placeholders with trusted values (numbers and fixture paths)."""
    for name in sorted(values, key=len, reverse=True):
        value = values[name]
        if isinstance(value, str | Path):
            literal = "'" + str(value).replace("'", "''") + "'"
        elif isinstance(value, list):
            literal = "[" + ", ".join("'" + str(v) + "'" for v in value) + "]"
        else:
            literal = str(value)
        template = template.replace(f"${name}", literal)
    return template


def _steps_table(snaps: Sequence[Snapshot], every_hours: int, seed: int) -> pa.Table:
    """Warm-up steps (s < 0) on the same grid, then one step per snapshot (s >= 0)."""
    warmup = WARMUP_DAYS * 24 // every_hours
    first = snaps[0].started_at.replace(tzinfo=None)
    times = [first - timedelta(hours=every_hours * (warmup - i)) for i in range(warmup)]
    times += [s.started_at.replace(tzinfo=None) for s in snaps]
    rng = random.Random(f"market-{seed}")
    return pa.table(
        {
            "s": pa.array(range(-warmup, len(snaps)), pa.int32()),
            "started_at": pa.array(times, pa.timestamp("us")),
            "market_z": pa.array([rng.gauss() for _ in times], pa.float64()),
        }
    )


class _Bodies:
    """The non-market bodies of a run: the recorded fixtures with their values moved."""

    def __init__(self, seed: int, coins: int) -> None:
        self.global_template: dict[str, Any] = json.loads(GLOBAL_FIXTURE.read_bytes())
        self.categories: list[dict[str, Any]] = json.loads(CATEGORIES_FIXTURE.read_bytes())
        self.coins = coins
        self.rng = random.Random(f"categories-{seed}")
        self.category_level = [1.0] * len(self.categories)
        data = self.global_template["data"]
        self.fixture_cap = float(data["total_market_cap"]["usd"])
        self.fixture_volume = float(data["total_volume"]["usd"])

    def global_body(self, started_at: datetime, totals: tuple[Any, ...]) -> bytes:
        _, cap, cap_1d, volume, top = totals
        body = copy.deepcopy(self.global_template)
        data = body["data"]
        data["active_cryptocurrencies"] = self.coins
        cap_scale, volume_scale = cap / self.fixture_cap, volume / self.fixture_volume
        data["total_market_cap"] = {
            c: _number_like(v, v * cap_scale) for c, v in data["total_market_cap"].items()
        }
        data["total_volume"] = {
            c: _number_like(v, v * volume_scale) for c, v in data["total_volume"].items()
        }
        shares: dict[str, float] = {}
        for coin in top:
            shares.setdefault(coin["symbol"], 100 * coin["cap"] / cap)
        data["market_cap_percentage"] = shares
        data["market_cap_change_percentage_24h_usd"] = 100 * (cap / cap_1d - 1)
        data["updated_at"] = int(started_at.timestamp()) - 31  # Unix seconds, as the API
        return json.dumps(body, separators=(",", ":")).encode()

    def categories_body(self, started_at: datetime) -> bytes:
        records = []
        updated = _iso_millis(started_at - timedelta(seconds=95))
        for i, template in enumerate(self.categories):
            record = dict(template)
            change = self.rng.gauss(0, 0.02)
            self.category_level[i] *= math.exp(change)
            if isinstance(template["market_cap"], float):  # the int ones are 0 and stay 0
                record["market_cap"] = template["market_cap"] * self.category_level[i]
                record["market_cap_change_24h"] = 100 * (math.exp(4 * change) - 1)
            record["volume_24h"] = template["volume_24h"] * math.exp(self.rng.gauss(0, 0.3))
            record["updated_at"] = updated
            records.append(record)
        return json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode()


def _number_like(template: float, value: float) -> float | int:
    """Keep the fixture's JSON type; the API writes floats from 1e16 up as integers (JS)."""
    return int(round(value)) if isinstance(template, int) or value >= 1e16 else value


def _iso_millis(ts: datetime) -> str:
    """The API's timestamps: milliseconds and a Z."""
    return f"{ts:%Y-%m-%dT%H:%M:%S}.{ts.microsecond // 1000:03d}Z"


def _markets_params(page: int) -> dict[str, str]:
    return {
        "vs_currency": "usd",
        "order": "market_cap_desc",
        "per_page": str(PER_PAGE),
        "page": str(page),
        "sparkline": "false",
        "price_change_percentage": "1h,24h,7d,30d",
    }


class _RunWriter:
    """Writes one run's bodies into their partitions, then its manifest (last, as ingest)."""

    def __init__(self, lake: LakePaths, snap: Snapshot, coins: int) -> None:
        self.lake = lake
        self.snap = snap
        self.coins = coins
        self.date = f"{snap.started_at:%Y-%m-%d}"
        self.files: list[BronzeFile] = []
        self.bytes = 0

    def add(self, dataset: str, page: int, body: bytes, records: int, url: str) -> None:
        rel = f"bronze/{dataset}/ingest_date={self.date}/{self.snap.run_id}-p{page:04d}.json"
        path = self.lake.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as handle:  # never overwrite: bronze is immutable
            handle.write(body)
        params = _markets_params(page) if dataset == "coins_markets" else {}
        fetched = self.snap.started_at + timedelta(seconds=1.2 * len(self.files) + 0.4)
        self.files.append(
            BronzeFile(
                dataset=dataset,
                page=page,
                path=rel,
                url=f"{url}?{urlencode(params)}" if params else url,
                params=params,
                http_status=200,
                fetched_at=iso(fetched),
                attempts=1,
                sha256=hashlib.sha256(body).hexdigest(),
                bytes=len(body),
                records=records,
            )
        )
        self.bytes += len(body)

    def commit(self) -> None:
        finished = self.snap.started_at + timedelta(seconds=1.2 * len(self.files) + 1.1)
        manifest = Manifest(
            run_id=self.snap.run_id,
            status="complete",
            source="synthetic",
            started_at=iso(self.snap.started_at),
            finished_at=iso(finished),
            ingest_date=self.date,
            api_url=API_URL,
            api_plan="pro",
            keyed=True,
            vs_currency="usd",
            top=self.coins,
            per_page=PER_PAGE,
            files=self.files,
        )
        path = self.lake.runs / f"ingest_date={self.date}" / f"{self.snap.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as handle:
            handle.write(manifest.to_json())


def generate(
    out: Path,
    *,
    snapshots: Sequence[Snapshot],
    coins: int = 15_000,
    every_hours: int = 6,
    seed: int = 1,
    memory_limit: str = "6GB",
    threads: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> GenerateResult:
    """Write one complete bronze run per snapshot into the lake at `out`.

    The lake may already hold runs (to add one snapshot to it); a run whose files exist
    already is an error, never an overwrite.
    """
    if coins < 1 or not snapshots:
        raise ValueError("need at least one coin and one snapshot")
    if 24 % every_hours:
        raise ValueError(f"--every-hours must divide 24, got {every_hours}")
    t0 = time.perf_counter()
    lake = LakePaths.at(out)
    scratch = lake.root / ".synthetic"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": memory_limit,
        "temp_directory": str(scratch / "spill"),
        "preserve_insertion_order": False,  # every query that cares says `order by`
    }
    if threads:
        config["threads"] = threads
    # A database file, not :memory:: the walk tables are a few GB at full scale.
    con = duckdb.connect(str(scratch / "walk.duckdb"), config=config)
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(MACROS)
        steps = _steps_table(snapshots, every_hours, seed)
        con.register("steps_arrow", steps)
        con.execute("create table steps as select * from steps_arrow")
        con.unregister("steps_arrow")
        for name, sql in (
            ("coins", REAL_COINS),
            ("coins", COINS),
            ("walk", WALK),
            ("snap", SNAP),
        ):
            t = time.perf_counter()
            con.execute(
                _sql(
                    sql,
                    fixture=MARKETS_FIXTURE,
                    coins=coins,
                    syllables=list(SYLLABLES),
                    day=24 // every_hours,
                )
            )
            log(f"  {name}: {time.perf_counter() - t:.1f}s")
        ids = con.execute("select count(*) = count(distinct id) from coins").fetchone()
        assert ids and ids[0], "coin ids must be unique"
        result = _write_runs(con, lake, snapshots, coins=coins, seed=seed, log=log)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return GenerateResult(*result, seconds=time.perf_counter() - t0)


def _chunks(n_snapshots: int, pages_per_run: int) -> Iterator[tuple[int, int]]:
    step = max(1, CHUNK_PAGES // pages_per_run)
    for first in range(0, n_snapshots, step):
        yield first, min(first + step, n_snapshots)


def _write_runs(
    con: duckdb.DuckDBPyConnection,
    lake: LakePaths,
    snapshots: Sequence[Snapshot],
    *,
    coins: int,
    seed: int,
    log: Callable[[str], None],
) -> tuple[int, int, int, int]:
    pages_per_run = math.ceil(coins / PER_PAGE)
    bodies = _Bodies(seed, coins)
    files = size = records = 0
    t_start = time.perf_counter()

    def fetch(first: int, stop: int) -> tuple[list[Any], list[Any]]:
        cur = con.cursor()  # its own connection: runs while the main thread writes files
        try:
            values = {"first": first, "stop": stop, "per_page": PER_PAGE}
            pages = cur.execute(_sql(MARKET_PAGES, **values)).fetchall()
            totals = cur.execute(_sql(TOTALS, **values)).fetchall()
            return pages, totals
        finally:
            cur.close()

    chunks = list(_chunks(len(snapshots), pages_per_run))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[tuple[list[Any], list[Any]]] = pool.submit(fetch, *chunks[0])
        for i in range(len(chunks)):
            pages, totals = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(fetch, *chunks[i + 1])
            by_step: dict[int, list[Any]] = {}
            for row in pages:
                by_step.setdefault(row[0], []).append(row)
            for total in totals:
                snap = snapshots[total[0]]
                run = _RunWriter(lake, snap, coins)
                for _, page, n, body in by_step[total[0]]:
                    run.add("coins_markets", page, body, n, f"{API_URL}/coins/markets")
                    records += n
                run.add(
                    "global", 1, bodies.global_body(snap.started_at, total), 1, f"{API_URL}/global"
                )
                categories = bodies.categories_body(snap.started_at)
                run.add(
                    "coins_categories",
                    1,
                    categories,
                    len(bodies.categories),
                    f"{API_URL}/coins/categories",
                )
                run.commit()
                files += len(run.files)
                size += run.bytes
            done = chunks[i][1]
            elapsed = time.perf_counter() - t_start
            log(
                f"  runs {done}/{len(snapshots)}  {size / 1e9:.2f} GB  {elapsed:.0f}s  "
                f"eta {elapsed / done * (len(snapshots) - done):.0f}s"
            )
    return len(snapshots), files, size, records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coins", type=int, default=15_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--every-hours", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.data/lake"))
    parser.add_argument(
        "--start",
        type=lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).replace(tzinfo=UTC),
        default=datetime(2025, 1, 1, tzinfo=UTC),
        help="first snapshot, UTC (default 2025-01-01)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-limit", default="6GB", help="DuckDB's, for the generator")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    lake = LakePaths.at(args.out)
    if lake.runs.exists() and any(lake.runs.iterdir()):
        print(f"{lake.root} already holds a lake; remove it or choose another --out.")
        return 1
    times = snapshot_times(args.start, days=args.days, every_hours=args.every_hours)
    print(
        f"Generating {len(times)} runs x {args.coins} coins "
        f"({len(times) * args.coins:,} market rows) into {lake.root}"
    )
    result = generate(
        lake.root,
        snapshots=make_snapshots(times, seed=args.seed),
        coins=args.coins,
        every_hours=args.every_hours,
        seed=args.seed,
        memory_limit=args.memory_limit,
        threads=args.threads,
        log=print,
    )
    print(
        f"Done: {result.runs} runs, {result.files:,} files, {result.bytes / 1e9:.2f} GB, "
        f"{result.market_records:,} market records in {result.seconds:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
