-- silver.category_snapshots: one row per category per snapshot, from /coins/categories.
--
-- Inputs as in market_snapshots.sql. The categories endpoint quotes in USD whatever the
-- run's vs_currency, so the money columns say _usd; its market_cap_change_24h is a percent
-- change, renamed to say so. Fields not listed (top_3_coins images) are ignored.
with source as (
    select *
    from read_json(
        getvariable('bronze_files'),
        format = 'array',
        filename = true,
        columns = {
            id: 'varchar',
            name: 'varchar',
            market_cap: 'varchar',
            market_cap_change_24h: 'varchar',
            volume_24h: 'varchar',
            content: 'varchar',
            updated_at: 'varchar'
        }
    )
),

files as (
    select * from bronze_files
),

renamed as (
    select
        source.id as category_id,
        source.name,
        files.snapshot_at,
        try_cast(source.market_cap as double) as market_cap_usd,
        try_cast(source.market_cap_change_24h as double) as market_cap_change_percentage_24h,
        try_cast(source.volume_24h as double) as volume_24h_usd,
        nullif(source.content, '') as description,
        try_cast(source.updated_at as timestamptz) as updated_at,
        files.run_id,
        files.is_sample,
        files.page,
        cast(files.snapshot_at as date) as snapshot_date
    from source
    inner join files
        on source.filename = files.path
    -- (A category without an id is kept: the key check quarantines it, so it is counted.)
),

final as (
    select *
    from renamed
    qualify row_number() over (partition by category_id, snapshot_at order by page) = 1
)

select * exclude (page) from final
