-- silver.market_snapshots: one row per coin per snapshot, typed, from /coins/markets bodies.
--
-- Inputs, set by cryptolake.silver before this runs:
--   getvariable('bronze_files')  the body files of the runs being transformed
--   bronze_files (temp table)    their metadata from the run manifests: path, run_id,
--                                snapshot_at, vs_currency, page, trimmed_ids, is_sample
--                                (the run replayed the bundled sample, not the live API)
--
-- Fields are read by name. Every field is read as text and cast here, so a body from the
-- 2018 schema (numbers as strings) reads like a current one. Fields missing from a body
-- (older schemas) read as null; fields not listed (image, sparkline, anything the API adds
-- later) are ignored, and can be added here without shifting any column.
with source as (
    select *
    from read_json(
        getvariable('bronze_files'),
        format = 'array',
        filename = true,
        columns = {
            id: 'varchar',
            symbol: 'varchar',
            name: 'varchar',
            current_price: 'varchar',
            market_cap: 'varchar',
            market_cap_rank: 'varchar',
            fully_diluted_valuation: 'varchar',
            total_volume: 'varchar',
            high_24h: 'varchar',
            low_24h: 'varchar',
            price_change_24h: 'varchar',
            price_change_percentage_24h: 'varchar',
            price_change_percentage_1h_in_currency: 'varchar',
            price_change_percentage_24h_in_currency: 'varchar',
            price_change_percentage_7d_in_currency: 'varchar',
            price_change_percentage_30d_in_currency: 'varchar',
            market_cap_change_24h: 'varchar',
            market_cap_change_percentage_24h: 'varchar',
            circulating_supply: 'varchar',
            total_supply: 'varchar',
            max_supply: 'varchar',
            ath: 'varchar',
            ath_change_percentage: 'varchar',
            ath_date: 'varchar',
            atl: 'varchar',
            atl_change_percentage: 'varchar',
            atl_date: 'varchar',
            roi: 'json',
            last_updated: 'varchar'
        }
    )
),

files as (
    select * from bronze_files
),

renamed as (
    select
        source.id as coin_id,
        source.symbol,
        source.name,
        files.vs_currency,
        files.snapshot_at,
        try_cast(source.market_cap_rank as integer) as market_cap_rank,
        -- Prices, caps and supplies stay DOUBLE: exactly the value a JSON parser reads
        -- (6.514e-09 and 1e15-scale supplies alike); no fixed scale that would truncate.
        try_cast(source.current_price as double) as current_price,
        try_cast(source.market_cap as double) as market_cap,
        try_cast(source.fully_diluted_valuation as double) as fully_diluted_valuation,
        try_cast(source.total_volume as double) as total_volume,
        try_cast(source.high_24h as double) as high_24h,
        try_cast(source.low_24h as double) as low_24h,
        try_cast(source.price_change_24h as double) as price_change_24h,
        try_cast(source.price_change_percentage_1h_in_currency as double)
            as price_change_percentage_1h,
        -- Responses fetched without price_change_percentage=24h only carry the plain field,
        -- which is the same figure for the same window.
        coalesce(
            try_cast(source.price_change_percentage_24h_in_currency as double),
            try_cast(source.price_change_percentage_24h as double)
        ) as price_change_percentage_24h,
        try_cast(source.price_change_percentage_7d_in_currency as double)
            as price_change_percentage_7d,
        try_cast(source.price_change_percentage_30d_in_currency as double)
            as price_change_percentage_30d,
        try_cast(source.market_cap_change_24h as double) as market_cap_change_24h,
        try_cast(source.market_cap_change_percentage_24h as double)
            as market_cap_change_percentage_24h,
        try_cast(source.circulating_supply as double) as circulating_supply,
        try_cast(source.total_supply as double) as total_supply,
        try_cast(source.max_supply as double) as max_supply,
        try_cast(source.ath as double) as ath,
        try_cast(source.ath_change_percentage as double) as ath_change_percentage,
        try_cast(source.ath_date as timestamptz) as ath_at,
        try_cast(source.atl as double) as atl,
        try_cast(source.atl_change_percentage as double) as atl_change_percentage,
        try_cast(source.atl_date as timestamptz) as atl_at,
        -- roi is an object, null, or (2018 schema) the number 0: only an object has fields.
        case when json_type(source.roi) = 'OBJECT'
            then try_cast(source.roi ->> 'times' as double)
        end as roi_times,
        case when json_type(source.roi) = 'OBJECT'
            then source.roi ->> 'currency'
        end as roi_currency,
        case when json_type(source.roi) = 'OBJECT'
            then try_cast(source.roi ->> 'percentage' as double)
        end as roi_percentage,
        try_cast(source.last_updated as timestamptz) as last_updated_at,
        files.run_id,
        files.is_sample,
        files.page,
        cast(files.snapshot_at as date) as snapshot_date
    from source
    inner join files
        on source.filename = files.path
    -- Records beyond --top on the last page stay in bronze (verbatim) but not in silver. A
    -- record without an id stays too: the key check quarantines it, so it is counted.
    where source.id is null
        or not list_contains(files.trimmed_ids, source.id)
),

final as (
    select *
    from renamed
    -- A coin can appear twice in one run when the ranking shifts while paging: keep the
    -- freshest quote, then the earlier page, so the choice is deterministic.
    qualify row_number() over (
        partition by coin_id, snapshot_at
        order by last_updated_at desc nulls last, page, current_price
    ) = 1
)

select * exclude (page) from final
