-- The latest snapshot's tracked coins sum to at most /global's total market cap, plus 10%.
-- The two endpoints are fetched seconds apart in one run, so a larger sum means one of them
-- is wrong (a coin's market cap out by orders of magnitude, or a stale /global), and every
-- share and segment figure built on them would be too.
with latest as (
    select * from gold.market_daily
    where day = (select max(day) from gold.market_daily)
),

final as (
    select
        day,
        last_snapshot_at,
        tracked_market_cap,
        total_market_cap as global_total_market_cap,
        round(100 * tracked_market_cap / nullif(total_market_cap, 0), 1) as tracked_pct_of_global
    from latest
    where tracked_market_cap > 1.10 * total_market_cap
)

select * from final
