-- silver.coin_history_daily: one row per coin, quote currency and UTC day, from
-- /coins/{id}/market_chart bodies (interval=daily, or the hourly points of days=2..90).
--
-- Inputs as in market_snapshots.sql, plus two columns of bronze_files: coin_id (the coin the
-- request was for; the body does not name it) and fetched_at (when the body arrived).
--
-- A body is an object of three series, prices, market_caps and total_volumes, each an array
-- of [ms_timestamp, value] points. The rules:
--   * A body that is not an object with a prices array (an error body such as
--     {"error": "coin not found"}) gives no rows.
--   * Timestamps and values are read as text and try_cast (the API has sent numbers as
--     strings): a point without a readable timestamp is dropped, an unreadable value is null.
--   * The three series are joined on the exact timestamp, full outer: a timestamp missing from
--     one series gives null there.
--   * A point is a daily point of day D if it lies within 30 minutes of 00:00 UTC of D. With
--     interval=daily the API stamps them exactly 00:00:00.000; hourly bodies have one within
--     minutes. The nearest to midnight wins; at equal distance (the same timestamp twice, or
--     the same number of ms either side) the earlier position in the body wins.
--   * The body's last point (last in prices) is "now", the price when the request was made,
--     not a day's: it is never a daily point unless stamped exactly 00:00:00.000 UTC. That also
--     keeps out a last point whose timestamp repeats or goes back before the previous one.
--   * Across the bodies of one batch, the body fetched last (fetched_at, then run_id) wins a
--     (coin_id, vs_currency, day), even where an older body has a point nearer midnight.
--
-- Midnights are integer arithmetic on the ms timestamp, not time-zone functions: a full
-- backfill is ~18k bodies of 366 points. 86400000 ms = 1 day, 43200000 ms = 12 hours (to
-- round to the nearest midnight), 1800000 ms = 30 minutes.
with source as (
    select *
    from read_json(
        getvariable('bronze_files'),
        -- each body is one object, not an array of records
        format = 'unstructured',
        filename = true,
        -- Points as text ([ms_timestamp, value] pairs), cast below. ignore_errors turns a
        -- field of another shape into null (a point that is not an array into a null point)
        -- and a body that is not an object (the `[]` of an empty batch too) into a row of
        -- nulls; malformed JSON still fails the batch.
        ignore_errors = true,
        columns = {
            prices: 'varchar[][]',
            market_caps: 'varchar[][]',
            total_volumes: 'varchar[][]'
        }
    )
),

files as (
    select * from bronze_files
),

bodies as (
    select
        filename as path,
        prices,
        market_caps,
        total_volumes
    from source
    where prices is not null
),

-- One row per point of each series, with its 1-based position in the series. (unnest and
-- generate_subscripts in the select list: a lateral `unnest(...) with ordinality` measured 5x
-- slower on DuckDB 1.5.)
series_points as (
    select
        path,
        'prices' as series,
        unnest(prices) as point,
        generate_subscripts(prices, 1) as position,
        len(prices) as point_count
    from bodies
    union all
    select
        path,
        'market_caps' as series,
        unnest(market_caps) as point,
        generate_subscripts(market_caps, 1) as position,
        len(market_caps) as point_count
    from bodies
    union all
    select
        path,
        'total_volumes' as series,
        unnest(total_volumes) as point,
        generate_subscripts(total_volumes, 1) as position,
        len(total_volumes) as point_count
    from bodies
),

points as (
    select
        path,
        series,
        position,
        -- "now" is the last point of prices; the other series end with the same timestamp,
        -- and the join below pairs their point with it
        series = 'prices' and position = point_count as is_now,
        try_cast(point[1] as bigint) as point_ms,
        try_cast(point[2] as double) as point_value
    from series_points
),

-- Only points within 30 minutes of a midnight can be a day's: keep those before joining. The
-- range check (1970 to 9999) keeps an absurd timestamp from overflowing the date arithmetic.
near_midnight as (
    select *
    from points
    where point_ms between 0 and 253402300799999
        and abs(point_ms - (point_ms + 43200000) // 86400000 * 86400000) <= 1800000
),

prices as (
    select path, point_ms, position as price_position, point_value as price, is_now
    from near_midnight
    where series = 'prices'
),

market_caps as (
    select path, point_ms, position as market_cap_position, point_value as market_cap
    from near_midnight
    where series = 'market_caps'
),

total_volumes as (
    select path, point_ms, position as total_volume_position, point_value as total_volume
    from near_midnight
    where series = 'total_volumes'
),

-- A timestamp repeated within a series pairs with each repeat in the others; the ranking
-- below keeps the earliest of each.
joined as (
    select
        path,
        point_ms,
        prices.price_position,
        market_caps.market_cap_position,
        total_volumes.total_volume_position,
        prices.price,
        market_caps.market_cap,
        total_volumes.total_volume,
        coalesce(prices.is_now, false) as is_now
    from prices
    full outer join market_caps using (path, point_ms)
    full outer join total_volumes using (path, point_ms)
),

daily_points as (
    select
        *,
        cast((point_ms + 43200000) // 86400000 as integer) as day_number,
        abs(point_ms - (point_ms + 43200000) // 86400000 * 86400000) as distance_ms
    from joined
    -- "now" is dropped with whatever the other series have at its timestamp
    where not is_now
        or point_ms % 86400000 = 0
),

final as (
    select
        files.coin_id,
        files.vs_currency,
        date '1970-01-01' + daily_points.day_number as day,
        daily_points.price,
        daily_points.market_cap,
        daily_points.total_volume,
        -- ms to µs, which make_timestamptz counts from the epoch
        make_timestamptz(daily_points.point_ms * 1000) as point_at,
        files.fetched_at,
        files.run_id,
        files.is_sample
    from daily_points
    inner join files
        on daily_points.path = files.path
    qualify row_number() over (
        partition by files.coin_id, files.vs_currency, daily_points.day_number
        order by
            files.fetched_at desc nulls last,
            files.run_id desc,
            files.path desc,
            daily_points.distance_ms,
            coalesce(
                daily_points.price_position,
                daily_points.market_cap_position,
                daily_points.total_volume_position
            ),
            daily_points.price_position nulls last,
            daily_points.market_cap_position nulls last,
            daily_points.total_volume_position nulls last
    ) = 1
)

select * from final
