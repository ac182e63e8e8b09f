-- gold.market_segment_analysis: every segment of gold.market_cap_segments over all coins of
-- the latest snapshot; all segments always appear, so shares always add up to 100.
-- A coin's segment comes from its market cap in USD (the bounds are USD amounts), converted at
-- the snapshot's own rate (vs_currency_per_usd); totals stay in the quote currency.
-- tracked_market_cap_share_pct is a share of the tracked coins' total, not of the whole
-- market (gold.market_daily has /global's total beside the tracked one).
-- The latest snapshot in the currency: getvariable('latest_snapshot_at'), set by the build.
with snapshots as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
        and snapshot_date = getvariable('latest_snapshot_date')
),

segments as (
    select * from gold.market_cap_segments
),

latest as (
    select
        *,
        market_cap_category(market_cap / vs_currency_per_usd(vs_currency, snapshot_at))
            as market_cap_category
    from snapshots
    where snapshot_at = getvariable('latest_snapshot_at')
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
        min(price_change_percentage_24h) as worst_performer_change_24h_pct
    from latest
    group by market_cap_category
),

final as (
    select
        segments.market_cap_category,
        getvariable('vs_currency') as vs_currency,
        coalesce(per_segment.coin_count, 0) as coin_count,
        coalesce(per_segment.total_market_cap, 0) as total_market_cap,
        coalesce(
            100 * per_segment.total_market_cap
            / nullif(sum(per_segment.total_market_cap) over (), 0),
            0
        ) as tracked_market_cap_share_pct,
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
