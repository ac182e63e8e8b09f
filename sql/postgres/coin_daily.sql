-- coin_daily: gold.coin_daily; a publish refreshes it from the day before its earliest new
-- snapshot on (or whole, when the models or the currency changed).
-- daily_return_ratio and volatility_7d_ratio are ratios (0.012 = 1.2%); rows of a day that is
-- not over yet have is_complete_day false and no return.
create table if not exists {{schema}}.coin_daily (
    coin_id text not null,
    day date not null,
    symbol text,
    name text,
    vs_currency text,
    is_complete_day boolean,
    market_cap_rank integer,
    open_price double precision,
    high_price double precision,
    low_price double precision,
    close_price double precision,
    market_cap double precision,
    total_volume double precision,
    daily_return_ratio double precision,
    volatility_7d_ratio double precision,
    snapshot_count bigint,
    close_at timestamptz,
    last_snapshot_at timestamptz
);

-- text_pattern_ops: see staging_market_snapshots.sql.
create unique index if not exists coin_daily_coin_day_key
    on {{schema}}.coin_daily (coin_id text_pattern_ops, day);

create index if not exists coin_daily_day_rank_idx
    on {{schema}}.coin_daily (day, market_cap_rank);
