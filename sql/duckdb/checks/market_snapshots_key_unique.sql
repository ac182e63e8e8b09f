-- silver.market_snapshots has one row per (coin_id, snapshot_at).
select coin_id, snapshot_at, count(*) as row_count
from silver.market_snapshots
-- The days a build changed (all days when run by `cryptolake check`).
where snapshot_date >= coalesce(getvariable('audit_from'), date '1900-01-01')
group by coin_id, snapshot_at
having count(*) > 1
