-- market_daily: gold.market_daily, replaced whole on every publish.
create table if not exists {{schema}}.market_daily (
    day date not null,
    is_complete_day boolean,
    total_market_cap double precision,
    total_volume double precision,
    btc_dominance_pct double precision,
    eth_dominance_pct double precision,
    active_cryptocurrencies integer,
    coins_tracked bigint,
    advancing_coins bigint,
    declining_coins bigint,
    tracked_market_cap double precision,
    last_snapshot_at timestamptz,
    is_sample boolean
);

create unique index if not exists market_daily_day_key
    on {{schema}}.market_daily (day);
