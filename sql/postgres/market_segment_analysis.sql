-- market_segment_analysis: gold.market_segment_analysis, replaced whole on every publish.
create table if not exists {{schema}}.market_segment_analysis (
    market_cap_category text not null,
    vs_currency text,
    coin_count bigint not null,
    total_market_cap double precision,
    tracked_market_cap_share_pct double precision,
    total_volume double precision,
    avg_price_change_24h_pct double precision,
    median_price_change_24h_pct double precision,
    best_performer_coin_id text,
    best_performer_change_24h_pct double precision,
    worst_performer_coin_id text,
    worst_performer_change_24h_pct double precision,
    snapshot_at timestamptz
);

create unique index if not exists market_segment_analysis_category_key
    on {{schema}}.market_segment_analysis (market_cap_category);
