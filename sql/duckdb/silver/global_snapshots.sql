-- silver.global_snapshots: one row per snapshot, market-wide totals from /global bodies.
--
-- Inputs as in market_snapshots.sql. Totals are per quote currency in the API; we keep the
-- run's vs_currency, and the total in USD beside it: their ratio is the snapshot's exchange
-- rate, which gold needs to apply USD thresholds (market-cap segments) in any currency.
-- market_cap_percentage (the coin's share of total market cap, %) is kept whole as a map, and
-- BTC and ETH are pulled out because every dashboard wants them.
with source as (
    select *
    from read_json(
        getvariable('bronze_files'),
        -- each body is one object, not an array of records
        format = 'unstructured',
        filename = true,
        columns = {data: 'json'}
    )
),

files as (
    select * from bronze_files
),

renamed as (
    select
        files.snapshot_at,
        files.vs_currency,
        try_cast(source.data ->> 'active_cryptocurrencies' as integer) as active_cryptocurrencies,
        try_cast(source.data ->> 'upcoming_icos' as integer) as upcoming_icos,
        try_cast(source.data ->> 'ongoing_icos' as integer) as ongoing_icos,
        try_cast(source.data ->> 'ended_icos' as integer) as ended_icos,
        try_cast(source.data ->> 'markets' as integer) as markets,
        try_cast(source.data -> 'total_market_cap' ->> files.vs_currency as double)
            as total_market_cap,
        try_cast(source.data -> 'total_market_cap' ->> 'usd' as double) as total_market_cap_usd,
        try_cast(source.data -> 'total_volume' ->> files.vs_currency as double) as total_volume,
        try_cast(source.data ->> 'market_cap_change_percentage_24h_usd' as double)
            as market_cap_change_percentage_24h_usd,
        try_cast(source.data -> 'market_cap_percentage' ->> 'btc' as double)
            as btc_market_cap_percentage,
        try_cast(source.data -> 'market_cap_percentage' ->> 'eth' as double)
            as eth_market_cap_percentage,
        json_transform(source.data -> 'market_cap_percentage', '"MAP(VARCHAR, DOUBLE)"')
            as market_cap_percentage,
        -- updated_at is Unix seconds in the API.
        to_timestamp(try_cast(source.data ->> 'updated_at' as bigint)) as updated_at,
        files.run_id,
        files.is_sample,
        files.page,
        cast(files.snapshot_at as date) as snapshot_date
    from source
    inner join files
        on source.filename = files.path
    where source.data is not null
),

final as (
    select *
    from renamed
    qualify row_number() over (partition by snapshot_at order by page) = 1
)

select * exclude (page) from final
