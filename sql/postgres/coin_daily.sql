-- coin_daily: gold.coin_daily; a publish rewrites it from the first day gold changed on (its
-- change feed: new snapshots, history a backfill changed, candles), or whole when that is not
-- known (another model or currency, a first publish).
-- daily_return_ratio, volatility_7d_ratio and volatility_30d_ratio are ratios (0.012 = 1.2%);
-- rows of a day that is not over yet have is_complete_day false and no return. source says
-- which of snapshots and history the day's row comes from ('snapshots', 'history', 'both');
-- high_low_source where its high and low come from ('candles', 'snapshots', or none).
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
    volatility_30d_ratio double precision,
    snapshot_count bigint,
    close_at timestamptz,
    last_snapshot_at timestamptz,
    source text,
    high_low_source text
);

-- text_pattern_ops: see staging_market_snapshots.sql.
create unique index if not exists coin_daily_coin_day_key
    on {{schema}}.coin_daily (coin_id text_pattern_ops, day);

create index if not exists coin_daily_day_rank_idx
    on {{schema}}.coin_daily (day, market_cap_rank);
