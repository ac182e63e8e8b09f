-- market_cap_segments: gold.market_cap_segments, the segments and their bounds in USD, replaced
-- whole on every publish (join it to the marts' market_cap_category for labels and order).
create table if not exists {{schema}}.market_cap_segments (
    market_cap_category text not null,
    segment_order integer not null,
    label text,
    min_market_cap_usd double precision,
    max_market_cap_usd double precision
);

create unique index if not exists market_cap_segments_category_key
    on {{schema}}.market_cap_segments (market_cap_category);
