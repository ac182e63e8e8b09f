-- silver.market_snapshots has one row per (coin_id, snapshot_at).
select coin_id, snapshot_at, count(*) as row_count
from silver.market_snapshots
group by coin_id, snapshot_at
having count(*) > 1
