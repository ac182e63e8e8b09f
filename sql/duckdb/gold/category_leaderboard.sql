-- gold.category_leaderboard: the latest snapshot's coin categories ranked by market cap (USD,
-- as the API quotes categories); 24h change stays null where the API gives none.
-- getvariable('latest_categories_at') / ('latest_categories_date'): the latest categories
-- snapshot, set by the build (a literal day lets DuckLake read that partition's files only).
with latest as (
    select * from silver.category_snapshots
    where snapshot_date = getvariable('latest_categories_date')
        and snapshot_at = getvariable('latest_categories_at')
),

final as (
    select
        row_number() over (
            order by market_cap_usd desc nulls last, category_id
        ) as category_rank,
        category_id,
        name,
        market_cap_usd,
        market_cap_change_percentage_24h as market_cap_change_24h_pct,
        volume_24h_usd,
        updated_at,
        snapshot_at
    from latest
)

select * from final
order by category_rank
