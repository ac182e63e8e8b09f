-- coin_daily_prior: the 29 days gold.coin_daily holds before the first day an incremental
-- build recomputes (getvariable('coin_daily_from')), with their closes and daily returns.
-- The first recomputed day's return reads the close of the day before, and a 30-day
-- volatility window ending on a recomputed day starts up to 29 days before it.
-- Those rows are final: coin_daily_from is the earliest day a change in silver reaches
-- (gold_scope.coin_daily_from), so gold's rows before it are what a whole rebuild computes,
-- and reading them replaces re-reading a month of snapshots. A whole rebuild has no prior
-- days: gold.py defines the relation empty then (gold.coin_daily may not exist yet).
with final as (
    select coin_id, day, is_complete_day, close_price, daily_return_ratio
    from gold.coin_daily
    where vs_currency = getvariable('vs_currency')
        and day >= getvariable('coin_daily_from') - 29
        and day < getvariable('coin_daily_from')
)

select * from final
