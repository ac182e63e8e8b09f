-- gold.coin_daily: one row per coin per UTC day, OHLC of the day's snapshot prices.
-- daily_return is close over the previous calendar day's close, minus 1 (a ratio, null after
-- a gap); volatility_7d is the sample stddev of the last 7 daily returns, null until 7 exist.
with snapshots as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
),

days as (
    select
        coin_id,
        cast(snapshot_at as date) as day,
        arg_max(symbol, snapshot_at) as symbol,
        arg_max(name, snapshot_at) as name,
        any_value(vs_currency) as vs_currency,
        arg_min(current_price, snapshot_at) as open_price,
        max(current_price) as high_price,
        min(current_price) as low_price,
        arg_max(current_price, snapshot_at) as close_price,
        arg_max(market_cap, snapshot_at) as market_cap,
        arg_max(total_volume, snapshot_at) as total_volume,
        arg_max(market_cap_rank, snapshot_at) as market_cap_rank,
        count(*) as snapshot_count,
        max(snapshot_at) as last_snapshot_at
    from snapshots
    where current_price is not null
    group by all
),

returns as (
    select
        *,
        case
            when lag(day) over coin_days = day - 1
                and lag(close_price) over coin_days > 0
                then close_price / lag(close_price) over coin_days - 1
        end as daily_return
    from days
    window coin_days as (partition by coin_id order by day)
),

final as (
    select
        coin_id,
        day,
        symbol,
        name,
        vs_currency,
        market_cap_rank,
        open_price,
        high_price,
        low_price,
        close_price,
        market_cap,
        total_volume,
        daily_return,
        case
            when count(daily_return) over last_7_days = 7
                then stddev_samp(daily_return) over last_7_days
        end as volatility_7d,
        snapshot_count,
        last_snapshot_at
    from returns
    window last_7_days as (
        partition by coin_id order by day range between interval 6 days preceding and current row
    )
)

select * from final
