-- coin_daily: gold.coin_daily, replaced whole on every publish.
create table if not exists {{schema}}.coin_daily (
    coin_id text not null,
    day date not null,
    symbol text,
    name text,
    vs_currency text,
    market_cap_rank integer,
    open_price double precision,
    high_price double precision,
    low_price double precision,
    close_price double precision,
    market_cap double precision,
    total_volume double precision,
    daily_return double precision,
    volatility_7d double precision,
    snapshot_count bigint,
    last_snapshot_at timestamptz
);

-- text_pattern_ops: see staging_market_snapshots.sql.
create unique index if not exists coin_daily_coin_day_key
    on {{schema}}.coin_daily (coin_id text_pattern_ops, day);

create index if not exists coin_daily_day_rank_idx
    on {{schema}}.coin_daily (day, market_cap_rank);
