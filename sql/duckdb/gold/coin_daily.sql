-- gold.coin_daily: one row per coin per UTC day: OHLC, daily return and 7-day volatility.
--
-- A day is complete once the lake holds a snapshot (of any coin, in this currency) at or
-- after 00:00 UTC of the next day. Until then its row is provisional: is_complete_day is
-- false, its close is the latest price so far, and it has no return.
-- The close of a complete day D is the price at 00:00 UTC of D+1 (CoinGecko's convention),
-- read from the snapshot nearest that instant, if one is within 12 hours of it: the coin's
-- last of D or its first of D+1 (close_at says which); with none that near, D has no close.
-- The open is read the same way at 00:00 UTC of D, so a day opens at the previous day's
-- close; high and low span the day's snapshots and both.
-- daily_return_ratio is the close over the previous day's close, minus 1, only between two
-- consecutive complete days; volatility_7d_ratio is the sample standard deviation of the last
-- 7 daily returns, null until all 7 exist. Both are ratios (0.012 = 1.2%), not percents.
-- market_cap, total_volume and market_cap_rank are the day's last snapshot's.
-- Incremental by time range: only days from getvariable('coin_daily_from') on are returned,
-- computed from snapshots 10 days further back (enough for the 7-day windows and the closes
-- they read); 1900-01-01 returns every day.
with snapshots as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
        and current_price is not null
        and snapshot_date >= getvariable('coin_daily_from') - 10
),

lake_clock as (
    -- Every day before the day of the lake's latest snapshot (in this currency) is complete.
    select getvariable('latest_snapshot_date') as latest_day
),

days as (
    -- snapshot_date is silver's partition column: the UTC day of snapshot_at.
    select
        coin_id,
        snapshot_date as day,
        arg_max(symbol, snapshot_at) as symbol,
        arg_max(name, snapshot_at) as name,
        any_value(vs_currency) as vs_currency,
        arg_max(market_cap_rank, snapshot_at) as market_cap_rank,
        arg_max(market_cap, snapshot_at) as market_cap,
        arg_max(total_volume, snapshot_at) as total_volume,
        min(snapshot_at) as first_at,
        arg_min(current_price, snapshot_at) as first_price,
        max(snapshot_at) as last_at,
        arg_max(current_price, snapshot_at) as last_price,
        max(current_price) as day_high_price,
        min(current_price) as day_low_price,
        count(*) as snapshot_count
    from snapshots
    group by coin_id, snapshot_date
),

neighbours as (
    select
        days.*,
        days.day < lake_clock.latest_day as is_complete_day,
        -- Midnight at the start of the day, in Unix seconds (no time zone arithmetic).
        (days.day - date '1970-01-01') * 86400 as starts_s,
        -- The coin's last snapshot of the day before and first of the day after, if any.
        case when lag(days.day) over coin_days = days.day - 1
            then lag(days.last_at) over coin_days
        end as previous_last_at,
        case when lag(days.day) over coin_days = days.day - 1
            then lag(days.last_price) over coin_days
        end as previous_last_price,
        case when lead(days.day) over coin_days = days.day + 1
            then lead(days.first_at) over coin_days
        end as next_first_at,
        case when lead(days.day) over coin_days = days.day + 1
            then lead(days.first_price) over coin_days
        end as next_first_price
    from days
    cross join lake_clock
    window coin_days as (partition by days.coin_id order by days.day)
),

boundaries as (
    -- How far each candidate for the price at a midnight is from it, in seconds.
    select
        *,
        starts_s - epoch(previous_last_at) as open_before_s,
        epoch(first_at) - starts_s as open_after_s,
        starts_s + 86400 - epoch(last_at) as close_before_s,
        epoch(next_first_at) - (starts_s + 86400) as close_after_s
    from neighbours
),

choices as (
    -- The nearer candidate within 12 hours wins, a tie going to the one after midnight; the
    -- same rule closes a day and opens the next, and no snapshot closes two days.
    select
        *,
        coalesce(
            open_before_s < 43200 and (open_after_s > 43200 or open_before_s < open_after_s),
            false
        ) as opens_at_previous_close,
        coalesce(
            close_after_s <= 43200
            and (close_before_s >= 43200 or close_after_s <= close_before_s),
            false
        ) as closes_on_next_day
    from boundaries
),

candles as (
    select
        *,
        case
            when opens_at_previous_close then previous_last_price
            when open_after_s <= 43200 then first_price
        end as open_price,
        case
            when not is_complete_day then last_price  -- provisional: the latest so far
            when closes_on_next_day then next_first_price
            when close_before_s < 43200 then last_price
        end as close_price,
        case
            when not is_complete_day then last_at
            when closes_on_next_day then next_first_at
            when close_before_s < 43200 then last_at
        end as close_at
    from choices
),

returns as (
    select
        *,
        case
            when is_complete_day
                and lag(day) over coin_days = day - 1
                and lag(close_price) over coin_days > 0
                then close_price / lag(close_price) over coin_days - 1
        end as daily_return_ratio
    from candles
    window coin_days as (partition by coin_id order by day)
),

final as (
    select
        coin_id,
        day,
        symbol,
        name,
        vs_currency,
        is_complete_day,
        market_cap_rank,
        open_price,
        greatest(day_high_price, open_price, close_price) as high_price,
        least(day_low_price, open_price, close_price) as low_price,
        close_price,
        market_cap,
        total_volume,
        daily_return_ratio,
        case
            when count(daily_return_ratio) over last_7_days = 7
                then stddev_samp(daily_return_ratio) over last_7_days
        end as volatility_7d_ratio,
        snapshot_count,
        close_at,
        last_at as last_snapshot_at
    from returns
    window last_7_days as (
        partition by coin_id order by day range between interval 6 days preceding and current row
    )
)

select * from final
where day >= getvariable('coin_daily_from')
