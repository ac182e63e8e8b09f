-- silver.coin_ohlc_4h: one row per coin, quote currency and candle, from /coins/{id}/ohlc
-- bodies (4-hour candles for days=3..30).
--
-- Inputs as in market_snapshots.sql, plus two columns of bronze_files: coin_id (the coin the
-- request was for; the body does not name it) and fetched_at (when the body arrived).
--
-- A body is an array of [ms_timestamp, open, high, low, close] candles. The rules:
--   * The timestamp is the candle's close time (CoinGecko's convention): candle_at. Its day is
--     the UTC day the candle opened in, the day of candle_at - 4 hours, so the candle closing
--     at 00:00 belongs to the day before.
--   * The last candle of a body can still be forming: is_complete is candle_at <= fetched_at.
--   * Timestamps and prices are read as text and try_cast (the API has sent numbers as
--     strings): a candle without a readable timestamp is dropped, an unreadable price is null.
--   * A body that is not an array (an error body such as {"error": "coin not found"}) gives
--     no rows.
--   * One row per (coin_id, vs_currency, candle_at): the body fetched last (fetched_at, then
--     run_id) wins, and within a body the last occurrence.
--
-- Days are integer arithmetic on the ms timestamp, not time-zone functions, like
-- coin_history_daily.sql: 86400000 ms = 1 day, 14400000 ms = 4 hours.
with source as (
    select *
    from read_json(
        getvariable('bronze_files'),
        -- each body is one array, read whole (not as records)
        format = 'unstructured',
        records = false,
        filename = true,
        -- Candles as text, cast below. ignore_errors turns a body of another shape into a
        -- null (and a candle that is not an array into a null candle); malformed JSON still
        -- fails the batch.
        ignore_errors = true,
        columns = {candles: 'varchar[][]'}
    )
),

files as (
    select * from bronze_files
),

body_candles as (
    select
        filename as path,
        unnest(candles) as candle,
        generate_subscripts(candles, 1) as position
    from source
    where candles is not null
),

candles as (
    select
        path,
        position,
        try_cast(candle[1] as bigint) as candle_ms,
        try_cast(candle[2] as double) as open_price,
        try_cast(candle[3] as double) as high_price,
        try_cast(candle[4] as double) as low_price,
        try_cast(candle[5] as double) as close_price
    from body_candles
),

final as (
    select
        files.coin_id,
        files.vs_currency,
        -- ms to µs, which make_timestamptz counts from the epoch
        make_timestamptz(candles.candle_ms * 1000) as candle_at,
        -- the day of candle_at - 4 hours: the day the candle opened in
        date '1970-01-01' + cast((candles.candle_ms - 14400000) // 86400000 as integer) as day,
        candles.open_price,
        candles.high_price,
        candles.low_price,
        candles.close_price,
        make_timestamptz(candles.candle_ms * 1000) <= files.fetched_at as is_complete,
        files.fetched_at,
        files.run_id,
        files.is_sample
    from candles
    inner join files
        on candles.path = files.path
    -- 1970 to 9999: an absurd timestamp is dropped rather than overflowing the arithmetic
    where candles.candle_ms between 14400000 and 253402300799999
    qualify row_number() over (
        partition by files.coin_id, files.vs_currency, candles.candle_ms
        order by
            files.fetched_at desc nulls last,
            files.run_id desc,
            files.path desc,
            candles.position desc
    ) = 1
)

select * from final
