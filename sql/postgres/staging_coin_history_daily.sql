-- staging_coin_history_daily: silver.coin_history_daily (CoinGecko's daily price, market cap
-- and volume at 00:00 UTC of `day`, from `cryptolake backfill`), upserted by key.
-- A publish replaces the rows of every key silver changed since the last publish (DuckLake's
-- change feed), in its one transaction; a key silver no longer has is deleted.
-- One partition per calendar month of `day` (staging_coin_history_daily_pYYYYMM), created by
-- publish and attached (see staging_history.py): a year is 13 of them, a query on a time range
-- reads only its months.
-- The primary key is (coin_id, vs_currency, day) with day before vs_currency, so the one
-- index also serves a coin's days (`coin_id = … and day between …`) in any currency.
create table if not exists {{schema}}.staging_coin_history_daily (
    coin_id text not null,
    vs_currency text not null,
    day date not null,
    price double precision,
    market_cap double precision,
    total_volume double precision,
    point_at timestamptz,
    fetched_at timestamptz,
    run_id text,
    is_sample boolean,
    constraint staging_coin_history_daily_pkey primary key (coin_id, day, vs_currency)
) partition by range (day);
