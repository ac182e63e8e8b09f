-- The latest snapshot gold is built from is within the freshness limit (CRYPTOLAKE_FRESHNESS_HOURS).
-- on_fail: warn
-- meta.snapshots lists the snapshots the lake's gold was built from: a snapshot in
-- silver whose gold failed its audit, or of another currency than gold's, does not make the
-- lake fresh.
with latest as (
    select max(snapshot_at) as latest_snapshot_at
    from meta.snapshots
    where vs_currency = (select vs_currency from meta.build)
)

select
    latest_snapshot_at,
    round(epoch(now() - latest_snapshot_at) / 3600, 1) as age_hours,
    getvariable('freshness_hours') as limit_hours
from latest
where latest_snapshot_at is null
    or latest_snapshot_at
        < now() - to_seconds(cast(cast(getvariable('freshness_hours') as double) * 3600 as bigint))
