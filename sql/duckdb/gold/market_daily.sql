-- gold.market_daily: one row per UTC day of snapshot_at: market totals and dominance from the
-- day's last /global snapshot, breadth (advancing vs declining coins over 24h) from the day's
-- last market snapshot. A day is complete (is_complete_day) once the lake holds a snapshot of
-- the next day; until then its figures are the latest so far.
-- Incremental by time range, as coin_daily: only days from getvariable('coin_daily_from') on
-- (each day reads only its own snapshots).
with markets as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
        and snapshot_date >= getvariable('coin_daily_from')
),

globals as (
    select * from silver.global_snapshots
    where vs_currency = getvariable('vs_currency')
        and snapshot_date >= getvariable('coin_daily_from')
),

last_market_snapshot as (
    -- snapshot_date is silver's partition column: the UTC day of snapshot_at.
    select snapshot_date as day, max(snapshot_at) as snapshot_at
    from markets
    group by all
),

breadth as (
    select
        last_market_snapshot.day,
        last_market_snapshot.snapshot_at,
        count(*) as coins_tracked,
        count(*) filter (where markets.price_change_percentage_24h > 0) as advancing_coins,
        count(*) filter (where markets.price_change_percentage_24h < 0) as declining_coins,
        sum(markets.market_cap) as tracked_market_cap,
        bool_or(markets.is_sample) as is_sample
    from last_market_snapshot
    inner join markets
        on last_market_snapshot.snapshot_at = markets.snapshot_at
    group by all
),

global_days as (
    select
        snapshot_date as day,
        arg_max(total_market_cap, snapshot_at) as total_market_cap,
        arg_max(total_volume, snapshot_at) as total_volume,
        arg_max(btc_market_cap_percentage, snapshot_at) as btc_dominance_pct,
        arg_max(eth_market_cap_percentage, snapshot_at) as eth_dominance_pct,
        arg_max(active_cryptocurrencies, snapshot_at) as active_cryptocurrencies
    from globals
    group by all
),

lake_clock as (
    select getvariable('latest_snapshot_date') as latest_day
),

final as (
    select
        coalesce(breadth.day, global_days.day) as day,
        coalesce(breadth.day, global_days.day) < lake_clock.latest_day as is_complete_day,
        global_days.total_market_cap,
        global_days.total_volume,
        global_days.btc_dominance_pct,
        global_days.eth_dominance_pct,
        global_days.active_cryptocurrencies,
        breadth.coins_tracked,
        breadth.advancing_coins,
        breadth.declining_coins,
        breadth.tracked_market_cap,
        breadth.snapshot_at as last_snapshot_at,
        breadth.is_sample
    from breadth
    full outer join global_days
        on breadth.day = global_days.day
    cross join lake_clock
)

select * from final
order by day
