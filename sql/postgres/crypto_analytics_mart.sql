-- crypto_analytics_mart: gold.crypto_analytics_mart, replaced whole on every publish.
create table if not exists {{schema}}.crypto_analytics_mart (
    coin_id text not null,
    symbol text,
    name text,
    vs_currency text,
    market_cap_rank integer not null,
    market_cap_category text not null,
    current_price double precision,
    market_cap double precision,
    market_cap_usd double precision,
    total_volume double precision,
    price_change_1h_pct double precision,
    price_change_24h_pct double precision,
    price_change_7d_pct double precision,
    price_change_30d_pct double precision,
    volume_to_market_cap_ratio double precision,
    price_position_24h double precision,
    ath_distance_pct double precision,
    circulating_supply_ratio double precision,
    volatility_7d_ratio double precision,
    snapshot_at timestamptz not null,
    last_updated_at timestamptz,
    is_sample boolean
);

create unique index if not exists crypto_analytics_mart_coin_key
    on {{schema}}.crypto_analytics_mart (coin_id);

create index if not exists crypto_analytics_mart_rank_idx
    on {{schema}}.crypto_analytics_mart (market_cap_rank);

create index if not exists crypto_analytics_mart_category_idx
    on {{schema}}.crypto_analytics_mart (market_cap_category);
