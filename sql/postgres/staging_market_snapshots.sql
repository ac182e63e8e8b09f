-- staging_market_snapshots: silver.market_snapshots, appended one snapshot at a time.
-- Explicit types let DuckDB write with binary COPY: double precision for the API's floating
-- values (exactly what silver holds), timestamptz for instants, no unbounded numeric.
-- One partition per UTC day (staging_market_snapshots_pYYYYMMDD), created by publish: days
-- are loaded in parallel and attached in the publish transaction (see staging.py). The
-- partitions are the index on time: a query on a time range or a snapshot reads only its
-- days (60,000 rows a day for 15,000 coins every 6 hours).
create table if not exists {{schema}}.staging_market_snapshots (
    coin_id text not null,
    symbol text,
    name text,
    vs_currency text not null,
    snapshot_at timestamptz not null,
    market_cap_rank integer,
    current_price double precision,
    market_cap double precision,
    fully_diluted_valuation double precision,
    total_volume double precision,
    high_24h double precision,
    low_24h double precision,
    price_change_24h double precision,
    price_change_percentage_1h double precision,
    price_change_percentage_24h double precision,
    price_change_percentage_7d double precision,
    price_change_percentage_30d double precision,
    market_cap_change_24h double precision,
    market_cap_change_percentage_24h double precision,
    circulating_supply double precision,
    total_supply double precision,
    max_supply double precision,
    ath double precision,
    ath_change_percentage double precision,
    ath_at timestamptz,
    atl double precision,
    atl_change_percentage double precision,
    atl_at timestamptz,
    roi_times double precision,
    roi_currency text,
    roi_percentage double precision,
    last_updated_at timestamptz,
    run_id text not null,
    is_sample boolean,
    snapshot_date date not null
) partition by range (snapshot_at);

-- Indexes on the parent are definitions: each partition's load builds its own once its rows
-- are in (one sorted build), and attaching the partition attaches them.
-- text_pattern_ops compares coin_id byte by byte: the index serves `coin_id = …` (plus a time
-- range or order on snapshot_at) and enforces uniqueness exactly as a collation-aware one
-- does, but builds in half the time (no locale-aware string sort), and the column keeps the
-- database's collation, so consumers' joins on coin_id are unaffected.
create unique index if not exists staging_market_snapshots_coin_snapshot_key
    on {{schema}}.staging_market_snapshots (coin_id text_pattern_ops, snapshot_at);
