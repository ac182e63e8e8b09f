-- silver.market_snapshots rows all have a coin_id, a snapshot_at and a run_id.
select *
from silver.market_snapshots
where coin_id is null or snapshot_at is null or run_id is null
