-- crypto_market_summary: one row for a dashboard's header, always from the latest publish.
create or replace view {{schema}}.crypto_market_summary as
with latest_snapshot as (
    select max(snapshot_at) as snapshot_at
    from {{schema}}.crypto_analytics_mart
),

latest_day as (
    select *
    from {{schema}}.market_daily
    order by day desc
    limit 1
),

latest_publish as (
    select max(finished_at) as published_at
    from {{schema}}.publish_log
),

final as (
    select
        latest_day.coins_tracked,
        latest_day.total_market_cap,
        latest_day.btc_dominance_pct,
        latest_snapshot.snapshot_at as latest_snapshot_at,
        latest_publish.published_at as latest_publish_at
    from latest_snapshot
    cross join latest_publish
    left join latest_day
        on true
)

select * from final;
