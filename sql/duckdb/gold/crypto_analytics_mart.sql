-- gold.crypto_analytics_mart: the 50 best-ranked coins of the latest snapshot, with the
-- ratios an analyst asks for first. _ratio columns are unitless ratios, _pct columns percent.
-- The segment comes from the market cap in USD (bounds are USD amounts), converted at the
-- snapshot's own rate (vs_currency_per_usd: /global's total market cap in the quote currency
-- over its total in USD).
-- volatility_7d_ratio is the coin's in gold.coin_daily on the lake's last complete day
-- (getvariable('latest_complete_day'), found by the build reading the last weeks' files only).
-- is_sample: the snapshot is the bundled sample's (recorded prices), not a live one.
-- getvariable('latest_snapshot_at') / ('latest_snapshot_date'): the latest snapshot in the
-- currency, set by the build (a literal day lets DuckLake read that partition's files only).
with latest as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
        and snapshot_date = getvariable('latest_snapshot_date')
        and snapshot_at = getvariable('latest_snapshot_at')
),

volatility as (
    select coin_id, volatility_7d_ratio
    from gold.coin_daily
    where day = getvariable('latest_complete_day')
),

top_50 as (
    select
        *,
        market_cap / vs_currency_per_usd(vs_currency, snapshot_at) as market_cap_usd
    from latest
    where market_cap_rank is not null
    order by market_cap_rank, coin_id
    limit 50
),

final as (
    select
        top_50.coin_id,
        top_50.symbol,
        top_50.name,
        top_50.vs_currency,
        top_50.market_cap_rank,
        market_cap_category(top_50.market_cap_usd) as market_cap_category,
        top_50.current_price,
        top_50.market_cap,
        top_50.market_cap_usd,
        top_50.total_volume,
        top_50.price_change_percentage_1h as price_change_1h_pct,
        top_50.price_change_percentage_24h as price_change_24h_pct,
        top_50.price_change_percentage_7d as price_change_7d_pct,
        top_50.price_change_percentage_30d as price_change_30d_pct,
        top_50.total_volume / nullif(top_50.market_cap, 0) as volume_to_market_cap_ratio,
        -- Where the price sits in the 24h range, 0 = low, 1 = high; clamped because the price
        -- and the range are not sampled at exactly the same instant. (greatest and least
        -- skip nulls, so a missing range is kept null explicitly.)
        case when top_50.high_24h > top_50.low_24h then
            greatest(0, least(1,
                (top_50.current_price - top_50.low_24h) / (top_50.high_24h - top_50.low_24h)
            ))
        end as price_position_24h,
        (top_50.current_price / nullif(top_50.ath, 0) - 1) * 100 as ath_distance_pct,
        top_50.circulating_supply / nullif(top_50.max_supply, 0) as circulating_supply_ratio,
        volatility.volatility_7d_ratio,
        top_50.snapshot_at,
        top_50.last_updated_at,
        top_50.is_sample
    from top_50
    left join volatility
        on top_50.coin_id = volatility.coin_id
)

select * from final
order by market_cap_rank
