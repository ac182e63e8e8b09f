-- gold.market_segment_analysis: every market-cap segment over all coins of the latest snapshot;
-- all five segments always appear, so shares always add up to 100.
with snapshots as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
),

latest as (
    select
        *,
        market_cap_category(market_cap) as market_cap_category
    from snapshots
    where snapshot_at = (select max(snapshot_at) from snapshots)
),

segments as (
    select * from (
        values ('large', 1), ('mid', 2), ('small', 3), ('micro', 4), ('unknown', 5)
    ) as s (market_cap_category, segment_order)
),

per_segment as (
    select
        market_cap_category,
        count(*) as coin_count,
        coalesce(sum(market_cap), 0) as total_market_cap,
        coalesce(sum(total_volume), 0) as total_volume,
        avg(price_change_percentage_24h) as avg_price_change_24h_pct,
        median(price_change_percentage_24h) as median_price_change_24h_pct,
        arg_max(coin_id, price_change_percentage_24h) as best_performer_coin_id,
        max(price_change_percentage_24h) as best_performer_change_24h_pct,
        arg_min(coin_id, price_change_percentage_24h) as worst_performer_coin_id,
        min(price_change_percentage_24h) as worst_performer_change_24h_pct,
        max(snapshot_at) as snapshot_at
    from latest
    group by market_cap_category
),

final as (
    select
        segments.market_cap_category,
        coalesce(per_segment.coin_count, 0) as coin_count,
        coalesce(per_segment.total_market_cap, 0) as total_market_cap,
        coalesce(
            100 * per_segment.total_market_cap
            / nullif(sum(per_segment.total_market_cap) over (), 0),
            0
        ) as market_cap_share_pct,
        coalesce(per_segment.total_volume, 0) as total_volume,
        per_segment.avg_price_change_24h_pct,
        per_segment.median_price_change_24h_pct,
        per_segment.best_performer_coin_id,
        per_segment.best_performer_change_24h_pct,
        per_segment.worst_performer_coin_id,
        per_segment.worst_performer_change_24h_pct,
        (select max(snapshot_at) from latest) as snapshot_at,
        segments.segment_order
    from segments
    left join per_segment
        on segments.market_cap_category = per_segment.market_cap_category
)

select * exclude (segment_order) from final
order by segment_order
