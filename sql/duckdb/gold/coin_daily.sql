-- gold.coin_daily: one row per coin per UTC day: OHLC, daily return, 7- and 30-day volatility.
--
-- Two inputs have days: the snapshots (silver.market_snapshots) and the daily history
-- (silver.coin_history_daily: CoinGecko's price, market cap and volume at 00:00 UTC of a day).
-- A coin has a row for every day either holds, in the gold currency; `source` says which:
-- 'snapshots', 'history' or 'both'.
--
-- The close of day D is the price at 00:00 UTC of D+1 (CoinGecko's convention): history's
-- point of D+1 where history has one; else read from the snapshot nearest that instant, if
-- one is within 12 hours of it: the coin's last of D or its first of D+1. With neither, D
-- has no close. close_at is the instant the close was read at (the history point's, or the
-- snapshot's). The open of D is history's point of D, else read from the snapshots the same
-- way at 00:00 UTC of D, so a day opens at the previous day's close.
-- A day is complete once its close is known to history (history has D+1's point), or once
-- the lake holds a snapshot (of any coin, in this currency) at or after 00:00 UTC of D+1.
-- Until then its row is provisional: is_complete_day is false, its close is the latest
-- snapshot price so far (none without snapshots that day), and it has no return.
-- High and low span the day's complete 4-hour candles (silver.coin_ohlc_4h) where fetched,
-- its snapshots, its open and its close (a day only partly covered by candles still spans
-- its open and close); a day with neither candles nor snapshots has none (a range made of
-- the open and close alone would be a fake). high_low_source says which bounded it:
-- 'candles' (with or without snapshots), 'snapshots' or null.
-- daily_return_ratio is the close over the previous day's close, minus 1, only between two
-- consecutive complete days; volatility_7d_ratio and volatility_30d_ratio are the sample
-- standard deviations of the last 7 and 30 daily returns, null until all of them exist.
-- All three are ratios (0.012 = 1.2%), not percents.
-- market_cap, total_volume and market_cap_rank are the day's last snapshot's; on a day
-- without snapshots, market_cap and total_volume are history's, the rank is null, and the
-- symbol and name are the coin's latest in any snapshot of this currency (null if none).
-- Incremental by time range: only days from getvariable('coin_daily_from') on are returned,
-- computed from the snapshots from the day before (whose last snapshot opens the first day),
-- and from history and candles from that day on. The first day's return and the volatility
-- windows also reach back 29 days: coin_daily_prior (sql/duckdb/incremental) holds those
-- days' closes and returns as gold.coin_daily has them, so a build reads days of silver, not
-- months; 1900-01-01 returns every day (coin_daily_prior is then empty).
with snapshots as (
    select * from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
        and current_price is not null
        and snapshot_date >= getvariable('coin_daily_from') - 1
),

history as (
    -- Filtered to the currency and the days first: a year of history is ~91k rows.
    select coin_id, day, price, market_cap, total_volume, point_at
    from silver.coin_history_daily
    where vs_currency = getvariable('vs_currency')
        and day >= getvariable('coin_daily_from')
),

candles_4h as (
    select coin_id, day, high_price, low_price
    from silver.coin_ohlc_4h
    where vs_currency = getvariable('vs_currency')
        and is_complete
        and day >= getvariable('coin_daily_from')
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
        days.day < lake_clock.latest_day as is_complete_by_snapshots,
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

snapshot_days as (
    -- The snapshots' open and close of each day they have (before history is consulted).
    select
        *,
        case
            when opens_at_previous_close then previous_last_price
            when open_after_s <= 43200 then first_price
        end as snapshot_open_price,
        case
            when not is_complete_by_snapshots then last_price  -- provisional: the latest so far
            when closes_on_next_day then next_first_price
            when close_before_s < 43200 then last_price
        end as snapshot_close_price,
        case
            when not is_complete_by_snapshots then last_at
            when closes_on_next_day then next_first_at
            when close_before_s < 43200 then last_at
        end as snapshot_close_at
    from choices
),

history_closes as (
    -- History's point of D+1 is D's close: keyed by the day it closes.
    select coin_id, day - 1 as day, price as close_price, point_at as close_at
    from history
    where price is not null
),

candle_ranges as (
    select coin_id, day, max(high_price) as high_price, min(low_price) as low_price
    from candles_4h
    group by coin_id, day
),

recent_names as (
    -- A coin's latest symbol and name, for its days without snapshots. The snapshots read
    -- reach the lake's latest day, so a coin's latest among them is its latest of all.
    select coin_id, arg_max(symbol, last_at) as symbol, arg_max(name, last_at) as name
    from days
    where coin_id in (select coin_id from history)
    group by coin_id
),

older_names as (
    -- History's coins without a snapshot in those days (rare): their latest from all of
    -- silver (nothing is read when there are none).
    select coin_id, arg_max(symbol, snapshot_at) as symbol, arg_max(name, snapshot_at) as name
    from silver.market_snapshots
    where vs_currency = getvariable('vs_currency')
        and current_price is not null
        and coin_id in (
            select coin_id from history
            except
            select coin_id from recent_names
        )
    group by coin_id
),

known_names as (
    select * from recent_names
    union all
    select * from older_names
),

merged as (
    select
        coin_id,
        day,
        case
            when history.coin_id is null then 'snapshots'
            when snapshot_days.coin_id is null then 'history'
            else 'both'
        end as source,
        snapshot_days.coin_id is not null as has_snapshots,
        coalesce(snapshot_days.symbol, known_names.symbol) as symbol,
        coalesce(snapshot_days.name, known_names.name) as name,
        snapshot_days.market_cap_rank,
        history_closes.close_price is not null
        or coalesce(day < lake_clock.latest_day, false) as is_complete_day,
        coalesce(history.price, snapshot_days.snapshot_open_price) as open_price,
        coalesce(history_closes.close_price, snapshot_days.snapshot_close_price) as close_price,
        case
            when history_closes.close_price is not null then history_closes.close_at
            else snapshot_days.snapshot_close_at
        end as close_at,
        snapshot_days.day_high_price,
        snapshot_days.day_low_price,
        candle_ranges.high_price as candle_high_price,
        candle_ranges.low_price as candle_low_price,
        candle_ranges.coin_id is not null as has_candles,
        case
            when snapshot_days.coin_id is not null then snapshot_days.market_cap
            else history.market_cap
        end as market_cap,
        case
            when snapshot_days.coin_id is not null then snapshot_days.total_volume
            else history.total_volume
        end as total_volume,
        coalesce(snapshot_days.snapshot_count, 0) as snapshot_count,
        snapshot_days.last_at as last_snapshot_at
    from snapshot_days
    full outer join history using (coin_id, day)
    left join history_closes using (coin_id, day)
    left join candle_ranges using (coin_id, day)
    left join known_names using (coin_id)
    cross join lake_clock
),

recomputed as (
    select * from merged
    where day >= getvariable('coin_daily_from')
),

returns as (
    -- The return of a day reads the close of the day before: for the first day recomputed,
    -- gold's row of the day before it (coin_daily_prior).
    select
        *,
        case
            when is_complete_day
                and lag(day) over coin_days = day - 1
                and lag(is_complete_day) over coin_days
                and lag(close_price) over coin_days > 0
                then close_price / lag(close_price) over coin_days - 1
        end as daily_return_ratio
    from (
        select *, false as is_prior from recomputed
        union all by name
        select coin_id, day, is_complete_day, close_price, true as is_prior
        from coin_daily_prior
        where day = getvariable('coin_daily_from') - 1
    )
    window coin_days as (partition by coin_id order by day)
    qualify not is_prior
),

volatility as (
    -- Over the returns alone (a narrow window): those recomputed, after gold's of the 29
    -- days before them.
    select
        coin_id,
        day,
        case
            when lag(day, 6) over coin_days = day - 6
                and count(daily_return_ratio) over last_7_days = 7
                then stddev_samp(daily_return_ratio) over last_7_days
        end as volatility_7d_ratio,
        case
            when lag(day, 29) over coin_days = day - 29
                and count(daily_return_ratio) over last_30_days = 30
                then stddev_samp(daily_return_ratio) over last_30_days
        end as volatility_30d_ratio
    from (
        select coin_id, day, daily_return_ratio from returns
        union all
        select coin_id, day, daily_return_ratio from coin_daily_prior
    )
    window
        coin_days as (partition by coin_id order by day),
        last_7_days as (coin_days rows between 6 preceding and current row),
        last_30_days as (coin_days rows between 29 preceding and current row)
    qualify day >= getvariable('coin_daily_from')
),

final as (
    select
        coin_id,
        day,
        returns.symbol,
        returns.name,
        getvariable('vs_currency') as vs_currency,
        returns.is_complete_day,
        returns.market_cap_rank,
        returns.open_price,
        -- greatest and least skip nulls: every price seen in the day bounds its range.
        case
            when returns.has_candles or returns.has_snapshots
                then greatest(
                    returns.candle_high_price,
                    returns.day_high_price,
                    returns.open_price,
                    returns.close_price
                )
        end as high_price,
        case
            when returns.has_candles or returns.has_snapshots
                then least(
                    returns.candle_low_price,
                    returns.day_low_price,
                    returns.open_price,
                    returns.close_price
                )
        end as low_price,
        returns.close_price,
        returns.market_cap,
        returns.total_volume,
        returns.daily_return_ratio,
        volatility.volatility_7d_ratio,
        volatility.volatility_30d_ratio,
        returns.snapshot_count,
        returns.close_at,
        returns.last_snapshot_at,
        returns.source,
        case
            when returns.has_candles then 'candles'
            when returns.has_snapshots then 'snapshots'
        end as high_low_source
    from returns
    inner join volatility using (coin_id, day)
)

select * from final
