-- gold.market_cap_segments: the market-cap segments, one row each, bounded in USD.
-- The one definition of the segments: market_cap_category(), gold.market_segment_analysis,
-- the checks and the report all read it. A coin's segment is the one with the largest
-- min_market_cap_usd not above its market cap in USD (converted at its snapshot's rate, see
-- gold.crypto_analytics_mart); a coin with no positive market cap is 'unknown'.
with segments as (
    select *
    from (
        values
            ('large', 1, 'Large cap', 10e9),
            ('mid', 2, 'Mid cap', 1e9),
            ('small', 3, 'Small cap', 100e6),
            ('micro', 4, 'Micro cap', 0),
            ('unknown', 5, 'Unknown', null)
    ) as s (market_cap_category, segment_order, label, min_market_cap_usd)
),

final as (
    select
        market_cap_category,
        segment_order,
        label,
        cast(min_market_cap_usd as double) as min_market_cap_usd,
        -- The next larger segment's bound: this segment's (exclusive) upper bound.
        case when min_market_cap_usd is not null then
            cast(lag(min_market_cap_usd) over (order by min_market_cap_usd desc) as double)
        end as max_market_cap_usd
    from segments
)

select * from final
order by segment_order
